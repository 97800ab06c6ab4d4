"""
Write stories with a trained model.

    python sample.py --out_dir=out/demo
    python sample.py --out_dir=out/demo --start="Once upon a time, there was a little dog" --num_samples=3
    python sample.py --out_dir=out/demo --start=FILE:prompts.txt --json > samples.jsonl

The checkpoint carries the model's shape and its tokenizer, so --out_dir is all it needs.
Every prompt is preceded by the end-of-text token, which is what precedes a story's first word
in training. Text streams to the terminal as it is sampled; --json prints one JSON object per
sample instead (prompt, completion, token count), for tools.
"""
import json as jsonlib
import sys

import torch

from model import load_run

# -----------------------------------------------------------------------------
out_dir = 'out'
start = 'Once upon a time'  # a prompt, or FILE:path with one prompt per line ('' = from nothing)
num_samples = 2             # samples per prompt
max_new_tokens = 300        # capped by the model's context
temperature = 0.8           # 0: greedy
top_k = 0                   # 0: off
top_p = 1.0                 # 1.0: off
seed = 1337
device = 'auto'
json = False                # one JSON object per sample on stdout instead of streamed text
# -----------------------------------------------------------------------------
from configurator import configure  # noqa: E402
configure(globals())

model, enc, ckpt = load_run(out_dir, device)
eot = ckpt['tokenizer']['eot_token']
if start.startswith('FILE:'):
    try:
        with open(start[5:], encoding='utf-8') as f:
            prompts = [line.rstrip('\n') for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise SystemExit(f"error: cannot read prompts from {start[5:]!r}: {e}")
    if not prompts:
        raise SystemExit(f"error: {start[5:]!r} holds no prompts")
else:
    prompts = [start]
generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
options = dict(temperature=temperature, top_k=top_k or None, top_p=top_p, eot_token=eot, generator=generator)


def decode(ids):
    # a token may end inside a UTF-8 character: hold back the incomplete tail until it completes
    return enc.decode_bytes([t for t in ids if t != eot]).decode('utf-8', errors='ignore')


if json:  # the whole batch at once: fast, and the output is for programs anyway
    batch = [p for p in prompts for _ in range(num_samples)]
    outs = model.generate([[eot] + enc.encode_ordinary(p) for p in batch], max_new_tokens, **options)
    for p, ids in zip(batch, outs):
        print(jsonlib.dumps({'prompt': p, 'completion': decode(ids), 'tokens': len(ids),
                             'finished': bool(ids) and ids[-1] == eot}), flush=True)
    raise SystemExit(0)

for p in prompts:
    for k in range(num_samples):
        sys.stdout.write(p)
        ids, shown = [], ''
        for step in model.generate_stream([[eot] + enc.encode_ordinary(p)], max_new_tokens, **options):
            if step[0] is None:
                break
            ids.append(step[0])
            text = decode(ids)
            sys.stdout.write(text[len(shown):])
            sys.stdout.flush()
            shown = text
        sys.stdout.write('\n' + '-' * 60 + '\n')
