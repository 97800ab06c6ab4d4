"""
Grade a checkpoint the two ways the TinyStories paper did (Eldan & Li 2023):

1. Offline probes (no network): hand-written prompts in three categories in the spirit of the
   paper's Figures 9-11 (knowledge, reasoning, context tracking), each with one right
   continuation and distractors. The model "answers" by which candidate it finds most likely,
   per token (length-normalised log-likelihood), so no sampling and no grader is involved.
2. GPT-Eval: the model completes story beginnings cut off mid-sentence, and a strong LLM grades
   each completion like a teacher, in two turns (a free-text assessment, then grades out of 10
   for grammar, creativity, consistency and plot, and a guess of the writer's age group).

    python grade.py --out_dir=out/demo --probes                    # probes only, offline
    python grade.py --out_dir=out/demo --grader_model=gpt-4.1       # GPT-Eval, key from $OPENAI_API_KEY
    python grade.py --out_dir=out/demo --base_url=http://localhost:8000/v1 --grader_model=qwen
    python grade.py --compare=out/a,out/b                           # one table across checkpoints

Reports go to out_dir/grade/: probes.json; completions.jsonl, summary.json, summary.md.
"""
import hashlib
import json
import os
import re
import statistics

import torch

from atomic_write import atomic_write
from configurator import configure
from data_words import word_used
from model import load_run

HERE = os.path.dirname(os.path.abspath(__file__))

# -----------------------------------------------------------------------------
out_dir = 'out'              # the run whose ckpt.pt is graded; reports go to out_dir/grade/
device = 'auto'              # auto (cuda if there is one, else cpu), cpu, cuda, cuda:1, mps
seed = 1337
batch_size = 32              # sequences per forward pass (probes) or per generate() call
# offline probes
probes = False               # run the offline probes instead of GPT-Eval
probes_file = os.path.join(HERE, 'eval', 'probes.jsonl')
probe_norm = 'token'         # token: mean log-prob per token; byte: per UTF-8 byte; none: sum
instruct = False             # also score instruction following (Words: prompts); automatic when
                             # the checkpoint's data_dir says format 'instruct'
words_file = os.path.join(HERE, 'eval', 'words.jsonl')
words_template = 'Words: {words}\nStory:'  # how an Instruct prompt asks for words
# GPT-Eval: completions
prompts_file = os.path.join(HERE, 'eval', 'prompts.jsonl')
num_samples = 1              # completions per prompt
max_new_tokens = 300
temperature = 1.0            # the paper sampled at temperature 1
# GPT-Eval: the grader (any OpenAI-compatible server, through llm.py)
backend = 'openai'           # openai | batch (the Batch API: half price, slow)
grader_model = 'gpt-4.1'
base_url = ''                # empty: api.openai.com; else any OpenAI-compatible server
api_key_env = 'OPENAI_API_KEY'
concurrency = 16
max_requests = 0             # 0: no limit
max_cost_usd = 0.0           # 0: no limit
yes = False                  # skip the confirmation before a paid run
timeout = 120.0              # seconds per request
parse_retries = 2            # an unparseable grade is asked for again this often, then reported
structured = True            # ask for JSON output (response_format); falls back if refused
# reports
compare = []                 # out_dirs: print one table of their reports and exit
# -----------------------------------------------------------------------------

CATEGORIES = ('knowledge', 'reasoning', 'context')
SCORES = ('grammar', 'creativity', 'consistency', 'plot')
AGE_GROUPS = {'A': '3 or under', 'B': '4-5', 'C': '6-7', 'D': '8-9', 'E': '10-12', 'F': '13-16'}


# -----------------------------------------------------------------------------
# small file helpers

def read_jsonl(path, what):
    """Records of a JSONL file; a bad line is a one-line error naming the line."""
    if not os.path.isfile(path):
        raise SystemExit(f"error: {what} file {path} not found")
    records = []
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as e:
                    raise SystemExit(f"error: {path} line {n}: not JSON ({e})")
    if not records:
        raise SystemExit(f"error: {what} file {path} is empty")
    return records


