"""
An exact "closest training story" search for diversity.py (the TinyStories paper's section 5:
does a completion copy a story the model was trained on?), and the word k-grams it is built on.

KGramIndex is an inverted index of the training stories' word k-grams: for every distinct
k-gram, the sorted ids of the stories that contain it. closest(text) finds the story sharing the
most distinct k-grams with text (so the highest Rouge-k precision of text against it) exactly,
without comparing text with every story: a MaxScore bound lets it skip the common k-grams' long
posting lists. closest_brute_force() is the reference it is tested against.
"""
import re

import numpy as np

from tinystories.progress import progress as progress_bar

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")  # words, lower-cased: "Lily's" is one word


def words(text):
    return WORD_RE.findall(text.lower())


def kgrams(ws, k):
    """The set of k-grams (tuples of words) of a word list."""
    return set(zip(*(ws[i:] for i in range(k))))


class _Vocab(dict):
    """word -> id, giving each new word the next id (map(vocab.__getitem__, ...) runs in C)."""

    def __missing__(self, word):
        self[word] = n = len(self)
        return n


def pack_grams(ids, starts, k, base):
    """Every k-gram of the word-id sequences as one int64: ids (n,) concatenates the stories,
    starts (S+1,) their boundaries. Returns (packed grams, story of each gram).

    The packing is exact (a base-`base` number) while base**k < 2**63, so two different k-grams
    never collide; beyond that (large k and vocabulary) it is a 64-bit multiplicative hash, where a
    collision is about as likely as n_grams**2 / 2**64."""
    lens = np.diff(starts)
    n_grams = np.maximum(lens - k + 1, 0)
    story = np.repeat(np.arange(len(lens), dtype=np.int64), n_grams)
    # the first word of each gram: story start + offset within the story
    first = np.repeat(starts[:-1] - np.concatenate([[0], np.cumsum(n_grams)[:-1]]), n_grams)
    first = first + np.arange(len(story), dtype=np.int64)
    exact = base ** k < 2 ** 63
    mult = np.uint64(base) if exact else np.uint64(0x9E3779B97F4A7C15)
    g = np.zeros(len(story), dtype=np.uint64)
    with np.errstate(over='ignore'):  # wrapping around 2**64 is the hash
        for j in range(k):
            g = g * mult + ids[first + j].astype(np.uint64)
    return g.view(np.int64), story


def distinct(a):
    """The sorted distinct values of an int array (np.sort + a neighbour test: numpy 2.4's
    hash-based np.unique is ~15x slower on int64 here)."""
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


