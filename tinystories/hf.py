"""
Hugging Face model folders <-> our GPT and tiktoken encodings.

    model, tok, info = load_hf('hf:roneneldan/TinyStories-33M', 'cpu')    # or a local folder

checkpoint.load_run calls load_hf for every location that is not a run of ours; export.py goes the
other way (hf_config, hf_weights, tokenizer_json). Nothing from a folder is ever executed:
safetensors are read by the safetensors package, pytorch_model.bin by torch.load(weights_only=True).

GPT-2 and GPT-Neo are model.py's GPT up to a few differences, each mapped exactly:
- GPT-2 stores its linear layers as Conv1D, weight (in, out): transposed to nn.Linear's (out, in).
- GPT-Neo keeps q, k and v as three projections without biases: concatenated into our c_attn,
  with qkv_bias=False.
- GPT-Neo does not divide the attention scores by sqrt(head size); we do, so its query weights
  are multiplied by sqrt(head size) here (and divided again on export).
- gelu_new, GPT-2's and GPT-Neo's GELU, is the tanh approximation: activation='gelu_tanh'.
- GPT-Neo's layers alternate global and local attention (the last window_size tokens): our
  window_size on odd layers. Its 2,048 positions become block_size.

Llama (LlamaForCausalLM) is model.py's Llama-style block (llama2c.py's layout in between): Hugging
Face rotates dimension j of a head with j + head_size/2 where llama2.c and model.py rotate (2j, 2j+1),
so the query and key rows are permuted (llama2c.weights_from_hf); rms_norm_eps and rope_theta are
the config's; scaled rotary, biases or a head_dim of its own are one-line errors. Its tokenizer.json,
a BPE with byte fallback, becomes llama2.c's score-based BPE (llama2c_tokenizer.from_tokenizer_json),
stopping at eos_token_id.

Tokenizers: a byte-level BPE (tokenizer.json, or GPT-2's vocab.json + merges.txt) becomes a
tiktoken Encoding that encodes exactly as transformers does. Token strings are bytes written with
GPT-2's byte<->unicode table; tiktoken's ranks are the token ids, which must grow in merge order
(the order tiktoken merges in); the pre-tokenising regex is the folder's (GPT-2's for ByteLevel);
added tokens such as <|endoftext|> are tiktoken's special tokens.
"""
import base64
import hashlib
import json
import math
import os
import sys
from dataclasses import asdict
from urllib.parse import quote

import torch

from model import GPT, GPTConfig
from tinystories import hub, llama2c
from tinystories.llama2c_tokenizer import EOS, from_tokenizer_json
from tinystories.tokenizer import EOT, GPT2_PAT_STR
from tinystories.tokenizer_interface import TiktokenTokenizer

ACTIVATIONS = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh', 'gelu_pytorch_tanh': 'gelu_tanh',
               'gelu_fast': 'gelu_tanh'}


def fail(msg):
    raise SystemExit(f"error: {msg}")


