"""Small fixtures shared by the tests: a byte-level tokenizer and a tiny checkpoint, made here so
that no test needs real data or a trained model."""
import os
from dataclasses import asdict

import torch

from model import GPT, GPTConfig
from tinystories.tokenizer import byte_tokenizer_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_env(**extra):
    """The environment for a test's Python subprocess that imports the package (`python -c ...`,
    `python -m tinystories.x`): the repo root on PYTHONPATH, as pytest's own `pythonpath` setting
    gives the tests. Scripts at the top level need none of this (Python puts their folder first)."""
    path = os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH')) if p)
    return {**os.environ, 'PYTHONPATH': path, **{k: str(v) for k, v in extra.items()}}


def write_tiny_checkpoint(out_dir, model=None, seed=0, **model_kwargs):
    """Save a checkpoint in train.py's format (model + the keys the later stages read)."""
    torch.manual_seed(seed)
    if model is None:
        kw = dict(vocab_size=257, block_size=64, n_layer=2, n_head=2, n_embd=32)
        kw.update(model_kwargs)
        model = GPT(GPTConfig(**kw))
    os.makedirs(out_dir, exist_ok=True)
    ckpt = {'model_args': asdict(model.config), 'model': model.state_dict(), 'iter_num': 0,
            'config': {'data_dir': '', 'out_dir': out_dir}, 'tokenizer': byte_tokenizer_record()}
    path = os.path.join(out_dir, 'ckpt.pt')
    torch.save(ckpt, path)
    return path


def tiny_stories(n, seed=0):
    """n short, varied stories in the TinyStories style, made up here (no real data in tests)."""
    import random
    rng = random.Random(seed)
    names = ['Lily', 'Tom', 'Ben', 'Mia', 'Sam', 'Anna']
    things = ['ball', 'kite', 'cat', 'boat', 'tree', 'cake', 'dog', 'hat']
    feelings = ['happy', 'sad', 'scared', 'proud', 'tired']
    out = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        t, f = rng.choice(things), rng.choice(feelings)
        out.append(f"Once upon a time, {a} had a {t}. {a} was {f}. {b} said, \"Can I play with "
                   f"your {t}?\" {a} said yes, and they played all day. The end.")
    return out


def write_byte_dataset(data_dir, train_stories, val_stories):
    """A prepared dataset (docs/contracts.md's data_dir) with the byte-level tokenizer: what prepare.py
    would write for a vocabulary with no merges."""
    import json
    import numpy as np
    os.makedirs(data_dir, exist_ok=True)
    rec = byte_tokenizer_record()
    splits = {}
    for split, stories in (('train', train_stories), ('val', val_stories)):
        ids = []
        for s in stories:
            ids.extend(s.encode('utf-8'))
            ids.append(rec['eot_token'])
        np.array(ids, dtype=np.uint16).tofile(os.path.join(data_dir, f'{split}.bin'))
        splits[split] = {'stories': len(stories), 'tokens': len(ids),
                         'bytes': sum(len(s.encode('utf-8')) for s in stories)}
    with open(os.path.join(data_dir, 'tokenizer.tiktoken'), 'w') as f:
        f.write(rec['tiktoken'])
    meta = {'vocab_size': rec['vocab_size'], 'eot_token': rec['eot_token'], 'tokenizer': 'bpe',
            'pat_str': rec['pat_str'], 'dtype': 'uint16', 'splits': splits}
    with open(os.path.join(data_dir, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    return meta
