"""
The paper's experiments as one command: train a grid of model shapes, evaluate each, and write
a report that stands beside the paper's tables and figures (Eldan & Li 2023).

    python sweep.py config/sweep_grid.py --data_dir=data/ts --sweep_dir=out/sweep_grid
    python sweep.py config/sweep_heads.py --data_dir=data/ts        # heads 2/4/8/16, one shape
    python sweep.py config/sweep_instruct.py                        # Instruct generalisation
    python sweep.py config/sweep_grid.py --report_only              # rebuild report.md only

Trains exactly widths x depths x heads x repeats runs through train.py, one at a time, each in
its own normal out_dir under sweep_dir (w128_d4_h8, its repeats w128_d4_h8_r2, ... with the next
seeds), with a per-run budget in train.py's own keys
(max_iters or max_minutes) or in tokens (max_tokens, turned into max_iters). Any train.py key
(batch_size, learning_rate, block_size, ...) applies to every run. Then evaluates each run:
whole-val bits/byte and nats/token (the run's own final log record), the probes (grade.py
--probes; rescored when the probe file's sha256 changes), GPT-Eval when gpt_eval is set (grade.py with the grader keys) and, for the Instruct
study, instruction following on held-out combinations (instruct_eval.py).

Writes sweep_dir/results.jsonl (one flat record per run) and sweep_dir/report.md with its plots.
Every stage runs as a subprocess; the sweep only reads what they write. Kill it at any moment
and run the same command again: finished runs are neither trained nor evaluated again, and a
half-trained run resumes exactly (train.py --init_from=resume). A run folder that was trained
with other settings than the sweep's is an error, never silently reused.
"""
import math
import os
import signal
import subprocess
import sys
import time

from tinystories.configurator import Key, configure, declared_keys

HERE = os.path.dirname(os.path.abspath(__file__))

# -----------------------------------------------------------------------------
sweep_dir = Key('out/sweep', "the sweep's folder: one run folder per shape, results.jsonl, report.md")
data_dir = Key('data/ts', "the prepared dataset every run trains on")
widths = Key([64, 128], "n_embd of each run")
depths = Key([1, 2], "n_layer of each run")
heads = Key([4], "n_head of each run (every width must be divisible by every head count)")
repeats = Key(1, "runs of each shape, with seeds seed, seed+1, ...: the run-to-run spread the readings "
                 "weigh effects against (w64_d2_h4, w64_d2_h4_r2, ...)", min=1)
# the per-run budget: one of these (max_minutes may also cap max_iters)
max_iters = Key(0, "optimizer steps per run")
max_minutes = Key(0.0, "wall-clock minutes per run")
max_tokens = Key(0, "training tokens per run: max_iters = tokens / (batch x block x accum)")
# evaluation
probes = Key(True, "grade.py --probes on each run")
probes_file = Key('', "the probe items ('': grade.py's eval/probes.jsonl)")
gpt_eval = Key(False, "GPT-Eval on each run (needs a grader: a key, or base_url)")
grader_model = Key('gpt-4.1', "GPT-Eval's grading model")
base_url = Key('', "the grader's server ('': api.openai.com; else any OpenAI-compatible server)")
api_key_env = Key('OPENAI_API_KEY', "the environment variable that holds the API key (never the key itself)")
max_cost_usd = Key(0.0, "GPT-Eval's spending limit per run (0: no limit)", min=0)
yes = Key(False, "skip grade.py's confirmation before paying")
grader_prompts = Key('', "GPT-Eval's story beginnings ('': grade.py's eval/prompts.jsonl)")
grader_max_new_tokens = Key(300, "tokens per GPT-Eval completion at most", min=1)
# Instruct generalisation (the paper's Figure 13): set instruct_holdout to run it
instruct_holdout = Key('', "e.g. 'Summary,Words': no training prompt holds that combination ('': no Instruct study)")
instruct_stories = Key(20000, "offline generator records to train on (made in sweep_dir/records)", min=1)
instruct_eval_items = Key(100, "fresh records (another seed) whose prompts test each run", min=1)
instruct_vocab_size = Key(2048, "the Instruct study's own BPE vocabulary, trained on its records", min=257)
instruct_max_new_tokens = Key(200, "tokens per Instruct completion at most", min=1)
# the report
report_only = Key(False, "rebuild report.md from results.jsonl, train nothing")
title = Key('', "the report's heading ('': the sweep_dir)")
# -----------------------------------------------------------------------------
# train.py's keys, read from its declarations (a stage never imports another): each can be set
# here for every run. The sweep sets these per run itself:
PER_RUN_KEYS = ('out_dir', 'init_from', 'eval_only', 'overwrite', 'n_layer', 'n_head', 'n_embd')
# ... and these say how a run goes, not what it learns: a re-run may change them
HOW_KEYS = ('device', 'threads', 'progress', 'compile', 'log_interval', 'eval_interval',
            'eval_iters')
