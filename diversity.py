"""
Memorisation and diversity, measured as in the TinyStories paper (Eldan & Li 2023, section 5):
does the model write new stories, or does it copy the ones it was trained on?

    python diversity.py --out_dir=out/demo [--data_dir=data/demo] [--k=2]
    python diversity.py --out_dir=out/demo --source=data/demo_stories   # stories as prepare.py reads them

Take `num_stories` training stories, cut each at 40% of its tokens, let the model complete it,
and compare every completion, with Rouge-k on words, against
  (a) the story's true ending,
  (b) the closest story in the whole training set (exact, through a k-gram inverted index),
  (c) the other completions (do the completions all look alike?),
and count how many of its k-grams (several k) appear anywhere in the training text.
Writes out_dir/diversity/: summary.json, histograms.png, overlap.png, closest.html (the closest
training story beside the completions that overlap it most, shared k-grams highlighted).

Rouge-k (the paper's definition, on sets of word k-grams G_k):
    precision r_p(A, B) = |G_k(A) & G_k(B)| / |G_k(A)|      (how much of A is found in B)
    F-measure r_f(A, B) = 2 r_p(A, B) r_p(B, A) / (r_p(A, B) + r_p(B, A))
"""
import html
import io
import json
import os
import re
import time

import numpy as np

from atomic_write import atomic_write

# -----------------------------------------------------------------------------
out_dir = 'out'          # the run: reads out_dir/ckpt.pt, writes out_dir/diversity/
data_dir = ''            # training stories from this dataset's train.bin ('' = the checkpoint's)
source = ''              # or from these files instead: .txt / .jsonl / .json, or a directory of them
max_train_stories = 0    # use only the first N training stories (0 = all of them)
num_stories = 100        # stories to cut and complete (the paper: 100)
cut = 0.4                # prompt = this fraction of the story's tokens (the paper: about 40%)
max_new_tokens = 400     # completion length cap (also capped by the model's context)
temperature = 1.0
top_k = 0                # 0 = no top-k filtering
batch_size = 20          # completions generated together
k = 2                    # Rouge-k's k (the paper: 2)
overlap_ks = [2, 3, 4, 6, 8]  # k-gram overlap of completions with the whole training text
show = 5                 # completions shown beside their closest training story
seed = 1337
device = 'cpu'
# -----------------------------------------------------------------------------

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")  # words, lower-cased: "Lily's" is one word


def words(text):
    return WORD_RE.findall(text.lower())


def kgrams(ws, k):
    """The set of k-grams (tuples of words) of a word list."""
    return set(zip(*(ws[i:] for i in range(k))))


def rouge_precision(a, b, k=2):
    """Rouge-k precision of text a against text b: the fraction of a's k-grams found in b."""
    ga, gb = kgrams(words(a), k), kgrams(words(b), k)
    return len(ga & gb) / len(ga) if ga else 0.0


def rouge_f(a, b, k=2):
    """Rouge-k F-measure: the harmonic mean of the precisions both ways (symmetric)."""
    p, r = rouge_precision(a, b, k), rouge_precision(b, a, k)
    return 2 * p * r / (p + r) if p + r else 0.0


# ----------------------------------------------------------------------------- the k-gram index
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
        it = stories
        if progress:
            from tqdm import tqdm
            it = tqdm(stories, desc='index: words', unit=' stories', mininterval=1)
        for story in it:
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


# ----------------------------------------------------------------------------- the stage
def read_train_stories(data_dir, enc, eot, limit=0, split='train'):
    """The stories of a prepared dataset's split: (token-id arrays, texts), split on the EOT id."""
    from dataset import open_dataset
    toks = open_dataset(data_dir, splits=(split,)).stories(split, limit)
    texts = enc.decode_batch([t.tolist() for t in toks])
    return toks, texts


def read_source_stories(source, enc, limit=0):
    """The stories of local files (stories.py's formats): (token-id arrays, texts)."""
    import itertools
    from stories import StoryError, iter_stories
    try:
        texts = list(itertools.islice(iter_stories(source), limit or None))
    except StoryError as e:
        raise SystemExit(f"error: --source: {e}")
    toks = [np.array(t, dtype=np.int64) for t in enc.encode_ordinary_batch(texts)]
    return toks, texts


