"""
Loading a model location into a model and its tokenizer: the one loader every stage uses.

A location is a run of ours (a folder with ckpt.pt, or the .pt path itself), a Hugging Face model
folder (config.json + weights), hf:OWNER/NAME[@REVISION] (downloaded once through hub.py; the
folder's conversion is hf.py's), or a llama2.c checkpoint (a .bin file, its tokenizer beside it;
on the hub hf:OWNER/NAME/PATH.bin, as hf:karpathy/tinyllamas/stories15M.bin). Kept out of model.py, so the model file is only the model.
"""
import os

import torch

from model import GPT, GPTConfig
from tinystories import llama2c
from tinystories.hardware import pick_device
from tinystories.llama2c_tokenizer import Llama2cTokenizer
from tinystories.tokenizer_interface import tokenizer_from_record


# what every reader of a run's checkpoint relies on (train.py writes more: optimizer, rng, plan)
CKPT_FIELDS = {'model_args': dict, 'model': dict, 'config': dict, 'iter_num': int, 'tokenizer': dict}


def check_checkpoint(ckpt, path):
    """A file that torch loads is not yet a checkpoint of ours: each field, of its type."""
    if not isinstance(ckpt, dict):
        raise SystemExit(f"error: {path} is not a checkpoint of this repo (a {type(ckpt).__name__}, "
                         f"not a dict); train again, or resume from an intact copy")
    for key, kind in CKPT_FIELDS.items():
        value = ckpt.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise SystemExit(f"error: {path} lacks a valid '{key}' ({'missing' if key not in ckpt else type(value).__name__}): "
                             f"it was not written by this repo's train.py, or is damaged; train again, "
                             f"or resume from an intact copy")


