"""
A prepared dataset (what prepare.py writes in data_dir), opened one way by every stage.

    data_dir/meta.json          vocab_size, tokenizer, dtype, format, splits, and per kind of tokenizer:
                                tiktoken (no tokenizer_kind): eot_token, pat_str
                                llama2c: tokenizer_kind, start_token, stop_token
    data_dir/tokenizer.tiktoken our BPE (or GPT-2's), in tiktoken's file format, or
    data_dir/tokenizer.bin      a Llama model's tokenizer, in llama2.c's file format
    data_dir/train.bin, val.bin the stories' token ids (uint16/uint32), laid out by story_layout:
                                EOT s1 EOT s2 ... EOT (tiktoken), BOS s1 BOS s2 ... BOS (llama2.c's)

`open_dataset` reads and validates meta.json once and checks every bin's size against it (a bin
cut short would otherwise give a wrong number with no warning), so the stages that follow can
trust what they read.
"""
import hashlib
import json
import os

import numpy as np

from tinystories.llama2c_tokenizer import Llama2cTokenizer
from tinystories.tokenizer import check_ids, check_pattern, make_encoding, parse_tiktoken
from tinystories.tokenizer_interface import TiktokenTokenizer

DTYPES = {'uint16': 2 ** 16, 'uint32': 2 ** 32}  # dtype -> how many ids it can hold
# the kinds of tokenizer a data_dir holds: its file, and the fields its meta.json must have
TOKENIZER_FILES = {'tiktoken': 'tokenizer.tiktoken', 'llama2c': 'tokenizer.bin'}
REQUIRED = {'tiktoken': ('vocab_size', 'eot_token', 'tokenizer', 'pat_str'),
            'llama2c': ('vocab_size', 'tokenizer', 'start_token', 'stop_token')}


def tokenizer_kind(meta):
    """A meta.json without 'tokenizer_kind' (every data_dir before Llama's) holds a tiktoken BPE."""
    return meta.get('tokenizer_kind', 'tiktoken')


def story_layout(stories, start, stop, dtype=np.int64, last=False):
    """Stories (sequences of ids) as every bin lays them out: each story after the start token, and
    ended by the stop token when that is another token (start s1 stop start s2 stop ...). Our BPE's
    EOT is both, so its bins are EOT s1 EOT s2 ... EOT, and llama2.c's are BOS s1 BOS s2 ... BOS
    (its own data: BOS before each story, no EOS; run.c stops at BOS); a Llama that stops at EOS
    gets it after each story. last: the bin's last stories, after which a start token that is also
    the stop token ends the last one (a target like every other story's end)."""
    head, end = np.array([start], dtype=dtype), np.array([stop], dtype=dtype)
    tail = [end] if stop != start else []
    parts = [part for s in stories for part in [head, np.asarray(s, dtype=dtype)] + tail]
    return np.concatenate(parts + ([head] if last and stop == start else []) or [np.zeros(0, dtype)])


def read_meta(data_dir):
    """meta.json, validated: a one-line error for a missing, corrupt or inconsistent file."""
    path = os.path.join(data_dir, 'meta.json')
    if os.path.isfile(data_dir):
        raise SystemExit(f"error: data_dir {data_dir!r} is a file, not a prepared dataset folder")
    try:
        with open(path, encoding='utf-8') as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"error: {path} not found: run prepare.py --data_dir={data_dir} first")
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot read {path} ({e}): run prepare.py --data_dir={data_dir} --force")
    if not isinstance(meta, dict):
        raise SystemExit(f"error: {path} is not a JSON object: run prepare.py --data_dir={data_dir} --force")
    kind = tokenizer_kind(meta)
    if kind not in TOKENIZER_FILES:
        raise SystemExit(f"error: {path}: tokenizer_kind={kind!r} is not one of {', '.join(TOKENIZER_FILES)}; "
                         f"run prepare.py --data_dir={data_dir} --force to rebuild it")
    missing = [k for k in REQUIRED[kind] if k not in meta]
    if missing:
        raise SystemExit(f"error: {path} lacks {', '.join(missing)}")
    meta.setdefault('dtype', 'uint16')
    check_meta(meta, path)
    return meta


