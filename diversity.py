"""
Memorisation and diversity, measured as in the TinyStories paper (Eldan & Li 2023, section 5):
does the model write new stories, or does it copy the ones it was trained on?

    python diversity.py --out_dir=out/demo [--data_dir=data/demo] [--k=2]
    python diversity.py --out_dir=out/demo --source=data/demo_stories   # stories as prepare.py reads them

Take `num_stories` training stories, cut each at 40% of its tokens, let the model complete it,
and compare every completion, with Rouge-k on words, against
  (a) the story's true ending,
  (b) the closest story in the whole training set (exact, through kgram_index.KGramIndex),
  (c) the other completions (do the completions all look alike?),
and count how many of its k-grams (several k) appear anywhere in the training text.
Writes <report_dir>/diversity/ (report_dir: the run's out_dir): summary.json, completions.jsonl,
histograms.png, overlap.png, closest.html (the closest training story beside the completions
that overlap it most, shared k-grams highlighted). The folder is locked while this runs (a run
can be measured while it trains); completions are journaled, so a killed run resumes.

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

from tinystories.atomic_write import atomic_write
from tinystories.configurator import Key, configure
from tinystories.kgram_index import WORD_RE, KGramIndex, kgrams, words

# -----------------------------------------------------------------------------
out_dir = Key('out', "the model (a run, a Hugging Face folder, hf:OWNER/NAME); reports go to its diversity/")
data_dir = Key('', "training stories from this dataset's train.bin ('': the checkpoint's data_dir)")
source = Key('', "or from these files instead: .txt, .jsonl, .json, or a directory of them")
max_train_stories = Key(0, "use only the first N training stories (0: all of them)", min=0)
num_stories = Key(100, "stories to cut and complete (the paper: 100)", min=1)
cut = Key(0.4, "the prompt is this fraction of the story's tokens (the paper: about 40%)", above=0, below=1)
max_new_tokens = Key(400, "tokens per completion at most (also capped by the model's context)", min=1)
temperature = Key(1.0, "sampling temperature (0: greedy)", min=0)
top_k = Key(0, "sample from the k likeliest tokens only (0: off)", min=0)
batch_size = Key(20, "completions generated together", min=1)
k = Key(2, "Rouge-k's k (the paper: 2)", min=1)
overlap_ks = Key([2, 3, 4, 6, 8], "k-gram overlap of the completions with the whole training text, for each k", min=1)
show = Key(5, "completions shown beside their closest training story", min=0)
seed = Key(1337, "seeds the choice of stories and the sampling")
device = Key('auto', "auto (a GPU if there is one), cpu, cuda, cuda:1, mps")
# -----------------------------------------------------------------------------
config = configure(globals())
if not overlap_ks:
    raise SystemExit("error: --overlap_ks is empty: list at least one k (--overlap_ks=2,4)")

# what the summary reports, named as the paper names it ({k}: Rouge's k)
MEASURES = [
    ('ending_precision', 'Rouge-{k} precision of the completion against the true ending'),
    ('ending_f', 'Rouge-{k} F of the completion against the true ending'),
    ('self_f', 'max Rouge-{k} F against the other completions'),
    ('closest_precision', 'max Rouge-{k} precision against the training stories (the closest one)'),
    ('closest_f', 'Rouge-{k} F against that closest training story'),
]


def rouge_precision(a, b, k=2):
    """Rouge-k precision of text a against text b: the fraction of a's k-grams found in b."""
    ga, gb = kgrams(words(a), k), kgrams(words(b), k)
    return len(ga & gb) / len(ga) if ga else 0.0


def rouge_f(a, b, k=2):
    """Rouge-k F-measure: the harmonic mean of the precisions both ways (symmetric)."""
    p, r = rouge_precision(a, b, k), rouge_precision(b, a, k)
    return 2 * p * r / (p + r) if p + r else 0.0


# ----------------------------------------------------------------------------- the stage
def read_train_stories(data_dir, enc, info):
    """(train token-id arrays, train texts, val texts) of a prepared dataset, in the model's
    tokenizer: a dataset of another one (the paper's models use GPT-2's) is decoded with its own
    and re-encoded with the model's (dataset.for_model)."""
    from tinystories.dataset import open_dataset
    splits = ('train', 'val') if os.path.isfile(os.path.join(data_dir, 'val.bin')) else ('train',)
    ds = open_dataset(data_dir, splits=splits).for_model(enc, info['tokenizer'])
    return (ds.stories('train', max_train_stories), ds.texts('train', max_train_stories),
            ds.texts('val') if 'val' in splits else [])


def read_source_stories(source, enc, limit=0):
    """The stories of local files (stories.py's formats): (token-id arrays, texts)."""
    import itertools
    from tinystories.stories import StoryError, iter_stories
    try:
        texts = list(itertools.islice(iter_stories(source), limit or None))
    except StoryError as e:
        raise SystemExit(f"error: --source: {e}")
    toks = [np.array(t, dtype=np.int64) for t in enc.encode_batch(texts)]
    return toks, texts


