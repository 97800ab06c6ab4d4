"""
Turn story text into the token bins that train.py memory-maps.

    python prepare.py                                   # TinyStories V2 from the Hugging Face hub
    python prepare.py --source=data/demo_stories --data_dir=data/demo       # generate_data.py output
    python prepare.py --source=stories.txt --val_source=valid.txt --vocab_size=8192
    python prepare.py --source=tinystories-instruct --format=instruct --data_dir=data/instruct
    python prepare.py --tokenizer=hf:roneneldan/TinyStories-33M --data_dir=data/ts_gpt2  # a model's tokenizer
    python prepare.py --tokenizer=hf:karpathy/tinyllamas/stories15M.bin --data_dir=data/ts_llama  # llama2.c's

Sources: `tinystories` (V2, GPT-4 stories), `tinystories-v1`, `tinystories-instruct`,
`tinystories-v2-20mb` (V2's first 20 MB of train and 2 MB of valid stories: the demo's), all
downloaded by hub.py from $HF_ENDPOINT into cache_dir; or a local .txt (stories between
`<|endoftext|>` lines), .jsonl/.json (records with a `story` field), or a directory of those.

The work, in order, each step resumable (its output is written atomically under
data_dir/.prepare/, and a rerun after kill -9 skips the steps already done):
  1. read + clean (mojibake, whitespace, empty, duplicates), hold out val, count chunks for BPE
  2. train the BPE tokenizer (or take GPT-2's, or a model's), saved as tokenizer.tiktoken, or a
     Llama model's (llama2.c's file, or a Hugging Face Llama's tokenizer.json) as tokenizer.bin
  3. encode both splits on all cores -> train.bin / val.bin: EOT s1 EOT s2 ... EOT sN EOT, or
     with a Llama's tokenizer as llama2.c's data is: BOS s1 BOS s2 ... BOS sN BOS (no EOS; a Llama
     that stops at EOS, as Hugging Face's do: BOS s1 EOS BOS s2 EOS ...)
  4. move the files into data_dir, meta.json last (its presence means the dataset is complete)
A re-run with the same inputs and options is "up to date" only when each output matches
meta.json (the bins' sizes, the tokenizer's ids and sha256); a damaged output is made again,
the intact ones kept.
One run at a time writes a data_dir (a second is refused; the worker processes do not keep the
lock, so after a kill -9 a re-run starts at once), and every setting is checked before any work.
"""
import collections
import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import time

import numpy as np
import regex

from tinystories import dirlock
from tinystories import hub
from tinystories import stories
from tinystories.atomic_write import atomic_open, atomic_write, remove_stale_temps
from tinystories.configurator import Key, configure
from tinystories.dataset import TOKENIZER_FILES, damaged_files, read_meta, story_layout
from tinystories.llama2c_tokenizer import BOS, EOS, Llama2cTokenizer
from tinystories.progress import progress
from tinystories.tokenizer import (EOT, GPT2_PAT_STR, PAT_STR, ChunkEncoder, count_chunks, make_encoding,
                                   read_tiktoken, save_tiktoken, train_bpe)

# -----------------------------------------------------------------------------
source = Key('tinystories', "a name in hub.DATASETS (tinystories, tinystories-v2-20mb ...), or a file or folder "
                            "of stories")
val_source = Key('', "a file or folder used as the val split ('': hold stories out of the source)")
val_fraction = Key(0.005, "the share of stories held out for val when there is no val_source", above=0, below=1)
data_dir = Key('data/ts', "the dataset folder to write (what train.py reads by default)")
cache_dir = Key('data/hub', "downloads land here; a second run reuses them")
hub_url = Key('', "the dataset's files ('': $HF_ENDPOINT's roneneldan/TinyStories)")
tokenizer = Key('bpe', "bpe (ours, trained here), gpt2 (tiktoken's, needs the internet once), or a model "
                       "location (hf:OWNER/NAME, a folder, a llama2.c model.bin): that model's tokenizer")
vocab_size = Key(4096, "bpe: the vocabulary (256 bytes + merges + <|endoftext|>)")
format = Key('plain', "plain, or instruct (Summary/Features/Sentence/Words lines, then Story)",
             choices=('plain', 'instruct'))