def checkpoint_info(out_dir, model, ckpt):
    return {'out_dir': out_dir, 'iter_num': ckpt.get('iter_num'), 'params': model.num_params(),
            'model_args': ckpt.get('model_args')}


# -----------------------------------------------------------------------------
# offline probes

def load_probes(path):
    """Probe items: {"id", "category", "prompt", "answer", "distractors": [...]}."""
    items = read_jsonl(path, 'probes')
    for n, it in enumerate(items, 1):
        bad = [k for k in ('prompt', 'answer', 'distractors') if k not in it]
        if bad or not isinstance(it['distractors'], list) or not it['distractors'] or not all(
                isinstance(c, str) and c.strip() for c in [it['answer']] + it['distractors']):
            raise SystemExit(f"error: {path} item {n}: needs prompt, answer and a non-empty "
                             f"distractors list (non-empty strings)")
        it.setdefault('id', f"item-{n}")
        it.setdefault('category', 'uncategorised')
    return items


def continuation(prompt, candidate):
    """The text that follows the prompt: a candidate is a next word or phrase, joined with a
    space unless the prompt already ends in whitespace."""
    return candidate if not prompt or prompt[-1].isspace() else ' ' + candidate


@torch.no_grad()
def candidate_logprobs(model, pairs, batch_size=32):
    """Sum of log-probabilities and token count of each continuation given its context.

    pairs: [(context ids, continuation ids)]. Sequences are batched by length and right-padded
    (causal attention: padding after a token cannot change its logits). A sequence longer than
    the model's context keeps its last block_size tokens."""
    block = model.config.block_size
    device = next(model.parameters()).device
    seqs = []
    for ctx, cont in pairs:
        if not cont:
            raise ValueError("empty continuation")
        seq = (ctx + cont)[-(block + 1):]  # inputs are seq[:-1]: at most block_size of them
        seqs.append((seq, min(len(cont), len(seq) - 1)))
    results = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        T = max(len(seqs[i][0]) for i in chunk) - 1
        idx = torch.zeros(len(chunk), T, dtype=torch.long)
        tgt = torch.zeros(len(chunk), T, dtype=torch.long)
        for row, i in enumerate(chunk):
            seq = seqs[i][0]
            idx[row, :len(seq) - 1] = torch.tensor(seq[:-1])
            tgt[row, :len(seq) - 1] = torch.tensor(seq[1:])
        logits, _ = model(idx.to(device))
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tgt.to(device)[..., None])[..., 0]
        for row, i in enumerate(chunk):
            seq, n = seqs[i]
            results[i] = (logp[row, len(seq) - 1 - n:len(seq) - 1].sum().item(), n)
    return results


def normalise(logprob, n_tokens, text, norm):
    if norm == 'token':
        return logprob / n_tokens
    if norm == 'byte':
        return logprob / len(text.encode('utf-8'))
    return logprob


def run_probes(model, enc, items, norm='token', batch_size=32):
    """Score every item: the model picks the candidate with the highest normalised
    log-likelihood. Returns the report dict (per category and overall, with chance level)."""
    if norm not in ('token', 'byte', 'none'):
        raise SystemExit(f"error: --probe_norm={norm!r}: use token, byte or none")
    eot = enc.eot_token
    pairs, where = [], []
    for k, it in enumerate(items):
        # stories were joined by EOT in training, so EOT is how the model knows a story starts
        ctx = [eot] + enc.encode_ordinary(it['prompt'])
        for c, cand in enumerate([it['answer']] + list(it['distractors'])):
            text = continuation(it['prompt'], cand)
            pairs.append((ctx, enc.encode_ordinary(text)))
            where.append((k, c, text))
    scored = candidate_logprobs(model, pairs, batch_size)
    per_item = [[] for _ in items]
    for (k, c, text), (lp, n) in zip(where, scored):
        per_item[k].append(normalise(lp, n, text, norm))
    rows = []
    for it, scores in zip(items, per_item):
        best = max(range(len(scores)), key=lambda c: scores[c])  # ties go to the first listed
        rows.append({'id': it['id'], 'category': it['category'], 'correct': best == 0,
                     'chosen': ([it['answer']] + list(it['distractors']))[best],
                     'answer': it['answer'], 'scores': [round(s, 6) for s in scores]})
    cats = [c for c in CATEGORIES if any(r['category'] == c for r in rows)]
    cats += sorted({r['category'] for r in rows} - set(cats))  # users' own categories last

    def stats(sel):  # sel: [(row, item)]
        correct = sum(r['correct'] for r, _ in sel)
        return {'items': len(sel), 'correct': correct, 'accuracy': correct / len(sel),
                # picking at random among an item's candidates is right 1/candidates of the time
                'chance': sum(1 / (1 + len(it['distractors'])) for _, it in sel) / len(sel)}
    pairs = list(zip(rows, items))
    return {'norm': norm,
            'by_category': {c: stats([p for p in pairs if p[0]['category'] == c]) for c in cats},
            'overall': stats(pairs), 'items': rows}


