"""
sweep.py's report: sweep_dir/report.md and its PNG plots, from results.jsonl alone (so
`sweep.py --report_only` rebuilds it), each figure beside the paper finding it tests and a plain
statement of whether this sweep shows it (Eldan & Li 2023):

  (a) loss falls with width and with depth: the eval-loss grid as the paper's table, a heatmap;
  (b) knowledge leans on width, context tracking on depth (its Figures 9-11): probe accuracy
      per category against width and against depth, error bars one standard error;
  (c) the best model per training FLOPs follows a frontier: loss against FLOPs, frontier marked;
  (d) the number of heads matters little once past a few: loss against heads at one shape;
  (e) GPT-Eval's scores as the paper's table, when a grader was configured;
  (f) Instruct models follow an unseen combination of instructions (its Figure 13).

Every reading says "reproduced", "not reproduced" or "not tested at this scale", by rules fixed
before any result was looked at and checked on the paper's own loss table (tests/test_sweep.py):
  the grid: a neighbouring pair of cells (one step in width, or in depth) improves when its loss
    falls, by more than twice the standard error of the difference when repeats measured the
    run-to-run spread; the trend is reproduced when at least 75% of the pairs improve and, with
    no repeats, a one-sided sign test gives p <= 0.05 (so 5 pairs at least; fewer: not tested at
    this scale). The paper's table: 18 of 21 width pairs, 18 of 20 depth pairs.
  the heads: the loss at the most heads is below the loss at the fewest by more than twice the
    standard error of the difference, the spread measured by repeats (sweep.py --repeats); one
    run per shape: not tested at this scale.
"""
import math
import os

from tinystories.atomic_write import atomic_write

CATEGORIES = ('knowledge', 'reasoning', 'context')
SCORES = ('grammar', 'creativity', 'consistency', 'plot')


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _save(fig, sweep_dir, name):
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    _plt().close(fig)
    atomic_write(os.path.join(sweep_dir, name), buf.getvalue())
    return f"![{name}]({name})"


def _yes(flag):
    return 'yes' if flag else 'no'


def _num(x):
    return '-' if x is None else f"{x:.2f}"


def _values(results, key):
    return sorted({r[key] for r in results})


# ----------------------------------------------------------------------------- repeats and readings
REPRODUCED, NOT_REPRODUCED, NOT_TESTED = 'reproduced', 'not reproduced', 'not tested at this scale'
IMPROVING_SHARE = 0.75  # of neighbouring pairs; fixed before looking at results (paper: 0.86, 0.90)
SIGN_TEST_P = 0.05


def shape_cells(results):
    """The runs of each shape (its repeats) pooled: {(n_embd, n_layer, n_head): {val_loss,
    val_bpb (means), sd (the sample standard deviation of val_loss, None for one run), n, runs}}."""
    groups = {}
    for r in results:
        groups.setdefault((r['n_embd'], r['n_layer'], r['n_head']), []).append(r)
    cells = {}
    for shape, rs in groups.items():
        losses = [r['val_loss'] for r in rs]
        mean = sum(losses) / len(losses)
        sd = math.sqrt(sum((x - mean) ** 2 for x in losses) / (len(losses) - 1)) if len(losses) > 1 else None
        cells[shape] = {'val_loss': mean, 'val_bpb': sum(r['val_bpb'] for r in rs) / len(rs), 'sd': sd,
                        'n': len(rs), 'runs': [r['run'] for r in rs]}
    return cells


def pooled_sd(cells):
    """The run-to-run spread of the loss, pooled over every shape trained more than once (None
    when none was)."""
    parts = [(c['n'] - 1, c['sd'] ** 2) for c in cells if c['n'] > 1]
    dof = sum(k for k, _ in parts)
    return math.sqrt(sum(k * v for k, v in parts) / dof) if dof else None


def diff_se(sd, a, b):
    """The standard error of the difference of two cells' mean losses."""
    return sd * math.sqrt(1 / a['n'] + 1 / b['n'])