def read_json(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")


def locate(location):
    """A model location -> (local folder, report_dir). hf:OWNER/NAME[@REV] is downloaded once
    (hub.py); reports go under out/hf/, never into the cache or the model's own folder."""
    if location.startswith('hf:'):
        try:
            repo, rev, explicit = hub.parse_model(location[3:])
            folder = hub.download_model(location[3:])
        except hub.HubError as e:
            fail(e)
        name = repo.replace('/', '--') + (f"@{quote(rev, safe='')}" if explicit else '')
    else:
        folder = location
        if not os.path.isfile(os.path.join(folder, 'config.json')):
            fail(f"{location!r} is not a model location: a run of ours (a directory with "
                 f"ckpt.pt), a Hugging Face model folder (config.json + weights), or hf:OWNER/NAME")
        name = os.path.basename(os.path.abspath(folder))
    return folder, os.path.join('out', 'hf', name)


def load_hf(location, device='cpu'):
    """(model in eval mode, tokenizer (tokenizer_interface.py's), info) for a Hugging Face model
    location: GPT-2, GPT-Neo or Llama."""
    folder, report_dir = locate(location)
    hf = read_json(os.path.join(folder, 'config.json'))
    if hf.get('model_type') == 'llama':
        config, weights = llama_model(hf, read_weights(folder))
    else:
        config = gpt_config(hf)
        weights = our_weights(hf, read_weights(folder), config)
    tok = model_tokenizer(folder, hf)
    if tok.vocab_size > config.vocab_size:
        fail(f"{folder}: the tokenizer has ids up to {tok.vocab_size - 1}, the model only "
             f"{config.vocab_size} embeddings")
    model = GPT(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:  # a tensor of another shape than config.json says
        fail(f"{folder}: the weights do not fit config.json ({str(e).strip().splitlines()[-1].strip()[:150]})")
    info = {'kind': 'hf', 'location': location, 'model_dir': folder, 'report_dir': report_dir,
            'architecture': (hf.get('architectures') or [hf['model_type']])[0],
            'model_args': asdict(config), 'config': {}, 'tokenizer': tok.record(), 'iter_num': None}
    return model.to(device).eval(), tok, info


# -----------------------------------------------------------------------------
# Hugging Face -> ours

def gpt_config(hf):
    """config.json of a GPT-2 or GPT-Neo model -> GPTConfig (or an error naming what cannot be
    represented)."""
    kind = hf.get('model_type')
    if kind == 'gpt2':
        c = dict(n_embd=hf['n_embd'], n_layer=hf['n_layer'], n_head=hf['n_head'],
                 block_size=hf['n_positions'], window_size=0, qkv_bias=True)
        inner = hf.get('n_inner')
        if hf.get('add_cross_attention'):
            fail("config.json: GPT-2 with cross-attention is an encoder-decoder, not our GPT")
    elif kind == 'gpt_neo':
        n = hf['num_layers']
        types = hf.get('attention_types')  # [[["global", "local"], 2]]: the pattern, repeated
        layers = [t for kinds, times in types for _ in range(times) for t in kinds] if types \
            else hf.get('attention_layers', [])
        local = [i for i, t in enumerate(layers) if t == 'local']
        if len(layers) != n or set(layers) - {'global', 'local'} or \
                (local and local != list(range(1, n, 2))):
            fail(f"config.json: attention layers {layers} cannot be represented: ours are global "
                 f"on even layers and local on odd ones ({n} layers)")
        c = dict(n_embd=hf['hidden_size'], n_layer=n, n_head=hf['num_heads'],
                 block_size=hf['max_position_embeddings'],
                 window_size=hf['window_size'] if local else 0, qkv_bias=False)
        inner = hf.get('intermediate_size')
    else:
        fail(f"config.json: model_type {kind!r}: only gpt2 and gpt_neo map onto our GPT")
    act = ACTIVATIONS.get(hf.get('activation_function', 'gelu_new'))
    if act is None:
        fail(f"config.json: activation {hf.get('activation_function')!r}: ours are "
             f"{', '.join(ACTIVATIONS)}")
    if inner not in (None, 4 * c['n_embd']):
        fail(f"config.json: MLP width {inner}: ours is 4 x {c['n_embd']}")
    if hf.get('layer_norm_epsilon', 1e-5) != 1e-5:
        fail(f"config.json: layer_norm_epsilon {hf['layer_norm_epsilon']}: ours is 1e-5")
    return GPTConfig(vocab_size=hf['vocab_size'], dropout=0.0, bias=True, activation=act, **c)


def query_scale(hf, layer, head_size):
    """What a layer's query weights are multiplied by, so that our q.k / sqrt(head size) is
    their attention score."""
    if hf['model_type'] == 'gpt_neo':
        return math.sqrt(head_size)  # GPT-Neo's scores are not scaled at all
    scale = 1.0 if hf.get('scale_attn_weights', True) else math.sqrt(head_size)
    return scale / (layer + 1) if hf.get('scale_attn_by_inverse_layer_idx') else scale


def read_weights(folder):
    """{name: tensor} from model.safetensors (preferred) or pytorch_model.bin, as data only."""
    path = os.path.join(folder, 'model.safetensors')
    if os.path.isfile(path):
        from safetensors.torch import load_file
        try:
            return load_file(path)
        except Exception as e:  # a corrupt or truncated file: the library's own words
            fail(f"cannot read {path}: {type(e).__name__}: {str(e)[:200]}")
    path = os.path.join(folder, 'pytorch_model.bin')
    if os.path.isfile(path):
        try:
            return torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:
            fail(f"cannot read {path} as plain tensors (weights_only=True loads nothing else): "
                 f"{type(e).__name__}: {str(e)[:200]}")
    fail(f"{folder} has neither model.safetensors nor pytorch_model.bin")


def our_weights(hf, sd, config):
    """A GPT-2 / GPT-Neo state dict -> our GPT's."""
    sd = {k.removeprefix('transformer.'): v.float() for k, v in sd.items()}
    neo = hf['model_type'] == 'gpt_neo'
    C, head_size = config.n_embd, config.n_embd // config.n_head
    lin = (lambda w: w) if neo else (lambda w: w.t())  # GPT-2's Conv1D holds (in, out)
    try:
        out = {k: sd[k] for k in ('wte.weight', 'wpe.weight', 'ln_f.weight', 'ln_f.bias')}
        for i in range(config.n_layer):
            p = f'h.{i}.'
            for k in ('ln_1.weight', 'ln_1.bias', 'ln_2.weight', 'ln_2.bias', 'mlp.c_fc.bias',
                      'mlp.c_proj.bias'):
                out[p + k] = sd[p + k]
            for k in ('mlp.c_fc.weight', 'mlp.c_proj.weight'):
                out[p + k] = lin(sd[p + k])
            s = query_scale(hf, i, head_size)
            if neo:
                a = p + 'attn.attention.'
                w = torch.cat([sd[a + f'{x}_proj.weight'] for x in 'qkv'])
                out[p + 'attn.c_proj.weight'] = sd[a + 'out_proj.weight']
                out[p + 'attn.c_proj.bias'] = sd[a + 'out_proj.bias']
            else:
                w = sd[p + 'attn.c_attn.weight'].t()
                b = sd[p + 'attn.c_attn.bias'].clone()
                b[:C] *= s
                out[p + 'attn.c_attn.bias'] = b
                out[p + 'attn.c_proj.weight'] = sd[p + 'attn.c_proj.weight'].t()
                out[p + 'attn.c_proj.bias'] = sd[p + 'attn.c_proj.bias']
            w = w.clone()
            w[:C] *= s
            out[p + 'attn.c_attn.weight'] = w
    except KeyError as e:
        fail(f"the weights lack {e.args[0]!r} (not a {hf['model_type']} checkpoint?)")
    head = sd.get('lm_head.weight')
    if head is not None and not torch.equal(head, out['wte.weight']):
        fail("the output layer is not tied to the token embedding, as ours is")
    out['lm_head.weight'] = out['wte.weight']
    return out


def llama_model(hf, sd):
    """A LlamaForCausalLM config.json and state dict -> (GPTConfig, our state dict): model.py's
    Llama-style block, through llama2.c's layout (llama2c.weights_from_hf undoes Hugging Face's
    rotary order of the query and key rows)."""
    rope = hf.get('rope_parameters') or hf.get('rope_scaling') or {}  # transformers 5 | 4
    theta = hf.get('rope_theta') or rope.get('rope_theta', 10000.0)
    cannot = [f"{k}={v!r}" for k, v, ok in (
        ('hidden_act', hf.get('hidden_act', 'silu'), ('silu', 'swish')),
        ('attention_bias', hf.get('attention_bias', False), (False,)),
        ('mlp_bias', hf.get('mlp_bias', False), (False,)),
        ('rope_type', rope.get('rope_type', rope.get('type', 'default')), ('default',)),
        ('partial_rotary_factor', hf.get('partial_rotary_factor', 1.0), (1.0,)),
        ('head_dim', hf.get('head_dim'), (None, hf['hidden_size'] // hf['num_attention_heads']))) if v not in ok]
    if cannot:
        fail(f"config.json: a Llama with {', '.join(cannot)} cannot be represented: ours is "
             f"silu, no biases, plain rotary over whole heads of hidden_size / num_attention_heads")
    config = llama2c.config_from_hf(hf)
    llama2c.check_config(config, 'config.json')
    sd = {k: v.float() for k, v in sd.items()}
    try:
        weights = llama2c.weights_from_hf(sd, config)
    except KeyError as e:
        fail(f"the weights lack {e.args[0]!r} (not a LlamaForCausalLM checkpoint?)")
    args = dict(llama2c.gpt_args(config), rope_theta=float(theta), norm_eps=hf.get('rms_norm_eps', 1e-6))
    return GPTConfig(**args), llama2c.gpt_state_dict(weights, config)


# -----------------------------------------------------------------------------
# tokenizers

def byte_table():
    """GPT-2's byte -> character table: the printable bytes stand for themselves, the others
    for the characters from 256 on, so that any byte string can be written as a token string."""
    keep = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1),
            *range(ord('®'), 256)]
    extra = iter(range(256, 512))
    return {b: chr(b) if b in keep else chr(next(extra)) for b in range(256)}


def byte_fallback(folder):
    """Whether the folder's tokenizer.json is a sentencepiece-style BPE (Llama's), not byte-level."""
    path = os.path.join(folder, 'tokenizer.json')
    return os.path.isfile(path) and bool((read_json(path).get('model') or {}).get('byte_fallback'))


def model_tokenizer(folder, hf):
    """A model folder's tokenizer behind the tokenizer interface: a Llama's BPE with byte fallback
    (tokenizer.json) as llama2.c's score-based BPE; a byte-level BPE as tiktoken. A Llama stops
    at its eos_token_id (generation_config.json's, else config.json's; 2 when neither names one)."""
    if not byte_fallback(folder):
        if hf.get('model_type') == 'llama' and not os.path.isfile(os.path.join(folder, 'tokenizer.json')):
            fail(f"{folder} has no tokenizer.json (a sentencepiece tokenizer.model alone is not read "
                 f"here: save the tokenizer with transformers' LlamaTokenizerFast to get one)")
        return TiktokenTokenizer(*folder_tokenizer(folder, hf.get('eos_token_id')))
    gen = os.path.join(folder, 'generation_config.json')
    eos = (read_json(gen) if os.path.isfile(gen) else {}).get('eos_token_id', hf.get('eos_token_id'))
    eos = eos[0] if isinstance(eos, list) and eos else eos
    path = os.path.join(folder, 'tokenizer.json')
    tok = from_tokenizer_json(read_json(path), os.path.basename(os.path.abspath(folder)), where=path,
                              stop_token=eos if isinstance(eos, int) else EOS)
    if not 0 <= tok.stop_token < tok.vocab_size:
        fail(f"{folder}: eos_token_id {tok.stop_token} is not a token of its tokenizer")
    return tok


def folder_tokenizer(folder, eos_id=None):
    """(Encoding, record) from a model folder's tokenizer files; GPT-2's (through tiktoken) only
    when the folder has none. The record is our checkpoints' tokenizer record, plus the
    special tokens by id."""
    path = os.path.join(folder, 'tokenizer.json')
    if os.path.isfile(path):
        vocab, merges, added, pat = parse_tokenizer_json(read_json(path), path)
    elif os.path.isfile(os.path.join(folder, 'vocab.json')):
        vocab, merges, added, pat = parse_vocab_merges(folder)
    else:
        print(f"note: {folder} has no tokenizer files: using GPT-2's (tiktoken's gpt2)",
              file=sys.stderr)
        try:
            import tiktoken
            gpt2 = tiktoken.get_encoding('gpt2')
        except Exception as e:
            fail(f"cannot load tiktoken's gpt2 encoding (downloaded once from the net, then "
                 f"cached): {type(e).__name__}: {str(e)[:100]}")
        return encoding(os.path.basename(folder), gpt2._mergeable_ranks, gpt2._special_tokens,
                        gpt2._pat_str, eos_id)
    to_byte = {c: b for b, c in byte_table().items()}
    ranks = {}
    for tok, i in vocab.items():
        if tok in added:
            continue
        if any(c not in to_byte for c in tok):
            fail(f"{folder}: token {tok!r} is not byte-level (GPT-2's byte table)")
        ranks[bytes(to_byte[c] for c in tok)] = i
    if len(ranks) < 256 or any(bytes([b]) not in ranks for b in range(256)):
        fail(f"{folder}: the tokenizer lacks some of the 256 single bytes")
    made = [vocab.get(a + b) for a, b in merges]
    if None in made or any(x > y for x, y in zip(made, made[1:])):
        fail(f"{folder}: the merges' token ids do not grow in merge order (tiktoken's ranks are "
             f"the ids, and it merges the lowest first)")
    if len(set(made)) != len(ranks) - 256:
        fail(f"{folder}: {len(ranks) - 256 - len(set(made))} tokens are not made by any merge")
    return encoding(os.path.basename(os.path.abspath(folder)), ranks, added, pat, eos_id)


def parse_tokenizer_json(d, where):
    """tokenizer.json -> (vocab, merges, added tokens, pre-tokenising regex)."""
    model = d.get('model') or {}
    if model.get('type') != 'BPE' or model.get('dropout') or model.get('byte_fallback') or \
            model.get('continuing_subword_prefix') or model.get('end_of_word_suffix'):
        fail(f"{where}: not a plain byte-level BPE (model {model.get('type')})")
    if d.get('normalizer'):
        fail(f"{where}: normalizer {d['normalizer'].get('type')} cannot be represented in tiktoken")
    pre = d.get('pre_tokenizer') or {}
    steps = pre.get('pretokenizers', [])
    if pre.get('type') == 'ByteLevel' and pre.get('use_regex', True) and \
            not pre.get('add_prefix_space'):
        pat = GPT2_PAT_STR
    elif (pre.get('type') == 'Sequence' and len(steps) == 2 and steps[0].get('type') == 'Split'
          and 'Regex' in steps[0].get('pattern', {}) and steps[0].get('behavior') == 'Isolated'
          and not steps[0].get('invert') and steps[1].get('type') == 'ByteLevel'
          and not steps[1].get('use_regex', True) and not steps[1].get('add_prefix_space')):
        pat = steps[0]['pattern']['Regex']
    else:
        fail(f"{where}: pre_tokenizer {json.dumps(pre)[:100]} cannot be represented: tiktoken "
             f"needs ByteLevel (GPT-2's regex) or Split(regex) then ByteLevel, no prefix space")
    merges = [m.split(' ') if isinstance(m, str) else m for m in model.get('merges', [])]
    return model['vocab'], merges, {t['content']: t['id'] for t in d.get('added_tokens', [])}, pat


def parse_vocab_merges(folder):
    """GPT-2's files: vocab.json, merges.txt (`a b` per line after a #version line), and the
    special tokens named in tokenizer_config.json / special_tokens_map.json."""
    vocab = read_json(os.path.join(folder, 'vocab.json'))
    try:
        with open(os.path.join(folder, 'merges.txt'), encoding='utf-8') as f:
            lines = f.read().split('\n')
    except OSError as e:
        fail(f"cannot read {folder}/merges.txt: {e}")
    merges = [line.split(' ') for line in lines if line and not line.startswith('#version')]
    cfg_path, map_path = (os.path.join(folder, f) for f in ('tokenizer_config.json',
                                                             'special_tokens_map.json'))
    cfg = read_json(cfg_path) if os.path.isfile(cfg_path) else {}
    if cfg.get('add_prefix_space'):
        fail(f"{cfg_path}: add_prefix_space cannot be represented in tiktoken")
    added = {t['content']: int(i) for i, t in (cfg.get('added_tokens_decoder') or {}).items()}
    names = {EOT} & set(vocab)
    special_map = read_json(map_path) if os.path.isfile(map_path) else {}
    for key, v in [*cfg.items(), *special_map.items()]:  # bos_token, eos_token ...: str or dict
        if key.endswith('_token') or key == 'additional_special_tokens':
            names |= {t['content'] if isinstance(t, dict) else t
                      for t in (v if isinstance(v, list) else [v]) if isinstance(t, (str, dict))}
    missing = sorted(t for t in names if t not in vocab and t not in added)
    if len(missing) > 1:
        fail(f"{folder}: special tokens {missing} are not in vocab.json: their ids are unknown")
    added.update({t: len(vocab) for t in missing})  # transformers appends it after the vocabulary
    added.update({t: vocab[t] for t in names if t in vocab})
    return vocab, merges, added, GPT2_PAT_STR


def encoding(name, ranks, specials, pat, eos_id=None):
    """(tiktoken Encoding, record). The end-of-text token: <|endoftext|>, else the config's eos."""
    import tiktoken
    eot = specials.get(EOT, eos_id)
    if eot is None:
        fail(f"{name}: the tokenizer has no {EOT} and config.json names no eos_token_id")
    try:
        enc = tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=dict(ranks),
                                special_tokens=dict(specials))
    except ValueError as e:
        fail(f"{name}: tiktoken refuses the tokenizer: {e}")
    text = ''.join(f"{base64.b64encode(t).decode('ascii')} {r}\n"
                   for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
    record = {'name': name, 'pat_str': pat, 'tiktoken': text,
              'sha256': hashlib.sha256(text.encode('ascii')).hexdigest(), 'eot_token': eot,
              'vocab_size': max([*ranks.values(), *specials.values()]) + 1,
              'special_tokens': dict(specials)}
    return enc, record


# -----------------------------------------------------------------------------
# ours -> Hugging Face (export.py)

def is_neo(config):
    """GPT-Neo when some layer attends locally; GPT-2 otherwise."""
    return config.window_size > 0 and config.n_layer > 1


def llama_switches(config):
    """The Llama-style switches a GPTConfig turns on (none: a GPT-2 or GPT-Neo)."""
    return [k for k, v in (('norm', config.norm != 'layernorm'), ('rotary', config.rotary),
                           ('activation', config.activation == 'swiglu'),
                           ('n_kv_head', config.kv_heads != config.n_head),
                           ('tie_embeddings', not config.tie_embeddings)) if v]


def hf_config(config, eot):
    """Our GPTConfig -> a transformers config.json (GPT-2, or GPT-Neo with local attention); a
    Llama-style one is export.py's (llama2c.hf_config)."""
    if llama_switches(config):
        fail(f"a model with Llama-style {', '.join(llama_switches(config))} is neither GPT-2 nor GPT-Neo")
    if config.value_embeddings:
        fail("a model with value embeddings has no Hugging Face architecture (GPT-2, GPT-Neo and Llama have none)")
    act = {'gelu': 'gelu', 'gelu_tanh': 'gelu_new'}[config.activation]
    common = dict(vocab_size=config.vocab_size, activation_function=act, layer_norm_epsilon=1e-5,
                  initializer_range=0.02, bos_token_id=eot, eos_token_id=eot,
                  tie_word_embeddings=True, use_cache=True)
    n = config.n_layer
    if is_neo(config):
        types = [[['global', 'local'], n // 2]] + ([[['global'], 1]] if n % 2 else [])
        return dict(architectures=['GPTNeoForCausalLM'], model_type='gpt_neo',
                    hidden_size=config.n_embd, num_layers=n, num_heads=config.n_head,
                    max_position_embeddings=config.block_size, window_size=config.window_size,
                    attention_types=types, intermediate_size=None, embed_dropout=0.0,
                    attention_dropout=0.0, resid_dropout=0.0, **common)
    return dict(architectures=['GPT2LMHeadModel'], model_type='gpt2', n_embd=config.n_embd,
                n_layer=n, n_head=config.n_head, n_positions=config.block_size, n_inner=None,
                embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, scale_attn_weights=True, **common)


def hf_weights(model):
    """Our GPT's weights -> the transformers state dict of hf_config's architecture, or an
    error saying why the model cannot be represented."""
    c = model.config
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    C, head_size, neo = c.n_embd, c.n_embd // c.n_head, is_neo(c)
    get = lambda k, n: sd[k] if k in sd else torch.zeros(n)  # bias=False: the biases are zero
    lin = (lambda w: w) if neo else (lambda w: w.t())
    out = {'transformer.wte.weight': sd['wte.weight'], 'transformer.wpe.weight': sd['wpe.weight'],
           'transformer.ln_f.weight': sd['ln_f.weight'],
           'transformer.ln_f.bias': get('ln_f.bias', C)}
    for i in range(c.n_layer):
        p, q = f'h.{i}.', f'transformer.h.{i}.'
        for k, n, f in (('ln_1', C, None), ('ln_2', C, None), ('mlp.c_fc', 4 * C, lin),
                        ('mlp.c_proj', C, lin)):
            w = sd[p + k + '.weight']
            out[q + k + '.weight'], out[q + k + '.bias'] = f(w) if f else w, get(p + k + '.bias', n)
        w, b = sd[p + 'attn.c_attn.weight'], get(p + 'attn.c_attn.bias', 3 * C)
        proj_w, proj_b = sd[p + 'attn.c_proj.weight'], get(p + 'attn.c_proj.bias', C)
        if not neo:
            out[q + 'attn.c_attn.weight'], out[q + 'attn.c_attn.bias'] = w.t(), b
            out[q + 'attn.c_proj.weight'], out[q + 'attn.c_proj.bias'] = proj_w.t(), proj_b
            continue
        if b[:C].any():
            fail(f"layer {i} has query biases, which GPT-Neo (local attention) cannot hold: "
                 f"train with --qkv_bias=False to export such a model")
        a = q + 'attn.attention.'
        wq, wk, wv = w.split(C)
        out[a + 'q_proj.weight'] = wq / math.sqrt(head_size)  # GPT-Neo does not scale scores
        out[a + 'k_proj.weight'], out[a + 'v_proj.weight'] = wk, wv
        # a key bias adds the same q.b to all of a query's scores (softmax ignores it); a value
        # bias passes through attention unchanged (the weights sum to 1): into the output bias
        out[a + 'out_proj.weight'], out[a + 'out_proj.bias'] = proj_w, proj_b + proj_w @ b[2 * C:]
    return {k: v.contiguous().clone() for k, v in out.items()}


def tokenizer_json(enc):
    """A tiktoken Encoding -> tokenizer.json (transformers' fast tokenizer) that encodes every
    string as enc does: byte-level BPE with enc's ranks as ids, a merge for every way to split a
    token into two tokens (ordered by the token's rank: tiktoken merges whatever pair makes the
    lowest-ranked token), whole pre-tokens looked up first (ignore_merges, as tiktoken does), and
    enc's regex as a Split pre-tokenizer."""
    table = byte_table()
    text = lambda b: ''.join(table[x] for x in b)
    ranks = enc._mergeable_ranks
    merges = [[text(tok[:k]), text(tok[k:])]
              for tok, _ in sorted(ranks.items(), key=lambda kv: kv[1])
              for k in range(1, len(tok)) if tok[:k] in ranks and tok[k:] in ranks]
    added = [{'id': i, 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False,
              'normalized': False, 'special': True}
             for s, i in sorted(enc._special_tokens.items(), key=lambda kv: kv[1])]
    byte_level = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True,
                  'use_regex': False}
    return {'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': added,
            'normalizer': None,
            'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
                {'type': 'Split', 'pattern': {'Regex': enc._pat_str}, 'behavior': 'Isolated',
                 'invert': False}, byte_level]},
            'post_processor': None, 'decoder': byte_level,
            'model': {'type': 'BPE', 'dropout': None, 'unk_token': None,
                      'continuing_subword_prefix': None, 'end_of_word_suffix': None,
                      'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': True,
                      'vocab': {text(t): r for t, r in ranks.items()}, 'merges': merges}}
