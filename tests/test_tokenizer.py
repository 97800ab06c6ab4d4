"""Our BPE trainer against a naive reference, and the tiktoken round trip."""
import collections
import json
import os
import random

import numpy as np
import pytest
import regex

from tinystories import tokenizer as T
from tinystories.dataset import open_dataset

STORIES = [
    "Once upon a time, there was a little cat named Tom. Tom liked to play.",
    "One day, Lily found a big red ball. She said, \"Look, Mom! A ball!\"",
    "The dog didn't want to go home. It's sunny, and they're happy.",
    "Tom and Lily played all day. They were very happy. The end.",
    "aaaa aaaaa abab abababab 123 4567 ... !!! \n\nNew line here.",
]


def naive_bpe(texts, num_merges, pat_str=T.PAT_STR):
    """The textbook algorithm: recount every pair over every word before each merge."""
    counts = collections.Counter()
    for t in texts:
        for piece in regex.findall(pat_str, t):
            counts[piece.encode('utf-8')] += 1
    words = {tuple(w): c for w, c in counts.items()}
    vocab = [bytes([i]) for i in range(256)]
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))  # most frequent; ties: smallest ids
        tok = vocab[best[0]] + vocab[best[1]]
        new = vocab.index(tok) if tok in vocab else len(vocab)
        if new == len(vocab):
            vocab.append(tok)
        merges.append((best[0], best[1], new))
        merged = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += c
        words = merged
    return merges, vocab


def random_text(rng, n):
    alphabet = "abcde fghij  \n\t.,'!?0123éü漢字😀\x00\x1f"
    return ''.join(rng.choice(alphabet) for _ in range(n))


def test_merges_match_naive_reference():
    for texts, n in ((STORIES, 120), ([random_text(random.Random(s), 300) for s in range(6)], 150)):
        words = T.pretoken_counts(*T.count_chunks(texts))
        fast = T.bpe_merges(words, n)
        assert fast == naive_bpe(texts, n)


def test_chunk_counting_equals_regex_on_whole_texts():
    rng = random.Random(1)
    texts = STORIES + [random_text(rng, 200) for _ in range(20)] + ["  two  spaces ", " lead", "x \n y"]
    direct = collections.Counter()
    for t in texts:
        for p in regex.findall(T.PAT_STR, t):
            direct[p.encode('utf-8')] += 1
    assert T.pretoken_counts(*T.count_chunks(texts)) == dict(direct)


def test_round_trip_every_byte_and_unicode(tmp_path):
    ranks = T.train_bpe(STORIES * 3, vocab_size=300)
    assert len(ranks) == 299 and all(ranks[bytes([b])] == b for b in range(256))
    enc = T.make_encoding(ranks)
    assert enc.n_vocab == 300 and enc.eot_token == 299
    samples = ["héllo wörld 漢字 😀🎉 \x00\x01\x7f\r\n\t", "Once upon a time", " ", "",
               "ZWJ 👩‍👩‍👧 and \u200b and \ufeff"]
    for s in samples:
        assert enc.decode(enc.encode_ordinary(s)) == s
    for b in range(256):  # every single byte encodes as its own id
        assert enc.encode_single_token(bytes([b])) == b
    assert enc.encode(T.EOT, allowed_special='all') == [299]


def test_tiktoken_file_round_trip_and_record(tmp_path):
    ranks = T.train_bpe(STORIES, vocab_size=280)
    path = tmp_path / 'tokenizer.tiktoken'
    T.save_tiktoken(ranks, str(path))
    assert T.read_tiktoken(str(path)) == ranks
    meta = {'vocab_size': len(ranks) + 1, 'eot_token': len(ranks), 'tokenizer': 'bpe',
            'pat_str': T.PAT_STR, 'splits': {s: {'stories': 0, 'tokens': 0, 'bytes': 0} for s in ('train', 'val')}}
    (tmp_path / 'meta.json').write_text(json.dumps(meta))
    enc = open_dataset(str(tmp_path), splits=()).encoding()
    rec = open_dataset(str(tmp_path), splits=()).tokenizer_record()
    assert all(isinstance(v, (str, int)) for v in rec.values())
    enc2 = T.encoding_from_record(rec)
    text = STORIES[1]
    assert enc.encode_ordinary(text) == enc2.encode_ordinary(text)
    bad = dict(rec, tiktoken=rec['tiktoken'].replace('\n', '\n\n', 1) + 'x')
    with pytest.raises(SystemExit, match='sha256'):
        T.encoding_from_record(bad)
    (tmp_path / 'tokenizer.tiktoken').write_text('not base64!! 0\n')
    with pytest.raises(SystemExit, match='cannot read tokenizer'):
        open_dataset(str(tmp_path), splits=()).encoding()


def test_chunk_encoder_matches_tiktoken():
    rng = random.Random(2)
    ranks = T.train_bpe(STORIES * 4, vocab_size=400)
    enc = T.make_encoding(ranks)
    eot = len(ranks)
    stories = STORIES + [random_text(rng, rng.randrange(1, 120)) for _ in range(50)]
    clean = [s for s in stories if '\x00' not in s]
    for batch in (STORIES, clean, stories):  # fast path, and the fallbacks
        ce = T.ChunkEncoder(enc, eot, max_cache=30)
        for _ in range(2):  # second pass reads the cache
            got = ce.encode_stories(batch)
            want = [t for s in batch for t in [eot] + enc.encode_ordinary(s)]
            assert got.dtype == np.uint16 and got.tolist() == want
    assert T.ChunkEncoder(enc, eot).encode_stories([]).tolist() == []


def test_vocab_too_small():
    with pytest.raises(ValueError, match='too small'):
        T.train_bpe(STORIES, vocab_size=256)