instruct_holdout = Key('', "instruct: e.g. 'Summary,Words': no train story's prompt has all of these")
ascii_only = Key(False, "map typographic punctuation to ASCII, and drop stories still non-ASCII")
seed = Key(1337, "seeds the val draw and the instruct layout")
workers = Key(0, "processes for cleaning and encoding (0: all cores)", min=0)
block_mb = Key(2.0, "MB of text per work unit", above=0, below=1024)
force = Key(False, "redo even if data_dir is up to date, or holds another tokenizer")
# -----------------------------------------------------------------------------
config = configure(globals())

SEP = EOT


class PrepareError(Exception):
    """Bad input: main() turns it into a one-line `error: ...` exit. (Not SystemExit itself:
    worker processes and pool threads must hand it back to the main process.)"""


def fail(msg):
    raise PrepareError(msg)


# -----------------------------------------------------------------------------
# reading (the downloads are hub.py's; the formats themselves are stories.py's)

def resolve(src):
    """A source name or path -> (train files, val files or None)."""
    if src in hub.DATASETS:
        return hub.dataset_files(src, cache_dir, hub_url)
    if not os.path.exists(src):
        fail(f"source {src!r} not found (a path, or one of: {', '.join(hub.DATASETS)})")
    return stories.list_files(src), None


# -----------------------------------------------------------------------------
# cleaning

def _mojibake_table():
    """UTF-8 text that was once decoded as Windows-1252 (`’` became `â€™`): map it back."""
    table = {}
    for ch in "’‘“”—–…•™é è à â ç ê ë î ï ô ö ü ñ á í ó ú ä É ° ½ ·".replace(' ', '') + '\xa0':
        raw = ch.encode('utf-8')
        wrong = ''.join(bytes([b]).decode('cp1252', errors='ignore') or chr(b) for b in raw)
        table[wrong] = ch
    table['â€'] = '”'  # `”` is E2 80 9D; 9D has no cp1252 letter, so it is usually just lost
    return table


MOJIBAKE = _mojibake_table()
MOJIBAKE_RE = regex.compile('|'.join(sorted(map(regex.escape, MOJIBAKE), key=len, reverse=True)))
ASCII_PUNCT = str.maketrans({'’': "'", '‘': "'", '“': '"', '”': '"', '—': '-', '–': '-',
                             '…': '...', '\xa0': ' '})
ODD_SPACE_RE = regex.compile(r'[^\S\n ]|  | \n|\n |\n\n\n|^\s|\s$|\r|[\x00-\x08\x0e-\x1f\x7f]')


def normalise_space(s):
    s = s.replace('\r\n', '\n').replace('\r', '\n')
    s = regex.sub(r'[\x00-\x08\x0e-\x1f\x7f]', '', s)
    s = regex.sub(r'[^\S\n]+', ' ', s)        # tabs, no-break and other spaces -> one space
    s = regex.sub(r' ?\n ?', '\n', s)
    s = regex.sub(r'\n{3,}', '\n\n', s)        # keep paragraphs, drop runs of blank lines
    return s.strip()


def clean(s, stats, ascii_only, forbidden=(SEP,)):
    """Repair one story; returns '' when it should be dropped (and counts why): also when it holds
    a text of `forbidden` (the separator of the cleaned text, the pieces of a Llama tokenizer's
    start and stop tokens: encoded, the story would hold that token and be cut there)."""
    if MOJIBAKE_RE.search(s):
        s = MOJIBAKE_RE.sub(lambda m: MOJIBAKE[m.group()], s)
        stats['repaired: mojibake'] += 1
    if ODD_SPACE_RE.search(s):
        s = normalise_space(s)
        stats['repaired: whitespace'] += 1
    if ascii_only and not s.isascii():
        s = s.translate(ASCII_PUNCT)
        if not s.isascii():
            stats['dropped: non-ASCII'] += 1
            return ''
    if not s:
        stats['dropped: empty'] += 1
    elif any(f in s for f in forbidden):
        stats['dropped: holds ' + (SEP if SEP in s else "a start or stop token's text")] += 1
        return ''
    return s


def cleaning_rules(forbidden):
    """What a cleaning worker needs, handed to it with each block (whatever the start method)."""
    return {'ascii_only': ascii_only, 'format': format, 'seed': seed, 'val_fraction': val_fraction,
            'holdout': holdout_names(), 'forbidden': forbidden}