class KGramIndex:
    """An inverted index of the training stories' word k-grams: for every distinct k-gram, the
    sorted ids of the stories that contain it (CSR: grams, offsets, postings).

    closest(text) finds the training story that shares the most k-grams with `text` (so the
    highest Rouge-k precision of text against it) exactly, without looking at every story: see
    closest()."""

    def __init__(self, stories, k=2, also_ks=(), chunk=50_000, progress=False):
        self.k = k
        self.gram_sets = {}  # for each k in also_ks: every distinct k-gram of the stories, sorted
        vocab = _Vocab()
        # pass 1: words -> ids, kept as int32 (4 bytes a word) with each chunk's story boundaries
        chunks, ids, lens = [], [], []
        for story in progress_bar(stories, desc='index: words', unit='stories', disable=not progress):
            ws = words(story)
            ids.extend(map(vocab.__getitem__, ws))
            lens.append(len(ws))
            if len(lens) == chunk:
                chunks.append(self._pack_chunk(ids, lens))
                ids, lens = [], []
        if lens:
            chunks.append(self._pack_chunk(ids, lens))
        self.vocab = dict(vocab)
        self.base = max(len(vocab), 2)
        self.n_stories = sum(len(c[1]) - 1 for c in chunks)
        for kk in sorted(set(also_ks) - {k}):
            uniq = [distinct(pack_grams(c_ids, c_starts, kk, self.base)[0]) for c_ids, c_starts in chunks]
            self.gram_sets[kk] = distinct(np.concatenate(uniq)) if uniq else np.zeros(0, np.int64)
        # pass 2: each chunk's distinct (story, gram) pairs; the grams of the whole set, sorted
        pairs, first_story = [], 0
        for c_ids, c_starts in chunks:
            g, s = pack_grams(c_ids, c_starts, k, self.base)
            order = np.lexsort((g, s))  # by story, then gram: repeats become neighbours
            g, s = g[order], s[order]
            keep = np.ones(len(g), dtype=bool)
            keep[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
            pairs.append((g[keep], (s[keep] + first_story).astype(np.int32)))
            first_story += len(c_starts) - 1
        del chunks
        # every distinct gram, sorted (each chunk's first: far less memory than all pairs at once)
        uniq = [distinct(g) for g, _ in pairs]
        self.grams = distinct(np.concatenate(uniq)) if uniq else np.zeros(0, np.int64)
        # pass 3: a counting sort of the pairs by gram; stories stay in ascending order per gram
        dense = []
        for i, (g, s) in enumerate(pairs):  # gram values -> their rank (int32), freeing the int64s
            dense.append(np.searchsorted(self.grams, g).astype(np.int32))
            pairs[i] = s
        df = np.zeros(len(self.grams), dtype=np.int64)
        for d in dense:
            df += np.bincount(d, minlength=len(self.grams))
        self.offsets = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
        self.postings = np.empty(int(self.offsets[-1]), dtype=np.int32)
        fill = self.offsets[:-1].copy()
        for d, s in zip(dense, pairs):
            order = np.argsort(d, kind='stable')  # by gram, then story (pairs come story-sorted)
            d_sorted = d[order]
            # rank of each pair among the chunk's pairs with the same gram
            first = np.searchsorted(d_sorted, d_sorted, side='left')
            rank = np.arange(len(d_sorted)) - first
            self.postings[fill[d_sorted] + rank] = s[order]
            fill += np.bincount(d, minlength=len(self.grams))
        self._counts = np.zeros(self.n_stories, dtype=np.int32)

    @staticmethod
    def _pack_chunk(ids, lens):
        starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return np.array(ids, dtype=np.int32), starts

    def query_grams(self, text, k=None):
        """(distinct k-grams of text as packed ints, only those made of known words; the number of
        distinct k-grams of text, known or not: Rouge-k precision's denominator)."""
        k = k or self.k
        ws = words(text)
        n_total = len(kgrams(ws, k))
        ids = np.array([self.vocab.get(w, -1) for w in ws], dtype=np.int64)
        if len(ids) < k:
            return np.zeros(0, np.int64), n_total
        g, _ = pack_grams(np.where(ids < 0, 0, ids), np.array([0, len(ids)]), k, self.base)
        # a gram with an unknown word cannot be in any training story
        known = np.ones(len(g), dtype=bool)
        for j in range(k):
            known &= ids[j:len(ids) - k + 1 + j] >= 0
        return distinct(g[known]), n_total

    def postings_of(self, i):
        return self.postings[self.offsets[i]:self.offsets[i + 1]]

    def closest(self, text):
        """(story id, shared k-grams, text's k-grams) of the training story sharing the most
        distinct k-grams with text (ties: the lowest id; id -1 when nothing is shared).

        Exact, by the MaxScore bound: take text's k-grams rarest first and count, per story, the
        shared ones in a dense counter, but leave out the b most common k-grams (whose postings
        are the long ones). A story never counted can share at most b k-grams; the stories
        counted get their exact score by looking up their few missing k-grams. Once some story
        scores L > b, only stories whose count + b >= L can still win: check just those. While
        L <= b, lower b (count more k-grams) and go on; b = 0 is a plain exact count."""
        q, n_total = self.query_grams(text)
        pos = np.searchsorted(self.grams, q)
        present = pos < len(self.grams)
        present[present] = self.grams[pos[present]] == q[present]
        gids = pos[present]
        if len(gids) == 0:
            return -1, 0, n_total
        df = self.offsets[gids + 1] - self.offsets[gids]
        order = np.argsort(df, kind='stable')  # rarest first
        gids, df = gids[order], df[order]
        m = len(gids)
        counts = self._counts
        counts[:] = 0
        # start by leaving out the k-grams found in more than 1 story in 20
        b = int((df > max(1, self.n_stories // 20)).sum())
        done = 0
        # what the bound saved, for bench.py and the tests: k-grams left uncounted, their postings
        self.last_stats = {'grams': m, 'postings': int(df.sum())}
        while True:
            for i in gids[done:m - b]:
                counts[self.postings_of(i)] += 1  # one story at most once per list: no repeats
            done = m - b
            self.last_stats.update(skipped_grams=b, counted_postings=int(df[:done].sum()))
            if b == 0:
                best = int(np.argmax(counts))
                score = int(counts[best])
                return (best if score else -1), score, n_total
            skipped = [self.postings_of(i) for i in gids[m - b:]]
            # a lower bound L: the exact scores of the stories counted most so far
            top = np.argpartition(counts, -min(32, len(counts)))[-32:]
            L = int(self._exact(top, counts, skipped).max())
            if L <= b:
                b = max(L - 1, 0)  # < b: stories never counted then score < L
                continue
            cand = np.flatnonzero(counts >= L - b)  # the only stories that can reach L
            if len(cand) * b > 4_000_000:  # too many to check one by one: count more instead
                b //= 2
                continue
            scores = self._exact(cand, counts, skipped)
            best = int(np.argmax(scores))  # cand is sorted, so ties go to the lowest id
            return int(cand[best]), int(scores[best]), n_total

    @staticmethod
    def _exact(stories, counts, skipped):
        """Exact shared-k-gram counts of `stories`: their count plus their hits in the skipped
        (common) k-grams' sorted posting lists."""
        scores = counts[stories].astype(np.int64)
        for p in skipped:
            at = np.searchsorted(p, stories)
            at[at == len(p)] = 0
            scores += p[at] == stories if len(p) else 0
        return scores

    def overlap(self, text, k=None):
        """The fraction of text's distinct k-grams that occur somewhere in the training stories
        (k = the index's k, or one of also_ks); None when text has no k-gram."""
        k = k or self.k
        grams, n_total = self.query_grams(text, k)
        table = self.grams if k == self.k else self.gram_sets[k]
        if n_total == 0:
            return None
        if len(table) == 0:
            return 0.0
        pos = np.minimum(np.searchsorted(table, grams), len(table) - 1)
        return float((table[pos] == grams).sum()) / n_total


def closest_brute_force(stories, text, k=2):
    """The reference closest(): compare text with every story, one by one."""
    q = kgrams(words(text), k)
    best, best_score = -1, 0
    for i, story in enumerate(stories):
        score = len(q & kgrams(words(story), k))
        if score > best_score:
            best, best_score = i, score
    return best, best_score, len(q)
