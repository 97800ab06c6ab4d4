"""
Grade a checkpoint the two ways the TinyStories paper did (Eldan & Li 2023):

1. Offline probes (no network): prompts in three categories in the spirit of the paper's
   Figures 9-11 (knowledge, reasoning, context tracking), each with one right continuation and
   distractors, scored by log-likelihood (probes.py: the probe set and its scoring engine), with
   baselines (chance, copying from the prompt, word frequency) beside them.
2. GPT-Eval: the model completes story beginnings cut off mid-sentence, and a strong LLM grades
   each completion like a teacher, in two turns (a free-text assessment, then grades out of 10
   for grammar, creativity, consistency and plot, and a guess of the writer's age group):
   gpt_eval.py is its engine.
   On an Instruct model (--instruct, automatic when its data_dir is in the Instruct layout) the
   grader instead scores instruction following: the model writes a story from the instruction
   lines of each eval/instruct.jsonl record, and the grader scores how well each line is
   followed, 1-10 with a reason; the offline words-used and summary-nouns scores go beside it.

    python grade.py --out_dir=out/demo --probes                    # probes only, offline
    python grade.py --out_dir=out/demo --grader_model=gpt-4.1       # GPT-Eval, key from $OPENAI_API_KEY
    python grade.py --out_dir=out/demo --base_url=http://localhost:8000/v1 --grader_model=qwen
    python grade.py --compare=out/a,out/b                           # one table across checkpoints

Reports go to <report_dir>/grade/ (report_dir: the run's out_dir): probes.json; completions.jsonl,
summary.json, summary.md; for an Instruct model instruct_completions.jsonl, instruct_summary.json,
instruct_summary.md. That folder is locked while grade.py runs, not the run: a run can be
graded while it trains. Completions are journaled and the grader's answers logged (llm.py), so a
killed run resumes and pays for nothing twice.
"""
import glob
import hashlib
import json
import os
from collections import Counter

from tinystories.atomic_write import atomic_write
from tinystories.completions import complete, file_fingerprint
from tinystories.configurator import Key, configure
from tinystories.dirlock import lock_dir
from tinystories.gpt_eval import SCORES, grade_completions, grade_instructions, summarise
from tinystories.instruct_eval import (FIELDS, field_line, instruct_prompt, load_prompt_set, score,
                                       summarise_following)
from tinystories.jsonl import read_jsonl
from tinystories.records import PROBES, SUMMARY, read_report
from tinystories.checkpoint import load_run
from tinystories.probes import (CATEGORIES, baselines_table, file_sha256, load_probes, load_unigrams,  # noqa: F401
                                probe_baselines, probes_table, run_probes, run_words)

HERE = os.path.dirname(os.path.abspath(__file__))

# -----------------------------------------------------------------------------
out_dir = Key('out', "the model to grade (a run, a Hugging Face folder, hf:OWNER/NAME); reports go to its grade/")
device = Key('auto', "auto (a GPU if there is one), cpu, cuda, cuda:1, mps")
seed = Key(1337, "seeds the completions' sampling")
batch_size = Key(32, "sequences per forward pass (probes) or per generate() call", min=1)
# offline probes
probes = Key(False, "run the offline probes instead of GPT-Eval")
probes_file = Key(os.path.join(HERE, 'eval', 'probes.jsonl'), "the probe items (JSON Lines)")
probe_norm = Key('token', "a completion's score: mean log-prob per token, per UTF-8 byte, or the sum (none)",
                 choices=('token', 'byte', 'none'))
unigrams_file = Key(os.path.join(HERE, 'eval', 'unigrams.json'), "word counts for the probes' frequency baseline")
instruct = Key(False, "an Instruct model: with --probes also count required words used (Words: prompts), "
                      "else grade instruction following; automatic for a model trained on an instruct dataset")
instruct_file = Key(os.path.join(HERE, 'eval', 'instruct.jsonl'), "the Instruct prompt set")
words_file = Key(os.path.join(HERE, 'eval', 'words.jsonl'), "the word lists of the instruction items")
words_template = Key('Words: {words}\nStory:', "how an Instruct prompt asks for words")
# GPT-Eval: completions
prompts_file = Key(os.path.join(HERE, 'eval', 'prompts.jsonl'), "the story beginnings to complete")
num_samples = Key(1, "completions per prompt", min=1)
max_new_tokens = Key(300, "tokens per completion at most (also capped by the model's context)", min=1)
temperature = Key(1.0, "sampling temperature (the paper sampled at 1; 0: greedy)", min=0)
# GPT-Eval: the grader (any OpenAI-compatible server, through llm.py)
backend = Key('openai', "openai (concurrent requests) or batch (the Batch API: half price, slow)",
              choices=('openai', 'batch'))
