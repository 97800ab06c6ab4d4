"""hf.py and checkpoint.load_run on Hugging Face models: tiny random GPT-2 and GPT-Neo (local layers,
window 8 < the sequence) made with transformers, each with a byte-level BPE trained here with
tokenizers, saved to folders (safetensors + tokenizer.json; pytorch_model.bin + vocab.json and
merges.txt) and served by a local hub for hf:OWNER/NAME. Our logits equal theirs within 1e-4,
greedy generation is identical, our tokenizer encodes random text exactly as theirs."""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

transformers = pytest.importorskip('transformers')

from tinystories import hf  # noqa: E402
from tinystories import tokenizer as T  # noqa: E402
from hf_helpers import EOT, FakeHub, random_text, tiny_hf_model, train_hf_tokenizer  # noqa: E402
from model import GPT  # noqa: E402
from tinystories.checkpoint import load_run, load_tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    """{'gpt2': folder, 'neo': folder}: the two ways a hub model folder comes."""
    from transformers import PreTrainedTokenizerFast
    tok = train_hf_tokenizer()
    n, eot = tok.get_vocab_size(), tok.token_to_id(EOT)
    out = {}
    for kind in ('gpt2', 'neo'):
        folder = str(tmp_path_factory.mktemp(f'tiny-{kind}'))
        model = tiny_hf_model(kind, n, eot)
        if kind == 'gpt2':  # safetensors, tokenizer.json
            model.save_pretrained(folder)
            PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOT, bos_token=EOT).save_pretrained(folder)
        else:  # pytorch_model.bin, GPT-2's vocab.json + merges.txt (the older layout)
            model.config.save_pretrained(folder)
            torch.save(model.state_dict(), os.path.join(folder, 'pytorch_model.bin'))
            tok.model.save(folder)
            with open(os.path.join(folder, 'tokenizer_config.json'), 'w') as f:
                json.dump({'tokenizer_class': 'GPT2Tokenizer', 'eos_token': EOT, 'bos_token': EOT,
                           'unk_token': EOT, 'add_prefix_space': False}, f)
        out[kind] = folder
    return out