TRAIN_KEYS = {k: key for k, key in declared_keys(os.path.join(HERE, 'train.py')).items() if k not in PER_RUN_KEYS}
for _k, _key in TRAIN_KEYS.items():
    globals().setdefault(_k, _key)  # the sweep's own data_dir and budget keys come first
config = configure(globals())


def fail(msg):
    raise SystemExit(f"error: {msg}")


def run_name(w, d, h, repeat=0):
    """The first repeat keeps the name sweeps had before repeats, so finished sweeps resume."""
    return f"w{w}_d{d}_h{h}" + (f"_r{repeat + 1}" if repeat else '')


def plan_runs():
    """The grid, checked before anything trains: [(name, n_embd, n_layer, n_head, repeat)]."""
    for key, values in (('widths', widths), ('depths', depths), ('heads', heads)):
        if not values:
            fail(f"--{key} is empty: list at least one value (--{key}=64,128)")
        bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v < 1]
        if bad:
            fail(f"--{key}={','.join(map(str, values))}: {bad[0]!r} is not a positive integer")
        if len(set(values)) != len(values):
            fail(f"--{key}={','.join(map(str, values))} lists a value twice")
    bad = [(w, h) for w in widths for h in heads if w % h]
    if bad:
        fail(f"width {bad[0][0]} is not divisible by {bad[0][1]} heads (each width must divide "
             f"by every head count): change --widths or --heads")
    return [(run_name(w, d, h, k), w, d, h, k) for w in widths for d in depths for h in heads
            for k in range(repeats)]


def run_budget():
    """train.py's max_iters and max_minutes for each run, from the sweep's budget keys."""
    for key in ('max_iters', 'max_minutes', 'max_tokens'):
        if not globals()[key] >= 0:  # also catches nan
            fail(f"--{key}={globals()[key]} must be positive")
    if max_tokens and max_iters:
        fail("set max_tokens or max_iters, not both")
    iters = max_iters
    if max_tokens:
        iters = math.ceil(max_tokens / (batch_size * block_size * grad_accum))
    if not iters and not max_minutes:
        fail("no per-run budget: set max_iters, max_minutes or max_tokens (all are 0)")
    # minutes alone: no step limit (train.py stops at whichever limit comes first)
    return {'max_iters': iters or 10 ** 9, 'max_minutes': max_minutes}


def train_settings(w, d, h, repeat, budget, data):
    """The train.py config a run must have: train.py's defaults, the sweep's keys, the shape,
    and the seed (each repeat the next one)."""
    s = {k: globals()[k] for k in TRAIN_KEYS}
    s.update(budget, data_dir=data, n_embd=w, n_layer=d, n_head=h, seed=seed + repeat)
    return s


def read_ckpt_config(run_dir):
    import torch
    path = os.path.join(run_dir, 'ckpt.pt')
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as e:
        fail(f"{path} is not a readable checkpoint ({type(e).__name__}); delete {run_dir} to "
             f"train that run again")


def check_run_settings(run_dir, want):
    """A run folder trained with other settings is an error (its results are not this sweep's)."""
    ckpt = read_ckpt_config(run_dir)
    have = dict(ckpt.get('config') or {})
    have.update({k: ckpt['model_args'][k] for k in ('n_embd', 'n_layer', 'n_head')})
    for k, v in want.items():
        if k in HOW_KEYS or k not in have or have[k] == v:
            continue
        if k == 'data_dir' and os.path.abspath(have[k]) == os.path.abspath(v):
            continue
        if isinstance(v, float) and isinstance(have[k], (int, float)) and math.isclose(v, have[k]):
            continue
        fail(f"{run_dir} was trained with {k}={have[k]!r}, this sweep says {k}={v!r}: use another "
             f"--sweep_dir, or delete {run_dir} to train it again")
    return ckpt