def probes_table(report):
    lines = [f"{'category':<12} {'items':>5} {'correct':>7} {'accuracy':>8} {'chance':>7}"]
    for cat, s in list(report['by_category'].items()) + [('overall', report['overall'])]:
        lines.append(f"{cat:<12} {s['items']:>5} {s['correct']:>7} {s['accuracy']:>8.1%} "
                     f"{s['chance']:>7.1%}")
    return '\n'.join(lines)


# -----------------------------------------------------------------------------
# sampling completions (GPT-Eval, and the Instruct words score)

def complete(model, enc, prompts, max_new_tokens, temperature, generator):
    """Sample one continuation per prompt text, as a story the model starts after an EOT."""
    eot = enc.eot_token
    ids = [[eot] + enc.encode_ordinary(p) for p in prompts]
    outs = model.generate(ids, max_new_tokens, temperature=temperature, eot_token=eot,
                          generator=generator)
    return [enc.decode([t for t in out if t != eot]) for out in outs]


def seeded_generator(seed, batch_index, device):
    """Batch b always gets the same random stream, so a resumed run samples what an
    uninterrupted one would have."""
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + batch_index)
    return g


def run_words(model, enc, path, template, max_new_tokens, temperature, seed, batch_size, device):
    """Instruction following: the fraction of required words that appear in stories generated
    from `Words:` prompts (how the paper checked its Instruct models)."""
    items = read_jsonl(path, 'words')
    for n, it in enumerate(items, 1):
        if not isinstance(it.get('words'), list) or not it['words']:
            raise SystemExit(f"error: {path} item {n}: needs a non-empty \"words\" list")
    prompts = [template.format(words=', '.join(it['words'])) for it in items]
    stories = []
    for b, start in enumerate(range(0, len(prompts), batch_size)):
        stories += complete(model, enc, prompts[start:start + batch_size], max_new_tokens,
                            temperature, seeded_generator(seed, b, device))
    rows = [{'id': it.get('id', f"item-{n}"), 'words': it['words'],
             'used': [w for w in it['words'] if word_used(w, s)], 'story': s}
            for n, (it, s) in enumerate(zip(items, stories), 1)]
    total = sum(len(r['words']) for r in rows)
    used = sum(len(r['used']) for r in rows)
    return {'prompts': len(rows), 'words': total, 'used': used, 'fraction': used / total,
            'template': template, 'items': rows}


def read_log(path):
    """Records of an append-only JSONL log. A run killed mid-write can leave a partial last
    line: it is cut off here, so the next append starts on a clean line."""
    if not os.path.exists(path):
        return []
    with open(path, 'rb') as f:
        data = f.read()
    if data and not data.endswith(b'\n'):
        data = data[:data.rfind(b'\n') + 1]
        with open(path, 'r+b') as f:
            f.truncate(len(data))
    return [json.loads(line) for line in data.decode('utf-8').splitlines() if line.strip()]


def append_log(path, records):
    with open(path, 'a', encoding='utf-8') as f:
        f.write(''.join(json.dumps(r) + '\n' for r in records))
        f.flush()
        os.fsync(f.fileno())