def complete(model, enc, eot, stories, picks, journal, key):
    """Cut each picked story at `cut` of its tokens and let the model write the rest. Finished
    completions are journaled (rewritten atomically per batch), so a killed run resumes."""
    import torch
    from tqdm import tqdm
    done = {}
    if os.path.isfile(journal):
        with open(journal, encoding='utf-8') as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get('key') == key:
                    done[rec['story']] = rec
    block = model.config.block_size
    todo = [i for i in picks if i not in done]
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    bar = tqdm(total=len(picks), initial=len(picks) - len(todo), desc='completions', unit=' stories')
    for b in range(0, len(todo), batch_size):
        batch = todo[b:b + batch_size]
        prompts, endings = [], []
        for i in batch:
            toks = [int(t) for t in stories[i]]
            n_cut = max(1, round(cut * len(toks)))
            n_cut = min(n_cut, block // 2)  # leave the model room to write
            prompts.append([eot] + toks[:n_cut])
            endings.append(toks[n_cut:])
        outs = model.generate(prompts, max_new_tokens, temperature=temperature,
                              top_k=top_k or None, eot_token=eot, generator=gen)
        for i, p, e, o in zip(batch, prompts, endings, outs):
            o = [t for t in o if t != eot]
            done[i] = {'key': key, 'story': i, 'prompt': enc.decode(p[1:]), 'ending': enc.decode(e),
                       'completion': enc.decode(o)}
        atomic_write(journal, ''.join(json.dumps(done[i]) + '\n' for i in picks if i in done))
        bar.update(len(batch))
    bar.close()
    return [done[i] for i in picks]


def histogram(ax, values, title, xlabel):
    ax.hist(values, bins=20, range=(0, 1), color='#4c72b0', edgecolor='white')
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('completions')


def plot(path, panels, suptitle):
    """A row of histograms (matplotlib, no display), saved atomically as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (values, title, xlabel) in zip(axes[0], panels):
        if isinstance(values, dict):  # several series on one panel
            for name, v in values.items():
                ax.hist(v, bins=20, range=(0, 1), alpha=0.6, label=name)
            ax.legend(fontsize=8)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel('stories')
        else:
            histogram(ax, values, title, xlabel)
    fig.suptitle(suptitle)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def highlight(text, shared, k):
    """text as HTML (escaped), its words that belong to a shared k-gram marked."""
    ms = list(re.finditer(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?", text))
    ws = [m.group().lower() for m in ms]
    hit = [False] * len(ws)
    for i in range(len(ws) - k + 1):
        if tuple(ws[i:i + k]) in shared:
            hit[i:i + k] = [True] * k
    out, last = [], 0
    for m, h in zip(ms, hit):
        out.append(html.escape(text[last:m.start()]))
        w = html.escape(m.group())
        out.append(f'<mark>{w}</mark>' if h else w)
        last = m.end()
    out.append(html.escape(text[last:]))
    return ''.join(out).replace('\n', '<br>')


def write_closest_html(path, rows, k):
    """The completions that overlap the training set most, each beside its closest story."""
    parts = [f"""<!doctype html><html><head><meta charset="utf-8"><title>Closest training stories</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}} .pair{{display:flex;gap:1em;margin:1em 0}}
