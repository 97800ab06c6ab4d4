"""
Instruct generalisation (the paper's Figure 13), for sweep.py: does a model trained with one
combination of instruction lines held out of its training prompts (say Summary together with
Words) follow that combination anyway?

Prompts are built from fresh generator records (another seed than the training records), in
the layout prepare.py --format=instruct trains on ("Summary: ...", "Words: a, b, c", then
"Story:"), under four conditions: no instruction (the baseline: what the model writes anyway),
each held-out line alone (seen in training), and the held-out combination (never seen). Each
story is scored on
  words           the share of the record's required words it uses (words.word_used, the
                  matcher generate_data.py validates its stories with);
  summary_nouns   the share of the summary's nouns that are in the project's vocabulary
                  (words.NOUNS) and appear in it.
Both scores are computed under every condition, so each can be read against its baseline.

The shipped Instruct prompt set, eval/instruct.jsonl, is what grade.py prompts an Instruct model
with when a grader scores its instruction following (as the paper did with GPT-4): 60 offline
generator records with all four fields, each naming the `lines` its prompt gives, `held_out`
marking the combination config/sweep_instruct.py keeps out of training (Summary with Words).
It is made by

    python generate_data.py --backend=offline --instruct --seed=23 --num_stories=80 --stories_dir=R
    python -m tinystories.instruct_eval --records_dir=R --out=eval/instruct.jsonl
"""
import glob
import json
import os
import re

from tinystories.atomic_write import atomic_write
from tinystories.words import NOUNS, word_used

NOUN_SET = set(NOUNS)
FIELDS = ('Summary', 'Sentence', 'Words', 'Features')
# the prompt set's lines cycle through these: all four, the held-out pair, two seen pairs
PROMPT_LINES = [['Summary', 'Words', 'Sentence', 'Features'], ['Summary', 'Words'], ['Words', 'Features'],
                ['Summary', 'Sentence']]
PROMPT_SET_HOLDOUT = ['Summary', 'Words']  # config/sweep_instruct.py's instruct_holdout


def read_records(records_dir, n):
    """The first n records of a generate_data.py folder (its shards, in order)."""
    from tinystories.stories import read_shard
    records = []
    for shard in sorted(glob.glob(os.path.join(records_dir, 'stories-*.jsonl'))):
        records += read_shard(shard)
    if len(records) < n:
        raise SystemExit(f"error: {records_dir} holds {len(records)} records, {n} are needed")
    return records[:n]


def field_line(field, rec):
    """One instruction line as prepare.py renders it for training."""
    ins = rec.get('instruction') or {}
    value = {'Summary': rec.get('summary'), 'Sentence': rec.get('sentence'),
             'Words': ', '.join(ins.get('words') or []), 'Features': ', '.join(ins.get('features') or [])}[field]
    return f"{field}: {' '.join(value.split())}"


def conditions(holdout):
    """{name: (fields, held_out)}: none, each held-out field alone, the held-out combination."""
    fields = [f.strip() for f in holdout.split(',') if f.strip()]
    bad = [f for f in fields if f not in FIELDS]
    if len(fields) < 2 or bad:
        raise SystemExit(f"error: --instruct_holdout={holdout!r}: name two or more of Summary, "
                         f"Sentence, Words, Features (e.g. Summary,Words)")
    out = {'none': ([], False)}
    out.update({f: ([f], False) for f in fields})
    out['+'.join(fields)] = (fields, True)
    return out


def summary_nouns(summary):
    return sorted({w for w in re.findall(r"[a-z]+", summary.lower()) if w in NOUN_SET})


def score(rec, story):
    words = (rec.get('instruction') or {}).get('words') or []
    nouns = summary_nouns(rec.get('summary') or '')
    return (sum(word_used(w, story) for w in words), len(words),
            sum(word_used(n, story) for n in nouns), len(nouns))


def instruct_scores(run_dir, records_dir, holdout, n_items, max_new_tokens, device, seed):
    """{'instruct': {condition: {prompts, held_out, words, summary_nouns}}} for a trained run,
    cached in run_dir/instruct_eval.json (with every story) so a re-run does not sample again."""
    path = os.path.join(run_dir, 'instruct_eval.json')
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
            return {'instruct': json.load(f)['scores']}
    import torch
    from tinystories.checkpoint import load_run
    model, enc, ckpt = load_run(run_dir, device)
    records = read_records(records_dir, n_items)
    scores, samples = {}, []
    for name, (fields, held_out) in conditions(holdout).items():
        prompts = ['\n'.join([field_line(f, r) for f in fields] + ['Story:']) for r in records]
        g = torch.Generator(next(model.parameters()).device).manual_seed(seed)
        outs = model.generate([[enc.start_token] + enc.encode(p) for p in prompts], max_new_tokens,
                              temperature=1.0, eot_token=enc.stop_token, generator=g)
        totals = [0, 0, 0, 0]
        for rec, prompt, ids in zip(records, prompts, outs):
            story = enc.decode(ids)
            s = score(rec, story)
            totals = [a + b for a, b in zip(totals, s)]
            samples.append({'condition': name, 'id': rec['id'], 'prompt': prompt, 'story': story,
                            'words_used': s[0], 'words': s[1], 'nouns_used': s[2], 'nouns': s[3]})
        scores[name] = {'prompts': len(prompts), 'held_out': held_out,
                        'words': totals[0] / totals[1] if totals[1] else None,
                        'summary_nouns': totals[2] / totals[3] if totals[3] else None}
    atomic_write(path, json.dumps({'holdout': holdout, 'records': records_dir, 'scores': scores,
                                   'samples': samples}, indent=1) + '\n')
    return {'instruct': scores}