def sample_completions(model, enc, prompts, state_path, num_samples, max_new_tokens,
                       temperature, seed, batch_size, device):
    """num_samples completions of every prompt, in fixed batches, each batch from its own seeded
    random stream and logged as soon as it is done: a killed run resumes at the first missing
    batch and ends with exactly what an uninterrupted run would have made."""
    from tqdm import tqdm
    jobs = [(p, j) for p in prompts for j in range(num_samples)]
    batches = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
    done = {r['batch'] for r in read_log(state_path)}
    for b in tqdm(range(len(batches)), desc='completions', unit='batch', initial=0):
        if b in done:
            continue
        texts = complete(model, enc, [p['prompt'] for p, _ in batches[b]], max_new_tokens,
                         temperature, seeded_generator(seed, b, device))
        append_log(state_path, [{'batch': b, 'key': f"{p['id']}/{j}", 'id': p['id'], 'sample': j,
                                 'prompt': p['prompt'], 'completion': t}
                                for (p, j), t in zip(batches[b], texts)])
    order = {f"{p['id']}/{j}": k for k, (p, j) in enumerate(jobs)}
    samples = {r['key']: r for r in read_log(state_path) if r['key'] in order}
    return sorted(samples.values(), key=lambda r: order[r['key']])


def load_prompts(path):
    prompts = read_jsonl(path, 'prompts')
    for n, p in enumerate(prompts, 1):
        if not isinstance(p.get('prompt'), str) or not p['prompt'].strip():
            raise SystemExit(f"error: {path} item {n}: needs a non-empty \"prompt\"")
        p.setdefault('id', f"prompt-{n}")
    if len({p['id'] for p in prompts}) != len(prompts):
        raise SystemExit(f"error: {path}: prompt ids must be unique")
    return prompts


# -----------------------------------------------------------------------------
# GPT-Eval: the grader's two turns, and reading its grades

ASSESS = (
    "In the following exercise, the student is given the beginning of a story and must "
    "complete it into a whole story. The exercise tests the student's language abilities and "
    "creativity. The symbol *** marks where the given beginning ends and the student's "
    "completion starts.\n\n{beginning}***{completion}\n\n"
    "Please give your general assessment of the part written by the student (after the *** "
    "symbol). Is it grammatically correct? Is it consistent with the beginning of the story? "
    "Pay special attention to whether the student manages to complete the sentence that the "
    "*** separator splits in the middle.")
GRADE = (
    "Now grade the student's completion in terms of grammar, creativity, consistency with the "
    "story's beginning, and whether the plot makes sense, each as a whole number from 1 to 10. "
    "Also give your best guess of the student's age group, as reflected in the completion. "
    "Choose from: A: 3 or under. B: 4-5. C: 6-7. D: 8-9. E: 10-12. F: 13-16.\n"
    'Answer with JSON only: {"grammar": <1-10>, "creativity": <1-10>, "consistency": <1-10>, '
    '"plot": <1-10>, "age_group": "<A-F>"}')
# servers that support structured output are held to exactly this shape
GRADE_SCHEMA = {
    'type': 'json_schema',
    'json_schema': {'name': 'grades', 'strict': True, 'schema': {
        'type': 'object', 'additionalProperties': False,
        'required': list(SCORES) + ['age_group'],
        'properties': {**{k: {'type': 'integer'} for k in SCORES},
                       'age_group': {'type': 'string', 'enum': list(AGE_GROUPS)}}}}}


def first_turn(beginning, completion):
    return [{'role': 'user', 'content': ASSESS.format(beginning=beginning, completion=completion)}]


def second_turn(beginning, completion, assessment):
    return first_turn(beginning, completion) + [{'role': 'assistant', 'content': assessment},
                                                {'role': 'user', 'content': GRADE}]


SCORE_NAMES = {'grammar': r'grammar', 'creativity': r'creativ', 'consistency': r'consisten',
               'plot': r'plot'}