def count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def check_meta(meta, path):
    """meta.json's schema (prepare.py writes it): every field the readers use, of its type."""
    def need(ok, what):
        if not ok:
            raise SystemExit(f"error: {path}: {what}; run prepare.py again (--force) to rebuild it")
    vocab, dtype, kind = meta['vocab_size'], meta['dtype'], tokenizer_kind(meta)
    need(count(vocab) and vocab >= 1, f"vocab_size={vocab!r} is not a positive integer")
    for key in ('eot_token', 'start_token', 'stop_token'):
        if key in REQUIRED[kind]:
            need(count(meta[key]) and meta[key] < vocab, f"{key}={meta[key]!r} is not an id below vocab_size={vocab}")
    need(isinstance(dtype, str) and dtype in DTYPES and vocab <= DTYPES[dtype],
         f"dtype={dtype!r} cannot hold {vocab} ids (use uint16 or uint32)")
    need(isinstance(meta['tokenizer'], str), f"tokenizer={meta['tokenizer']!r} is not a name")
    if kind == 'tiktoken':
        need(isinstance(meta['pat_str'], str), f"pat_str={meta['pat_str']!r} is not a pattern")
        check_pattern(meta['pat_str'], path)
    need(meta.get('format', 'plain') in ('plain', 'instruct'),
         f"format={meta.get('format')!r} is not plain or instruct")
    splits = meta.get('splits')
    need(isinstance(splits, dict), "'splits' is missing or not an object")
    for split in ('train', 'val'):
        info = splits.get(split)
        need(isinstance(info, dict), f"splits.{split} is missing or not an object")
        for key in ('stories', 'tokens', 'bytes'):
            need(count(info.get(key)), f"splits.{split}.{key}={info.get(key)!r} is not a count")


def bin_problem(data_dir, split, meta):
    """Why data_dir's split.bin does not match meta.json (missing, or not the recorded
    tokens x the dtype's size: cut short or damaged), or None."""
    path = os.path.join(data_dir, f'{split}.bin')
    if not os.path.isfile(path):
        return "not found"
    size, want, itemsize = os.path.getsize(path), meta['splits'][split]['tokens'], np.dtype(meta['dtype']).itemsize
    if size != want * itemsize:
        return (f"is {size:,} bytes but meta.json says {want:,} {meta['dtype']} tokens "
                f"({want * itemsize:,} bytes): the file is cut short or damaged")
    return None


