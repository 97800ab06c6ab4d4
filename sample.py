"""
Write stories with a trained model.

    python sample.py --out_dir=out/demo
    python sample.py --out_dir=out/demo --start="Once upon a time, there was a little dog" --num_samples=3
    python sample.py --out_dir=out/demo --start=FILE:prompt.txt        # the whole file is one prompt
    python sample.py --out_dir=out/demo --start=FILE:prompts.jsonl --json > samples.jsonl

The checkpoint carries the model's shape and its tokenizer, so --out_dir is all it needs.
Every prompt is preceded by the end-of-text token, which is what precedes a story's first word
in training. Text streams to the terminal as it is sampled; --json prints one JSON object per
sample instead (prompt, completion, token count), for tools. A prompt that leaves no room in the
model's context is skipped with a warning; the others still run.
"""
import sys
from json import dumps

import torch

from tinystories.checkpoint import load_run
from tinystories.configurator import Key, configure
from tinystories.prompts import read_prompts

# -----------------------------------------------------------------------------
out_dir = Key('out', "the model (a run, a Hugging Face folder, hf:OWNER/NAME)")
start = Key('Once upon a time', "a prompt; FILE:x.txt (one prompt), FILE:x.jsonl (field \"prompt\" per line)")
num_samples = Key(2, "samples per prompt", min=1)
max_new_tokens = Key(300, "tokens per sample at most (also capped by the room each prompt leaves in the "
                          "model's context)", min=0)
temperature = Key(0.8, "sampling temperature (0: greedy)", min=0)
top_k = Key(0, "sample from the k likeliest tokens only (0: off)", min=0)
top_p = Key(1.0, "sample from the smallest set of tokens this likely (1: off)", above=0, max=1)
seed = Key(1337, "seeds the sampling")
device = Key('auto', "auto (a GPU if there is one), cpu, cuda, cuda:1, mps")
json = Key(False, "one JSON object per sample on stdout instead of streamed text")
# -----------------------------------------------------------------------------
config = configure(globals())

prompts = read_prompts(start)
model, tok, ckpt = load_run(out_dir, device)
block_size = model.config.block_size
encoded = []
for n, p in enumerate(prompts, 1):
    ids = [tok.start_token] + tok.encode(p)  # a story starts after the start token
    if len(ids) >= block_size:  # not a single new token would fit
        print(f"WARNING: prompt {n} of {len(prompts)} ({p[:40]!r}...) is {len(ids)} tokens with the start token "
              f"before it, and the model's context is {block_size}: skipped; shorten it", file=sys.stderr)
    else:
        encoded.append((p, ids))
if not encoded:
    raise SystemExit(f"error: no prompt leaves room in the model's context of {block_size} tokens")
generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
options = dict(temperature=temperature, top_k=top_k or None, top_p=top_p, eot_token=tok.stop_token,
               generator=generator)


def decode(prompt_ids, ids):
    """The text of ids after the prompt: decoded together, as a token's text may depend on the one
    before it (llama2.c drops a leading space after BOS). A token may end inside a UTF-8
    character: the incomplete tail is held back until it completes."""
    prompt = tok.decode_bytes(prompt_ids)
    return tok.decode_bytes(prompt_ids + ids)[len(prompt):].decode('utf-8', errors='ignore')


if json:  # the whole batch at once (each row with its own room in the context): fast, for programs
    batch = [(p, ids) for p, ids in encoded for _ in range(num_samples)]
    outs = model.generate([ids for _, ids in batch], max_new_tokens, **options)
    for (p, prompt_ids), ids in zip(batch, outs):
        print(dumps({'prompt': p, 'completion': decode(prompt_ids, ids), 'tokens': len(ids),
                     'finished': bool(ids) and ids[-1] == tok.stop_token}), flush=True)
    raise SystemExit(0)

for p, prompt_ids in encoded:
    for k in range(num_samples):
        sys.stdout.write(p)
        ids, shown = [], ''
        for step in model.generate_stream([prompt_ids], max_new_tokens, **options):
            if step[0] is None:
                break
            ids.append(step[0])
            text = decode(prompt_ids, ids)
            sys.stdout.write(text[len(shown):])
            sys.stdout.flush()
            shown = text
        sys.stdout.write('\n' + '-' * 60 + '\n')