def theirs(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize('kind', ['gpt2', 'neo'])
def test_logits_generation_and_tokenizer_match(folders, kind):
    files = sorted(os.listdir(folders[kind]))
    assert ('model.safetensors' in files) == (kind == 'gpt2') and ('tokenizer.json' in files) == (kind == 'gpt2')
    ours, tokenizer, info = load_run(folders[kind], 'cpu')
    enc = tokenizer.encoding  # the tiktoken Encoding behind the interface
    model, tok = theirs(folders[kind])
    assert info['kind'] == 'hf' and info['report_dir'] == os.path.join('out', 'hf', os.path.basename(folders[kind]))
    assert info['tokenizer']['eot_token'] == tok.eos_token_id and info['config'] == {}
    assert info['model_args']['window_size'] == (8 if kind == 'neo' else 0)
    assert info['model_args']['activation'] == 'gelu_tanh'

    idx = torch.randint(0, model.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(idx)[0] - model(idx).logits).abs().max().item()
    assert diff < 1e-4, diff

    prompt = idx[0, :6]
    mine = ours.generate([prompt.tolist()], 30, temperature=0)[0]
    model.generation_config.eos_token_id = None  # 30 tokens, EOT or not, as ours without eot_token
    ref = model.generate(prompt[None], max_new_tokens=30, do_sample=False, pad_token_id=0)[0, 6:]
    assert mine == ref.tolist() and len(mine) == 30

    rng = random.Random(kind)
    again = T.encoding_from_record(info['tokenizer'])  # a checkpoint's record, as train.py saves
    for _ in range(300):
        text = random_text(rng)
        ids = enc.encode(text, allowed_special='all')
        assert ids == tok.encode(text, add_special_tokens=False), repr(text)
        assert enc.decode(ids) == tok.decode(ids)
        assert again.encode(text, allowed_special='all') == ids


def test_hf_location_through_a_local_hub(folders, tmp_path, monkeypatch):
    s = FakeHub()
    s.add_model('tester/tiny-neo', folders['neo'])
    monkeypatch.setenv('HF_ENDPOINT', s.url)
    monkeypatch.setenv('TINYSTORIES_CACHE', str(tmp_path / 'cache'))
    monkeypatch.chdir(tmp_path)
    try:
        ours, enc, info = load_run('hf:tester/tiny-neo@main', 'cpu')
        local, _, _ = load_run(folders['neo'], 'cpu')
        assert info['report_dir'] == os.path.join('out', 'hf', 'tester--tiny-neo@main')
        assert info['model_dir'] == str(tmp_path / 'cache' / 'tester--tiny-neo@main')
        assert not os.path.exists(info['report_dir'])  # the stages make it when they write
        for a, b in zip(ours.state_dict().values(), local.state_dict().values()):
            assert torch.equal(a, b)
        n = len(s.log)
        _, _, again = load_run('hf:tester/tiny-neo', 'cpu')  # cached: no request
        assert len(s.log) == n and again['report_dir'] == os.path.join('out', 'hf', 'tester--tiny-neo')
        with pytest.raises(SystemExit, match=r'^error: .*HTTP 404'):
            load_run('hf:tester/none', 'cpu')
    finally:
        s.close()


# the paper's released models' config.json (TinyStories-33M; -1Layer-21M's shape)
TS_33M = {'activation_function': 'gelu_new', 'architectures': ['GPTNeoForCausalLM'],
          'attention_dropout': 0, 'attention_layers': ['global', 'local', 'global', 'local'],
          'attention_types': [[['global', 'local'], 2]], 'bos_token_id': 50256, 'embed_dropout': 0,
          'eos_token_id': 50256, 'hidden_size': 768, 'initializer_range': 0.02,
          'intermediate_size': None, 'layer_norm_epsilon': 1e-05, 'max_position_embeddings': 2048,
          'model_type': 'gpt_neo', 'num_heads': 16, 'num_layers': 4, 'resid_dropout': 0,
          'torch_dtype': 'float32', 'use_cache': True, 'vocab_size': 50257, 'window_size': 256}
TS_1LAYER = dict(TS_33M, hidden_size=1024, num_layers=1, attention_types=[[['global'], 1]],
                 attention_layers=['global'])


@pytest.mark.parametrize('cfg', [TS_33M, TS_1LAYER], ids=['33M', '1Layer-21M'])
def test_paper_configs_map(cfg):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM
    c = hf.gpt_config(cfg)
    assert (c.n_embd, c.n_layer, c.n_head, c.block_size, c.vocab_size) == \
        (cfg['hidden_size'], cfg['num_layers'], 16, 2048, 50257)
    assert c.window_size == (256 if cfg['num_layers'] > 1 else 0) and not c.qkv_bias
    assert c.activation == 'gelu_tanh'
    with torch.device('meta'):  # shapes only: no memory, no time
        theirs_sd = GPTNeoForCausalLM(GPTNeoConfig(**cfg)).state_dict()
        ours_sd = GPT(c).state_dict()
    theirs_sd.pop('lm_head.weight')  # tied: a saved checkpoint leaves it out
    mapped = hf.our_weights(cfg, theirs_sd, c)
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in ours_sd.items()}


def test_what_cannot_be_represented(folders, tmp_path):
    bad = [({'model_type': 'llama'}, 'only gpt2 and gpt_neo'),
           (dict(TS_33M, attention_types=[[['local', 'global'], 2]]), 'global on even layers'),
           (dict(TS_33M, activation_function='relu'), 'activation'),
           (dict(TS_33M, intermediate_size=1000), 'MLP width')]
    for cfg, why in bad:
        with pytest.raises(SystemExit, match=why):
            hf.gpt_config(cfg)
    # a .bin that holds more than tensors is refused, not run (weights_only=True)
    folder = tmp_path / 'evil'
    folder.mkdir()
    (folder / 'config.json').write_text(open(os.path.join(folders['neo'], 'config.json')).read())
    torch.save({'x': os.system}, folder / 'pytorch_model.bin')
    with pytest.raises(SystemExit, match='weights_only'):
        load_run(str(folder), 'cpu')
    with pytest.raises(SystemExit, match='not a model location'):
        load_tokenizer(str(tmp_path))


