"""
A prepared dataset (what prepare.py writes in data_dir), opened one way by every stage.

    data_dir/meta.json          vocab_size, eot_token, tokenizer, pat_str, dtype, format, splits
    data_dir/tokenizer.tiktoken the BPE, in tiktoken's file format
    data_dir/train.bin, val.bin the stories' token ids, each story after an EOT id (uint16/uint32)

`open_dataset` reads and validates meta.json once and checks every bin's size against it (a bin
cut short would otherwise give a wrong number with no warning), so the stages that follow can
trust what they read.
"""
import hashlib
import json
import os

import numpy as np

from tinystories.tokenizer import check_ids, check_pattern, make_encoding, parse_tiktoken, read_tiktoken

DTYPES = {'uint16': 2 ** 16, 'uint32': 2 ** 32}  # dtype -> how many ids it can hold


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
    missing = [k for k in ('vocab_size', 'eot_token', 'tokenizer', 'pat_str') if k not in meta]
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
    vocab, eot, dtype = meta['vocab_size'], meta['eot_token'], meta['dtype']
    need(count(vocab) and vocab >= 1, f"vocab_size={vocab!r} is not a positive integer")
    need(count(eot) and eot < vocab, f"eot_token={eot!r} is not an id below vocab_size={vocab}")
    need(isinstance(dtype, str) and dtype in DTYPES and vocab <= DTYPES[dtype],
         f"dtype={dtype!r} cannot hold {vocab} ids (use uint16 or uint32)")
    need(isinstance(meta['tokenizer'], str), f"tokenizer={meta['tokenizer']!r} is not a name")
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


def damaged_files(data_dir, meta):
    """{file name: what is wrong} for each output of prepare.py that does not match meta.json
    (a validated one): the bins' sizes, the tokenizer's ids and, where recorded, its sha256."""
    found = {s + '.bin': bin_problem(data_dir, s, meta) for s in ('train', 'val')}
    tok = os.path.join(data_dir, 'tokenizer.tiktoken')
    try:
        with open(tok, 'rb') as f:
            data = f.read()
        check_ids(parse_tiktoken(data.decode('ascii')), meta, tok)
        if meta.get('tokenizer_sha256') not in (None, hashlib.sha256(data).hexdigest()):
            raise ValueError("its sha256 is not the one meta.json records")
    except (OSError, UnicodeDecodeError, ValueError, SystemExit) as e:
        found['tokenizer.tiktoken'] = str(e).removeprefix('error: ')
    return {name: why for name, why in found.items() if why}


class Dataset:
    """A validated data_dir. tokens(split) is a fresh read-only memmap each call: holding one
    open for a whole run makes its pages count as the process's memory (a known nanoGPT issue)."""

    def __init__(self, data_dir, splits=('train', 'val')):
        self.dir = data_dir
        self.meta = read_meta(data_dir)
        self.vocab_size, self.eot = self.meta['vocab_size'], self.meta['eot_token']
        self.dtype = np.dtype(self.meta['dtype'])
        self.format = self.meta.get('format', 'plain')
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
        """The split's stories as token-id arrays (EOT ids removed), in file order."""
        data = self.tokens(split)
        cuts = np.flatnonzero(data == self.eot)
        bounds = zip(np.concatenate([[0], cuts + 1]), np.concatenate([cuts, [len(data)]]))
        out = [data[a:b] for a, b in bounds if b > a]  # EOT before each story: skip the empties
        return out[:limit] if limit else out

    def texts(self, split, limit=0):
        """The split's stories as text (decoded with the dataset's own tokenizer)."""
        return self.encoding().decode_batch([t.tolist() for t in self.stories(split, limit)])

    def tokenizer_text(self):
        path = os.path.join(self.dir, 'tokenizer.tiktoken')
        try:
            with open(path, encoding='ascii') as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise SystemExit(f"error: cannot read tokenizer {path}: {e}")

    def ranks(self):
        """tokenizer.tiktoken's ranks, checked against meta.json (vocab_size 600 with a 511-token
        file would train a model that no later stage can load)."""
        ranks = read_tiktoken(os.path.join(self.dir, 'tokenizer.tiktoken'))
        check_ids(ranks, self.meta, os.path.join(self.dir, 'tokenizer.tiktoken'))
        return ranks

    def encoding(self):
        return make_encoding(self.ranks(), self.meta['pat_str'], self.meta['tokenizer'])

    def tokenizer_record(self):
        """Everything needed to rebuild the tokenizer, as plain str/int (for a checkpoint); its
        sha256 tells two tokenizers apart even when their sizes agree."""
        self.ranks()  # the file must agree with meta.json before a run trains on it
        text = self.tokenizer_text()
        return {'name': self.meta['tokenizer'], 'pat_str': self.meta['pat_str'], 'tiktoken': text,
                'sha256': hashlib.sha256(text.encode('ascii')).hexdigest(),
                'eot_token': self.eot, 'vocab_size': self.vocab_size}


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
            start, stop = (np.array([t], dtype=np.int64) for t in (self.tok.start_token, self.tok.stop_token))
            end = [] if self.tok.stop_token == self.tok.start_token else [stop]  # else the next start ends it
            parts = [part for s in self.stories(split) for part in [start, s] + end]
            self._tokens[split] = np.concatenate(parts + ([] if end else [start]))
        return self._tokens[split]

    def texts(self, split, limit=0):
        return self.source.texts(split, limit)

    def split_info(self, split):
        return dict(self.source.split_info(split), tokens=len(self.tokens(split)))

    def encoding(self):
        return self.tok


def open_dataset(data_dir, splits=('train', 'val')):
    return Dataset(data_dir, splits)
