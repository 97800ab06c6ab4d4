"""export.py: a run of ours (GPT-2 shape, and GPT-Neo shape with local attention) written as a
Hugging Face folder loads in transformers with no custom code, with logits equal to ours within
1e-4, a tokenizer that encodes random Unicode exactly as ours, EOT as bos and eos, a README with
the run's val bits/byte; a model GPT-Neo cannot hold is a one-line error; and the folder loads
back through checkpoint.load_run."""
import hashlib
import base64
import json
import os
import random
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip('transformers')

from tinystories import tokenizer as T  # noqa: E402
from hf_helpers import random_text, training_text  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from tinystories.checkpoint import load_run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def record():
    """Our BPE, trained here, as a checkpoint's tokenizer record."""
    ranks = T.train_bpe(training_text(), vocab_size=700)
    text = ''.join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))
    return {'name': 'bpe', 'pat_str': T.PAT_STR, 'tiktoken': text, 'eot_token': len(ranks),
            'vocab_size': len(ranks) + 1, 'sha256': hashlib.sha256(text.encode()).hexdigest()}


def make_run(out_dir, record, q_bias=True, **kw):
    """A checkpoint with jittered random weights (so every mapping error shows), a log.jsonl."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=record['vocab_size'], block_size=64, n_head=2, n_embd=32, **kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.1)
            if name.endswith('c_attn.bias') and not q_bias:
                p[:32] = 0
    os.makedirs(out_dir, exist_ok=True)
    torch.save({'model_args': vars(model.config), 'model': model.state_dict(), 'iter_num': 7,
                'config': {'data_dir': 'data/x', 'out_dir': out_dir, 'learning_rate': 0.01},
                'tokenizer': record}, os.path.join(out_dir, 'ckpt.pt'))
    with open(os.path.join(out_dir, 'log.jsonl'), 'w') as f:
        f.write('{"iter": 5, "val_loss": 2.0, "val_bpb": 1.5}\n'
                '{"iter": 7, "val_loss": 1.9, "val_bpb": 1.2345, "final": true}\n{"iter": 8, "lo')
    return model.eval()


def export(out_dir, hf_dir, *extra):
    return subprocess.run([sys.executable, 'export.py', f'--out_dir={out_dir}', f'--hf_dir={hf_dir}', *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


SHAPES = {'gpt2': dict(n_layer=2),  # exact GELU, q/k/v biases
          'neo': dict(n_layer=3, window_size=4, activation='gelu_tanh')}  # k, v biases folded


@pytest.mark.parametrize('kind', ['gpt2', 'neo'])
def test_export_loads_in_transformers(tmp_path, record, kind):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    ours = make_run(str(tmp_path / 'run'), record, q_bias=kind == 'gpt2', **SHAPES[kind])
    r = export(tmp_path / 'run', tmp_path / 'hf')
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / 'hf')) == ['README.md', 'config.json', 'generation_config.json',
                                                   'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']
    model = AutoModelForCausalLM.from_pretrained(tmp_path / 'hf').eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / 'hf')
    assert type(model).__name__ == ('GPT2LMHeadModel' if kind == 'gpt2' else 'GPTNeoForCausalLM')
    idx = torch.randint(0, record['vocab_size'], (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(idx).logits - ours(idx)[0]).abs().max().item()
    assert diff < 1e-4, diff

    eot = record['eot_token']
    gen = json.load(open(tmp_path / 'hf' / 'generation_config.json'))
    assert gen['bos_token_id'] == gen['eos_token_id'] == model.config.eos_token_id == eot
    assert tok.eos_token_id == tok.bos_token_id == eot
    enc = T.encoding_from_record(record)
    rng = random.Random(kind)
    for _ in range(300):
        text = random_text(rng)
        ids = enc.encode(text, allowed_special='all')
        assert tok.encode(text, add_special_tokens=False) == ids, repr(text)
        assert tok.decode(ids) == enc.decode(ids)

    readme = open(tmp_path / 'hf' / 'README.md').read()
    assert '1.2345 bits per byte' in readme and 'step 7' in readme and '<|endoftext|>' in readme
    assert '"learning_rate": 0.01' in readme

    # and back: the exported folder is a model location like any other
    back, enc2, info = load_run(str(tmp_path / 'hf'), 'cpu')
    with torch.no_grad():
        assert (back(idx)[0] - ours(idx)[0]).abs().max().item() < 1e-4
    assert enc2.encoding.encode(text, allowed_special="all") == ids and info['tokenizer']['eot_token'] == eot


def test_what_cannot_be_exported(tmp_path, record):
    make_run(str(tmp_path / 'run'), record, q_bias=True, n_layer=2, window_size=4)
    r = export(tmp_path / 'run', tmp_path / 'hf')
    assert r.returncode == 1 and r.stderr.count('\n') == 1, r.stderr
    assert r.stderr.startswith('error: layer 0 has query biases') and '--qkv_bias=False' in r.stderr
    assert not os.path.exists(tmp_path / 'hf')
    make_run(str(tmp_path / 'run'), record, n_layer=1, value_embeddings=True)
    r = export(tmp_path / 'run', tmp_path / 'hf')
    assert r.returncode == 1 and r.stderr.startswith('error: a model with value embeddings has no Hugging Face')
    assert not os.path.exists(tmp_path / 'hf')
    (tmp_path / 'hf').mkdir()
    (tmp_path / 'hf' / 'keep.txt').write_text('mine')
    make_run(str(tmp_path / 'run'), record, n_layer=1)
    r = export(tmp_path / 'run', tmp_path / 'hf')
    assert r.returncode == 1 and 'exists: --overwrite' in r.stderr
    assert export(tmp_path / 'run', tmp_path / 'hf', '--overwrite').returncode == 0
    assert not os.path.exists(tmp_path / 'hf' / 'keep.txt') and not os.path.exists(tmp_path / 'hf.partial')
