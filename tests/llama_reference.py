"""References for Llama-style models, written straight from llama2.c's run.c, slow and plain, for the
tests to hold the fast code (and, later, model.py's Llama block) against.

- reference_encode / reference_decode: run.c's encode() and decode(), loop for loop (a rescan of
  the whole sequence for every merge).
- reference_forward: the transformer in plain torch over a whole sequence (RMSNorm, RoPE on
  consecutive pairs of dimensions, grouped-query attention, SwiGLU), on the weights dict of
  tinystories/llama2c.py.
- reference_generate: run.c's greedy loop: BOS, the prompt, argmax until BOS or `steps` positions.
- random_vocab / random_texts, CONFIGS / random_weights: tiny random tokenizers, texts and models.
"""
import math
import random
import re

import torch
import torch.nn.functional as F

BOS, EOS = 1, 2


def reference_encode(pieces, scores, text, bos=False, eos=False):
    """run.c's encode(text, bos, eos) over pieces (bytes) and scores (floats)."""
    index = {}
    for i, p in enumerate(pieces):
        index.setdefault(p, i)

    def lookup(s):  # run.c: bsearch in the sorted vocabulary; -1 when absent
        return index.get(s, -1)
    data = text.encode('utf-8')
    tokens = [BOS] if bos else []
    if data:
        tokens.append(lookup(b' '))  # add_dummy_prefix
        assert tokens[-1] != -1, "run.c needs a ' ' piece for its dummy prefix"
    buf = b''
    for i, c in enumerate(data):
        if c & 0xC0 != 0x80:  # not a continuation byte: a new code point starts
            buf = b''
        buf += bytes([c])
        if i + 1 < len(data) and data[i + 1] & 0xC0 == 0x80 and len(buf) < 4:
            continue
        tid = lookup(buf)
        if tid != -1:
            tokens.append(tid)
        else:  # byte fallback: <unk>, <s>, </s> come first, so byte b is id b + 3
            tokens.extend(b + 3 for b in buf)
        buf = b''
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            tid = lookup(pieces[tokens[i]] + pieces[tokens[i + 1]])
            if tid != -1 and scores[tid] > best_score:
                best_score, best_id, best_idx = scores[tid], tid, i
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    if eos:
        tokens.append(EOS)
    return tokens


def reference_decode(pieces, prev_token, token):
    """run.c's decode(prev_token, token): the bytes one token prints."""
    piece = pieces[token]
    if prev_token == BOS and piece[:1] == b' ':
        piece = piece[1:]
    m = re.fullmatch(rb'<0x([0-9A-Fa-f]{2})>', piece)
    return bytes([int(m.group(1), 16)]) if m else piece


def rmsnorm(x, weight, eps=1e-5):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x, theta=10000.0):
    """x (T, heads, head_size): dims (2j, 2j+1) of position t rotate by t * theta^(-2j/head_size)."""
    T, _, hs = x.shape
    freqs = 1.0 / theta ** (torch.arange(0, hs, 2, dtype=torch.float32) / hs)
    angle = torch.outer(torch.arange(T, dtype=torch.float32), freqs)[:, None, :]
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


@torch.no_grad()
def reference_forward(weights, config, tokens):
    """Logits (T, vocab) for a 1-D sequence of token ids."""
    d, nh, nkv = config['dim'], config['n_heads'], config['n_kv_heads']
    hs, T = d // nh, len(tokens)
    w = weights
    x = w['tok_embeddings.weight'][torch.as_tensor(tokens)]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(config['n_layers']):
        def lw(name):
            return w[f'layers.{i}.{name}.weight']
        h = rmsnorm(x, lw('attention_norm'))
        q = rope((h @ lw('attention.wq').T).view(T, nh, hs))
        k = rope((h @ lw('attention.wk').T).view(T, nkv, hs))
        v = (h @ lw('attention.wv').T).view(T, nkv, hs)
        # query head h reads key/value head h // (nh / nkv), as run.c's (h / kv_mul)
        k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        att = torch.einsum('thd,shd->hts', q, k) / math.sqrt(hs)
        att = att.masked_fill(~causal, float('-inf')).softmax(dim=-1)
        x = x + torch.einsum('hts,shd->thd', att, v).reshape(T, d) @ lw('attention.wo').T
        h = rmsnorm(x, lw('ffn_norm'))
        x = x + (F.silu(h @ lw('feed_forward.w1').T) * (h @ lw('feed_forward.w3').T)) @ lw('feed_forward.w2').T
    x = rmsnorm(x, w['norm.weight'])
    return x @ w.get('output.weight', w['tok_embeddings.weight']).T


