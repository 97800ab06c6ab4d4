"""
Look inside a trained model, as the TinyStories paper does (Eldan & Li 2023, section 6):
what each attention head attends to, and what makes each MLP neuron fire.

    python interpret.py --out_dir=out/demo [--story="Once upon a time..." | --story=FILE:story.txt]

Attention heads: every layer's and head's attention pattern on one story, drawn as heatmaps,
and a label for each head with the numbers behind it. Each head's map (the first token left out)
is compared with two simple explanations, each the head's own: a fixed profile over distances,
and a fixed affinity per token id; the label says which one accounts for more of how the head
departs from plain averaging of its context:
  distance     the offsets explain it (a diagonal band: the previous token, the last few);
  semantic     the token ids explain it (vertical stripes: a name, a topic word, the full
               stops, wherever they are);
  first-token  it mostly attends to the story's first token (an "attention sink": a head with
               nothing to do on this text);
  uniform      its map is plain averaging of its context (it shares at least 0.9 of its mass
               with it): what an untrained head does;
  mixed        structured, but neither explanation accounts for much of it.
The thresholds (0.74 of the departure explained for distance, 0.53 for semantic) were chosen by
--calibrate on planted heads and one trained model, and then reported on another trained model
(docs/instruments.md): every planted head gets its label, but the small CPU-trained models' heads
fall on a continuum below them, so the labels say little about such models (most read mixed). A
semantic head's most attended tokens are listed, so a reader sees whether they are content words.
The paper found, in a 1-layer 16-head model, about 7 distance heads and 3 semantic heads.

MLP neurons: for the chosen layers, the tokens (in their context) that activate each neuron
most, over a sample of stories; the neurons shown are the most selective ones (their top
activations furthest above their usual activity, in standard deviations).

Writes out_dir/interpret/: report.html (one self-contained file, the heatmaps inlined, all story
text escaped), attention_layer<i>.png, summary.json.
"""
import base64
import collections
import html
import io
import json
import os
import sys

import numpy as np
import torch

from tinystories.atomic_write import atomic_write
from tinystories.configurator import Key, configure

# -----------------------------------------------------------------------------
out_dir = Key('out', "the model (a run, a Hugging Face folder, hf:OWNER/NAME); the report goes to its interpret/")
story = Key('', "the story for the attention heads: text, or FILE:path ('': a default story)")
data_dir = Key('', "stories for the neurons: its val.bin ('': the checkpoint's data_dir)")
num_stories = Key(200, "stories scanned for the neurons' top activations", min=1)
layers = Key([-1], "MLP layers to look at (-1: all)", min=-1)
neurons = Key(12, "neurons shown per layer: the most selective ones", min=1)
top = Key(6, "top-activating contexts shown per neuron", min=1)
context = Key(12, "tokens of context shown before each top token (3 after)", min=0)
distance_threshold = Key(0.74, "a head is positional when a fixed offset profile explains this share of its "
                               "map's departure from uniform (chosen by --calibrate: docs/instruments.md)",
                         above=0, max=1)
semantic_threshold = Key(0.53, "a head is semantic when fixed per-token affinities explain this share of it "
                               "(chosen the same way)", above=0, max=1)
sink_threshold = Key(0.5, "this much attention on the first token makes a first-token head", above=0, max=1)
uniform_threshold = Key(0.9, "a head is uniform when its map shares this much mass with plain averaging "
                             "(untrained heads share 0.99)", above=0, max=1)
calibrate = Key(False, "also score planted heads and this model's heads over num_stories stories, and "
                       "suggest thresholds (interpret/calibration.json; docs/instruments.md)")
batch_size = Key(16, "sequences per forward pass", min=1)
seed = Key(1337, "seeds the choice of stories")
device = Key('auto', "auto (a GPU if there is one), cpu, cuda, cuda:1, mps")
# -----------------------------------------------------------------------------
config = configure(globals())

DEFAULT_STORY = (
    "Once upon a time, there was a little girl named Lily. Lily loved to play in the park with "
    "her dog, Max. One day, Lily saw a big red ball under a tree. She ran to the ball and picked "
    "it up. \"Look, Max!\" Lily said. Max wagged his tail and barked. Lily threw the ball and Max "
    "ran after it. Then it started to rain, so Lily and Max went home. Mom gave Lily a warm hug "
    "and Max a bone. Lily smiled. It was the best day at the park.")


# ----------------------------------------------------------------------------- attention heads
def overlap(p, q):
    """How much two attention rows agree: the mass they share, 0 (disjoint) to 1 (the same)."""
    return torch.minimum(p, q).sum(dim=-1)