def sign_test_p(k, n):
    """One-sided: the chance of k or more of n pairs improving if each were a coin flip."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


def trend_reading(pairs, sd=None):
    """Whether the loss falls along an axis. pairs: [(cell before, cell after)], each step one
    notch larger; sd: the run-to-run spread (None: not measured). -> (verdict, why)."""
    n = len(pairs)
    if not n:
        return NOT_TESTED, 'one value on this axis'
    if sd is None:
        improved = sum(b['val_loss'] < a['val_loss'] for a, b in pairs)
    else:
        improved = sum(a['val_loss'] - b['val_loss'] > 2 * diff_se(sd, a, b) for a, b in pairs)
    share, p = improved / n, sign_test_p(improved, n)
    how = (f"{improved} of {n} neighbouring pairs improve" +
           (f" by more than two standard errors (run-to-run spread {sd:.4f})" if sd is not None else
            f", sign test p = {p:.3g}"))
    if share >= IMPROVING_SHARE and (sd is not None or p <= SIGN_TEST_P):
        return REPRODUCED, how
    if sd is None and share >= IMPROVING_SHARE and sign_test_p(n, n) > SIGN_TEST_P:
        return NOT_TESTED, how + ": too few pairs to tell a trend from noise without repeats"
    return NOT_REPRODUCED, 'not shown: ' + how


def verdict(v, why):
    return f"**{v}** ({why})"


# ----------------------------------------------------------------------------- (a) the loss grid
def grid_section(results, sweep_dir):
    widths, depths = _values(results, 'n_embd'), _values(results, 'n_layer')
    out = ["## (a) Eval loss by width and depth",
           "Paper: loss falls with width (hidden size) and with depth (layers) across its grid. "
           "Cells: whole-val-split loss in nats/token (bits/byte in brackets), from each run's own "
           "final log record."]
    cells = shape_cells(results)
    sd = pooled_sd(cells.values())
    for h in _values(results, 'n_head'):
        cell = {(w, d): c for (w, d, hh), c in cells.items() if hh == h}
        out += ['', f"{h} heads:", '', '| layers \\ hidden | ' + ' | '.join(map(str, widths)) + ' |',
                '|---|' + '---|' * len(widths)]
        for d in depths:
            out.append(f"| {d} | " + ' | '.join(
                f"{cell[w, d]['val_loss']:.3f} ({cell[w, d]['val_bpb']:.3f})" +
                (f" +- {cell[w, d]['sd']:.3f} (n={cell[w, d]['n']})" if cell[w, d]['n'] > 1 else '')
                if (w, d) in cell else '-' for w in widths) + ' |')
        out += [''] + grid_findings(cell, widths, depths, sd)
        out.append(_save(heatmap(cell, widths, depths, h), sweep_dir, f"loss_grid_h{h}.png"))
    return out


def neighbour_pairs(cell, outer, inner, key):
    """Along `inner` at each `outer` value: [(cell, the next larger cell)] where both exist."""
    pairs = []
    for o in outer:
        row = [cell[key(o, i)] for i in inner if key(o, i) in cell]
        pairs += list(zip(row, row[1:]))
    return pairs


def grid_findings(cell, widths, depths, sd=None):
    """The width and depth readings of one grid {(n_embd, n_layer): cell}."""
    lines = []
    for axis, outer, inner, key in (('width', depths, widths, lambda d, w: (w, d)),
                                    ('depth', widths, depths, lambda w, d: (w, d))):
        pairs = neighbour_pairs(cell, outer, inner, key)
        lines.append(f"- Loss falls with {axis}: " + verdict(*trend_reading(pairs, sd)) + '.')
    return lines + ['']


def heatmap(cell, widths, depths, h):
    import numpy as np
    plt = _plt()
    grid = np.array([[cell[w, d]['val_loss'] if (w, d) in cell else np.nan for w in widths] for d in depths])
    fig, ax = plt.subplots(figsize=(1.2 * len(widths) + 2.5, 0.8 * len(depths) + 2), layout='constrained')
    im = ax.imshow(grid, cmap='viridis_r', aspect='auto')
    for i in range(len(depths)):
        for j in range(len(widths)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha='center', va='center', color='w', fontsize=9)
    ax.set_xticks(range(len(widths)), widths)
    ax.set_yticks(range(len(depths)), depths)
    ax.set(xlabel='hidden size', ylabel='layers',
           title=f"eval loss (nats/token), {h} heads\ntests: loss falls with width and depth")
    fig.colorbar(im, ax=ax)
    return fig


# ----------------------------------------------------------------------------- (b) the probes
def probes_section(results, sweep_dir):
    cats = [c for c in CATEGORIES if any(c in r for r in results)]
    if not cats:
        return []
    widths, depths = _values(results, 'n_embd'), _values(results, 'n_layer')
    out = ["## (b) Probe accuracy by width and by depth",
           "Paper (Figures 9-11): knowledge leans on width, context tracking on depth. Accuracy of "
           "the offline probes (grade.py --probes) per category; error bars and +- are one "
           "standard error; chance is the share a random pick gets.", '',
           '| run | ' + ' | '.join(cats) + ' |', '|---|' + '---|' * len(cats)]
    for r in results:
        out.append(f"| {r['run']} | " + ' | '.join(
            f"{r[c]:.1%} +- {r[c + '_stderr']:.1%}" for c in cats) + ' |')
    out.append(f"| chance | " + ' | '.join(f"{results[0][c + '_chance']:.1%}" for c in cats) + ' |')
    for b, name in (('copy_most', 'copy: most mentioned'), ('copy_last', 'copy: last mentioned'),
                    ('unigram', 'most frequent word')):  # what passes a category without its ability
        if all(f"{c}_{b}" in results[0] for c in cats):
            out.append(f"| {name} | " + ' | '.join(f"{results[0][f'{c}_{b}']:.1%}" for c in cats) + ' |')
    out.append('')
    if len(widths) > 1 and len(depths) > 1:
        for c in cats:
            gw, sw = gain(results, c, 'n_embd', 'n_layer')
            gd, sd = gain(results, c, 'n_layer', 'n_embd')
            out.append(f"- {c}: from the smallest to the largest width {gw:+.1%} (+- {sw:.1%}), from the "
                       f"fewest to the most layers {gd:+.1%} (+- {sd:.1%}), averaged over the other axis.")
        for c, axis, other in (('knowledge', 'width', 'depth'), ('context', 'depth', 'width')):
            if c in cats:
                g = {a: gain(results, c, k, o) for a, k, o in (('width', 'n_embd', 'n_layer'),
                                                              ('depth', 'n_layer', 'n_embd'))}
                diff = g[axis][0] - g[other][0]
                se = math.hypot(g[axis][1], g[other][1])
                how = f"{diff:+.1%}, standard error {se:.1%}"
                out.append(f"- {c} gains more from {axis} than from {other}: " + verdict(
                    *((REPRODUCED, how) if diff > 2 * se else (NOT_REPRODUCED, 'not shown: ' + how))) + '.')
        out.append('')
    for axis, key, other in (('width', 'n_embd', 'n_layer'), ('depth', 'n_layer', 'n_embd')):
        if len(_values(results, key)) > 1:
            out.append(_save(probe_figure(results, cats, key, other, axis), sweep_dir, f"probes_vs_{axis}.png"))
    return out + ['']


def gain(results, cat, key, other):
    """Accuracy at the largest minus the smallest `key`, averaged over `other`, and its stderr."""
    lo, hi = _values(results, key)[0], _values(results, key)[-1]
    diffs, var = [], 0.0
    for o in _values(results, other):
        a = [r for r in results if r[key] == lo and r[other] == o]
        b = [r for r in results if r[key] == hi and r[other] == o]
        if a and b:
            diffs.append(b[0][cat] - a[0][cat])
            var += b[0][cat + '_stderr'] ** 2 + a[0][cat + '_stderr'] ** 2
    if not diffs:
        return 0.0, 0.0
    return sum(diffs) / len(diffs), math.sqrt(var) / len(diffs)


def probe_figure(results, cats, key, other, axis):
    plt = _plt()
    fig, axes = plt.subplots(1, len(cats), figsize=(4.2 * len(cats), 3.6), layout='constrained', squeeze=False)
    for ax, c in zip(axes[0], cats):
        for o in _values(results, other):
            rs = sorted((r for r in results if r[other] == o), key=lambda r: r[key])
            ax.errorbar([r[key] for r in rs], [r[c] for r in rs], yerr=[r[c + '_stderr'] for r in rs],
                        marker='o', capsize=3, label=f"{'layers' if other == 'n_layer' else 'hidden'} {o}")
        ax.axhline(results[0][c + '_chance'], color='grey', ls=':', label='chance')
        if key == 'n_embd':
            ax.set_xscale('log', base=2)
        ax.set_xticks(_values(results, key), [str(v) for v in _values(results, key)])
        ax.set(title=c, xlabel='hidden size' if key == 'n_embd' else 'layers', ylabel='accuracy')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"probe accuracy vs {axis}; tests: knowledge leans on width, context on depth", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- (c) FLOPs
def curve(r):
    """A run's [(training FLOPs, eval loss)] along its training (its final point if no curve)."""
    points = r.get('val_curve') or [[r['tokens'], r['val_loss']]]
    return [(tokens * r['flops_per_token'], loss) for tokens, loss in points if tokens > 0]