def reference_generate(weights, config, prompt_ids, steps):
    """run.c's greedy generate(): positions 0..steps-1 from BOS and the prompt; stops at BOS.
    Returns the tokens after BOS (the prompt's included), as run.c prints them."""
    tokens = [BOS] + list(prompt_ids)
    while len(tokens) < steps + 1:
        nxt = int(reference_forward(weights, config, tokens)[-1].argmax())
        if nxt == BOS:
            break
        tokens.append(nxt)
    return tokens[1:]


# ----------------------------------------------------------------------------- tiny random models

CONFIGS = {  # multi-head and tied; grouped-query (2 query heads per key/value head) and untied
    'mha-tied': dict(dim=16, hidden_dim=40, n_layers=2, n_heads=4, n_kv_heads=4, vocab_size=30,
                     seq_len=12, tied=True),
    'gqa-untied': dict(dim=24, hidden_dim=36, n_layers=3, n_heads=4, n_kv_heads=2, vocab_size=37,
                       seq_len=10, tied=False),
}


def _layer_shapes(config):
    d, h = config['dim'], config['hidden_dim']
    kv = d // config['n_heads'] * config['n_kv_heads']
    return {'attention_norm': (d,), 'attention.wq': (d, d), 'attention.wk': (kv, d), 'attention.wv': (kv, d),
            'attention.wo': (d, d), 'ffn_norm': (d,), 'feed_forward.w1': (h, d), 'feed_forward.w2': (d, h),
            'feed_forward.w3': (h, d)}


def random_weights(config, seed=0):
    """Random llama2.c weights (the names of tinystories/llama2c.py) for a config of CONFIGS."""
    g = torch.Generator().manual_seed(seed)
    shapes = {'tok_embeddings.weight': (config['vocab_size'], config['dim']), 'norm.weight': (config['dim'],)}
    for i in range(config['n_layers']):
        shapes.update({f'layers.{i}.{kind}.weight': s for kind, s in _layer_shapes(config).items()})
    if not config['tied']:
        shapes['output.weight'] = (config['vocab_size'], config['dim'])
    # norms near 1, matrices small: logits of a usable size, no ties in argmax
    return {name: (1 + 0.1 * torch.randn(s, generator=g)) if len(s) == 1 else 0.3 * torch.randn(s, generator=g)
            for name, s in shapes.items()}


# ----------------------------------------------------------------------------- tiny random tokenizers

ALPHABET = list('abcdeonst ') + ['\n', 'é', 'ö', '你', '好']
UNSEEN = ['😀', 'ß', 'Ω', '\t', 'z']  # not pieces: byte fallback (4, 2, 2, 1 and 1 bytes)


def random_vocab(seed, spaces_inside, distinct_scores=False):
    """special pieces, the alphabet, then random concatenations of earlier pieces with scores from
    a small range (so equal scores, and the leftmost rule, happen often; or all distinct).
    spaces_inside: some pieces hold a space after another character (no cutting at spaces then)."""
    rng = random.Random(seed)
    pieces = [b'<unk>', b'\n<s>\n', b'\n</s>\n'] + [b'<0x%02X>' % b for b in range(256)] + [ch.encode() for ch in ALPHABET]
    scores = [0.0] * len(pieces)
    known = set(pieces)
    while len(pieces) < 259 + len(ALPHABET) + 150:
        p = rng.choice(pieces[259:]) + rng.choice(pieces[259:])
        if p in known or len(p) > 12 or (not spaces_inside and any(
                p[i:i + 1] == b' ' and p[i - 1:i] != b' ' for i in range(1, len(p)))):
            continue
        known.add(p)
        pieces.append(p)
        scores.append(-float(len(pieces)) if distinct_scores else float(rng.randrange(-12, 0)))
    return pieces, scores


def random_texts(seed, n):
    rng = random.Random(seed)
    chars = ALPHABET * 3 + UNSEEN + ['  ', '   ']
    texts = ['', ' ', '  ', 'a', '\n', '😀', ' leading', 'trailing ', 'two  spaces', 'ß😀你']
    return texts + [''.join(rng.choice(chars) for _ in range(rng.randrange(1, 40))) for _ in range(n)]