def head_scores(att, tokens):
    """The numbers behind each head's label, from its attention on one text.

    att: (H, T, T) attention probabilities (rows: queries, causal), tokens: (T,) token ids.
    The first token is a "sink" many heads park attention on when they have nothing to do, so
    it is measured apart (`sink`) and everything else looks at the attention on keys 1..q, each
    query's row renormalised (queries 2.. : the first ones have nothing to choose from).

    A head's map is then compared with three simple explanations of it, each a predicted row
    per query, by their overlap (the mass they share, 0..1, averaged over queries):
      uniform   every key alike (a head that averages its context);
      offsets   a fixed profile over distances q - k, the head's own (a distance head: the
                previous token, the last few tokens);
      tokens    a fixed affinity per token id, the head's own: the attention each id gets over
                what uniform attention would give it (a semantic head: the names, a topic word,
                wherever they are).
    distance = (offset_fit - uniform_fit) / (1 - uniform_fit), semantic the same with token_fit:
    the share of the head's departure from plain averaging that each explanation accounts for
    (1: all of it; 0 or less: none). Also returned, to show: offsets (H, T) the share of
    attention at each offset, token_mass and baseline (H, V) the share each id gets and would
    get under uniform attention.
    """
    H, T, _ = att.shape
    tokens = tokens.long()
    P = att[:, 2:, 1:].float()  # queries 2..T-1, keys 1..T-1
    q_idx = torch.arange(2, T)[:, None]
    k_idx = torch.arange(1, T)[None, :]
    valid = (k_idx <= q_idx).float()  # (Q, K): causal
    sink = att[:, 1:, 0].float().mean(dim=1)
    P = P * valid
    P = P / P.sum(dim=2, keepdim=True).clamp(min=1e-9)
    U = valid / valid.sum(dim=1, keepdim=True)
    # offsets: the head's profile over distances, pooled over queries
    dist = (q_idx - k_idx).clamp(min=0)  # (Q, K)
    offsets = torch.zeros(H, T).index_add_(1, dist.flatten(), (P * valid).flatten(1))
    offsets /= offsets.sum(dim=1, keepdim=True).clamp(min=1e-9)
    per_offset = torch.zeros(T).index_add_(0, dist.flatten(), valid.flatten()).clamp(min=1)
    rate = offsets / per_offset  # mean attention at each offset where it exists
    pred_off = rate[:, dist] * valid
    pred_off /= pred_off.sum(dim=2, keepdim=True).clamp(min=1e-9)
    # tokens: the attention each id gets, and what uniform attention would give it
    vocab = int(tokens.max()) + 1
    keys = tokens[1:]
    token_mass = torch.zeros(H, vocab).index_add_(1, keys, P.sum(dim=1))
    base = torch.zeros(vocab).index_add_(0, keys, U.sum(dim=0))
    token_mass /= token_mass.sum(dim=1, keepdim=True).clamp(min=1e-9)
    baseline = (base / base.sum()).expand(H, vocab)
    affinity = token_mass / baseline.clamp(min=1e-9)
    pred_tok = affinity[:, keys][:, None, :] * valid
    pred_tok /= pred_tok.sum(dim=2, keepdim=True).clamp(min=1e-9)
    uniform_fit = overlap(P, U).mean(dim=1)
    offset_fit = overlap(P, pred_off).mean(dim=1)
    token_fit = overlap(P, pred_tok).mean(dim=1)
    room = 1 - uniform_fit  # how far the head is from plain averaging
    flat = room < 1e-3      # (nothing to explain: both shares 0, not noise over nothing)
    room = room.clamp(min=1e-3)
    share = lambda fit: torch.where(flat, 0.0, (fit - uniform_fit) / room)
    return {'sink': sink, 'offsets': offsets, 'token_mass': token_mass, 'baseline': baseline,
            'uniform_fit': uniform_fit, 'offset_fit': offset_fit, 'token_fit': token_fit,
            'distance': share(offset_fit), 'semantic': share(token_fit)}


def label_heads(scores, distance_min=distance_threshold, semantic_min=semantic_threshold,
                sink_min=sink_threshold, uniform_min=uniform_threshold):
    """A label per head from head_scores(): first-token when the sink holds sink_min of its
    attention; uniform when its map shares uniform_min of its mass with plain averaging; else
    distance or semantic, whichever explanation beats uniform attention by more, if it does by
    at least its threshold; else mixed (structured, but explained by neither)."""
    labels = []
    for h in range(len(scores['sink'])):
        d, s = float(scores['distance'][h]), float(scores['semantic'][h])
        if scores['sink'][h] >= sink_min:
            labels.append('first-token')
        elif scores['uniform_fit'][h] >= uniform_min:
            labels.append('uniform')
        elif d >= distance_min and d >= s:
            labels.append('distance')
        elif s >= semantic_min:
            labels.append('semantic')
        elif d >= distance_min:
            labels.append('distance')
        else:
            labels.append('mixed')
    return labels


