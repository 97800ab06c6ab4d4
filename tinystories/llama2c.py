"""
llama2.c's checkpoint files, read and written, and the Hugging Face Llama layout of the same weights.

    weights, config = read_checkpoint('stories260K.bin')       # either format, told apart by the magic
    write_checkpoint('model.bin', weights, config, version=1)   # or version=0: run.c's own (legacy) format
    hf = hf_state_dict(weights, config)                         # names and q/k rows as LlamaForCausalLM has them

The weights are a plain dict of float32 torch tensors under llama2.c's model.py names (no Hugging Face
names, no model class): `tok_embeddings.weight` (vocab, dim), `norm.weight` (dim,), `output.weight`
(vocab, dim; absent when tied to the embedding) and per layer i `layers.{i}.attention_norm.weight`,
`layers.{i}.attention.wq|wk|wv|wo.weight`, `layers.{i}.ffn_norm.weight`,
`layers.{i}.feed_forward.w1|w2|w3.weight` (w1 the SwiGLU gate, w3 its up projection, w2 down).
config: {'dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len', 'tied'}.

The two fp32 formats (from llama2.c's run.c and export.py; all little-endian):
- legacy (version 0, the only one run.c reads): 7 int32 (dim, hidden_dim, n_layers, n_heads,
  n_kv_heads, vocab_size, seq_len; a negative vocab_size means an untied classifier), then the
  tensors grouped by kind over the layers: embedding, attention norms, wq, wk, wv, wo, ffn norms,
  w1, w2, w3, final norm, two unused RoPE tables (seq_len x head_size/2 each, skipped: run.c
  computes RoPE itself), and the classifier if untied.
- version 1: uint32 magic "ak42" (0x616b3432), int32 version, the same 7 int32 (vocab positive),
  a uint8 "shared classifier" flag, zeros up to byte 256; then attention norms, ffn norms, final
  norm, embedding, wq, wk, wv, wo, w1, w2, w3, and the classifier if untied. No RoPE tables.
Version 2 (int8, Q8_0) is refused: it is lossy, and runq.c's file, not run.c's.

Rotary order: llama2.c (like Meta's Llama) rotates consecutive pairs of a head's dimensions
(0,1), (2,3), ...; Hugging Face's Llama rotates dimension j with j + head_size/2. So the query and
key rows of each head are permuted between the two layouts (hf_rows / llama2c_rows); attention
scores are sums over a head's dimensions, so they do not change, and neither do the logits.
"""
import math
import struct

import numpy as np
import torch

from tinystories.atomic_write import atomic_open

MAGIC = 0x616b3432  # "ak42"
HEADER_BYTES = 256  # of the versioned format
CONFIG_KEYS = ('dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len')
ROPE_TABLES = ('freq_cis_real', 'freq_cis_imag')  # legacy only: cos and sin of RoPE's angles
LAYER_KINDS = ('attention_norm', 'attention.wq', 'attention.wk', 'attention.wv', 'attention.wo',
               'ffn_norm', 'feed_forward.w1', 'feed_forward.w2', 'feed_forward.w3')


def fail(msg):
    raise SystemExit(f"error: {msg}")


def layer_shapes(config):
    """{kind: shape} of one layer's tensors, as nn.Linear stores them: (out, in)."""
    d, h = config['dim'], config['hidden_dim']
    kv = d // config['n_heads'] * config['n_kv_heads']
    return {'attention_norm': (d,), 'attention.wq': (d, d), 'attention.wk': (kv, d),
            'attention.wv': (kv, d), 'attention.wo': (d, d), 'ffn_norm': (d,),
            'feed_forward.w1': (h, d), 'feed_forward.w2': (d, h), 'feed_forward.w3': (h, d)}