grader_model = Key('gpt-4.1', "the grading model's name")
base_url = Key('', "the grader's server ('': api.openai.com; else any OpenAI-compatible server)")
api_key_env = Key('OPENAI_API_KEY', "the environment variable that holds the API key (never the key itself)")
concurrency = Key(16, "requests in flight at once", min=1)
max_requests = Key(0, "requests this run may send (0: no limit)", min=0)
max_cost_usd = Key(0.0, "stop sending once this much is spent (0: no limit)", min=0)
yes = Key(False, "skip the confirmation before a paid run")
timeout = Key(120.0, "seconds per request", above=0)
parse_retries = Key(2, "an unparseable grade is asked for again this often, then reported", min=0)
structured = Key(True, "ask for JSON output (response_format); falls back if the server refuses")
# reports
compare = Key([], "out_dirs: print one table of their reports and exit")
# -----------------------------------------------------------------------------
config = configure(globals())


def checkpoint_info(model, info):
    return {'out_dir': out_dir, 'iter_num': info.get('iter_num'), 'params': model.num_params(),
            'model_args': info.get('model_args')}


def report_folder(info):
    """<report_dir>/grade/, locked for this process (a second grade.py of the same run is refused)."""
    path = os.path.join(info.get('report_dir', out_dir), 'grade')
    lock_dir(path, 'grade.py')
    return path


# -----------------------------------------------------------------------------
# GPT-Eval's completions (the grading itself: gpt_eval.py)

def load_prompts(path):
    prompts = read_jsonl(path, missing_ok=False)
    if not prompts:
        raise SystemExit(f"error: prompts file {path} is empty")
    for n, p in enumerate(prompts, 1):
        if not isinstance(p, dict) or not isinstance(p.get('prompt'), str) or not p['prompt'].strip():
            raise SystemExit(f"error: {path} item {n}: needs a non-empty \"prompt\"")
        p.setdefault('id', f"prompt-{n}")
    if len({p['id'] for p in prompts}) != len(prompts):
        raise SystemExit(f"error: {path}: prompt ids must be unique")
    return prompts


def sample_completions(model, enc, prompts, journal, key='', num_samples=1, max_new_tokens=300,
                       temperature=1.0, seed=1337, batch_size=32):
    """num_samples completions of every prompt (completions.complete: batched, journaled, so a
    killed run resumes with exactly what an uninterrupted one would have made). A prompt too long
    for the model's context is marked too_long, with no completion."""
    jobs = [(p, j) for p in prompts for j in range(num_samples)]
    ids = [[enc.start_token] + enc.encode(p['prompt']) for p, _ in jobs]  # a story starts after the start token
    outs = complete(model, ids, max_new_tokens, enc.stop_token, temperature, 0, seed, batch_size,
                    journal=journal, key=key)
    return [{'key': f"{p['id']}/{j}", 'id': p['id'], 'sample': j, 'prompt': p['prompt'],
             'completion': None if out is None else enc.decode(out), 'too_long': out is None}
            for (p, j), out in zip(jobs, outs)]


def _fmt(x, spec='.2f'):
    return '-' if x is None else format(x, spec)


def summary_markdown(summary):
    c = summary['counts']
    lines = [f"# GPT-Eval of {summary['checkpoint']['out_dir']}", '',
             f"Grader `{summary['grader_model']}`; {summary['num_prompts']} prompts x "
             f"{summary['num_samples']} samples (temperature {summary['temperature']}); "
             f"{c['graded']} of {c['completions']} completions graded, {c['unparseable']} "
             f"unparseable, {c['failed']} failed, {c.get('too_long', 0)} prompts too long for the "
             f"model's context (not completed, not graded).", '',
             '| score | mean | std | min | max | n |', '|---|---|---|---|---|---|']
    for k, s in summary['scores'].items():
        lines.append(f"| {k} | {_fmt(s['mean'])} | {_fmt(s['std'])} | {_fmt(s['min'], 'g')} | "
                     f"{_fmt(s['max'], 'g')} | {s['n']} |")
    lines += ['', '| age group | ages | count | fraction |', '|---|---|---|---|']
    for g, a in summary['age_groups'].items():
        lines.append(f"| {g} | {a['ages']} | {a['count']} | {_fmt(a['fraction'], '.1%')} |")
    return '\n'.join(lines) + '\n'


