"""Small fixtures shared by the tests: a byte-level tokenizer and a tiny checkpoint, made here so
that no test needs real data or a trained model."""
import base64
import hashlib
import os
from dataclasses import asdict

import torch

from model import GPT, GPTConfig

# GPT-2's pre-tokenising pattern (contractions, letters, numbers, other symbols, spaces)
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def byte_tokenizer_record():
    """The checkpoint's tokenizer record for a BPE with no merges: 256 byte tokens + EOT (256)."""
    text = ''.join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256))
    return {'name': 'bytes', 'pat_str': GPT2_PAT, 'tiktoken': text,
            'sha256': hashlib.sha256(text.encode()).hexdigest(), 'eot_token': 256, 'vocab_size': 257}


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