# ----------------------------------------------------------------------------- the shipped prompt set
def has_every_field(rec):
    ins = rec.get('instruction') or {}
    return bool(rec.get('summary') and rec.get('sentence') and ins.get('words') and ins.get('features'))


def make_prompt_set(records, n=60):
    """The first n records with all four fields, each given its prompt lines (cycling through
    PROMPT_LINES) and marked held_out when those lines are the combination held out of training."""
    chosen = [r for r in records if has_every_field(r)][:n]
    if len(chosen) < n:
        raise SystemExit(f"error: only {len(chosen)} records have all four fields, {n} are needed: "
                         f"generate more")
    return [dict(r, lines=PROMPT_LINES[i % len(PROMPT_LINES)],
                 held_out=sorted(PROMPT_LINES[i % len(PROMPT_LINES)]) == sorted(PROMPT_SET_HOLDOUT))
            for i, r in enumerate(chosen)]


def load_prompt_set(path):
    """eval/instruct.jsonl's records, checked: all four fields, lines naming known fields."""
    from tinystories.jsonl import read_jsonl
    records = read_jsonl(path, missing_ok=False)
    if not records:
        raise SystemExit(f"error: Instruct prompt set {path} is empty")
    for n, r in enumerate(records, 1):
        lines = r.get('lines') if isinstance(r, dict) else None
        if not has_every_field(r) or not isinstance(r.get('id'), str) or not isinstance(lines, list) or \
                not lines or any(f not in FIELDS for f in lines):
            raise SystemExit(f"error: {path} item {n}: needs an id, summary, sentence, instruction words "
                             f"and features, and lines naming some of {', '.join(FIELDS)}")
    return records


def instruct_prompt(rec):
    """The prompt an Instruct model gets: the record's lines as prepare.py renders them, then Story:."""
    return '\n'.join([field_line(f, rec) for f in rec['lines']] + ['Story:'])


def summarise_following(records):
    """Mean instruction-following score (1-10) overall, per line and held-out vs seen, beside the
    offline scores (required words used, summary nouns used), over the graded stories."""
    import statistics
    graded = [r for r in records if r.get('scores')]

    def mean(xs):
        return statistics.fmean(xs) if xs else None

    def story_mean(r):
        return mean([s['score'] for s in r['scores'].values()])
    offline = lambda rs, i, j: (sum(r['offline'][i] for r in rs) / sum(r['offline'][j] for r in rs)
                                if rs and sum(r['offline'][j] for r in rs) else None)
    scored = [r for r in records if r.get('offline')]
    return {'counts': {'stories': len(records), 'graded': len(graded),
                       'unparseable': sum(r.get('error') == 'unparseable' for r in records),
                       'too_long': sum(r.get('error') == 'too_long' for r in records),
                       'failed': sum(bool(r.get('error')) and r['error'] not in ('unparseable', 'too_long')
                                     for r in records)},
            'following': mean([story_mean(r) for r in graded]),
            'following_std': statistics.stdev([story_mean(r) for r in graded]) if len(graded) > 1 else None,
            'by_line': {f: mean([r['scores'][f]['score'] for r in graded if f in r['scores']]) for f in FIELDS},
            'held_out': mean([story_mean(r) for r in graded if r['held_out']]),
            'seen': mean([story_mean(r) for r in graded if not r['held_out']]),
            'words_used': offline(scored, 0, 1), 'summary_nouns_used': offline(scored, 2, 3)}


if __name__ == '__main__':
    from tinystories.configurator import configure
    from tinystories.jsonl import read_jsonl
    keys = {'records_dir': '',  # a generate_data.py --instruct folder
            'out': os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'eval', 'instruct.jsonl'),
            'num': 60}  # prompts in the set
    configure(keys)
    records = [r for shard in sorted(glob.glob(os.path.join(keys['records_dir'], 'stories-*.jsonl')))
               for r in read_jsonl(shard)]
    made = make_prompt_set(records, keys['num'])
    atomic_write(keys['out'], ''.join(json.dumps(r) + '\n' for r in made))
    print(f"wrote {len(made)} Instruct prompts to {keys['out']}")