def frontier(results):
    """The best run at each FLOPs budget: over every point of every run's curve, the lowest
    loss reached within that budget. Returns [(flops, loss, run)] where the best run changes or
    improves (the lower envelope)."""
    points = sorted((f, l, r['run']) for r in results for f, l in curve(r))
    best, out = math.inf, []
    for f, l, name in points:
        if l < best:
            best = l
            out.append((f, l, name))
    return out


def flops_section(results, sweep_dir):
    if len(results) < 3:
        return []
    front = frontier(results)
    by_name = {r['run']: r for r in results}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout='constrained')
    for r in results:
        c = curve(r)
        ax.plot([f for f, _ in c], [l for _, l in c], '-', lw=1, alpha=0.8,
                label=f"{r['run']} ({r['params_no_emb'] / 1e3:.0f}K)")
    ax.step([f for f, _, _ in front], [l for _, l, _ in front], 'k--', where='post', lw=1.5, label='frontier')
    ax.set_xscale('log')
    ax.set(xlabel='training FLOPs', ylabel='eval loss (nats/token)',
           title='loss vs training compute; tests: the best model per FLOPs follows a frontier')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    # the budgets: what each run spent in all (repeats of a shape spend the same: one row); at
    # each, the run with the lowest loss within it
    budgets = sorted({f for r in results for f, _ in curve(r)[-1:]})
    points = [(f, l, r['run']) for r in results for f, l in curve(r)]
    best = [min((p for p in points if p[0] <= b), key=lambda p: p[1]) for b in budgets]
    order = []
    for _, _, name in best:
        if not order or order[-1] != name:
            order.append(name)
    grows = all(by_name[b]['params_no_emb'] >= by_name[a]['params_no_emb'] for a, b in zip(order, order[1:]))
    out = ["## (c) Loss against training FLOPs",
           "Paper: the best model per training-FLOPs budget lies on a frontier, bigger models "
           "becoming the best choice as compute grows. Each run's learning curve against training "
           "FLOPs (model.flops_per_token x tokens so far; points: the val estimates every "
           "eval_interval, then the whole-val final loss); the dashed line is the lowest loss any "
           "run reached within each budget.", '',
           '| budget (FLOPs) | best run within it | params (no emb.) | its loss |', '|---|---|---|---|']
    out += [f"| {b:.2e} | {name} | {by_name[name]['params_no_emb']:,} | {l:.3f} |"
            for b, (_, l, name) in zip(budgets, best)]
    out += ['', f"- The best model grows with the budget (never a smaller one after a larger): "
                f"**{REPRODUCED if grows else NOT_REPRODUCED}** ({' -> '.join(order)}). The budgets are the runs' own totals; a "
                f"smaller model can be best at a budget where it trained longer than a larger one.", '',
            _save(fig, sweep_dir, 'loss_vs_flops.png'), '']
    return out


