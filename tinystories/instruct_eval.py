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
"""
import glob
import json
import os
import re

from tinystories.atomic_write import atomic_write
from tinystories.words import NOUNS, word_used

NOUN_SET = set(NOUNS)


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
    bad = [f for f in fields if f not in ('Summary', 'Sentence', 'Words', 'Features')]
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
    eot = enc.eot_token
    records = read_records(records_dir, n_items)
    scores, samples = {}, []
    for name, (fields, held_out) in conditions(holdout).items():
        prompts = ['\n'.join([field_line(f, r) for f in fields] + ['Story:']) for r in records]
        g = torch.Generator(next(model.parameters()).device).manual_seed(seed)
        outs = model.generate([[eot] + enc.encode_ordinary(p) for p in prompts], max_new_tokens,
                              temperature=1.0, eot_token=eot, generator=g)
        totals = [0, 0, 0, 0]
        for rec, prompt, ids in zip(records, prompts, outs):
            story = enc.decode([t for t in ids if t != eot])
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