# "out of 10", "/10", "(1-10)": the scale, which must not be read as the grade
SCALE = re.compile(r'\(?\s*(?:out\s+of\s+10|/\s*10|\b[01]\s*(?:-|–|to)\s*10)\b\s*\)?', re.I)
NUMBER = re.compile(r'(?<![\w.])(\d+(?:\.\d+)?)(?![\w.]*\d)')


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = NUMBER.search(SCALE.sub(' ', value))
        return float(m.group(1)) if m else None
    if isinstance(value, dict):  # {"score": 8, "reason": ...}
        for k, v in value.items():
            if k.lower() in ('score', 'grade', 'value', 'rating'):
                return _number(v)
    return None


def _age_group(value):
    """A-F from "C", "C: 6-7", "(C)", "6-7", "3 or under", "age group B" ..."""
    text = str(value).strip()
    for pattern in (r'^\W*([A-F])\b', r'\(([A-F])\)', r'\b([A-F])\s*[:)\]]', r'\bgroup\W+([A-F])\b'):
        m = re.search(pattern, text)
        if m:
            return m.group(1)
    if re.search(r'3\s+or\s+(?:under|younger|less)', text, re.I):
        return 'A'
    m = re.search(r'\b(\d+)\s*(?:-|–|to)\s*(\d+)\b', text)
    if m:
        for group, span in AGE_GROUPS.items():
            if span == f"{m.group(1)}-{m.group(2)}":
                return group
    return None


def _json_objects(text):
    """Every JSON object in the text (answers often wrap JSON in prose or ``` fences)."""
    dec = json.JSONDecoder()
    found = []
    for m in re.finditer(r'\{', text):
        try:
            obj, _ = dec.raw_decode(text[m.start():])
        except ValueError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
    return found


def parse_grades(text):
    """The grades in a grader's answer: {grammar, creativity, consistency, plot (1-10 floats),
    age_group (A-F)}, or None when any of them cannot be read. JSON first, then labelled lines
    such as "**Grammar:** 8/10" or "Age group: C (6-7)"."""
    grades = {}
    for obj in _json_objects(text):
        for key, value in obj.items():
            low = key.lower()
            for name, pat in SCORE_NAMES.items():
                if name not in grades and re.search(pat, low) and _number(value) is not None:
                    grades[name] = _number(value)
            if 'age' in low and 'age_group' not in grades and _age_group(value):
                grades['age_group'] = _age_group(value)
    for line in text.splitlines():
        plain = line.replace('*', '').replace('#', '')
        for name, pat in SCORE_NAMES.items():
            m = re.search(pat + r'\w*', plain, re.I)
            if name not in grades and m:
                value = _number(plain[m.end():])
                if value is not None:
                    grades[name] = value
        m = re.search(r'\bage\b', plain, re.I)
        if 'age_group' not in grades and m and _age_group(plain[m.end():]):
            grades['age_group'] = _age_group(plain[m.end():])
    if any(k not in grades for k in SCORES + ('age_group',)):
        return None
    if any(not 0 <= grades[k] <= 10 for k in SCORES):
        return None
    return {k: grades[k] for k in SCORES + ('age_group',)}