def test_prepare_in_a_models_tokenizer(folders, tmp_path):
    from transformers import AutoTokenizer
    stories = [random_text(random.Random(i)).replace(EOT, '').strip() or 'x' for i in range(40)]
    for name, part in (('train.txt', stories[:30]), ('val.txt', stories[30:])):
        (tmp_path / name).write_text(''.join(f"{s}\n{EOT}\n" for s in part))
    r = subprocess.run([sys.executable, 'prepare.py', f'--source={tmp_path / "train.txt"}',
                        f'--val_source={tmp_path / "val.txt"}', f'--tokenizer={folders["gpt2"]}',
                        f'--data_dir={tmp_path / "ds"}', '--workers=1'],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    meta = json.load(open(tmp_path / 'ds' / 'meta.json'))
    tok = AutoTokenizer.from_pretrained(folders['gpt2'])
    assert meta['eot_token'] == tok.eos_token_id and meta['vocab_size'] == len(tok)
    ids = np.fromfile(tmp_path / 'ds' / 'val.bin', dtype=meta['dtype']).tolist()
    eot = tok.eos_token_id
    pieces = ' '.join(map(str, ids)).split(str(eot))  # EOT story EOT story ... EOT
    segments = [[int(t) for t in p.split()] for p in pieces[1:-1]]
    assert ids[0] == ids[-1] == eot and len(segments) == 10
    for seg in segments:  # each story is exactly the model tokenizer's encoding of its text
        assert seg == tok.encode(tok.decode(seg), add_special_tokens=False)


def test_eval_only_and_fine_tuning_on_a_models_tokenizer(folders, tmp_path):
    """train.py --eval_only scores a Hugging Face model in bits per byte as transformers does; on
    a dataset of another tokenizer it re-encodes the text (same number); --init_from fine-tunes."""
    from transformers import AutoModelForCausalLM
    from tinystories.dataset import open_dataset
    from helpers import write_byte_dataset
    stories = [' '.join(random.Random(i).choice(['Tom', 'ran', 'to', 'the', 'big', 'dog.', 'Lily',
                                                 'smiled.']) for _ in range(30)) for i in range(40)]
    for name, part in (('train.txt', stories[:30]), ('val.txt', stories[30:])):
        (tmp_path / name).write_text(''.join(f"{s}\n{EOT}\n" for s in part))
    folder, ds = folders['neo'], str(tmp_path / 'ds')
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=ROOT, capture_output=True, text=True, timeout=300)
    r = run('prepare.py', f'--source={tmp_path / "train.txt"}', f'--val_source={tmp_path / "val.txt"}',
            f'--tokenizer={folder}', f'--data_dir={ds}', '--workers=1')
    assert r.returncode == 0, r.stderr
    r = run('train.py', f'--out_dir={folder}', '--eval_only', f'--data_dir={ds}', '--device=cpu', '--dtype=float32')
    assert r.returncode == 0, r.stderr
    ours = float(r.stdout.split(' bits/byte')[0].split()[-1])
    # the same measure through transformers: windows of the model's context over val.bin
    data = open_dataset(ds)
    ids, theirs_model = torch.tensor(data.tokens('val').astype(np.int64)), AutoModelForCausalLM.from_pretrained(folder)
    total, T = 0.0, theirs_model.config.max_position_embeddings
    with torch.no_grad():
        for s in range(0, len(ids) - 1, T):
            x, y = ids[s:s + T], ids[s + 1:s + 1 + T]
            logits = theirs_model(x[:len(y)][None]).logits[0]
            total += torch.nn.functional.cross_entropy(logits, y, reduction='sum').item()
    assert ours == pytest.approx(total / np.log(2) / data.split_info('val')['bytes'], abs=2e-4)
    # the same text in a byte-level dataset: re-encoded with the model's tokenizer, same number
    write_byte_dataset(str(tmp_path / 'bytes'), data.texts('train'), data.texts('val'))
    r = run('train.py', f'--out_dir={folder}', '--eval_only', f'--data_dir={tmp_path / "bytes"}', '--device=cpu',
            '--dtype=float32')
    assert r.returncode == 0 and 're-encoded' in r.stdout, r.stderr
    assert float(r.stdout.split(' bits/byte')[0].split()[-1]) == pytest.approx(ours, abs=2e-4)
    # fine-tuning starts from the model's weights, on data in its tokenizer only
    out = str(tmp_path / 'ft')
    r = run('train.py', f'--init_from={folder}', f'--data_dir={ds}', f'--out_dir={out}', '--max_iters=3',
            '--block_size=32', '--batch_size=2', '--eval_interval=100', '--device=cpu', '--dtype=float32',
            '--compile=False', '--warmup_iters=1', '--progress=False')
    assert r.returncode == 0, r.stderr
    model, _, info = load_run(out, 'cpu')
    assert info['model_args']['window_size'] == 8 and info['iter_num'] == 3
    r = run('train.py', f'--init_from={folder}', f'--data_dir={tmp_path / "bytes"}', f'--out_dir={out}2',
            '--max_iters=3', '--block_size=32', '--device=cpu')
    assert r.returncode != 0 and 'prepare.py --tokenizer=' in r.stderr.strip().splitlines()[-1]