def compare_table(dirs):
    """One row per checkpoint, like the paper's tables: size, GPT-Eval means, probe accuracy."""
    head = ['checkpoint', 'params', 'iter'] + list(SCORES) + ['age'] + list(CATEGORIES) + ['probes']
    rows = []
    for d in dirs:
        grade_dir = os.path.join(d, 'grade')
        reports = {name: read_report(os.path.join(grade_dir, name + '.json'), shape)
                   for name, shape in (('summary', SUMMARY), ('probes', PROBES))
                   if os.path.isfile(os.path.join(grade_dir, name + '.json'))}
        if not reports:
            raise SystemExit(f"error: no reports in {grade_dir} (run grade.py --out_dir={d} first)")
        s, p = reports.get('summary'), reports.get('probes')
        info = (s or p)['checkpoint']
        row = [d, f"{info['params'] / 1e6:.2f}M" if info.get('params') else '-',
               str(info.get('iter_num', '-'))]
        row += [_fmt(s['scores'][k]['mean']) if s and k in s['scores'] else '-' for k in SCORES]
        if s and s['counts']['graded'] and s['age_groups']:  # the most common age group
            row.append(max(s['age_groups'], key=lambda g: s['age_groups'][g]['count']))
        else:
            row.append('-')
        row += [_fmt(p['by_category'][c]['accuracy'], '.1%') if p and c in p['by_category']
                else '-' for c in CATEGORIES]
        row.append(_fmt(p['overall']['accuracy'], '.1%') if p else '-')
        rows.append(row)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    return '\n'.join('  '.join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(r, widths)))
                     for r in [head] + rows)


# -----------------------------------------------------------------------------

def trained_on_instruct(info):
    """Whether the checkpoint's dataset (if it is on this machine) is in the Instruct layout."""
    meta = os.path.join((info.get('config') or {}).get('data_dir') or '', 'meta.json')
    try:
        with open(meta, encoding='utf-8') as f:
            return json.load(f).get('format') == 'instruct'
    except (OSError, ValueError, AttributeError):
        return False


def main_probes():
    model, enc, info = load_run(out_dir, device)
    items = load_probes(probes_file)
    grade_dir = report_folder(info)
    # the file's hash: a score is only reused for the very probe set it was made on
    report = {'checkpoint': checkpoint_info(model, info), 'probes_file': probes_file,
              'probes_sha256': file_sha256(probes_file),
              **run_probes(model, enc, items, probe_norm, batch_size),
              'baselines': probe_baselines(items, load_unigrams(unigrams_file))}
    print(f"probes: {len(items)} items from {probes_file}, scored by log-likelihood per {probe_norm}")
    print(probes_table(report))
    print(baselines_table(report['baselines']))
    if instruct or trained_on_instruct(info):
        report['instruct'] = run_words(model, enc, words_file, words_template, max_new_tokens,
                                       temperature, seed, batch_size)
        w = report['instruct']
        print(f"instruction following: {w['used']}/{w['words']} required words used "
              f"({w['fraction'] or 0:.1%}) in {w['prompts']} stories"
              + (f" ({w['too_long']} prompts too long for the context, not scored)" if w['too_long'] else ''))
    path = os.path.join(grade_dir, 'probes.json')
    atomic_write(path, json.dumps(report, indent=1) + '\n')
    print(f"wrote {path}")


def main_gpt_eval():
    import functools
    from tinystories import llm
    settings = dict(llm.settings_from(globals()), max_rejects=parse_retries, desc='grader')
    llm.make_client({**llm.DEFAULTS, **settings}, asynchronous=False).close()  # no key: stop now
    model, enc, info = load_run(out_dir, device)
    following = instruct or trained_on_instruct(info)
    if following:  # the prompt is the record's instruction lines, then "Story:"
        prompts = [{'id': r['id'], 'prompt': instruct_prompt(r), 'record': r} for r in load_prompt_set(instruct_file)]
    else:
        prompts = load_prompts(prompts_file)
    grade_dir = report_folder(info)
    state_dir = os.path.join(grade_dir, '.state')
    for path in glob.glob(os.path.join(state_dir, '**', '*.jsonl'), recursive=True):
        read_jsonl(path)  # a damaged state file: a one-line error naming it, before any work
    # what the completions depend on: another checkpoint or setting starts a fresh state
    run = hashlib.sha256(json.dumps([file_fingerprint(os.path.join(out_dir, 'ckpt.pt')), prompts,
                                     num_samples, max_new_tokens, temperature, seed, batch_size],
                                    sort_keys=True).encode()).hexdigest()[:16]
    checkpoint = checkpoint_info(model, info)
    samples = sample_completions(model, enc, prompts, os.path.join(state_dir, f'samples-{run}.jsonl'),
                                 run, num_samples, max_new_tokens, temperature, seed, batch_size)
    del model  # the grader's rounds can take hours on the Batch API: free the memory
    run_llm = functools.partial(llm.run, state_dir=os.path.join(state_dir, f'grader-{run}'), **settings)
    if following:
        return finish_instruct_grading(prompts, samples, run_llm, checkpoint, grade_dir)
    graded = iter(grade_completions([s for s in samples if not s['too_long']], run_llm, structured))
    records = [next(graded) if not s['too_long'] else
               dict(s, assessment=None, grades_text=None, scores=None, error='too_long') for s in samples]

    atomic_write(os.path.join(grade_dir, 'completions.jsonl'),
                 ''.join(json.dumps({k: v for k, v in r.items() if k not in ('batch', 'key')})
                         + '\n' for r in records))
    summary = {'checkpoint': checkpoint,
               'grader_model': grader_model, 'backend': backend, 'prompts_file': prompts_file,
               'num_prompts': len(prompts), 'num_samples': num_samples,
               'temperature': temperature, 'max_new_tokens': max_new_tokens, 'seed': seed,
               **summarise(records)}
    atomic_write(os.path.join(grade_dir, 'summary.json'), json.dumps(summary, indent=1) + '\n')
    atomic_write(os.path.join(grade_dir, 'summary.md'), summary_markdown(summary))
    print(summary_markdown(summary))
    bad = [r['key'] for r in records if r['error']]
    if bad:
        print(f"{len(bad)} completions not scored (see 'error' in completions.jsonl): "
              f"{', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}")
    print(f"wrote {grade_dir}/completions.jsonl, summary.json, summary.md")
    failed = Counter(r['error'] for r in records if r['error'] not in (None, 'unparseable', 'too_long'))
    if failed:  # the grader never answered these (unparseable and too long are results, not failures)
        raise SystemExit(f"error: {sum(failed.values())} of {len(records)} completions got no grade: "
                         + '; '.join(f'{why} (x{n})' for why, n in failed.items())
                         + "; re-run the same command to continue them")