def tensor_order(config, version):
    """[(name, shape)] in the file's order; the ROPE_TABLES names are skipped when read."""
    shapes = layer_shapes(config)
    d, v, n = config['dim'], config['vocab_size'], config['n_layers']

    def layers(kind):
        return [(f'layers.{i}.{kind}.weight', shapes[kind]) for i in range(n)]
    embedding, norm = ('tok_embeddings.weight', (v, d)), ('norm.weight', (d,))
    if version == 0:
        rope = (config['seq_len'], d // config['n_heads'] // 2)
        order = [embedding, *(t for kind in LAYER_KINDS for t in layers(kind)), norm,
                 *((name, rope) for name in ROPE_TABLES)]
    else:
        order = [*layers('attention_norm'), *layers('ffn_norm'), norm, embedding,
                 *(t for kind in LAYER_KINDS if 'norm' not in kind for t in layers(kind))]
    if not config['tied']:
        order.append(('output.weight', (v, d)))
    return order


def check_config(config, where):
    bad = [k for k in CONFIG_KEYS if config[k] <= 0]
    if bad:
        fail(f"{where}: {', '.join(f'{k}={config[k]}' for k in bad)} must be positive")
    d, nh, nkv = config['dim'], config['n_heads'], config['n_kv_heads']
    if d % nh or (d // nh) % 2 or nh % nkv:
        fail(f"{where}: dim={d}, n_heads={nh}, n_kv_heads={nkv} do not make whole heads of even "
             f"size shared by whole groups of query heads")


def parse_header(data, where):
    """(config, version, byte offset of the first tensor) from a file's bytes."""
    if len(data) >= 8 and struct.unpack_from('<I', data)[0] == MAGIC:
        version = struct.unpack_from('<i', data, 4)[0]
        if version != 1:
            fail(f"{where}: llama2.c format version {version} is not read here (only the fp32 "
                 f"formats: legacy and version 1); export it again with version 1")
        if len(data) < HEADER_BYTES:
            fail(f"{where}: truncated header ({len(data)} bytes)")
        config = dict(zip(CONFIG_KEYS, struct.unpack_from('<7i', data, 8)))
        config['tied'] = bool(data[36])
        offset = HEADER_BYTES
    else:
        if len(data) < 28:
            fail(f"{where}: too short for a llama2.c checkpoint ({len(data)} bytes)")
        version = 0
        config = dict(zip(CONFIG_KEYS, struct.unpack_from('<7i', data)))
        # a negative vocab_size is the legacy format's flag for an untied classifier
        config['tied'] = config['vocab_size'] > 0
        config['vocab_size'] = abs(config['vocab_size'])
        offset = 28
    check_config(config, where)
    return config, version, offset


def read_checkpoint(path):
    """(weights, config) from a llama2.c fp32 checkpoint, legacy or version 1; config['version']
    says which. The file must hold exactly the tensors its header describes."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        fail(f"cannot read llama2.c checkpoint {path}: {e.strerror or e}")
    config, version, offset = parse_header(data[:HEADER_BYTES].tobytes(), path)
    order = tensor_order(config, version)
    expected = offset + 4 * sum(math.prod(shape) for _, shape in order)
    if len(data) != expected:
        fail(f"{path}: {len(data):,} bytes, but its header {config} describes {expected:,} "
             f"(a torn or foreign file)")
    floats = data[offset:].view('<f4')
    weights, at = {}, 0
    for name, shape in order:
        n = math.prod(shape)
        if name not in ROPE_TABLES:
            weights[name] = torch.from_numpy(floats[at:at + n].astype(np.float32, copy=False).reshape(shape))
        at += n
    return weights, dict(config, version=version)


def write_checkpoint(path, weights, config, version=1):
    """Write weights in llama2.c's fp32 format, version 1 or 0 (legacy, run.c's), atomically."""
    if version not in (0, 1):
        raise ValueError(f"version must be 0 (legacy) or 1, not {version}")
    check_config(config, 'write_checkpoint')
    values = [config[k] for k in CONFIG_KEYS]
    with atomic_open(path) as f:
        if version == 0:
            if not config['tied']:
                values[CONFIG_KEYS.index('vocab_size')] *= -1
            f.write(struct.pack('<7i', *values))
        else:
            header = struct.pack('<Ii7iB', MAGIC, 1, *values, int(bool(config['tied'])))
            f.write(header + b'\0' * (HEADER_BYTES - len(header)))
        for name, shape in tensor_order(config, version):
            # the RoPE tables get their true values: today's run.c skips them, older ones read them
            t = rope_tables(config)[ROPE_TABLES.index(name)] if name in ROPE_TABLES else weights[name]
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, the config says {shape}")
            f.write(t.detach().to('cpu', torch.float32).contiguous().numpy().astype('<f4').tobytes())


def rope_tables(config, theta=10000.0):
    """(cos, sin) of RoPE's angles pos * theta^(-2j/head_size), each (seq_len, head_size/2)."""
    head_size = config['dim'] // config['n_heads']
    freqs = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.outer(torch.arange(config['seq_len'], dtype=torch.float32), freqs)
    return torch.cos(angles), torch.sin(angles)


# -----------------------------------------------------------------------------
# Hugging Face's LlamaForCausalLM layout

def hf_rows(w, n_heads):
    """Query or key rows from llama2.c's rotary order to Hugging Face's: in each head, the pair
    (2j, 2j+1) becomes (j, j + head_size/2)."""
    out_dim, in_dim = w.shape
    return w.reshape(n_heads, out_dim // n_heads // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def llama2c_rows(w, n_heads):
    """The inverse of hf_rows."""
    out_dim, in_dim = w.shape
    return w.reshape(n_heads, 2, out_dim // n_heads // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


HF_NAMES = {'attention_norm': 'input_layernorm', 'attention.wq': 'self_attn.q_proj',
            'attention.wk': 'self_attn.k_proj', 'attention.wv': 'self_attn.v_proj',
            'attention.wo': 'self_attn.o_proj', 'ffn_norm': 'post_attention_layernorm',
            'feed_forward.w1': 'mlp.gate_proj', 'feed_forward.w2': 'mlp.down_proj',
            'feed_forward.w3': 'mlp.up_proj'}


def _permuted(kind, w, config, to_hf):
    heads = {'attention.wq': config['n_heads'], 'attention.wk': config['n_kv_heads']}.get(kind)
    if heads is None:
        return w
    return hf_rows(w, heads) if to_hf else llama2c_rows(w, heads)


def hf_state_dict(weights, config):
    """Our weights under LlamaForCausalLM's names, q and k rows in its rotary order."""
    out = {'model.embed_tokens.weight': weights['tok_embeddings.weight'],
           'model.norm.weight': weights['norm.weight'],
           'lm_head.weight': weights.get('output.weight', weights['tok_embeddings.weight'])}
    for i in range(config['n_layers']):
        for kind, hf_name in HF_NAMES.items():
            out[f'model.layers.{i}.{hf_name}.weight'] = _permuted(
                kind, weights[f'layers.{i}.{kind}.weight'], config, to_hf=True)
    return out


def weights_from_hf(state_dict, config):
    """The inverse of hf_state_dict; the classifier is kept only when config['tied'] is False."""
    out = {'tok_embeddings.weight': state_dict['model.embed_tokens.weight'],
           'norm.weight': state_dict['model.norm.weight']}
    if not config['tied']:
        out['output.weight'] = state_dict['lm_head.weight']
    for i in range(config['n_layers']):
        for kind, hf_name in HF_NAMES.items():
            out[f'layers.{i}.{kind}.weight'] = _permuted(
                kind, state_dict[f'model.layers.{i}.{hf_name}.weight'], config, to_hf=False)
    return out


def hf_config(config, rms_norm_eps=1e-5, rope_theta=10000.0):
    """config.json's fields for LlamaForCausalLM with the same shape (run.c: eps 1e-5, theta 1e4)."""
    return {'architectures': ['LlamaForCausalLM'], 'model_type': 'llama',
            'hidden_size': config['dim'], 'intermediate_size': config['hidden_dim'],
            'num_hidden_layers': config['n_layers'], 'num_attention_heads': config['n_heads'],
            'num_key_value_heads': config['n_kv_heads'], 'vocab_size': config['vocab_size'],
            'max_position_embeddings': config['seq_len'], 'rms_norm_eps': rms_norm_eps,
            'rope_theta': rope_theta, 'hidden_act': 'silu', 'attention_bias': False,
            'mlp_bias': False, 'tie_word_embeddings': bool(config['tied']),
            'bos_token_id': 1, 'eos_token_id': 2, 'torch_dtype': 'float32'}


def config_from_hf(hf):
    """Our config from a LlamaForCausalLM config.json (a dict)."""
    return {'dim': hf['hidden_size'], 'hidden_dim': hf['intermediate_size'],
            'n_layers': hf['num_hidden_layers'], 'n_heads': hf['num_attention_heads'],
            'n_kv_heads': hf.get('num_key_value_heads') or hf['num_attention_heads'],
            'vocab_size': hf['vocab_size'], 'seq_len': hf.get('max_position_embeddings', 2048),
            'tied': bool(hf.get('tie_word_embeddings', False))}


# ----------------------------------------------------------------------------- our model.py's layout

def gpt_args(config):
    """model.py's GPTConfig fields (a dict) for a llama2.c config: its Llama-style block."""
    return {'vocab_size': config['vocab_size'], 'block_size': config['seq_len'],
            'n_layer': config['n_layers'], 'n_head': config['n_heads'], 'n_embd': config['dim'],
            'n_kv_head': config['n_kv_heads'], 'mlp_hidden': config['hidden_dim'], 'dropout': 0.0,
            'bias': False, 'qkv_bias': False, 'activation': 'swiglu', 'norm': 'rmsnorm',
            'rotary': True, 'rope_theta': 10000.0, 'tie_embeddings': bool(config['tied'])}


def config_from_gpt(args, run_c=True):
    """The inverse of gpt_args, or an error naming what a llama2.c file (run_c: run.c's fixed eps
    1e-5 and theta 10000 too) or a Hugging Face Llama cannot hold."""
    want = {'activation': 'swiglu', 'norm': 'rmsnorm', 'rotary': True, 'bias': False, 'window_size': 0,
            'value_embeddings': False, **({'rope_theta': 10000.0, 'norm_eps': 1e-5} if run_c else {})}
    absent = {'window_size': 0, 'norm_eps': 1e-5, 'value_embeddings': False}  # checkpoints from before these keys
    wrong = [f"{k}={args.get(k)!r}" for k, v in want.items() if args.get(k, absent.get(k)) != v]
    if wrong:
        fail(f"{'a llama2.c file' if run_c else 'a Hugging Face Llama'} holds only a Llama-style model "
             f"(rmsnorm{' with eps 1e-5' if run_c else ''}, rotary{' with theta 10000' if run_c else ''}, "
             f"swiglu, no biases, no local attention, no value embeddings); this one has {', '.join(wrong)}")
    return {'dim': args['n_embd'], 'hidden_dim': args['mlp_hidden'] or 4 * args['n_embd'],
            'n_layers': args['n_layer'], 'n_heads': args['n_head'],
            'n_kv_heads': args.get('n_kv_head') or args['n_head'], 'vocab_size': args['vocab_size'],
            'seq_len': args['block_size'], 'tied': bool(args.get('tie_embeddings', True))}


def gpt_state_dict(weights, config):
    """llama2.c's weights under model.py's names: q, k, v rows stacked into c_attn, and the
    SwiGLU's w1 (gate) and w3 (up) into c_fc, in the order model.py splits them."""
    sd = {'wte.weight': weights['tok_embeddings.weight'], 'ln_f.weight': weights['norm.weight'],
          'lm_head.weight': weights.get('output.weight', weights['tok_embeddings.weight'])}
    for i in range(config['n_layers']):
        w = {kind: weights[f'layers.{i}.{kind}.weight'] for kind in LAYER_KINDS}
        sd.update({f'h.{i}.ln_1.weight': w['attention_norm'], f'h.{i}.ln_2.weight': w['ffn_norm'],
                   f'h.{i}.attn.c_attn.weight': torch.cat([w['attention.wq'], w['attention.wk'], w['attention.wv']]),
                   f'h.{i}.attn.c_proj.weight': w['attention.wo'],
                   f'h.{i}.mlp.c_fc.weight': torch.cat([w['feed_forward.w1'], w['feed_forward.w3']]),
                   f'h.{i}.mlp.c_proj.weight': w['feed_forward.w2']})
    return sd


def weights_from_gpt(sd, config):
    """The inverse of gpt_state_dict (the classifier kept only when config['tied'] is False)."""
    d, h = config['dim'], config['hidden_dim']
    kv = d // config['n_heads'] * config['n_kv_heads']
    out = {'tok_embeddings.weight': sd['wte.weight'], 'norm.weight': sd['ln_f.weight']}
    if not config['tied']:
        out['output.weight'] = sd['lm_head.weight']
    for i in range(config['n_layers']):
        q, k, v = sd[f'h.{i}.attn.c_attn.weight'].split([d, kv, kv])
        w1, w3 = sd[f'h.{i}.mlp.c_fc.weight'].split([h, h])
        for kind, t in (('attention_norm', sd[f'h.{i}.ln_1.weight']), ('attention.wq', q), ('attention.wk', k),
                        ('attention.wv', v), ('attention.wo', sd[f'h.{i}.attn.c_proj.weight']),
                        ('ffn_norm', sd[f'h.{i}.ln_2.weight']), ('feed_forward.w1', w1),
                        ('feed_forward.w2', sd[f'h.{i}.mlp.c_proj.weight']), ('feed_forward.w3', w3)):
            out[f'layers.{i}.{kind}.weight'] = t.float().contiguous()
    return out