def load_checkpoint(path, device='cpu'):
    """(model, checkpoint dict) from out_dir/ckpt.pt (or a .pt path), in eval mode, its fields
    checked (check_checkpoint).

    weights_only=True: a checkpoint is data, and loading it must not run code from the file."""
    if os.path.isdir(path):
        path = os.path.join(path, 'ckpt.pt')
    if not os.path.isfile(path):
        raise SystemExit(f"error: no checkpoint at {path} (train one with train.py --out_dir=...)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated, empty, random bytes, a pickle with code, another format
        unreadable(path, e)
    check_checkpoint(ckpt, path)
    try:
        model = GPT(GPTConfig(**ckpt['model_args']))
        model.load_state_dict(ckpt['model'])
    except Exception as e:  # model_args or weights of another shape
        unreadable(path, e)
    return model.to(device).eval(), ckpt


def unreadable(path, e):
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
    if reason.startswith('Weights only load failed'):
        reason = 'not a weights-only torch file'
    raise SystemExit(f"error: {path} is not a readable checkpoint of this repo ({reason}); "
                     f"train again, or resume from an intact copy")


def load_run(out_dir, device='auto'):
    """(model, tokenizer, info): what the later stages (sample, grade, diversity, interpret) need
    from a model location, the model in eval mode and its tokenizer (tokenizer_interface.py's:
    encode, decode, start_token, stop_token, vocab_size). The location is a run of ours (a
    directory with ckpt.pt; info is the checkpoint dict), a Hugging Face model folder
    (config.json + weights), hf:OWNER/NAME[@REVISION] (downloaded once; both are hf.py's), or a
    llama2.c checkpoint file (.bin, its tokenizer beside it: load_llama2c). info always has
    tokenizer (the record), model_args, config, kind ('run' | 'hf' | 'llama2c') and report_dir
    (where a stage writes its reports). device 'auto': cuda if there is one, else cpu."""
    device = pick_device(device)
    kind, where = locate(out_dir)
    if kind == 'llama2c':
        return load_llama2c(where, device)
    if kind == 'hf':
        from tinystories.hf import load_hf
        return load_hf(where, device)
    model, ckpt = load_checkpoint(where, device)
    ckpt.update(kind='run', report_dir=where if os.path.isdir(where) else os.path.dirname(where))
    return model, tokenizer_from_record(ckpt['tokenizer']), ckpt


def locate(location):
    """(kind, where) of a model location: ('llama2c', the local .bin file: one on the hub is
    downloaded first), ('hf', the location, for hf.py), or ('run', the location)."""
    if location.startswith('hf:') and location.partition('@')[0].endswith('.bin'):  # a llama2.c file on the hub
        from tinystories import hub
        try:
            return 'llama2c', hub.download_llama2c(location[3:])
        except hub.HubError as e:
            raise SystemExit(f"error: {e}")
    if location.startswith('hf:') or (os.path.isfile(os.path.join(location, 'config.json')) and
                                      not os.path.exists(os.path.join(location, 'ckpt.pt'))):
        return 'hf', location
    if os.path.isfile(location) and location.endswith('.bin'):
        return 'llama2c', location
    return 'run', location


def load_tokenizer(location):
    """A model location's tokenizer alone (tokenizer_interface.py's), its weights not converted:
    the tokenizer that prepare.py --tokenizer=<location> writes bins in."""
    kind, where = locate(location)
    if kind == 'llama2c':
        try:
            with open(where, 'rb') as f:
                config = llama2c.parse_header(f.read(llama2c.HEADER_BYTES), where)[0]
        except OSError as e:
            raise SystemExit(f"error: cannot read llama2.c checkpoint {where}: {e.strerror or e}")
        return llama2c_tokenizer(where, config['vocab_size'])
    if kind == 'hf':
        from tinystories import hf
        folder, _ = hf.locate(where)
        return hf.model_tokenizer(folder, hf.read_json(os.path.join(folder, 'config.json')))
    if not (os.path.isfile(where) or os.path.isfile(os.path.join(where, 'ckpt.pt'))):
        raise SystemExit(f"error: {location!r} is not a model location: a run of ours (a directory with "
                         f"ckpt.pt), a Hugging Face model folder (config.json + weights), hf:OWNER/NAME, "
                         f"or a llama2.c checkpoint (path/model.bin, its tokenizer beside it)")
    return tokenizer_from_record(load_checkpoint(where)[1]['tokenizer'])


def llama2c_tokenizer_path(path, vocab_size):
    """The tokenizer of a llama2.c checkpoint: a file beside it, tok{vocab_size}.bin (llama2.c's
    name for a trained one: tok512.bin beside stories260K.bin) or else tokenizer.bin (its 32,000
    pieces, for stories15M/42M/110M)."""
    folder = os.path.dirname(os.path.abspath(path))
    names = [f'tok{vocab_size}.bin', 'tokenizer.bin']
    for name in names:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise SystemExit(f"error: no tokenizer for llama2.c checkpoint {path}: put {' or '.join(names)} "
                     f"beside it (llama2.c's checkpoints hold no tokenizer)")


def llama2c_tokenizer(path, vocab_size):
    """The tokenizer of the llama2.c checkpoint at path, which has vocab_size token embeddings."""
    tok = Llama2cTokenizer.from_file(llama2c_tokenizer_path(path, vocab_size))
    if tok.vocab_size != vocab_size:
        raise SystemExit(f"error: {path} has {vocab_size} token embeddings but its tokenizer "
                         f"{tok.name}.bin has {tok.vocab_size} pieces: not this model's tokenizer")
    return tok


def load_llama2c(path, device='cpu'):
    """(model, tokenizer, info) for a llama2.c checkpoint file (legacy or version 1), run by
    model.py's Llama-style block; reports go to out/llama2c/<file name>/."""
    weights, config = llama2c.read_checkpoint(path)
    tok = llama2c_tokenizer(path, config['vocab_size'])
    args = llama2c.gpt_args(config)
    model = GPT(GPTConfig(**args))
    model.load_state_dict(llama2c.gpt_state_dict(weights, config))
    name = os.path.splitext(os.path.basename(path))[0]
    info = {'kind': 'llama2c', 'location': path, 'report_dir': os.path.join('out', 'llama2c', name),
            'model_files': [path, llama2c_tokenizer_path(path, config['vocab_size'])], 'model_args': args, 'config': {}, 'tokenizer': tok.record(), 'iter_num': None}
    return model.to(device).eval(), tok, info