.pair div{{flex:1;border:1px solid #ccc;padding:.6em;font-size:14px}} mark{{background:#ffd966}}
h3{{margin-bottom:0}}</style></head><body><h1>Completions beside their closest training story</h1>
<p>Words in a shared {k}-gram are marked. Precision = the fraction of the completion's {k}-grams
found in the training story.</p>"""]
    for r in rows:
        shared = kgrams(words(r['completion']), k) & kgrams(words(r['closest_text']), k)
        parts.append(
            f"<h3>story {r['story']}: Rouge-{k} precision {r['closest_precision']:.2f} against "
            f"training story {r['closest']}{' (the story it was cut from)' if r['closest'] == r['story'] else ''}</h3>"
            f"<p><b>Prompt:</b> {html.escape(r['prompt'])}</p><div class='pair'>"
            f"<div><b>Model's completion</b><br>{highlight(r['completion'], shared, k)}</div>"
            f"<div><b>Closest training story</b><br>{highlight(r['closest_text'], shared, k)}</div></div>")
    parts.append('</body></html>')
    atomic_write(path, '\n'.join(parts))


def summarize(values):
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return {'n': 0}
    return {'n': int(len(v)), 'mean': round(float(v.mean()), 4), 'median': round(float(np.median(v)), 4),
            'p90': round(float(np.quantile(v, 0.9)), 4), 'max': round(float(v.max()), 4)}


def main():
    from configurator import configure
    config = configure(globals())
    global data_dir
    import torch
    from model import load_run
    if not 0 < cut < 1:
        raise SystemExit(f"error: --cut={cut} must be between 0 and 1")
    if k < 1 or any(kk < 1 for kk in overlap_ks):
        raise SystemExit("error: --k and --overlap_ks must be positive")
    torch.manual_seed(seed)
    model, enc, ckpt = load_run(out_dir, device)
    eot = ckpt['tokenizer']['eot_token']
    report_dir = os.path.join(out_dir, 'diversity')
    os.makedirs(report_dir, exist_ok=True)

    # 1. the training stories, and the ones to cut and complete
    val_texts = []
    if source:
        # the raw files, not prepare.py's cleaned text: for stories the model never saw as a
        # dataset of its own, or a dataset whose bins are gone; no held-out baseline then
        toks, texts = read_source_stories(source, enc, max_train_stories)
    else:
        # the stories exactly as the model saw them: prepare.py's cleaned text, from train.bin
        data_dir = data_dir or ckpt.get('config', {}).get('data_dir', '')
        if not data_dir:
            raise SystemExit("error: the checkpoint names no data_dir: pass --data_dir=<prepared "
                             "dataset> or --source=<story files>")
        toks, texts = read_train_stories(data_dir, enc, eot, max_train_stories)
        if os.path.isfile(os.path.join(data_dir, 'val.bin')):
            val_texts = read_train_stories(data_dir, enc, eot, 0, 'val')[1]
    long_enough = [i for i, t in enumerate(toks) if len(t) >= 10]
    if not long_enough:
        raise SystemExit("error: no training story has 10 tokens or more")
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(long_enough, min(num_stories, len(long_enough)), replace=False).tolist())
    print(f"diversity: {len(texts):,} training stories; completing {len(picks)} of them")

    # 2. the completions (resumable)
    key = f"{ckpt.get('iter_num')}|{seed}|{cut}|{max_new_tokens}|{temperature}|{top_k}|{len(texts)}"
    key += f"|{source}" if source else ''  # other stories: other completions
    recs = complete(model, enc, eot, toks, picks, os.path.join(report_dir, 'completions.jsonl'), key)

    # 3. the index of the training set, then the closest training story of each completion
    t0 = time.time()
    index = KGramIndex(texts, k=k, also_ks=overlap_ks, progress=True)
    t_index = time.time() - t0
    t0 = time.time()
    for r in recs:
        sid, shared, n = index.closest(r['completion'])
        r['closest'], r['closest_precision'] = sid, (shared / n if n else 0.0)
        r['closest_text'] = texts[sid] if sid >= 0 else ''
        r['closest_f'] = rouge_f(r['completion'], r['closest_text'], k)
    t_query = time.time() - t0

    # 4. Rouge-k against the true ending and against the other completions; k-gram overlap
    for r in recs:
        r['ending_precision'] = rouge_precision(r['completion'], r['ending'], k)
        r['ending_f'] = rouge_f(r['completion'], r['ending'], k)
    gsets = [kgrams(words(r['completion']), k) for r in recs]
    for i, r in enumerate(recs):
        best = 0.0
        for j, g in enumerate(gsets):
            if j != i and gsets[i] and g:
                shared = len(gsets[i] & g)
                p, q = shared / len(gsets[i]), shared / len(g)
                best = max(best, 2 * p * q / (p + q) if p + q else 0.0)
        r['self_f'] = best
        r['overlap'] = {kk: index.overlap(r['completion'], kk) for kk in overlap_ks}
    # held-out stories' endings as the baseline: how new is text the model never saw?
    vrng = np.random.default_rng(seed + 1)
    val_picks = vrng.choice(len(val_texts), min(len(recs), len(val_texts)), replace=False) if val_texts else []
    val_overlap = {kk: [] for kk in overlap_ks}
    for i in val_picks:
        ws = words(val_texts[i])
        ending = ' '.join(ws[round(cut * len(ws)):])
        for kk in overlap_ks:
            val_overlap[kk].append(index.overlap(ending, kk))

    # 5. report: plots, summary.json, closest.html
    plot(os.path.join(report_dir, 'histograms.png'), [
        ([r['ending_precision'] for r in recs], f'completion vs true ending', f'Rouge-{k} precision'),
        ([r['ending_f'] for r in recs], f'completion vs true ending', f'Rouge-{k} F'),
        ([r['self_f'] for r in recs], f'completion vs other completions', f'max Rouge-{k} F'),
        ([r['closest_precision'] for r in recs], f'closest of {len(texts):,} training stories',
         f'max Rouge-{k} precision')], f'{out_dir}: {len(recs)} completions of stories cut at {cut:.0%}')
    plot(os.path.join(report_dir, 'overlap.png'), [
        ({'completions': [r['overlap'][kk] for r in recs if r['overlap'][kk] is not None],
          **({'held-out endings': [v for v in val_overlap[kk] if v is not None]} if val_texts else {})},
         f'{kk}-grams seen in training', 'fraction of the text\'s k-grams') for kk in overlap_ks],
        'k-gram overlap with the training text')
    top = sorted(recs, key=lambda r: -r['closest_precision'])[:show]
    write_closest_html(os.path.join(report_dir, 'closest.html'), top, k)
    summary = {
        'config': config, 'checkpoint_iter': ckpt.get('iter_num'), 'train_stories': len(texts),
        'completions': len(recs), 'k': k,
        'index': {'build_seconds': round(t_index, 2), 'query_seconds': round(t_query, 3),
                  'distinct_grams': int(len(index.grams)), 'postings': int(len(index.postings))},
        'ending_precision': summarize(r['ending_precision'] for r in recs),
        'ending_f': summarize(r['ending_f'] for r in recs),
        'self_f': summarize(r['self_f'] for r in recs),
        'closest_precision': summarize(r['closest_precision'] for r in recs),
        'closest_is_source': sum(r['closest'] == r['story'] for r in recs),
        'overlap': {str(kk): summarize(r['overlap'][kk] for r in recs) for kk in overlap_ks},
        'val_overlap': {str(kk): summarize(val_overlap[kk]) for kk in overlap_ks},
        'top': [{key_: r[key_] for key_ in ('story', 'closest', 'closest_precision', 'closest_f',
                                            'prompt', 'completion')} for r in top],
    }
    atomic_write(os.path.join(report_dir, 'summary.json'), json.dumps(summary, indent=1) + '\n')

    print(f"index: {index.n_stories:,} stories, {len(index.grams):,} distinct {k}-grams, "
          f"built in {t_index:.1f}s; {len(recs)} closest-story queries in {t_query:.2f}s")
    for name in ('ending_precision', 'ending_f', 'self_f', 'closest_precision'):
        s = summary[name]
        if s['n']:
            print(f"  {name:18s} mean {s['mean']:.3f}  median {s['median']:.3f}  p90 {s['p90']:.3f}")
    for kk in overlap_ks:
        s, v = summary['overlap'][str(kk)], summary['val_overlap'][str(kk)]
        if s['n']:
            print(f"  {kk}-grams seen in training: completions {s['mean']:.3f}"
                  + (f", held-out endings {v['mean']:.3f}" if v['n'] else ''))
    print(f"wrote {report_dir}/: summary.json, histograms.png, overlap.png, closest.html, completions.jsonl")


if __name__ == '__main__':
    main()