def clean_block(job):
    """Worker: one block (the split its file feeds, None: held out by draw; the cleaning rules)
    -> ([(digest, val draw, text, words)], stats)."""
    block, fixed, rules = job
    items = stories.parse_block(block)
    stats = collections.Counter({'stories in': 0, 'bytes in': 0})
    out = []
    for story, rec in items:
        stats['stories in'] += 1
        stats['bytes in'] += len(story.encode('utf-8'))
        text = clean(story, stats, rules['ascii_only'], rules['forbidden'])
        if not text:
            continue
        digest = hashlib.blake2b(text.encode('utf-8'), digest_size=8).digest()
        key = str(rules['seed']).encode()
        draw = int.from_bytes(hashlib.blake2b(digest, digest_size=8, key=key).digest()) / 2 ** 64
        words = len(text.split())
        if rules['format'] == 'instruct' and rec is not None:
            rng = random.Random(int.from_bytes(digest) ^ rules['seed'])
            is_val = fixed == 'val' or (fixed is None and draw < rules['val_fraction'])
            text = stories.render_instruct(text, rec, rng, stats, () if is_val else rules['holdout'])
        out.append((digest, draw, text, words))
    return out, stats


def block_bytes():
    return max(1024, int(block_mb * (1 << 20)))


def parallel(fn, jobs, n, initializer=None, initargs=()):
    """Ordered map over jobs: in worker processes when n > 1."""
    if n <= 1:
        if initializer:
            initializer(*initargs)
        yield from map(fn, jobs)
        return
    with multiprocessing.get_context('fork').Pool(n, initializer, initargs) as pool:
        yield from pool.imap(fn, jobs)


# -----------------------------------------------------------------------------
# encoding (worker side)

_encoder = None


def init_encoder(kind, args):
    """A worker's encoder: tiktoken's (ranks, pattern, name), or a Llama2cTokenizer's (the
    tokenizer.bin bytes, name, stop token)."""
    global _encoder
    _encoder = ChunkEncoder(make_encoding(*args)) if kind == 'tiktoken' else Llama2cTokenizer(*args)


def encode_block(job):
    data, dtype = job
    texts = [s.strip('\n') for s in data.decode('utf-8').split(SEP)]  # cleaned: no edge spaces
    texts = [s for s in texts if s]
    if isinstance(_encoder, ChunkEncoder):
        return _encoder.encode_stories(texts, dtype=dtype), len(data)
    return story_layout(_encoder.encode_batch(texts), _encoder.start_token, _encoder.stop_token, dtype), len(data)


# -----------------------------------------------------------------------------

def holdout_names():
    return [n.strip() for n in instruct_holdout.split(',') if n.strip()]


def check_settings():
    """What one key's range cannot say, checked before any work (a one-line error names the bad value)."""
    if tokenizer == 'bpe' and vocab_size < 256 + 1:
        fail(f"--vocab_size={vocab_size} is too small: 256 byte tokens + 1 special need 257")
    if tokenizer == 'bpe' and vocab_size > 2 ** 32:
        fail(f"--vocab_size={vocab_size} is too large: token ids must fit a uint32 bin (at most 2**32)")
    bad = [n for n in holdout_names() if n not in stories.INSTRUCT_LINES]
    if bad:
        fail(f"--instruct_holdout: {', '.join(bad)} is not one of {', '.join(stories.INSTRUCT_LINES)}")
    if instruct_holdout and format != 'instruct':
        fail("--instruct_holdout needs --format=instruct")