# ----------------------------------------------------------------------------- choosing the thresholds
def planted_heads(tokens, seed=0):
    """Attention maps with known labels on a real token sequence (tokens[0] the EOT): the
    explanations the labels stand for, planted, and two controls. Returns (att (H, T, T), names,
    the label each should get). Rows with nothing to attend to yet attend uniformly."""
    T = len(tokens)
    g = torch.Generator().manual_seed(seed)
    ids = tokens.long().tolist()
    later = collections.Counter(ids[1:])
    common = sorted(later, key=lambda t: (-later[t], t))  # the most frequent token ids first

    def rows(weights_of_row):
        att = torch.zeros(T, T)
        for q in range(T):
            w = torch.as_tensor(weights_of_row(q), dtype=torch.float32)[:q + 1]
            att[q, :q + 1] = w / w.sum() if w.sum() > 0 else torch.full((q + 1,), 1.0 / (q + 1))
        return att

    def at(q, ks):
        w = torch.zeros(q + 1)
        for k in ks:
            if 1 <= k <= q:
                w[k] += 1
        return w

    def on_ids(q, wanted):  # 0.9 on the wanted ids wherever they are, 0.1 spread evenly
        w = torch.tensor([float(t in wanted) for t in ids[:q + 1]])
        return 0.9 * w / w.sum() + 0.1 / (q + 1) if w.sum() else w

    scatter = [torch.randint(0, q + 1, (3,), generator=g).tolist() for q in range(T)]
    heads = [  # name, label, row q's weights
        ('previous token', 'distance', lambda q: at(q, [q - 1])),
        ('offset 3', 'distance', lambda q: at(q, [q - 3])),
        ('offsets 1-4 decaying', 'distance', lambda q: at(q, [q - 1] * 8 + [q - 2] * 4 + [q - 3] * 2 + [q - 4])),
        ('one token id', 'semantic', lambda q: on_ids(q, {common[0]})),
        ('a rarer token id', 'semantic', lambda q: on_ids(q, {common[min(5, len(common) - 1)]})),
        ('two token ids', 'semantic', lambda q: on_ids(q, set(common[1:3]))),
        ('first token', 'first-token', lambda q: torch.eye(q + 1)[0] * 0.8 + 0.2 / (q + 1)),
        ('uniform', 'uniform', lambda q: torch.ones(q + 1)),
        # controls: structured, but by neither explanation (three random keys per query, and
        # random weights): what the in-sample fits make of noise
        ('scattered', 'mixed', lambda q: at(q, scatter[q])),
        ('random weights', 'mixed', lambda q: torch.rand(q + 1, generator=g) ** 4),
    ]
    return (torch.stack([rows(f) for _, _, f in heads]), [n for n, _, _ in heads], [lab for _, lab, _ in heads])


def choose_threshold(positives, negatives, trained):
    """A threshold on one score (distance or semantic): above every planted head that must not
    get the label (negatives), at most every planted head that must (positives), and inside that
    bracket at the middle of the widest gap between the trained model's heads' scores, so that no
    head of the model sits at the edge, its label flipping with the story. Returns (threshold,
    (low, high) the bracket); None when the planted heads leave no bracket."""
    low, high = max(negatives), min(positives)
    if low >= high:
        return None, (low, high)
    edges = sorted([low, high] + [x for x in trained if low < x < high])
    gap, i = max((edges[j + 1] - edges[j], j) for j in range(len(edges) - 1))
    return (edges[i] + edges[i + 1]) / 2, (low, high)


@torch.no_grad()
def calibration_scores(model, seqs, seed=0):
    """Each head's distance, semantic and uniform fit on every story of seqs, for the model's
    heads, for planted_heads() on the same stories, and for the model's heads with the story's
    token ids shuffled (the semantic score of a map whose token ids mean nothing: the in-sample
    fit's floor). Returns {'model': {(layer, head): {score: [per story]}}, 'planted': {(name,
    label): ...}, 'shuffled': {(layer, head): [semantic per story]}}."""
    g = torch.Generator().manual_seed(seed)
    out = {'model': collections.defaultdict(lambda: collections.defaultdict(list)),
           'planted': collections.defaultdict(lambda: collections.defaultdict(list)),
           'shuffled': collections.defaultdict(list)}
    dev = model.wte.weight.device
    keys = ('distance', 'semantic', 'uniform_fit', 'sink')
    for i, seq in enumerate(seqs):
        if len(seq) < 8:
            continue
        tokens = torch.tensor(seq)
        shuffled = torch.cat([tokens[:1], tokens[1:][torch.randperm(len(seq) - 1, generator=g)]])
        for layer, att in enumerate(model.attention_maps(tokens[None].to(dev))):
            att = att[0].float().cpu()
            s = head_scores(att, tokens)
            for h in range(att.size(0)):
                for k in keys:
                    out['model'][layer, h][k].append(float(s[k][h]))
            out_shuffled = head_scores(att, shuffled)['semantic']
            for h in range(att.size(0)):
                out['shuffled'][layer, h].append(float(out_shuffled[h]))
        att, names, labels = planted_heads(tokens, seed=seed + i)
        s = head_scores(att, tokens)
        for h, key in enumerate(zip(names, labels)):
            for k in keys:
                out['planted'][key][k].append(float(s[k][h]))
    return out


