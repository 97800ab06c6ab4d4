"""
Our byte-level BPE tokenizer: a fast trainer, and loading the result as a tiktoken.Encoding.

Training is ours; run-time encoding and decoding are tiktoken's. The trained tokenizer is saved
in tiktoken's own file format (`base64(token bytes) rank` per line), so any tiktoken user can
load it. Ids 0..255 are the 256 single bytes (in byte order), merged tokens follow in the order
they were learned, and `<|endoftext|>` is the last id, len(ranks).

How the trainer stays fast (the BPE recipe of GPT-2, minbpe, HF tokenizers):
1. Pre-tokenise once and *count* the pre-tokens: TinyStories' 2.2 GB hold only a few tens of
   thousands of distinct words, so all later work is over that small table, never the corpus.
   Counting is faster still: we first count space-separated chunks with Counter (C speed) and
   run the regex once per distinct chunk (see `split_chunks` for why that is exact).
2. Merge with incremental pair counts: each merge visits only the words that hold the pair
   (an index pair -> words) and fixes the counts of the pairs around it; the best pair comes
   from a heap with lazy deletion (counts of old pairs only fall, so a stale heap entry is
   re-pushed with its true count when popped).
Ties between equally frequent pairs go to the smallest (left id, right id): deterministic.
"""
import base64
import collections
import hashlib
import heapq

import numpy as np
import regex

from tinystories.atomic_write import atomic_write

EOT = '<|endoftext|>'
# GPT-2's pre-tokenising regex with GPT-4's case-insensitive contractions, and digits one at a
# time (as LLaMA does): a 4k vocabulary should not spend entries on numbers. No look-behind and
# no `$`: the chunked encoder below relies on that.
PAT_STR = r"""'(?i:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# whitespace followed by a space: the one place where a space does not start a pre-token
_SPACE_AFTER_SPACE = regex.compile(r'\s ')


# -----------------------------------------------------------------------------
# pre-tokens

def split_chunks(text):
    """Split text at every space that follows a non-space character, or return None.

    Why this is exact: in PAT_STR (and GPT-2's and GPT-4's patterns) no alternative matches a
    non-space character followed by a space, and none looks behind, so such a space always
    starts a new pre-token, and the text before it pre-tokenises the same on its own. A space
    after other whitespace can belong to a `\\s+` run, so texts holding one return None (the
    caller falls back to the regex; cleaned stories never have one)."""
    if _SPACE_AFTER_SPACE.search(text):
        return None
    return text.split(' ')  # pieces[0] as is, pieces[1:] each with its space in front


def count_chunks(texts, first=None, rest=None, whole=None):
    """Count the chunks of many texts, at C speed. Returns (first, rest, whole) Counters:
    first pieces, later pieces (their leading space left off), and texts that must go to
    the regex whole. Pass the Counters back in to keep counting."""
    first = collections.Counter() if first is None else first
    rest = collections.Counter() if rest is None else rest
    whole = collections.Counter() if whole is None else whole
    firsts = []
    for text in texts:
        pieces = split_chunks(text)
        if pieces is None:
            whole[text] += 1
            continue
        firsts.append(pieces[0])
        rest.update(pieces[1:])
    first.update(firsts)
    return first, rest, whole


def pretoken_counts(first, rest, whole=(), pat_str=PAT_STR):
    """Run the regex once per distinct chunk: {pre-token bytes: count}."""
    pat = regex.compile(pat_str)
    counts = collections.Counter()
    for chunks, prefix in ((first, ''), (rest, ' '), (whole or {}, '')):
        for chunk, n in chunks.items():
            for piece in pat.findall(prefix + chunk):
                counts[piece] += n
    return {piece.encode('utf-8'): n for piece, n in counts.items()}


# -----------------------------------------------------------------------------
# training

def _pairs(word):
    return zip(word, word[1:])


def _merge_word(word, a, b, new):
    out, i, n = [], 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def bpe_merges(word_counts, num_merges, progress=False):
    """Learn up to `num_merges` merges from {word bytes: count}.

    Returns (merges, vocab): merges as a list of (left id, right id, new id), vocab as a list of
    token bytes by id. A pair whose bytes are already a token (say `ab`+`c` after `a`+`bc`)
    merges into that token's id without a new entry, so ids stay dense: tiktoken needs that."""
    vocab = [bytes([i]) for i in range(256)]
    index = {tok: i for i, tok in enumerate(vocab)}
    words = [list(w) for w in word_counts]
    freqs = list(word_counts.values())
    counts = collections.defaultdict(int)       # pair -> occurrences (overlaps counted, as usual)
    where = collections.defaultdict(set)        # pair -> ids of words that held it (may be stale)
    for wi, (word, f) in enumerate(zip(words, freqs)):
        for pair in _pairs(word):
            counts[pair] += f
            where[pair].add(wi)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)
    merges = []
    bar = None
    if progress:
        from tinystories.progress import progress as progress_bar
        bar = progress_bar(total=num_merges, desc='bpe merges', unit='merge', leave=False)
    while len(merges) < num_merges and heap:
        neg, pair = heapq.heappop(heap)
        true = counts.get(pair, 0)
        if true <= 0:
            continue
        if -neg != true:  # stale: counts only fall, so push the true one back and look again
            heapq.heappush(heap, (-true, pair))
            continue
        a, b = pair
        tok = vocab[a] + vocab[b]
        new = index.get(tok)
        if new is None:
            new = len(vocab)
            vocab.append(tok)
            index[tok] = new
        merges.append((a, b, new))
        touched = set()
        for wi in where.pop(pair):
            word = words[wi]
            if len(word) < 2 or not any(x == a and y == b for x, y in _pairs(word)):
                continue
            f = freqs[wi]
            for p in _pairs(word):
                counts[p] -= f
            word = words[wi] = _merge_word(word, a, b, new)
            for p in _pairs(word):
                counts[p] += f
                where[p].add(wi)
                touched.add(p)
        counts.pop(pair, None)
        for p in touched:  # pairs holding the new token are new; give them heap entries
            if new in p and counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return merges, vocab