def read_tokenizer(data_dir, meta):
    """(the tokenizer behind tokenizer_interface.py, its checkpoint record) from data_dir's file,
    its ids checked against meta.json (a validated one): a one-line SystemExit when they disagree
    (vocab_size 600 with a 511-token file would train a model that no later stage can load).
    The record is the tokenizer's own (with its sha256); our BPE's keeps the fields it always had."""
    kind = tokenizer_kind(meta)
    path = os.path.join(data_dir, TOKENIZER_FILES[kind])
    try:
        with open(path, 'rb') as f:
            data = f.read()
        if kind == 'llama2c':
            tok = Llama2cTokenizer(data, meta.get('tokenizer_name', 'tokenizer'), meta['stop_token'], where=path)
            if tok.vocab_size != meta['vocab_size'] or tok.start_token != meta['start_token']:
                raise ValueError(f"tokenizer has {tok.vocab_size} pieces and start token {tok.start_token} but meta "
                                 f"says vocab_size={meta['vocab_size']}, start_token={meta['start_token']}")
            return tok, tok.record()
        text = data.decode('ascii')
        ranks = parse_tiktoken(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SystemExit(f"error: cannot read tokenizer {path}: {e}")
    check_ids(ranks, meta, path)
    record = {'name': meta['tokenizer'], 'pat_str': meta['pat_str'], 'tiktoken': text,
              'sha256': hashlib.sha256(data).hexdigest(), 'eot_token': meta['eot_token'],
              'vocab_size': meta['vocab_size']}
    return TiktokenTokenizer(make_encoding(ranks, meta['pat_str'], meta['tokenizer']), record), record


def damaged_files(data_dir, meta):
    """{file name: what is wrong} for each output of prepare.py that does not match meta.json
    (a validated one): the bins' sizes, the tokenizer's ids and, where recorded, its sha256."""
    found = {s + '.bin': bin_problem(data_dir, s, meta) for s in ('train', 'val')}
    name = TOKENIZER_FILES[tokenizer_kind(meta)]
    try:
        _, record = read_tokenizer(data_dir, meta)
        if meta.get('tokenizer_sha256') not in (None, record['sha256']):
            found[name] = "its sha256 is not the one meta.json records"
    except SystemExit as e:
        found[name] = str(e).removeprefix('error: ')
    return {name: why for name, why in found.items() if why}


class Dataset:
    """A validated data_dir. tokens(split) is a fresh read-only memmap each call: holding one
    open for a whole run makes its pages count as the process's memory (a known nanoGPT issue)."""

    def __init__(self, data_dir, splits=('train', 'val')):
        self.dir = data_dir
        self.meta = read_meta(data_dir)
        self.vocab_size = self.meta['vocab_size']
        self.kind = tokenizer_kind(self.meta)
        # our BPE's EOT is both the start and the stop token
        self.start, self.stop = ((self.meta['eot_token'],) * 2 if self.kind == 'tiktoken' else
                                 (self.meta['start_token'], self.meta['stop_token']))
        self.dtype = np.dtype(self.meta['dtype'])
        self.format = self.meta.get('format', 'plain')
        self._tokenizer = None
        for split in splits:
            problem = bin_problem(data_dir, split, self.meta)
            if problem:
                raise SystemExit(f"error: {self.path(split)} {problem}; run prepare.py --data_dir={data_dir} --force")

    def path(self, split):
        return os.path.join(self.dir, f'{split}.bin')

    def split_info(self, split):
        """meta's record of a split: stories, tokens, bytes (of UTF-8 text)."""
        return self.meta.get('splits', {}).get(split, {})

    def tokens(self, split):
        return np.memmap(self.path(split), dtype=self.dtype, mode='r')

    def stories(self, split, limit=0):
        """The split's stories as token-id arrays (start and stop tokens removed), in file order:
        the bin cut at each start token (story_layout)."""
        data = self.tokens(split)
        cuts = np.flatnonzero(data == self.start)
        bounds = zip(np.concatenate([[0], cuts + 1]), np.concatenate([cuts, [len(data)]]))
        if self.stop != self.start:  # each story ends with the stop token: not the story's
            bounds = ((a, b - 1 if b > a and data[b - 1] == self.stop else b) for a, b in bounds)
        out = [data[a:b] for a, b in bounds if b > a]  # a start token before each story: skip the empties
        return out[:limit] if limit else out

    def texts(self, split, limit=0):
        """The split's stories as text (decoded with the dataset's own tokenizer)."""
        stories = [t.tolist() for t in self.stories(split, limit)]
        if self.kind == 'tiktoken':
            return self.encoding().decode_batch(stories)  # tiktoken's threads
        return [self.tokenizer().decode([self.start] + s) for s in stories]  # after the start token, as in the bin

    def tokenizer(self):
        """The dataset's tokenizer (tokenizer_interface.py's), checked against meta.json."""
        if self._tokenizer is None:
            self._tokenizer = read_tokenizer(self.dir, self.meta)
        return self._tokenizer[0]

    def encoding(self):
        """What encodes and decodes the ids: tiktoken's Encoding for a BPE of ours (or GPT-2's),
        the tokenizer itself for a Llama's."""
        tok = self.tokenizer()
        return tok.encoding if self.kind == 'tiktoken' else tok

    def tokenizer_record(self):
        """Everything needed to rebuild the tokenizer, as plain str/int (for a checkpoint); its
        sha256 tells two tokenizers apart even when their sizes agree."""
        self.tokenizer()  # the file must agree with meta.json before a run trains on it
        return self._tokenizer[1]

    def for_model(self, tok, tokenizer):
        """This dataset in a model's token ids: itself when the model was trained with its
        tokenizer (`tok`: the model's tokenizer_interface tokenizer, `tokenizer` its record,
        compared by sha256), else its stories decoded with the dataset's tokenizer and encoded with
        the model's (the paper's models use GPT-2's 50,257 tokens; llama2.c's its own). Bits per
        byte still compare: the bytes are the text's, whatever the tokens."""
        if tokenizer.get('sha256') == self.tokenizer_record()['sha256']:
            return self
        return Reencoded(self, tok)


class Reencoded:
    """A Dataset's splits re-encoded, in memory, with another tokenizer: the same interface as
    Dataset for the readers that only need tokens, stories and the split's bytes."""

    def __init__(self, dataset, tok):
        self.source, self.tok = dataset, tok
        self.meta, self.format, self.vocab_size = dataset.meta, dataset.format, tok.vocab_size
        self._stories, self._tokens = {}, {}

    def stories(self, split, limit=0):
        if split not in self._stories:
            texts = self.source.texts(split)
            self._stories[split] = [np.array(ids, dtype=np.int64) for ids in self.tok.encode_batch(texts)]
        out = self._stories[split]
        return out[:limit] if limit else out

    def tokens(self, split):
        """Every story after the start token and ended by the stop token, as prepare.py lays out a
        bin (built once per split): EOT story EOT story ... EOT for our BPE, where one token is both;
        llama2.c's BOS story BOS story ... BOS (BOS is its stop token too, as run.c stops there)."""
        if split not in self._tokens:
            self._tokens[split] = story_layout(self.stories(split), self.tok.start_token, self.tok.stop_token,
                                               last=True)
        return self._tokens[split]

    def texts(self, split, limit=0):
        return self.source.texts(split, limit)

    def split_info(self, split):
        return dict(self.source.split_info(split), tokens=len(self.tokens(split)))

    def tokenizer(self):
        return self.tok

    encoding = tokenizer


def open_dataset(data_dir, splits=('train', 'val')):
    return Dataset(data_dir, splits)