def grade_completions(samples, run_llm, structured=True):
    """The two-turn GPT-Eval conversation for every sample, through llm.run (concurrency,
    retries, budget, Batch API and the response log are all its business).

    run_llm(requests, validate=None, on_result=None) -> report is llm.run with its state_dir and
    settings bound. Turn 1 asks every assessment; turn 2 continues each conversation and asks
    for the grades. A grade answer that does not parse is rejected, so llm.run asks again (up
    to its max_rejects); if it never parses, the record keeps the last answer, error
    'unparseable', and no scores. Returns one record per sample, in order."""
    import llm  # only GPT-Eval needs the client (and the openai package)
    records = [dict(s, assessment=None, grades_text=None, scores=None, error=None) for s in samples]
    by_key = {r['key']: r for r in records}
    turn1 = [{'custom_id': f"{r['key']}/assess", 'params': {'max_tokens': 600},
              'messages': first_turn(r['prompt'], r['completion'])} for r in records]
    answers = {}
    report = run_llm(turn1, on_result=lambda req, res: answers.__setitem__(req['custom_id'], res['text']))
    turn2 = []
    for req in turn1:
        r = by_key[req['custom_id'].rsplit('/', 1)[0]]
        r['assessment'] = answers.get(req['custom_id'])
        if r['assessment'] is None:
            r['error'] = no_answer(report)
            continue
        turn2.append(llm.followup(req, r['assessment'], GRADE, f"{r['key']}/grades"))
        turn2[-1]['params'] = {'max_tokens': 200}
        if structured:
            turn2[-1]['params']['response_format'] = GRADE_SCHEMA

    last_bad = {}

    def validate(req, text):
        if parse_grades(text) is None:
            last_bad[req['custom_id']] = text
            return 'unparseable grades'
        return None

    def keep(req, res):
        r = by_key[req['custom_id'].rsplit('/', 1)[0]]
        r['grades_text'], r['scores'], r['error'] = res['text'], parse_grades(res['text']), None

    report = run_llm(turn2, validate=validate, on_result=keep)
    if structured and any(reason == 'http 400' for reason in report['failed']):
        # some servers refuse response_format: ask those again, in plain text (new ids, so the
        # response log keeps both attempts apart)
        retry = [dict(req, custom_id=req['custom_id'] + '-plain',
                      params={'max_tokens': 200}) for req in turn2
                 if by_key[req['custom_id'].rsplit('/', 1)[0]]['scores'] is None
                 and req['custom_id'] not in last_bad]
        print(f"grade: the server refused structured output (HTTP 400); asking {len(retry)} "
              f"again in plain text")
        report = run_llm(retry, validate=validate, on_result=keep)
    for req in turn2:
        r = by_key[req['custom_id'].rsplit('/', 1)[0]]
        if r['scores'] is None:
            bad = last_bad.get(req['custom_id'] + '-plain', last_bad.get(req['custom_id']))
            r['grades_text'] = bad
            r['error'] = 'unparseable' if bad is not None else no_answer(report)
    return records


def no_answer(report):
    """Why a request got no answer, as far as llm.run's report tells."""
    if report['stopped']:
        return f"not sent: {report['stopped']} reached"
    return 'no answer: ' + (', '.join(f"{k} ({n})" for k, n in report['failed'].items()) or 'unknown')


# -----------------------------------------------------------------------------
# reports

def summarise(records):
    """Mean and spread of each score over the graded records, the age-group distribution, and
    counts (an answer that could not be parsed is counted, never scored)."""
    graded = [r for r in records if r.get('scores')]
    summary = {'counts': {'completions': len(records), 'graded': len(graded),
                          'unparseable': sum(r.get('error') == 'unparseable' for r in records),
                          'failed': sum(bool(r.get('error')) and r['error'] != 'unparseable'
                                        for r in records)},
               'scores': {}, 'age_groups': {}}
    for k in SCORES:
        xs = [r['scores'][k] for r in graded]
        summary['scores'][k] = {
            'mean': statistics.fmean(xs) if xs else None,
            'std': statistics.stdev(xs) if len(xs) > 1 else None,  # spread of single grades
            'min': min(xs) if xs else None, 'max': max(xs) if xs else None, 'n': len(xs)}
    for g in AGE_GROUPS:
        n = sum(r['scores']['age_group'] == g for r in graded)
        summary['age_groups'][g] = {'ages': AGE_GROUPS[g], 'count': n,
                                    'fraction': n / len(graded) if graded else None}
    return summary


def _fmt(x, spec='.2f'):
    return '-' if x is None else format(x, spec)