def following_markdown(summary):
    c = summary['counts']
    pct = lambda x: _fmt(x, '.1%')
    lines = [f"# Instruction following of {summary['checkpoint']['out_dir']}", '',
             f"Grader `{summary['grader_model']}`; {summary['num_prompts']} prompts from "
             f"{summary['instruct_file']} (temperature {summary['temperature']}); {c['graded']} of "
             f"{c['stories']} stories graded, {c['unparseable']} unparseable, {c['failed']} failed, "
             f"{c['too_long']} prompts too long for the model's context.", '',
             '| score | value |', '|---|---|',
             f"| instruction following, mean of each story's lines (1-10) | {_fmt(summary['following'])} |",
             f"| ... on the held-out combination | {_fmt(summary['held_out'])} |",
             f"| ... on the combinations seen in training | {_fmt(summary['seen'])} |"]
    lines += [f"| ... {f} lines | {_fmt(summary['by_line'][f])} |" for f in FIELDS]
    lines += [f"| required words used (offline) | {pct(summary['words_used'])} |",
              f"| summary nouns used (offline) | {pct(summary['summary_nouns_used'])} |"]
    return '\n'.join(lines) + '\n'


def finish_instruct_grading(prompts, samples, run_llm, checkpoint, grade_dir):
    """The grader's scores of each story's instruction lines, the offline scores beside them,
    and the reports (instruct_completions.jsonl, instruct_summary.json and .md)."""
    record_of = {p['id']: p['record'] for p in prompts}
    todo = [dict(s, lines=[(f, field_line(f, record_of[s['id']])) for f in record_of[s['id']]['lines']])
            for s in samples if not s['too_long']]
    graded = iter(grade_instructions(todo, run_llm, structured))
    records = []
    for s in samples:
        rec = record_of[s['id']]
        r = next(graded) if not s['too_long'] else dict(s, grades_text=None, scores=None, error='too_long')
        r.update(lines=rec['lines'], held_out=rec['held_out'],
                 offline=None if s['too_long'] else list(score(rec, s['completion'])))
        records.append(r)
    atomic_write(os.path.join(grade_dir, 'instruct_completions.jsonl'),
                 ''.join(json.dumps({k: v for k, v in r.items() if k not in ('batch', 'key')}) + '\n'
                         for r in records))
    summary = {'checkpoint': checkpoint, 'grader_model': grader_model, 'backend': backend,
               'instruct_file': instruct_file, 'num_prompts': len(prompts), 'num_samples': num_samples,
               'temperature': temperature, 'max_new_tokens': max_new_tokens, 'seed': seed,
               **summarise_following(records)}
    atomic_write(os.path.join(grade_dir, 'instruct_summary.json'), json.dumps(summary, indent=1) + '\n')
    atomic_write(os.path.join(grade_dir, 'instruct_summary.md'), following_markdown(summary))
    print(following_markdown(summary))
    print(f"wrote {grade_dir}/instruct_completions.jsonl, instruct_summary.json, instruct_summary.md")


def main():
    if compare:
        print(compare_table(compare))
    elif probes:
        main_probes()
    else:
        main_gpt_eval()


if __name__ == '__main__':
    main()