# ----------------------------------------------------------------------------- (d) heads
def heads_reading(rows, sd):
    """More heads help (the paper: hidden 768, 2 -> 8 heads, 0.04-0.05 nats lower): the cell with
    the most heads against the one with the fewest, beyond twice the standard error of the
    difference. rows: the shape's cells by heads; sd: the run-to-run spread (None: unmeasured)."""
    few, many = rows[0], rows[-1]
    gain = few['val_loss'] - many['val_loss']
    if sd is None:
        return NOT_TESTED, (f"{few['n_head']} -> {many['n_head']} heads changes the loss by {-gain:+.4f}, "
                            f"but one run per shape measures no run-to-run spread: set repeats >= 2")
    se = diff_se(sd, few, many)
    how = f"{few['n_head']} -> {many['n_head']} heads: {-gain:+.4f} nats, standard error {se:.4f}"
    return (REPRODUCED, how) if gain > 2 * se else (NOT_REPRODUCED, 'not shown: ' + how)


def heads_section(results, sweep_dir):
    cells = shape_cells(results)
    by_shape = {}
    for (w, d, h), c in cells.items():
        by_shape.setdefault((w, d), []).append(dict(c, n_head=h))
    shapes = sorted(s for s, rows in by_shape.items() if len(rows) > 1)
    if not shapes:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), layout='constrained')
    out = ["## (d) The number of heads",
           "Paper: more heads help a little (hidden 768: 0.04-0.05 nats lower from 2 to 8 heads), so "
           "the effect is only seen against the run-to-run spread (sweep.py --repeats). Loss: the "
           "mean over repeats +- their standard deviation.", '',
           '| hidden | layers | heads | eval loss | +- | repeats | bits/byte |', '|---|---|---|---|---|---|---|']
    for w, d in shapes:
        rows = sorted(by_shape[w, d], key=lambda c: c['n_head'])
        sd = pooled_sd(rows)
        out += [f"| {w} | {d} | {c['n_head']} | {c['val_loss']:.4f} | "
                f"{'-' if c['sd'] is None else format(c['sd'], '.4f')} | {c['n']} | {c['val_bpb']:.4f} |" for c in rows]
        out.append('')
        ax.errorbar([c['n_head'] for c in rows], [c['val_loss'] for c in rows],
                    yerr=[c['sd'] or 0 for c in rows], marker='o', capsize=3, label=f"hidden {w}, {d} layers")
        out.append(f"- hidden {w}, {d} layers, more heads lower the loss: " + verdict(*heads_reading(rows, sd)) + '.')
    ax.set_xscale('log', base=2)
    ax.set_xticks(_values(results, 'n_head'), [str(v) for v in _values(results, 'n_head')])
    ax.set(xlabel='heads', ylabel='eval loss (nats/token)', title='tests: more heads help, beyond the spread')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return out + ['', _save(fig, sweep_dir, 'loss_vs_heads.png'), '']