def summary_markdown(summary):
    c = summary['counts']
    lines = [f"# GPT-Eval of {summary['checkpoint']['out_dir']}", '',
             f"Grader `{summary['grader_model']}`; {summary['num_prompts']} prompts x "
             f"{summary['num_samples']} samples (temperature {summary['temperature']}); "
             f"{c['graded']} of {c['completions']} completions graded, {c['unparseable']} "
             f"unparseable, {c['failed']} failed.", '',
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
        reports = {}
        for name in ('summary', 'probes'):
            path = os.path.join(grade_dir, name + '.json')
            if os.path.isfile(path):
                with open(path, encoding='utf-8') as f:
                    reports[name] = json.load(f)
        if not reports:
            raise SystemExit(f"error: no reports in {grade_dir} (run grade.py --out_dir={d} first)")
        s, p = reports.get('summary'), reports.get('probes')
        info = (s or p)['checkpoint']
        row = [d, f"{info['params'] / 1e6:.2f}M" if info.get('params') else '-',
               str(info.get('iter_num', '-'))]
        row += [_fmt(s['scores'][k]['mean']) if s else '-' for k in SCORES]
        if s and s['counts']['graded']:  # the most common age group
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

def trained_on_instruct(ckpt):
    """Whether the checkpoint's dataset (if it is on this machine) is in the Instruct layout."""
    meta = os.path.join((ckpt.get('config') or {}).get('data_dir') or '', 'meta.json')
    try:
        with open(meta, encoding='utf-8') as f:
            return json.load(f).get('format') == 'instruct'
    except (OSError, ValueError):
        return False


def main_probes():
    model, enc, ckpt = load_run(out_dir, device)
    items = load_probes(probes_file)
    report = {'checkpoint': checkpoint_info(out_dir, model, ckpt), 'probes_file': probes_file,
              **run_probes(model, enc, items, probe_norm, batch_size)}
    print(f"probes: {len(items)} items from {probes_file}, scored by log-likelihood per {probe_norm}")
    print(probes_table(report))
    if instruct or trained_on_instruct(ckpt):
        report['instruct'] = run_words(model, enc, words_file, words_template, max_new_tokens,
                                       temperature, seed, batch_size, next(model.parameters()).device)
        w = report['instruct']
        print(f"instruction following: {w['used']}/{w['words']} required words used "
              f"({w['fraction']:.1%}) in {w['prompts']} stories")
    path = os.path.join(out_dir, 'grade', 'probes.json')
    atomic_write(path, json.dumps(report, indent=1) + '\n')
    print(f"wrote {path}")


def run_fingerprint(ckpt_path, prompts):
    """What the completions depend on: a changed checkpoint or option starts a fresh state."""
    h = hashlib.sha256()
    with open(ckpt_path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    h.update(json.dumps([prompts, num_samples, max_new_tokens, temperature, seed, batch_size],
                        sort_keys=True).encode())
    return h.hexdigest()[:16]


def main_gpt_eval():
    import functools
    import llm
    settings = dict(llm.settings_from(globals()), max_rejects=parse_retries, desc='grader')
    llm.make_client({**llm.DEFAULTS, **settings}, asynchronous=False).close()  # no key: stop now
    model, enc, ckpt = load_run(out_dir, device)
    prompts = load_prompts(prompts_file)
    grade_dir = os.path.join(out_dir, 'grade')
    state_dir = os.path.join(grade_dir, '.state')
    os.makedirs(state_dir, exist_ok=True)
    run = run_fingerprint(os.path.join(out_dir, 'ckpt.pt'), prompts)
    dev = next(model.parameters()).device
    info = checkpoint_info(out_dir, model, ckpt)
    samples = sample_completions(model, enc, prompts, os.path.join(state_dir, f'samples-{run}.jsonl'),
                                 num_samples, max_new_tokens, temperature, seed, batch_size, dev)
    del model  # the grader's rounds can take hours on the Batch API: free the memory
    run_llm = functools.partial(llm.run, state_dir=os.path.join(state_dir, f'grader-{run}'),
                                **settings)
    records = grade_completions(samples, run_llm, structured)

    atomic_write(os.path.join(grade_dir, 'completions.jsonl'),
                 ''.join(json.dumps({k: v for k, v in r.items() if k not in ('batch', 'key')})
                         + '\n' for r in records))
    summary = {'checkpoint': info,
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


def main():
    configure(globals())
    if compare:
        print(compare_table(compare))
    elif probes:
        main_probes()
    else:
        main_gpt_eval()


if __name__ == '__main__':
    main()