def die_with_parent():
    """In each child (Linux): be killed when the sweep dies, so that a kill -9 of the sweep
    also stops its training and an immediate re-run finds the run's folder free."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_stage(script, args, log_path, what):
    """Run a stage as a subprocess, its output appended to log_path; a failure stops the sweep
    with the stage's own last lines."""
    cmd = [sys.executable, os.path.join(HERE, script)] + args
    with open(log_path, 'a', encoding='utf-8') as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                           if not sys.stdin.isatty() else None, preexec_fn=die_with_parent)
    if r.returncode:
        with open(log_path, encoding='utf-8', errors='replace') as f:
            tail = [l.rstrip() for l in f.read().splitlines() if l.strip()][-3:]
        fail(f"{what} failed (exit {r.returncode}); its last lines, from {log_path}:\n  "
             + '\n  '.join(tail))


def as_args(settings):
    """--key=value for each setting that differs from train.py's default (short commands)."""
    out = []
    for k, v in settings.items():
        if k in TRAIN_KEYS and v == TRAIN_KEYS[k].default:
            continue
        out.append(f"--{k}={repr(v) if isinstance(v, float) else v}")
    return out


def final_record(run_dir):
    """The run's final log record (whole-val loss and bits/byte), or None if it has none yet."""
    from tinystories.records import read_log
    records = read_log(run_dir)
    return records[-1] if records and records[-1].get('final') else None


def probe_scores(run_dir):
    """Each probe category's accuracy and standard error, flat, from grade.py's probes.json."""
    from tinystories.records import PROBES, read_report
    report = read_report(os.path.join(run_dir, 'grade', 'probes.json'), PROBES)
    out = {}
    for cat, s in list(report['by_category'].items()) + [('probes', report['overall'])]:
        acc, n = s['accuracy'], s['items']
        out[cat] = acc
        out[f"{cat}_stderr"] = s.get('stderr', math.sqrt(acc * (1 - acc) / n) if n else None)
        out[f"{cat}_chance"] = s['chance']
        out[f"{cat}_items"] = n
    for cat, b in report.get('baselines', {}).items():  # what copying or word frequency would score
        out.update({f"{cat}_{k}": b[k] for k in ('copy_most', 'copy_last', 'unigram')})
    out['probes_sha256'] = report.get('probes_sha256')
    if 'instruct' in report:
        out['instruct_words'] = report['instruct']['fraction']
    return out


def probes_path():
    return probes_file or os.path.join(HERE, 'eval', 'probes.jsonl')


def probes_current(run_dir):
    """Whether the run's probe scores were made on the probe file as it is now (its sha256)."""
    import json
    from tinystories.probes import file_sha256
    try:
        with open(os.path.join(run_dir, 'grade', 'probes.json'), encoding='utf-8') as f:
            return json.load(f).get('probes_sha256') == file_sha256(probes_path())
    except (OSError, ValueError):
        return False


def latest_results(sweep_dir):
    """results.jsonl, each record checked, the last one of each run (a rescored run appends a newer one)."""
    from tinystories.records import read_results
    return list({r['run']: r for r in read_results(sweep_dir)}.values())


def gpt_eval_scores(run_dir):
    from tinystories.records import SUMMARY, read_report
    summary = read_report(os.path.join(run_dir, 'grade', 'summary.json'), SUMMARY)
    out = {k: s['mean'] for k, s in summary['scores'].items()}
    out['graded'] = summary['counts']['graded']
    return out


def instruct_following_scores(run_dir):
    """The grader's instruction-following means (1-10), flat: overall, held out, seen."""
    import json
    with open(os.path.join(run_dir, 'grade', 'instruct_summary.json'), encoding='utf-8') as f:
        s = json.load(f)
    return {'instruct_following': s['following'], 'instruct_following_held_out': s['held_out'],
            'instruct_following_seen': s['seen'], 'graded': s['counts']['graded']}