def train_bpe(texts=None, vocab_size=4096, pat_str=PAT_STR, chunk_counts=None, progress=False):
    """Train a byte-level BPE: returns ranks {token bytes: id} with len(ranks) == vocab_size - 1
    (the last id is `<|endoftext|>`), or fewer when the text runs out of pairs.

    Give either `texts` (an iterable of stories) or `chunk_counts` (from count_chunks)."""
    if vocab_size < 256 + 1:
        raise ValueError(f"vocab_size={vocab_size} is too small: it needs 256 byte tokens + 1 special")
    if chunk_counts is None:
        chunk_counts = count_chunks(texts)
    words = pretoken_counts(*chunk_counts, pat_str=pat_str)
    merges, vocab = bpe_merges(words, vocab_size - 1 - 256, progress=progress)
    return {tok: i for i, tok in enumerate(vocab)}


# -----------------------------------------------------------------------------
# files: tiktoken's format

def save_tiktoken(ranks, path):
    """Write ranks as `base64(token) rank` lines, by rank, atomically."""
    lines = [f"{base64.b64encode(tok).decode('ascii')} {rank}\n"
             for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    atomic_write(path, ''.join(lines))


def parse_tiktoken(text):
    ranks = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            tok, rank = line.split()
            ranks[base64.b64decode(tok, validate=True)] = int(rank)
        except ValueError:
            raise ValueError(f"line {lineno} is not `base64-token rank`: {line[:60]!r}")
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError("ranks are not the dense ids 0..n-1 (duplicate tokens or gaps)")
    return ranks


def read_tiktoken(path):
    try:
        with open(path, encoding='ascii') as f:
            return parse_tiktoken(f.read())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SystemExit(f"error: cannot read tokenizer {path}: {e}")


# -----------------------------------------------------------------------------
# run time: tiktoken

def check_pattern(pat_str, where):
    """A pre-tokenising pattern read from a file must compile: a one-line error, not a traceback
    from deep inside the regex engine (tiktoken's is checked again in make_encoding)."""
    try:
        regex.compile(pat_str)
    except (regex.error, TypeError, ValueError) as e:
        raise SystemExit(f"error: {where}: pat_str is not a valid regex ({e})")


def make_encoding(ranks, pat_str=PAT_STR, name='tinystories'):
    import tiktoken
    eot = len(ranks)
    try:
        return tiktoken.Encoding(name, pat_str=pat_str, mergeable_ranks=ranks,
                                 special_tokens={EOT: eot}, explicit_n_vocab=eot + 1)
    except ValueError as e:  # tiktoken's regex engine refused the pattern
        raise SystemExit(f"error: tokenizer {name!r}: pat_str is not a valid regex "
                         f"({str(e).splitlines()[0] if str(e) else e!r})")


def check_ids(ranks, meta, where):
    """A tokenizer's ids must be the ranks 0..n-1 and then the EOT id n (so vocab_size = n + 1)."""
    if meta['eot_token'] != len(ranks) or meta['vocab_size'] != len(ranks) + 1:
        raise SystemExit(f"error: {where}: tokenizer has {len(ranks)} tokens but meta says "
                         f"vocab_size={meta['vocab_size']}, eot_token={meta['eot_token']}")


def byte_tokenizer_record():
    """The checkpoint record of a BPE with no merges: the 256 bytes, then EOT (256). A tokenizer
    with nothing to train, for the benchmarks and the tests."""
    text = ''.join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256))
    return {'name': 'bytes', 'pat_str': GPT2_PAT_STR, 'tiktoken': text,
            'sha256': hashlib.sha256(text.encode()).hexdigest(), 'eot_token': 256, 'vocab_size': 257}