# ----------------------------------------------------------------------------- (e, f) grades
def gpt_eval_section(results):
    graded = [r for r in results if all(k in r for k in SCORES)]
    if not graded:
        return ["## (e) GPT-Eval", "Not graded in this sweep (no grader configured: set gpt_eval "
                "and a grader). The paper's findings that depend on it (grammar emerges first, "
                "consistency needs width past 64, instruction following needs 2+ layers) are not "
                "tested here.", '']
    out = ["## (e) GPT-Eval", "Paper: grammar emerges first, consistency needs width past 64.", '',
           '| run | ' + ' | '.join(SCORES) + ' | graded |', '|---|' + '---|' * (len(SCORES) + 1)]
    out += [f"| {r['run']} | " + ' | '.join(f"{r[k]:.2f}" if r[k] is not None else '-' for k in SCORES)
            + f" | {r.get('graded', '-')} |" for r in graded]
    return out + ['']


def instruct_section(results):
    rows = [r for r in results if r.get('instruct_holdout')]
    if not rows:
        return []
    conds = sorted({k[len('instruct_'):-len('_words')] for r in rows for k in r
                    if k.startswith('instruct_') and k.endswith('_words')}, key=lambda c: (c.count('+'), c != 'none', c))
    out = ["## (f) Instruct generalisation",
           "Paper (Figure 13): an Instruct model follows a combination of instructions it never saw "
           f"together in training (here: {rows[0]['instruct_holdout']}). **Records from the offline "
           "generator** (template stories, not TinyStories-Instruct); the prompts come from fresh "
           "records (another seed). Words: share of the required words used (words.word_used); "
           "summary nouns: share of the summary's nouns in the project's vocabulary that appear in "
           "the story. 'none' is the baseline: the story the model writes with no instruction.", '',
           '| run | prompt lines | held out of training | prompts | words used | summary nouns used |',
           '|---|---|---|---|---|---|']
    pct = lambda v: '-' if v is None else f"{v:.1%}"
    for r in rows:
        for c in conds:
            out.append(f"| {r['run']} | {c} | {_yes('+' in c)} | {r['instruct_prompts']} | "
                       f"{pct(r.get(f'instruct_{c}_words'))} | {pct(r.get(f'instruct_{c}_summary_nouns'))} |")
    out.append('')
    graded = [r for r in rows if r.get('instruct_following') is not None]
    if graded:  # the paper's measure: a grader's 1-10 score of each instruction line
        out += ["Graded instruction following (grade.py --instruct: the grader scores each instruction "
                "line 1-10 on eval/instruct.jsonl's prompts; the paper, GPT-4: hidden 768 / 1 layer 5.81, "
                "2 layers 7.97; 1024: 6.09, 8.04).", '',
                '| run | following (1-10) | held-out combination | seen combinations | graded |', '|---|---|---|---|---|']
        out += [f"| {r['run']} | {_num(r['instruct_following'])} | {_num(r.get('instruct_following_held_out'))} | "
                f"{_num(r.get('instruct_following_seen'))} | {r.get('graded', '-')} |" for r in graded]
        out.append('')
    else:
        out += ["Graded instruction following (the paper's GPT-4 score): **not tested at this scale** "
                "(no grader configured: set gpt_eval and a grader).", '']
    for r in rows:
        for c in [c for c in conds if '+' in c and 'none' in conds]:
            w, n = r.get(f'instruct_{c}_words'), r.get(f'instruct_{c}_summary_nouns')
            w0, n0 = r.get('instruct_none_words'), r.get('instruct_none_summary_nouns')
            follows = None not in (w, n, w0, n0) and w > w0 and n > n0
            out.append(f"- {r['run']} follows the unseen combination {c} above the no-instruction "
                       f"baseline on both scores: **{REPRODUCED if follows else NOT_REPRODUCED}** (words {pct(w)} vs {pct(w0)}, "
                       f"summary nouns {pct(n)} vs {pct(n0)}).")
    return out + ['']