def make_record(name, repeat, run_dir, ckpt, final, settings):
    import torch
    from tinystories.records import read_log
    log = read_log(run_dir)
    curve = [r for r in log if r.get('val_loss') is not None]
    train = [r['loss'] for r in log if 'loss' in r]
    from model import GPT, GPTConfig
    with torch.device('meta'):  # counts without memory, however large the model
        model = GPT(GPTConfig(**ckpt['model_args']))
    tokens_per_step = settings['batch_size'] * settings['block_size'] * settings['grad_accum']
    tokens = final['iter'] * tokens_per_step
    return {'run': name, 'repeat': repeat, 'seed': settings['seed'], 'n_embd': model.config.n_embd, 'n_layer': model.config.n_layer,
            'n_head': model.config.n_head, 'params': model.num_params(),
            'params_no_emb': model.num_params(embeddings=False), 'iters': final['iter'],
            'tokens': tokens, 'flops_per_token': model.flops_per_token(),
            'flops': model.flops_per_token() * tokens,
            'wall_s': round(ckpt['plan']['elapsed_s'], 1),
            'val_bpb': final['val_bpb'], 'val_loss': final['val_loss'],
            # the training loss at the end (mean of the last 10 logged batches): beside the
            # val loss it shows overfitting when a run passes over its data several times
            'train_loss': sum(train[-10:]) / len(train[-10:]) if train else None,
            # the learning curve, [tokens, val loss] (estimates on eval_iters batches, then the
            # whole-val final): the report's loss-vs-FLOPs figure draws every run's curve
            'val_curve': [[r['iter'] * tokens_per_step, r['val_loss']] for r in curve]}


def prepare_instruct_data():
    """The Instruct study's data: offline generator records with every instruction field, then
    prepare.py --format=instruct holding one combination out of training; and fresh records
    (another seed) for the evaluation prompts. Each step is resumable and skipped when done."""
    from tinystories.instruct_eval import conditions
    conditions(instruct_holdout)  # a bad holdout: an error before anything runs
    records, data = os.path.join(sweep_dir, 'records'), os.path.join(sweep_dir, 'data')
    log = os.path.join(sweep_dir, 'instruct_data.txt')
    run_stage('generate_data.py', ['--backend=offline', '--instruct', f'--stories_dir={records}',
                                   f'--num_stories={instruct_stories}'], log, 'generate_data.py')
    run_stage('generate_data.py', ['--backend=offline', '--instruct', f'--seed={seed + 1}',
                                   f'--stories_dir={os.path.join(sweep_dir, "eval_records")}',
                                   f'--num_stories={instruct_eval_items}'], log, 'generate_data.py')
    run_stage('prepare.py', [f'--source={records}', f'--data_dir={data}', '--format=instruct',
                             f'--instruct_holdout={instruct_holdout}',
                             f'--vocab_size={instruct_vocab_size}'], log, 'prepare.py')
    return data


def evaluate(name, run_dir, record):
    """The scores of a trained run, each step skipped if its report is already there."""
    out = os.path.join(run_dir, 'grade_output.txt')
    common = [f'--out_dir={run_dir}', f'--device={device}']
    if probes:
        if not probes_current(run_dir):
            run_stage('grade.py', common + ['--probes'] + ([f'--probes_file={probes_file}'] if probes_file else []),
                      out, f"grade.py --probes on {name}")
        record.update(probe_scores(run_dir))
    if gpt_eval:
        # an Instruct run is graded on following its instructions (grade.py --instruct), as the
        # paper graded its Instruct models; any other on completing story beginnings
        report = 'instruct_summary.json' if instruct_holdout else 'summary.json'
        if not os.path.isfile(os.path.join(run_dir, 'grade', report)):
            keys = [f'--grader_model={grader_model}', f'--api_key_env={api_key_env}',
                    f'--max_cost_usd={max_cost_usd}', f'--max_new_tokens={grader_max_new_tokens}']
            keys += [f'--base_url={base_url}'] if base_url else []
            keys += [f'--prompts_file={grader_prompts}'] if grader_prompts else []
            keys += ['--yes'] if yes else []
            keys += ['--instruct'] if instruct_holdout else []
            run_stage('grade.py', common + keys, out, f"GPT-Eval of {name}")
        record.update(instruct_following_scores(run_dir) if instruct_holdout else gpt_eval_scores(run_dir))
    if instruct_holdout:
        from tinystories.instruct_eval import instruct_scores
        scores = instruct_scores(run_dir, os.path.join(sweep_dir, 'eval_records'), instruct_holdout,
                                 instruct_eval_items, instruct_max_new_tokens, device, seed)
        record['instruct_holdout'] = instruct_holdout
        record['instruct_prompts'] = instruct_eval_items
        for cond, s in scores['instruct'].items():  # flat: instruct_<condition>_<score>
            record.update({f"instruct_{cond}_{k}": s[k] for k in ('words', 'summary_nouns')})
    return record