RECORD_FIELDS = {'name': str, 'pat_str': str, 'tiktoken': str, 'sha256': str, 'eot_token': int,
                 'vocab_size': int}


def encoding_from_record(record):
    """A checkpoint's tokenizer record -> tiktoken.Encoding, every field checked first."""
    if not isinstance(record, dict):
        raise SystemExit("error: tokenizer record is not a dict: the checkpoint is damaged")
    for key, kind in RECORD_FIELDS.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            raise SystemExit(f"error: tokenizer record: {key}={record.get(key)!r:.60} is missing or "
                             f"not a {kind.__name__}: the checkpoint is damaged")
    check_pattern(record['pat_str'], 'tokenizer record')
    text = record['tiktoken']
    if hashlib.sha256(text.encode('ascii')).hexdigest() != record['sha256']:
        raise SystemExit("error: tokenizer record is corrupt (sha256 mismatch)")
    try:
        ranks = parse_tiktoken(text)
    except ValueError as e:
        raise SystemExit(f"error: tokenizer record: {e}")
    check_ids(ranks, record, 'tokenizer record')
    return make_encoding(ranks, record['pat_str'], record['name'])


# -----------------------------------------------------------------------------
# fast bulk encoding

class ChunkEncoder:
    """Encode many stories fast and exactly like `enc.encode_ordinary`, each after an EOT.

    tiktoken spends most of its time in the pre-tokenising regex. Stories split into chunks at
    spaces (split_chunks, exact), and the few distinct chunks are encoded once and cached in
    a flat table, so the work per story is a str.split, dict look-ups and a numpy gather."""

    def __init__(self, enc, eot=None, max_cache=1_000_000):
        self.enc, self.max_cache = enc, max_cache
        self.eot = enc.eot_token if eot is None else eot
        self._reset()

    def _reset(self):
        table, starts, lens = self._table, self._starts, self._lens = [], [], []
        encode, eot = self.enc.encode_ordinary, self.eot

        class Ids(dict):  # chunk -> its index into starts/lens, encoding it on first sight
            def __missing__(self, chunk):
                # '\0' marks a story's first chunk (no space in front): EOT, then the chunk
                ids = [eot] + encode(chunk[1:]) if chunk[:1] == '\0' else encode(' ' + chunk)
                i = self[chunk] = len(starts)
                starts.append(len(table))
                lens.append(len(ids))
                table.extend(ids)
                return i
        self.chunk_id = Ids()
        self._arrays = None

    def encode_stories(self, stories, dtype=np.uint16):
        """One array: EOT s1 EOT s2 ... EOT sN (each story after an EOT)."""
        if not stories:
            return np.zeros(0, dtype=dtype)
        block = ' '.join(['\0' + s for s in stories])
        if block.count('\0') != len(stories) or _SPACE_AFTER_SPACE.search(block):
            return self._encode_slow(stories, dtype)  # rare: text that split_chunks refuses
        if len(self.chunk_id) > self.max_cache:  # bounded memory on unusual text
            self._reset()
        pieces = block.split(' ')
        n = len(self._starts)
        cids = np.fromiter(map(self.chunk_id.__getitem__, pieces), dtype=np.int64, count=len(pieces))
        if self._arrays is None or len(self._starts) != n or n != len(self._arrays[1]):
            self._arrays = (np.array(self._table, dtype=np.int64),
                            np.array(self._starts, dtype=np.int64), np.array(self._lens, dtype=np.int64))
        table, starts, lens = self._arrays
        lens = lens[cids]
        ends = np.cumsum(lens)
        # position k of the output reads table[start of its chunk + offset within the chunk]
        gather = np.repeat(starts[cids] - (ends - lens), lens) + np.arange(ends[-1] if len(ends) else 0)
        return table[gather].astype(dtype)

    def _encode_slow(self, stories, dtype):
        out = []
        for s in stories:
            out.append(self.eot)
            out += self.enc.encode_ordinary(s)
        return np.array(out, dtype=dtype)
