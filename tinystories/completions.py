"""
Sampling completions of many prompts: the one way grade.py (GPT-Eval, the Instruct words score)
and diversity.py (stories cut and completed) do it.

- Batched: `batch_size` prompts per model.generate() call. Every row has its own budget,
  min(max_new_tokens, block_size - len(its prompt)): a short prompt beside a long one keeps all
  its room (model.generate's contract); each completion is also cut to its budget here.
- A prompt that does not fit: one with block_size tokens or more has no room for a single new
  token. It is reported (a warning counts them) and its result is None ("too long"): callers mark
  it, never complete it, never send it to a grader, never score it as an empty completion.
- Resumable: each finished batch is appended to a journal (jsonl.py: a torn last line from a kill
  is tolerated) under a key that names everything the samples depend on. A killed run resumes at
  the first missing batch; batch b always samples from its own seeded random stream, so the
  result is exactly what an uninterrupted run would have made.
- Progress through progress.py (a bar on a terminal, a line now and then elsewhere).
"""
import hashlib
import json
import os
import sys

import torch

from tinystories.jsonl import append_jsonl, read_jsonl
from tinystories.progress import progress


def seeded_generator(seed, batch_index, device):
    """Batch b always gets the same random stream, whatever ran before it in this process."""
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + batch_index)
    return g


def file_fingerprint(path):
    """A short hash of a file (the checkpoint): samples from another model start afresh."""
    if not os.path.isfile(path):
        return path  # a model that is not a file of ours: its location names it
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()[:16]


def journal_key(prompts, key, *settings):
    """What the samples depend on: the caller's key (its checkpoint), the prompts, the settings."""
    h = hashlib.sha256(json.dumps([key, [list(map(int, p)) for p in prompts], settings]).encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def complete(model, prompts, max_new_tokens, eot_token=None, temperature=1.0, top_k=0, seed=1337,
             batch_size=32, journal=None, key='', desc='completions'):
    """The new token ids of each prompt (a list of token ids), in order, EOT not included; None
    for a prompt that does not fit the model's context.

    journal: a .jsonl path to resume from and append to (None: nothing is kept)."""
    block = model.config.block_size
    fits = [i for i, p in enumerate(prompts) if len(p) < block]
    if len(fits) < len(prompts):
        print(f"warning: {len(prompts) - len(fits)} of {len(prompts)} prompts are {block} tokens "
              f"or longer, the model's whole context (block_size {block}): marked too_long, not "
              f"completed", file=sys.stderr)
    short = sum(block - len(prompts[i]) < max_new_tokens for i in fits)
    if short:
        print(f"note: {short} of {len(prompts)} prompts leave room for fewer than "
              f"max_new_tokens={max_new_tokens} new tokens: those completions end with the "
              f"context (block_size {block})", file=sys.stderr)
    batches = [fits[s:s + batch_size] for s in range(0, len(fits), batch_size)]
    run = journal_key(prompts, key, max_new_tokens, eot_token, temperature, top_k, seed, batch_size)
    done = {}
    if journal:
        os.makedirs(os.path.dirname(journal) or '.', exist_ok=True)
    for r in read_jsonl(journal) if journal else []:
        b = r.get('batch')
        if r.get('key') == run and isinstance(b, int) and 0 <= b < len(batches):
            done[b] = r['tokens']
    device = next(model.parameters()).device
    bar = progress(total=len(batches), initial=len(done), desc=desc, unit='batch')
    for b, rows in enumerate(batches):
        if b in done:
            continue
        outs = model.generate([prompts[i] for i in rows], max_new_tokens, temperature=temperature,
                              top_k=top_k or None, eot_token=eot_token,
                              generator=seeded_generator(seed, b, device))
        done[b] = [out[:min(max_new_tokens, block - len(prompts[i]))] for i, out in zip(rows, outs)]
        if journal:
            append_jsonl(journal, [{'key': run, 'batch': b, 'tokens': done[b]}])
        bar.update(1)
    bar.close()
    result = [None] * len(prompts)
    for b, rows in enumerate(batches):
        for i, out in zip(rows, done[b]):
            result[i] = [t for t in out if t != eot_token]
    return result