def main():
    from tinystories.dirlock import lock_dir
    from tinystories.jsonl import append_jsonl
    import tinystories.progress  # (progress itself is a train.py key)
    from tinystories.sweep_report import write_report
    runs = plan_runs()  # bad keys and shapes: errors before anything is touched
    budget = run_budget()
    lock_dir(sweep_dir, 'sweep')
    results_path = os.path.join(sweep_dir, 'results.jsonl')
    if report_only:
        write_report(sweep_dir, latest_results(sweep_dir), config)
        return
    data = prepare_instruct_data() if instruct_holdout else data_dir
    from tinystories.dataset import open_dataset
    open_dataset(data)  # a missing or damaged dataset: an error now, not after the first run
    want = {name: train_settings(w, d, h, k, budget, data) for name, w, d, h, k in runs}
    for name, *_ in runs:  # every existing run folder must be this sweep's, before any training
        if os.path.isfile(os.path.join(sweep_dir, name, 'ckpt.pt')):
            check_run_settings(os.path.join(sweep_dir, name), want[name])
    # done: in results.jsonl, with probe scores made on today's probe file (else: rescored)
    from tinystories.probes import file_sha256
    sha = file_sha256(probes_path()) if probes else None
    done = {r['run'] for r in latest_results(sweep_dir) if not probes or r.get('probes_sha256') == sha}
    extra = done - set(want)
    if extra:
        print(f"sweep: results.jsonl also holds runs outside this grid: {', '.join(sorted(extra))}")
    todo = [r for r in runs if r[0] not in done]
    print(f"sweep: {len(runs)} runs in {sweep_dir} ({len(runs) - len(todo)} done); budget per run: "
          + (f"{budget['max_iters']:,} steps" if budget['max_iters'] < 10 ** 9 else '')
          + (f" {budget['max_minutes']} min" if budget['max_minutes'] else ''))
    bar = tinystories.progress.progress(total=len(runs), initial=len(runs) - len(todo), desc='sweep', unit='run')
    for name, w, d, h, k in todo:
        run_dir = os.path.join(sweep_dir, name)
        os.makedirs(run_dir, exist_ok=True)
        settings = want[name]
        if final_record(run_dir) is None:
            resume = os.path.isfile(os.path.join(run_dir, 'ckpt.pt'))
            bar.write(f"sweep: {name}: {'resuming' if resume else 'training'} "
                      f"(output in {run_dir}/train_output.txt)")
            t0 = time.time()
            run_stage('train.py', [f'--out_dir={run_dir}', f"--init_from={'resume' if resume else 'scratch'}",
                                   f'--n_embd={w}', f'--n_layer={d}', f'--n_head={h}']
                      + as_args({k: v for k, v in settings.items() if k not in ('n_embd', 'n_layer', 'n_head')}),
                      os.path.join(run_dir, 'train_output.txt'), f"train.py for {name}")
            bar.write(f"sweep: {name}: trained in {time.time() - t0:.0f} s")
        ckpt = check_run_settings(run_dir, settings)
        final = final_record(run_dir)
        if final is None:
            fail(f"{run_dir}/log.jsonl has no final evaluation after training: see train_output.txt")
        record = evaluate(name, run_dir, make_record(name, k, run_dir, ckpt, final, settings))
        append_jsonl(results_path, [record])
        bar.set_postfix(last=name, val_bpb=f"{record['val_bpb']:.3f}")
        bar.update(1)
    bar.close()
    results = [r for r in latest_results(sweep_dir) if r['run'] in want]
    write_report(sweep_dir, results, config)
    print(f"sweep: wrote {results_path} and {os.path.join(sweep_dir, 'report.md')}")


if __name__ == '__main__':
    main()