def spread_section(results):
    """The shapes trained more than once (sweep.py --repeats): their mean loss +- spread."""
    cells = shape_cells(results)
    repeated = {s: c for s, c in sorted(cells.items()) if c['n'] > 1}
    if not repeated:
        return []
    out = ["## Run-to-run spread",
           "Shapes trained more than once, each repeat with the next seed: the spread every "
           f"reading above weighs its effects against (pooled: {pooled_sd(cells.values()):.4f} nats).", '',
           '| hidden | layers | heads | eval loss | +- | runs |', '|---|---|---|---|---|---|']
    out += [f"| {w} | {d} | {h} | {c['val_loss']:.4f} | {c['sd']:.4f} (n={c['n']}) | {', '.join(c['runs'])} |"
            for (w, d, h), c in repeated.items()]
    return out + ['']


def results_table(results):
    out = ["## Every run", '', '| run | params | no emb. | tokens | FLOPs | wall s | val loss | bits/byte | '
           'train loss (last 10 logs) |', '|---|---|---|---|---|---|---|---|---|']
    out += [f"| {r['run']} | {r['params']:,} | {r['params_no_emb']:,} | {r['tokens']:,} | {r['flops']:.2e} | "
            f"{r['wall_s']:.0f} | {r['val_loss']:.4f} | {r['val_bpb']:.4f} | "
            f"{'-' if r.get('train_loss') is None else format(r['train_loss'], '.4f')} |" for r in results]
    return out + ['']


def write_report(sweep_dir, results, config):
    """report.md (and its PNGs) in sweep_dir from the results.jsonl records."""
    if not results:
        raise SystemExit(f"error: {sweep_dir}/results.jsonl holds no finished runs yet: run the sweep")
    results = sorted(results, key=lambda r: (r['n_head'], r['n_layer'], r['n_embd']))
    several = len(_values(results, 'n_embd')) > 1 or len(_values(results, 'n_layer')) > 1
    keys = ', '.join(f"{k}={config[k]!r}" for k in ('batch_size', 'block_size', 'grad_accum', 'learning_rate',
                                                   'max_iters', 'max_minutes', 'max_tokens') if k in config)
    lines = [f"# {config.get('title') or 'Sweep ' + sweep_dir}", '',
             f"{len(results)} runs ({keys}). Numbers from each run's own log and grade reports; "
             f"rebuild with `python sweep.py <config> --report_only`.", '']
    lines += grid_section(results, sweep_dir) if several else []
    lines += probes_section(results, sweep_dir)
    lines += flops_section(results, sweep_dir) if several else []
    lines += heads_section(results, sweep_dir)
    lines += gpt_eval_section(results) + instruct_section(results) + spread_section(results)
    lines += results_table(results)
    atomic_write(os.path.join(sweep_dir, 'report.md'), '\n'.join(lines) + '\n')