def calibration(model, seqs, thresholds, seed=0):
    """The thresholds that planted heads and this model's heads suggest (choose_threshold), and
    every head's scores (mean over the stories) with the label the given thresholds give it on
    each story: the record docs/instruments.md reports, for the model the thresholds were chosen
    on and for another one."""
    c = calibration_scores(model, seqs, seed)
    if not c['model']:
        raise SystemExit("error: --calibrate needs stories of at least 8 tokens (--data_dir)")
    mean = lambda xs: float(np.mean(xs))
    planted = {n: {k: mean(v) for k, v in d.items()} | {'expected': lab} for (n, lab), d in c['planted'].items()}
    # the extremes over stories, not the means: a planted head must get its label on every story
    worst = {n: {'min': {k: min(v) for k, v in d.items()}, 'max': {k: max(v) for k, v in d.items()}}
             for (n, lab), d in c['planted'].items()}
    heads = []
    for (layer, h), d in sorted(c['model'].items()):
        per_story = label_heads({k: torch.tensor(v) for k, v in d.items()}, *thresholds)
        counts = collections.Counter(per_story)
        label, n = counts.most_common(1)[0]
        heads.append({'layer': layer, 'head': h, **{k: round(mean(v), 3) for k, v in d.items()},
                      'semantic_shuffled': round(mean(c['shuffled'][layer, h]), 3),
                      'label': label, 'label_share': round(n / len(per_story), 3),
                      'labels': dict(counts)})
    suggested = {}
    for score in ('distance', 'semantic'):  # each score's own label
        pos = [worst[n]['min'][score] for n, p in planted.items() if p['expected'] == score]
        neg = [worst[n]['max'][score] for n, p in planted.items() if p['expected'] != score]
        if score == 'semantic':  # no map scores semantic by its ids more than with them shuffled
            neg += [h['semantic_shuffled'] for h in heads if h['uniform_fit'] < thresholds[3]]
        t, bracket = choose_threshold(pos, neg, [h[score] for h in heads])
        suggested[score] = {'threshold': None if t is None else round(t, 3),
                            'bracket': [round(b, 3) for b in bracket]}
    stories = len(next(iter(c['model'].values()))['sink'])
    return {'stories': stories, 'thresholds': dict(zip(('distance', 'semantic', 'sink', 'uniform'), thresholds)),
            'suggested': suggested, 'planted': planted, 'heads': heads}


def describe_heads(maps, tokens, token_text, thresholds, attended=12):
    """One record per (layer, head): its label and the numbers behind it, readable; a semantic
    head also lists the `attended` tokens with most of its attention (share, share under uniform
    attention), so a reader sees whether they are content words or punctuation."""
    heads = []
    for layer, att in enumerate(maps):
        s = head_scores(att, tokens)
        labels = label_heads(s, *thresholds)
        for h, lab in enumerate(labels):
            offs = s['offsets'][h].topk(min(3, s['offsets'].size(1)))

            def top_tokens(n):
                toks = s['token_mass'][h].topk(min(n, int((s['token_mass'][h] > 0).sum()) or 1))
                return [[token_text(int(t)), round(float(v), 3), round(float(s['baseline'][h, t]), 3)]
                        for v, t in zip(toks.values, toks.indices)]
            extra = {'attended_tokens': top_tokens(attended)} if lab == 'semantic' else {}
            heads.append({
                'layer': layer, 'head': h, 'label': lab,
                'sink': round(float(s['sink'][h]), 3),
                'distance': round(float(s['distance'][h]), 3),
                'semantic': round(float(s['semantic'][h]), 3),
                'uniform_fit': round(float(s['uniform_fit'][h]), 3),
                'top_offsets': [[int(d), round(float(v), 3)] for v, d in zip(offs.values, offs.indices)],
                'top_tokens': top_tokens(3), **extra,
            })
    return heads