def cut_and_complete(model, enc, stories, picks, journal, key):
    """Cut each picked story at `cut` of its tokens (at most half the context, to leave the model
    room to write) and let the model write the rest (completions.complete: batched, journaled)."""
    from tinystories.completions import complete
    block = model.config.block_size
    prompts, endings = [], []
    for i in picks:
        toks = [int(t) for t in stories[i]]
        n_cut = min(max(1, round(cut * len(toks))), block // 2)
        prompts.append([enc.start_token] + toks[:n_cut])
        endings.append(toks[n_cut:])
    outs = complete(model, prompts, max_new_tokens, enc.stop_token, temperature, top_k, seed, batch_size,
                    journal=journal, key=key)
    return [{'story': i, 'prompt': enc.decode(p[1:]), 'ending': enc.decode(e),
             'completion': None if o is None else enc.decode(o), 'too_long': o is None}
            for i, p, e, o in zip(picks, prompts, endings, outs)]


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
    ms = list(re.finditer(WORD_RE.pattern, text, re.IGNORECASE))  # words() on the original text
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


def summary_table(summary):
    """The summary as a small table, each measure named as in the paper."""
    rows = [(label, summary[name]) for name, label in summary['measures'].items()]
    for kk, s in summary['overlap'].items():
        rows.append((f"share of the completion's {kk}-grams found in the training text", s))
        if summary['val_overlap'][kk]['n']:
            rows.append(("  the same for held-out stories' true endings (baseline)", summary['val_overlap'][kk]))
    width = max(len(label) for label, _ in rows)
    lines = [f"{'measure (over ' + str(summary['completions']) + ' completions)':<{width}}   mean  median    p90"]
    for label, s in rows:
        lines.append(f"{label:<{width}}  " + (f"{s['mean']:.3f}   {s['median']:.3f}  {s['p90']:.3f}" if s['n'] else '-'))
    return '\n'.join(lines)


def summarize(values):
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return {'n': 0}
    return {'n': int(len(v)), 'mean': round(float(v.mean()), 4), 'median': round(float(np.median(v)), 4),
            'p90': round(float(np.quantile(v, 0.9)), 4), 'max': round(float(v.max()), 4)}


def main():
    global data_dir
    import torch
    from tinystories.completions import file_fingerprint
    from tinystories.dirlock import lock_dir
    from tinystories.checkpoint import load_run
    torch.manual_seed(seed)
    model, enc, info = load_run(out_dir, device)
    report_dir = os.path.join(info.get('report_dir', out_dir), 'diversity')
    lock_dir(report_dir, 'diversity.py')  # its own folder, not the run's: a run can train meanwhile

    # 1. the training stories, and the ones to cut and complete
    val_texts = []
    if source:
        # the raw files, not prepare.py's cleaned text: for stories the model never saw as a
        # dataset of its own, or a dataset whose bins are gone; no held-out baseline then
        toks, texts = read_source_stories(source, enc, max_train_stories)
    else:
        # the stories exactly as the model saw them: prepare.py's cleaned text, from train.bin
        data_dir = data_dir or (info.get('config') or {}).get('data_dir', '')
        if not data_dir:
            raise SystemExit("error: the checkpoint names no data_dir: pass --data_dir=<prepared "
                             "dataset> or --source=<story files>")
        toks, texts, val_texts = read_train_stories(data_dir, enc, info)
    long_enough = [i for i, t in enumerate(toks) if len(t) >= 10]
    if not long_enough:
        raise SystemExit("error: no training story has 10 tokens or more")
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(long_enough, min(num_stories, len(long_enough)), replace=False).tolist())
    print(f"diversity: {len(texts):,} training stories; completing {len(picks)} of them")

    # 2. the completions (resumable); a prompt that does not fit is counted, never scored
    key = f"{file_fingerprint(os.path.join(out_dir, 'ckpt.pt'))}|{source}|{len(texts)}"
    every = cut_and_complete(model, enc, toks, picks, os.path.join(report_dir, '.state', 'samples.jsonl'), key)
    atomic_write(os.path.join(report_dir, 'completions.jsonl'), ''.join(json.dumps(r) + '\n' for r in every))
    recs = [r for r in every if not r['too_long']]
    del model

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

    # 5. report: plots, summary.json, closest.html, and the table
    plot(os.path.join(report_dir, 'histograms.png'), [
        ([r['ending_precision'] for r in recs], 'completion vs true ending', f'Rouge-{k} precision'),
        ([r['ending_f'] for r in recs], 'completion vs true ending', f'Rouge-{k} F'),
        ([r['self_f'] for r in recs], 'completion vs other completions', f'max Rouge-{k} F'),
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
        'config': config, 'checkpoint_iter': info.get('iter_num'), 'train_stories': len(texts),
        'completions': len(recs), 'too_long': len(every) - len(recs), 'k': k,
        'measures': {name: label.format(k=k) for name, label in MEASURES},
        'index': {'build_seconds': round(t_index, 2), 'query_seconds': round(t_query, 3),
                  'distinct_grams': int(len(index.grams)), 'postings': int(len(index.postings))},
        **{name: summarize(r[name] for r in recs) for name, _ in MEASURES},
        'closest_is_source': sum(r['closest'] == r['story'] for r in recs),
        'overlap': {str(kk): summarize(r['overlap'][kk] for r in recs) for kk in overlap_ks},
        'val_overlap': {str(kk): summarize(val_overlap[kk]) for kk in overlap_ks},
        'top': [{key_: r[key_] for key_ in ('story', 'closest', 'closest_precision', 'closest_f',
                                            'prompt', 'completion')} for r in top],
    }
    atomic_write(os.path.join(report_dir, 'summary.json'), json.dumps(summary, indent=1) + '\n')
    print(f"index: {index.n_stories:,} stories, {len(index.grams):,} distinct {k}-grams, "
          f"built in {t_index:.1f}s; {len(recs)} closest-story queries in {t_query:.2f}s")
    print(summary_table(summary))
    print(f"wrote {report_dir}/: summary.json, completions.jsonl, histograms.png, overlap.png, closest.html")


if __name__ == '__main__':
    main()
