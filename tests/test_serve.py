"""The LLM stages against a real OpenAI-compatible server: a model of ours, exported by export.py,
served by transformers' `transformers serve` on 127.0.0.1 (offline, CPU), and
- a direct chat request (the exported chat template puts the message after <|endoftext|>);
- generate_data.py --backend=openai through it to its end, every answer validated and counted,
  then a re-run that neither asks again for a kept story nor loses one;
- grade.py GPT-Eval with the served model as the grader: its prompts are longer than the
  model's context, and the server's refusal, with its reason, is what the report says.

The served model is built by hand so that its answers are known: its one MLP maps each token to
the next word of a fixed story (a bigram chain over word tokens), whatever came before. The
story holds the three words of generate_data's story 0, so that story is kept and the others
are rejected ('missing words'). Skips only where the serving packages are missing."""
import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict

import pytest
import torch

pytest.importorskip('transformers', reason='transformers is not installed (requirements-dev.txt)')
for _package in ('fastapi', 'uvicorn', 'openai'):
    pytest.importorskip(_package, reason=f'{_package} is missing: pip install -r requirements-dev.txt '
                                         '(transformers[serving])')

import generate_data as gd  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from tinystories import tokenizer as T  # noqa: E402
from tinystories.jsonl import read_jsonl  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 7            # generate_data's seed: story 0's words go into the served story
STORY = ('Once upon a time , little Lily saw VERB NOUN ADJECTIVE and smiled . She played '
         'with her friend Tom in the park all day then went home to sleep').split()


def chain_model(words, block_size, n_embd=128):
    """(model, tokenizer record): a GPT whose every next token is the next word of the story
    `words` (distinct words, each one token), in a loop; after any other token, the first word.
    Attention is zeroed; the MLP has one hidden unit per token that fires only for that token
    (its input weights are the token's embedding) and writes the next word's embedding, 20 times
    stronger than the residual, so the tied output layer picks it by a margin of ~80 logits."""
    text = ' '.join(words * 20)
    ranks = T.train_bpe([text], vocab_size=256 + 1 + 200)
    record_text = ''.join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
    record = {'name': 'chain', 'pat_str': T.PAT_STR, 'tiktoken': record_text, 'eot_token': len(ranks),
              'vocab_size': len(ranks) + 1, 'sha256': hashlib.sha256(record_text.encode()).hexdigest()}
    enc = T.encoding_from_record(record)
    chain = [enc.encode_ordinary(' ' + w) for w in words]
    assert all(len(ids) == 1 for ids in chain), 'every story word must be one token'
    chain = [ids[0] for ids in chain]
    assert len(set(chain)) == len(chain), 'the story words must be distinct'
    V, C = record['vocab_size'], n_embd
    assert V <= 4 * C
    model = GPT(GPTConfig(vocab_size=V, block_size=block_size, n_layer=1, n_head=2, n_embd=C))
    nxt = torch.full((V,), chain[0])
    nxt[chain] = torch.tensor(chain[1:] + chain[:1])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (model.h[0].ln_1, model.h[0].ln_2, model.ln_f):
            ln.weight.fill_(1.0)
        emb = torch.randn(V, C, generator=g)
        emb = (emb - emb.mean(1, keepdim=True)) / emb.std(1, unbiased=False, keepdim=True)
        model.wte.weight.copy_(emb)      # LayerNorm leaves each row as it is
        mlp, A = model.h[0].mlp, 40.0
        mlp.c_fc.weight[:V] = A * emb / C   # unit j: A for token j, |.| < 0.3 A for the others
        mlp.c_fc.bias.fill_(-0.5 * A)
        mlp.c_proj.weight[:, :V] = emb[nxt].T
    return model.eval(), record


def save_run(out_dir, model, record):
    os.makedirs(out_dir, exist_ok=True)
    torch.save({'model_args': asdict(model.config), 'model': model.state_dict(), 'iter_num': 0,
                'config': {'data_dir': '', 'out_dir': str(out_dir)}, 'tokenizer': record},
               os.path.join(out_dir, 'ckpt.pt'))