# ----------------------------------------------------------------------------- MLP neurons
@torch.no_grad()
def neuron_activations(model, seqs, layer_ids, batch=16):
    """Every MLP neuron's activation at every token of seqs (lists of ids): for each layer, a
    (total tokens, 4*n_embd) float16 array, rows in the order of the concatenated seqs."""
    acts = {l: [] for l in layer_ids}
    current = {}
    hooks = [model.h[l].mlp.act.register_forward_hook(
        lambda mod, inp, out, l=l: current.__setitem__(l, out)) for l in layer_ids]
    dev = model.wte.weight.device
    try:
        for b in range(0, len(seqs), batch):
            chunk = seqs[b:b + batch]
            T = max(len(s) for s in chunk)
            idx = torch.zeros(len(chunk), T, dtype=torch.long, device=dev)
            for i, s in enumerate(chunk):  # right padding: causal attention never looks ahead
                idx[i, :len(s)] = torch.tensor(s)
            model(idx)
            for l in layer_ids:
                out = current[l].float().cpu()
                acts[l].extend(out[i, :len(s)].half().numpy() for i, s in enumerate(chunk))
    finally:
        for h in hooks:
            h.remove()
    return {l: np.concatenate(a) for l, a in acts.items()}


def rank_neurons(acts, top=6, skip=None):
    """Neurons ordered by selectivity: the mean of each neuron's `top` highest activations, in
    standard deviations above its mean activation. Returns (order, selectivity, top positions
    (neurons, top) per neuron, highest first). Rows where skip is True (e.g. the EOT token every
    story starts with) are never counted as top activations."""
    a = acts.astype(np.float32)
    mean, std = a.mean(axis=0), a.std(axis=0) + 1e-6
    if skip is not None:
        a = a.copy()
        a[skip] = -np.inf
    top = min(top, len(a))
    part = np.argpartition(-a, top - 1, axis=0)[:top]            # (top, neurons), unordered
    vals = np.take_along_axis(a, part, axis=0)
    order_in = np.argsort(-vals, axis=0, kind='stable')
    positions = np.take_along_axis(part, order_in, axis=0).T      # (neurons, top)
    vals = np.take_along_axis(vals, order_in, axis=0).T
    selectivity = (vals.mean(axis=1) - mean) / std
    order = np.argsort(-selectivity, kind='stable')
    return order, selectivity, positions


# ----------------------------------------------------------------------------- the report
def png_of(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=90)
    return buf.getvalue()


def attention_figure(att, labels, token_strs, layer):
    """One layer's heads side by side as heatmaps (rows: queries, columns: keys)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm
    H, T, _ = att.shape
    cols = min(H, 4)
    rows = (H + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4.3 * rows), squeeze=False,
                             layout='constrained')
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        ax.axis('off')
        if h >= H:
            continue
        # a square-root colour scale: weak but real attention stays visible beside the peaks
        ax.imshow(att[h].numpy(), cmap='viridis', norm=PowerNorm(0.5, vmin=0, vmax=float(att[h].max()) or 1))
        ax.set_title(f'layer {layer} head {h}: {labels[h]}', fontsize=9)
        if T <= 48:  # the tokens fit as tick labels
            ax.axis('on')
            ax.set_xticks(range(T), token_strs, rotation=90, fontsize=5)
            ax.set_yticks(range(T), token_strs, fontsize=5)
    data = png_of(fig)
    plt.close(fig)
    return data


def token_span(text, act, peak):
    """A token as an escaped HTML span, shaded by the neuron's activation (peak = darkest)."""
    alpha = 0.0 if peak <= 0 else max(0.0, min(1.0, float(act) / peak))
    return (f'<span class="tok" style="background:rgba(255,80,0,{alpha:.2f})" '
            f'title="{float(act):.2f}">{html.escape(text.replace(chr(10), "↵"))}</span>')


STYLE = """body{font-family:sans-serif;max-width:1300px;margin:auto;padding:0 1em}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}
.distance{background:#dbe9ff}.semantic{background:#ffe3c4}.first-token{background:#eee}
.ctx{font-family:monospace;font-size:13px;margin:2px 0;white-space:pre-wrap}
.tok{border-radius:2px}.peak{outline:2px solid #c00}.story{white-space:pre-wrap;border:1px solid #ccc;padding:.6em}
img{max-width:100%}"""