def main():
    t0 = time.time()
    nproc = workers or os.cpu_count() or 1
    check_settings()
    model_tok = model_tokenizer(tokenizer) if tokenizer not in ('bpe', 'gpt2') else None  # a model's own
    llama = model_tok is not None and model_tok.kind == 'llama2c'
    if os.path.isfile(data_dir):
        fail(f"--data_dir={data_dir} is a file: give a directory (it is made if missing)")
    dirlock.lock_dir(data_dir, 'prepare.py run')   # held until exit; workers do not inherit it
    if not os.access(data_dir, os.W_OK):
        fail(f"cannot write in --data_dir={data_dir} (read-only): give another directory")
    train_files, val_files = resolve(source)
    if val_source:
        val_files = stories.list_files(val_source)
    spec = {'tokenizer': tokenizer, 'vocab_size': vocab_size if tokenizer == 'bpe' else 50257,
            'pat_str': PAT_STR if tokenizer == 'bpe' else GPT2_PAT_STR}
    if llama:  # (no pat_str: llama2.c's BPE does not pre-split)
        spec = {'tokenizer': tokenizer, 'tokenizer_kind': model_tok.kind, 'vocab_size': model_tok.vocab_size,
                'start_token': model_tok.start_token, 'stop_token': model_tok.stop_token}
    elif model_tok is not None:
        spec.update(vocab_size=len(model_tok.encoding._mergeable_ranks) + 1, pat_str=model_tok.encoding._pat_str)
    forbidden = [SEP] + ([model_tok.piece_bytes[t].decode('utf-8', 'replace') for t in sorted(model_tok.markers)]
                         if llama else [])
    options = dict(spec, model_tokenizer=model_tok and model_tok.record()['sha256'], format=format,
                   ascii_only=ascii_only, seed=seed,
                   holdout=holdout_names(),
                   val_fraction=None if val_files else val_fraction,
                   files=[[p, os.path.getsize(p), os.stat(p).st_mtime_ns]
                          for p in train_files + (val_files or [])],
                   val_files=val_files)
    stamp = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]

    meta_path = os.path.join(data_dir, 'meta.json')
    tok_file = TOKENIZER_FILES[spec.get('tokenizer_kind', 'tiktoken')]  # tokenizer.tiktoken or .bin
    intact = set()  # outputs of these same inputs and options that match meta.json: kept as they are
    if os.path.exists(meta_path) and not force:
        old = read_meta(data_dir)
        if any(old.get(k) != spec.get(k) for k in ('tokenizer', 'tokenizer_kind', 'vocab_size', 'pat_str')):
            fail(f"{data_dir} holds another tokenizer ({old.get('tokenizer')}, vocab "
                 f"{old.get('vocab_size')}): use another --data_dir, or --force to replace it")
        if old.get('stamp') == stamp:
            damaged = damaged_files(data_dir, old)
            if not damaged:
                print(f"{data_dir} is up to date (same inputs and options); --force to redo")
                return
            for name, why in damaged.items():
                print(f"note: {os.path.join(data_dir, name)}: {why}: making it again")
            intact = {'train.bin', 'val.bin', tok_file} - set(damaged)

    work = os.path.join(data_dir, '.prepare')
    stamp_path = os.path.join(work, 'stamp')
    if not os.path.exists(stamp_path) or open(stamp_path).read() != stamp:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        atomic_write(stamp_path, stamp)
    remove_stale_temps(work)  # a killed run's half-written bin or text (we hold the lock)

    # 1. read and clean ---------------------------------------------------------
    clean_path = os.path.join(work, 'clean.json')
    if not os.path.exists(clean_path):
        report = clean_all(train_files, val_files, work, nproc, forbidden)
        atomic_write(clean_path, json.dumps(report))
    report = json.load(open(clean_path))
    print_report(report)
    if report['train']['stories'] == 0:
        fail(f"no stories left in {source} after cleaning")
    if report['val']['stories'] == 0:
        fail("the val split is empty: give --val_source, or more stories / a larger --val_fraction")

    # 2. tokenizer ---------------------------------------------------------------
    tok_path = os.path.join(work, tok_file)
    if tok_file in intact and not os.path.exists(tok_path):  # (the bins were made with it)
        shutil.copyfile(os.path.join(data_dir, tok_file), tok_path)
    if not os.path.exists(tok_path):
        t1 = time.time()
        if llama:
            atomic_write(tok_path, model_tok.data)  # llama2.c's format (a tokenizer.json converted to it)
        elif tokenizer == 'gpt2':
            save_tiktoken(gpt2_ranks(), tok_path)
        elif model_tok is not None:
            save_tiktoken(dict(model_tok.encoding._mergeable_ranks), tok_path)
        else:
            counts = [collections.Counter(c) for c in report.pop('chunks')]
            ranks = train_bpe(chunk_counts=counts, vocab_size=vocab_size, progress=True)
            if len(ranks) + 1 < vocab_size:
                print(f"note: the text ran out of pairs: vocabulary {len(ranks) + 1}, not {vocab_size}")
            print(f"trained BPE: {len(ranks) + 1} tokens in {time.time() - t1:.1f}s")
            save_tiktoken(ranks, tok_path)
    if llama:
        tok = Llama2cTokenizer.from_file(tok_path, model_tok.stop_token)
        vocab, start, stop = tok.vocab_size, tok.start_token, tok.stop_token
        encoder = ('llama2c', (tok.data, model_tok.name, stop))
    else:
        ranks = read_tiktoken(tok_path)
        vocab, start, stop = len(ranks) + 1, len(ranks), len(ranks)  # EOT, the last id, is both
        encoder = ('tiktoken', (ranks, spec['pat_str'], 'gpt2' if tokenizer == 'gpt2' else 'tinystories'))
    dtype = np.uint16 if vocab <= 65535 else np.uint32
    if dtype == np.uint32:
        print(f"vocabulary {vocab} is above 65,535: bins are uint32")

    # 3. encode --------------------------------------------------------------------
    tokens = {}
    for split in ('train', 'val'):
        bin_path = os.path.join(work, f'{split}.bin')
        if f'{split}.bin' in intact and not os.path.exists(bin_path):
            tokens[split] = old['splits'][split]['tokens']  # intact: it stays where it is
            continue
        if not os.path.exists(bin_path):
            encode_split(os.path.join(work, f'{split}.txt'), bin_path, encoder, (start, stop), dtype, nproc)
        tokens[split] = os.path.getsize(bin_path) // np.dtype(dtype).itemsize

    # 4. into place, meta.json last ------------------------------------------------------
    if os.path.exists(meta_path):
        os.remove(meta_path)  # the old meta must not vouch for the new bins while they move
    for f in ('train.bin', 'val.bin', tok_file):
        if os.path.exists(os.path.join(work, f)):  # (an intact bin kept in place is not in work)
            os.replace(os.path.join(work, f), os.path.join(data_dir, f))
    with open(os.path.join(data_dir, tok_file), 'rb') as f:
        tokenizer_sha256 = hashlib.sha256(f.read()).hexdigest()
    meta = {'vocab_size': vocab, 'eot_token': start, 'tokenizer': tokenizer,
            'pat_str': spec.get('pat_str'), 'dtype': np.dtype(dtype).name, 'format': format,
            'layout': 'EOT story EOT story ... EOT',
            'splits': {s: {'stories': report[s]['stories'], 'tokens': tokens[s],
                           'bytes': report[s]['bytes']} for s in ('train', 'val')},
            'source': source, 'val_source': val_source or None, 'stamp': stamp,
            'tokenizer_sha256': tokenizer_sha256,
            'instruct_holdout': holdout_names() or None}
    if llama:  # start and stop tokens of their own, and no pre-splitting pattern
        del meta['eot_token'], meta['pat_str']
        names = {BOS: 'BOS', EOS: 'EOS'}
        story = f"{names[start]} story" + (f" {names.get(stop, stop)}" if stop != start else '')
        meta.update(tokenizer_kind=model_tok.kind, tokenizer_name=model_tok.name, start_token=start, stop_token=stop,
                    layout=f"{story} {story} ..." + (f" {names[start]}" if stop == start else ''))
    atomic_write(meta_path, json.dumps(meta, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    for s in ('train', 'val'):
        n = meta['splits'][s]
        print(f"{s}.bin: {n['tokens']:,} tokens, {n['bytes'] / max(n['tokens'], 1):.2f} bytes/token")
    print(f"wrote {data_dir} (vocab {vocab}, {meta['dtype']}) in {time.time() - t0:.1f}s")


def clean_all(train_files, val_files, work, nproc, forbidden):
    """Step 1: clean, drop duplicates (also of val stories in train), split, count chunks."""
    seen, totals = set(), {s: collections.Counter() for s in ('train', 'val')}
    chunks = (collections.Counter(), collections.Counter(), collections.Counter())
    passes = [('val', val_files), ('train', train_files)] if val_files else [(None, train_files)]
    with contextlib.ExitStack() as files:   # train.txt and val.txt appear only when complete
        outs = {s: files.enter_context(atomic_open(os.path.join(work, f'{s}.txt'), 'w', encoding='utf-8'))
                for s in ('train', 'val')}
        for fixed, paths in passes:
            clean_pass(paths, fixed, outs, seen, totals, chunks, nproc, forbidden)
    report = {s: dict(totals[s], stories=totals[s]['stories'], bytes=totals[s]['bytes']) for s in ('train', 'val')}
    report['chunks'] = [dict(c) for c in chunks]
    return report


def clean_pass(paths, fixed, outs, seen, totals, chunks, nproc, forbidden):
    """Clean files into `outs` (split `fixed`, or each story by its draw), counting as it goes."""
    rules = cleaning_rules(forbidden)
    read = collections.deque()  # each block's share of its file, in the order the results come back

    def jobs():
        for p in paths:
            for b in stories.read_blocks(p, block_bytes()):
                read.append(len(b[1]) if isinstance(b[1], bytes) else None)  # (parsed records: None)
                yield b, fixed, rules
    bar = progress(total=sum(os.path.getsize(p) for p in paths), unit='B', unit_scale=True,
                   desc=f"clean {fixed or 'train+val'}")
    for out, stats in parallel(clean_block, jobs(), nproc):
        train_texts = []
        for digest, draw, text, words in out:
            split = fixed or ('val' if draw < val_fraction else 'train')
            if digest in seen:
                totals[split]['dropped: duplicate'] += 1
                continue
            seen.add(digest)
            outs[split].write(text + '\n' + SEP + '\n')
            t = totals[split]
            t['stories'] += 1
            t['bytes'] += len(text.encode('utf-8'))
            t['words'] += words
            if split == 'train':
                train_texts.append(text)
        count_chunks(train_texts, *chunks)
        # a block's raw counts go to the split its file feeds (held out: to train)
        totals[fixed or 'train'].update(stats)
        size = read.popleft()  # the file's bytes behind this block (stories' own bytes for records)
        bar.update(stats['bytes in'] if size is None else size)
    bar.update(max(bar.total - bar.n, 0))  # whole files read (records' JSON punctuation included)
    bar.close()   # (not on an error: its last line would bury the message)


def print_report(report):
    print(f"{'':24s}{'train':>14s}{'val':>14s}")
    keys = ['stories in', 'bytes in'] + sorted({k for s in ('train', 'val') for k in report[s]
                                                if k.startswith(('repaired', 'dropped', 'instruct'))})
    for k in keys + ['stories', 'bytes']:
        print(f"{(k if k not in ('stories', 'bytes') else k + ' out'):24s}"
              + ''.join(f"{report[s].get(k, 0):>14,}" for s in ('train', 'val')))
    print(f"{'mean words per story':24s}" + ''.join(
        f"{report[s].get('words', 0) / max(report[s]['stories'], 1):>14.1f}" for s in ('train', 'val')))


def gpt2_ranks():
    try:
        import tiktoken
        enc = tiktoken.get_encoding('gpt2')
    except Exception as e:
        fail(f"cannot load tiktoken's gpt2 encoding (it downloads once, then caches; "
             f"no internet?): {type(e).__name__}: {str(e)[:100]}")
    return dict(enc._mergeable_ranks)


def model_tokenizer(location):
    """A model location's tokenizer (tokenizer_interface.py's). A Llama's (llama2.c's, or a Hugging
    Face Llama's) is taken as it is; a tiktoken one must have our layout: the bins, meta.json and
    the fast encoder assume tokens 0..n-1, then EOT = n."""
    from tinystories.checkpoint import load_tokenizer
    tok = load_tokenizer(location)
    if tok.kind == 'llama2c':
        return tok
    enc, record = tok.encoding, tok.record()
    ranks = enc._mergeable_ranks
    if (record['eot_token'] != len(ranks) or set(enc._special_tokens) != {EOT}
            or sorted(ranks.values()) != list(range(len(ranks)))):
        fail(f"{location}'s tokenizer is not laid out as ours (tokens 0..n-1, then {EOT} "
             f"as n, no other special tokens): prepare.py cannot write bins in it")
    if enc._pat_str not in (PAT_STR, GPT2_PAT_STR):
        fail(f"{location}'s pre-tokenising pattern is neither GPT-2's nor ours: prepare.py's "
             f"chunked encoder is exact only for those")
    return tok


def encode_split(txt_path, bin_path, encoder, start_stop, dtype, nproc):
    """Step 3: stream the cleaned text through worker processes into the bin (atomically);
    encoder: init_encoder's (kind, args)."""
    def jobs():
        for kind, data, _, _ in stories.read_blocks(txt_path, block_bytes()):
            yield data, dtype
    bar = progress(total=os.path.getsize(txt_path), unit='B', unit_scale=True,
                   desc=f"encode {os.path.basename(bin_path)}")
    with atomic_open(bin_path) as f:
        for ids, n in parallel(encode_block, jobs(), nproc, init_encoder, encoder):
            f.write(ids.tobytes())
            bar.update(n)
        f.write(story_layout([], *start_stop, dtype, last=True).tobytes())  # the last story's end
    bar.close()


if __name__ == '__main__':
    try:
        main()
    except (PrepareError, stories.StoryError, hub.HubError) as e:
        raise SystemExit(f"error: {e}")
    except OSError as e:   # a full disk, a directory made read-only mid-run ...
        raise SystemExit(f"error: {e.filename or data_dir}: {e.strerror or e}: nothing was lost; "
                         "fix that, then re-run to continue")