def write_report(path, meta, story_text, heads, images, neuron_sections):
    counts = {lab: sum(h['label'] == lab for h in heads) for lab in ('distance', 'semantic', 'first-token', 'uniform', 'mixed')}
    p = [f"<!doctype html><html><head><meta charset='utf-8'><title>interpret: {html.escape(meta['out_dir'])}</title>"
         f"<style>{STYLE}</style></head><body>",
         f"<h1>Inside {html.escape(meta['out_dir'])}</h1>",
         f"<p>{meta['n_layer']} layers, {meta['n_head']} heads, hidden {meta['n_embd']}, "
         f"{meta['params']:,} parameters, iteration {meta['iter']}.</p>",
         "<h2>Attention heads</h2><p>Heads by label: " +
         ', '.join(f"{v} {k}" for k, v in counts.items()) + ". "
         "Distance (semantic) = the share of how the head departs from plain averaging that a "
         "fixed profile over distances (a fixed affinity per token) explains, 1 = all of it; "
         "sink = attention on the first token, which the other numbers leave out. Top offsets "
         "and tokens: their share of the head's attention (tokens: and under uniform attention).</p>",
         f"<p>The story ({meta['story_tokens']} tokens):</p><div class='story'>{html.escape(story_text)}</div>",
         "<table id='heads'><tr><th>layer</th><th>head</th><th>label</th><th>distance</th>"
         "<th>semantic</th><th>sink</th><th>top offsets (share)</th><th>top tokens (share / uniform)</th></tr>"]
    for h in heads:
        offs = ', '.join(f"{d}: {v:.2f}" for d, v in h['top_offsets'])
        toks = ', '.join(f"{html.escape(repr(t))}: {v:.2f} / {b:.2f}" for t, v, b in h['top_tokens'])
        p.append(f"<tr class='head {h['label']}'><td>{h['layer']}</td><td>{h['head']}</td>"
                 f"<td><b>{h['label']}</b></td><td>{h['distance']:.2f}</td><td>{h['semantic']:.2f}</td>"
                 f"<td>{h['sink']:.2f}</td><td>{offs}</td><td>{toks}</td></tr>")
    p.append("</table>")
    semantic = [h for h in heads if h['label'] == 'semantic']
    if semantic:
        p.append("<h3>What the semantic heads attend to</h3><p>Each semantic head's most attended "
                 "tokens in the story: their share of its attention (beside it, under plain "
                 "averaging). The paper's semantic heads attended to objects and characters; "
                 "punctuation and function words here mean the head is not semantic in its sense.</p>"
                 "<table id='attended'><tr><th>layer</th><th>head</th><th>semantic</th><th>tokens (share / uniform)</th></tr>")
        for h in semantic:
            toks = ', '.join(f"<code>{html.escape(repr(t))}</code> {v:.2f} / {b:.2f}" for t, v, b in h['attended_tokens'])
            p.append(f"<tr class='attended'><td>{h['layer']}</td><td>{h['head']}</td>"
                     f"<td>{h['semantic']:.2f}</td><td>{toks}</td></tr>")
        p.append("</table>")
    for layer, png in enumerate(images):
        p.append(f"<h3>Layer {layer}</h3><img alt='attention of layer {layer}' "
                 f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    p.append("<h2>MLP neurons</h2><p>The most selective neurons of each layer (selectivity = their "
             "top activations' mean, in standard deviations above their mean), each with the "
             "contexts where it fires most; the shade is that neuron's activation, the outlined "
             "token its peak.</p>")
    p.extend(neuron_sections)
    p.append("</body></html>")
    atomic_write(path, '\n'.join(p))


def neuron_section(layer, acts, order, selectivity, positions, seqs, starts, token_text, n_show, ctx):
    """HTML for one layer's most selective neurons and their top contexts; also their records."""
    owner = np.searchsorted(starts, np.arange(len(acts)), side='right') - 1  # row -> sequence
    parts, records = [f"<h3>Layer {layer}</h3>"], []
    for rank, n in enumerate(order[:n_show]):
        peak = float(acts[positions[n][0], n])
        rows, tops = [], []
        for pos in positions[n]:
            s = owner[pos]
            i = pos - starts[s]
            lo, hi = max(1, i - ctx), min(len(seqs[s]), i + 4)  # skip the EOT each story starts with
            spans = []
            for j in range(lo, hi):
                sp = token_span(token_text(seqs[s][j]), acts[starts[s] + j, n], peak)
                spans.append(sp.replace('class="tok"', 'class="tok peak"') if j == i else sp)
            rows.append(f"<div class='ctx'>{float(acts[pos, n]):6.2f}  {''.join(spans)}</div>")
            tops.append(token_text(seqs[s][i]))
        common = {}
        for t in tops:
            common[t] = common.get(t, 0) + 1
        common = sorted(common.items(), key=lambda kv: -kv[1])
        parts.append(f"<div class='neuron' id='n{layer}-{n}'><h4>#{rank + 1}: neuron {n} "
                     f"(selectivity {selectivity[n]:.1f}); top tokens: "
                     + html.escape(', '.join(f"{t!r}×{c}" for t, c in common)) + "</h4>" + ''.join(rows) + "</div>")
        records.append({'layer': layer, 'neuron': int(n), 'selectivity': round(float(selectivity[n]), 3),
                        'top_tokens': tops, 'top_activations': [round(float(acts[p_, n]), 3) for p_ in positions[n]]})
    return ''.join(parts), records


def load_story(spec):
    """The story text: --story itself, or FILE:x.txt (the whole file, one story)."""
    from tinystories.prompts import read_prompts
    if not spec:
        return DEFAULT_STORY
    stories = read_prompts(spec, 'story')
    if len(stories) != 1:
        raise SystemExit(f"error: --story={spec}: holds {len(stories)} prompts; give one story "
                         f"(a .txt file is read whole)")
    return stories[0]


def open_neuron_data(path):
    """(dataset, split) for the neuron study: path's val.bin, else its train.bin, both checked
    against its meta.json (dataset.py). A one-line error when it is not a usable dataset."""
    from tinystories.dataset import open_dataset
    if not os.path.isdir(path):
        raise SystemExit(f"error: --data_dir={path} is {'a file' if os.path.exists(path) else 'not found'}: "
                         f"give a prepared dataset folder, or leave it out (the checkpoint's own)")
    splits = [s for s in ('val', 'train') if os.path.isfile(os.path.join(path, f'{s}.bin'))]
    if not splits:
        raise SystemExit(f"error: --data_dir={path} has no val.bin or train.bin: give a prepared dataset folder")
    return open_dataset(path, splits=splits[:1]), splits[0]


def neuron_data(info):
    """The asked-for --data_dir (already checked by open_neuron_data before the model loaded), or
    by default the checkpoint's own: that one may be gone (another machine, a Hugging Face
    model), and then the neurons come from the story alone, said on stderr. None: no dataset."""
    if data_dir:
        return open_neuron_data(data_dir)
    src = (info.get('config') or {}).get('data_dir') or ''
    try:
        return open_neuron_data(src) if src else None
    except SystemExit as e:
        print(f"interpret: note: the checkpoint's dataset is not usable ({str(e).removeprefix('error: ')})",
              file=sys.stderr)
        return None


def sample_sequences(data, enc, info, block_size, n, rng):
    """n stories of (dataset, split) as token lists, each starting with EOT, in the model's
    tokenizer (a dataset of another one is re-encoded: dataset.for_model)."""
    dataset, split = data
    stories = dataset.for_model(enc, info['tokenizer']).stories(split)
    picks = sorted(rng.choice(len(stories), min(n, len(stories)), replace=False).tolist())
    return [[enc.start_token] + stories[i][:block_size - 1].tolist() for i in picks]


def write_calibration(report_dir, model, seqs, thresholds):
    """calibration(), printed as a table and written to report_dir/calibration.json."""
    c = calibration(model, seqs, thresholds, seed)
    atomic_write(os.path.join(report_dir, 'calibration.json'), json.dumps(c, indent=1) + '\n')
    print(f"calibration over {c['stories']} stories, labels by distance {thresholds[0]}, semantic "
          f"{thresholds[1]}, sink {thresholds[2]}, uniform {thresholds[3]}")
    print(f"{'planted head':22s} {'expected':11s} distance semantic uniform_fit sink")
    for name, p in c['planted'].items():
        print(f"{name:22s} {p['expected']:11s} {p['distance']:8.3f} {p['semantic']:8.3f} "
              f"{p['uniform_fit']:11.3f} {p['sink']:4.2f}")
    print(f"{'head':8s} {'label':11s} share distance semantic (ids shuffled) uniform_fit sink")
    for h in c['heads']:
        print(f"{h['layer']:2d} {h['head']:2d}    {h['label']:11s} {h['label_share']:5.2f} {h['distance']:8.3f} "
              f"{h['semantic']:8.3f} {h['semantic_shuffled']:14.3f} {h['uniform_fit']:11.3f} {h['sink']:4.2f}")
    print("labels: " + ', '.join(f"{v} {k}" for k, v in collections.Counter(h['label'] for h in c['heads']).items()))
    for score, sug in c['suggested'].items():
        print(f"suggested {score}_threshold: {sug['threshold']} (planted heads allow {sug['bracket'][0]} "
              f"to {sug['bracket'][1]})")
    print(f"wrote {report_dir}/calibration.json")


def main():
    from tinystories.dirlock import lock_dir
    from tinystories.checkpoint import load_run
    torch.manual_seed(seed)
    text = load_story(story)  # a bad --story is an error before the model loads
    if data_dir:
        open_neuron_data(data_dir)  # and so is an unusable --data_dir
    model, enc, ckpt = load_run(out_dir, device)
    data = neuron_data(ckpt)  # (before any file is written)
    cfg = model.config
    marks = {enc.start_token: '<START>', enc.stop_token: '<STOP>'} if enc.start_token != enc.stop_token else {enc.start_token: '<EOT>'}
    layer_ids = list(range(cfg.n_layer)) if -1 in layers else sorted(set(layers))
    if any(not 0 <= l < cfg.n_layer for l in layer_ids):
        raise SystemExit(f"error: --layers={','.join(map(str, layers))}: the model has layers 0..{cfg.n_layer - 1}")
    # our own report folder, locked (not the run: a run can be looked into while it trains)
    report_dir = os.path.join(ckpt.get('report_dir', out_dir), 'interpret')
    lock_dir(report_dir, 'interpret')

    def token_text(t):
        return marks.get(t) or enc.decode_bytes([t]).decode('utf-8', errors='replace')

    # 1. attention heads on the story
    ids = [enc.start_token] + enc.encode(text)
    if len(ids) > cfg.block_size:
        print(f"interpret: the story has {len(ids)} tokens; using the first {cfg.block_size} (the context)")
        ids = ids[:cfg.block_size]
    if len(ids) < 3:
        raise SystemExit("error: --story is too short (it needs at least 2 tokens)")
    idx = torch.tensor([ids], device=next(model.parameters()).device)
    maps = [m[0].float().cpu() for m in model.attention_maps(idx)]
    thresholds = (distance_threshold, semantic_threshold, sink_threshold, uniform_threshold)
    heads = describe_heads(maps, torch.tensor(ids), token_text, thresholds)
    token_strs = [token_text(t) for t in ids]
    images = []
    for layer, att in enumerate(maps):
        labels = [h['label'] for h in heads if h['layer'] == layer]
        png = attention_figure(att, labels, token_strs, layer)
        atomic_write(os.path.join(report_dir, f'attention_layer{layer}.png'), png)
        images.append(png)

    # 2. MLP neurons over a sample of stories (the story alone if there is no dataset)
    rng = np.random.default_rng(seed)
    if data is not None:
        seqs = sample_sequences(data, enc, ckpt, cfg.block_size, num_stories, rng)
    else:
        print("interpret: no dataset (--data_dir, or the checkpoint's): neurons from the story alone",
              file=sys.stderr)
        seqs = [ids]
    if calibrate:  # the same stories
        write_calibration(report_dir, model, seqs, thresholds)
    acts = neuron_activations(model, seqs, layer_ids, batch_size)
    starts = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    is_eot = np.concatenate([np.isin(s, list(marks)) for s in seqs])
    sections, neuron_records = [], []
    for l in layer_ids:
        order, sel, positions = rank_neurons(acts[l], top, skip=is_eot)
        html_part, recs = neuron_section(l, acts[l], order, sel, positions, seqs, starts, token_text,
                                         neurons, context)
        sections.append(html_part)
        neuron_records.extend(recs)

    # 3. the report
    meta = {'out_dir': out_dir, 'n_layer': cfg.n_layer, 'n_head': cfg.n_head, 'n_embd': cfg.n_embd,
            'params': model.num_params(), 'iter': ckpt.get('iter_num'), 'story_tokens': len(ids)}
    write_report(os.path.join(report_dir, 'report.html'), meta, text, heads, images, sections)
    summary = {'meta': meta, 'story': text, 'heads': heads, 'neurons': neuron_records,
               'neuron_stories': len(seqs), 'labels': {lab: sum(h['label'] == lab for h in heads)
                                                       for lab in ('distance', 'semantic', 'first-token', 'uniform', 'mixed')}}
    atomic_write(os.path.join(report_dir, 'summary.json'), json.dumps(summary, indent=1) + '\n')
    print(f"heads: " + ', '.join(f"{v} {k}" for k, v in summary['labels'].items()))
    for h in heads:
        print(f"  layer {h['layer']} head {h['head']}: {h['label']:11s} distance {h['distance']:.2f} "
              f"semantic {h['semantic']:.2f} sink {h['sink']:.2f}  offsets {h['top_offsets'][:2]} "
              f"tokens {[t for t, _, _ in h.get('attended_tokens', h['top_tokens'])]}")
    print(f"neurons: {len(neuron_records)} shown from layers {layer_ids} over {len(seqs)} stories")
    print(f"wrote {report_dir}/: report.html, summary.json, " +
          ', '.join(f'attention_layer{l}.png' for l in range(cfg.n_layer)))


if __name__ == '__main__':
    main()
