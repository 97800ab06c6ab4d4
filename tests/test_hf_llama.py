"""Hugging Face LlamaForCausalLM folders as model locations: tiny random Llamas made and saved by
transformers itself (tied multi-head with rms_norm_eps 1e-6; untied grouped-query with another
rope_theta and a padded vocabulary), each with a sentencepiece-style tokenizer.json (BPE with byte
fallback). Through checkpoint.load_run our logits equal transformers' within 1e-5, greedy tokens
are equal, our tokenizer encodes and decodes random Unicode as transformers' does; hf:OWNER/NAME
through the local hub, sample.py on it; what cannot be represented is a one-line error."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip('transformers')

from hf_helpers import FakeHub  # noqa: E402
from llama_reference import random_texts, random_vocab  # noqa: E402
from tinystories.checkpoint import load_run  # noqa: E402
from tinystories.llama2c_tokenizer import Llama2cTokenizer, tokenizer_bin, tokenizer_json  # noqa: E402
from tinystories.tokenizer_interface import tokenizer_from_record  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHAPES = {  # extra embeddings past the tokenizer's pieces, as hub models often pad theirs
    'mha-tied': dict(hidden_size=32, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, tie_word_embeddings=True, rms_norm_eps=1e-6, pad=0),
    'gqa-untied': dict(hidden_size=48, intermediate_size=64, num_hidden_layers=3, num_attention_heads=6,
                       num_key_value_heads=2, tie_word_embeddings=False, rms_norm_eps=1e-5,
                       rope_theta=50000.0, pad=8),
}


def save_tokenizer(tok, folder):
    """tokenizer.json as transformers' Llama converter writes it, saved by transformers."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(tokenizer_json(tok))),
                                   bos_token='<s>', eos_token='</s>', unk_token='<unk>',
                                   clean_up_tokenization_spaces=False)
    fast.save_pretrained(folder)


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    pieces, scores = random_vocab(6, False, distinct_scores=True)
    tok = Llama2cTokenizer(tokenizer_bin(pieces, scores), 'tok')
    out = {}
    for i, (name, shape) in enumerate(SHAPES.items()):
        shape = dict(shape)
        pad, theta = shape.pop('pad'), shape.pop('rope_theta', 10000.0)
        torch.manual_seed(i)
        cfg = transformers.LlamaConfig(vocab_size=tok.vocab_size + pad, max_position_embeddings=64,
                                       rope_parameters={'rope_type': 'default', 'rope_theta': theta}, **shape)
        model = transformers.LlamaForCausalLM(cfg)
        with torch.no_grad():  # jittered, so that every mapping error shows in the logits
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        folder = str(tmp_path_factory.mktemp(name))
        model.save_pretrained(folder)
        save_tokenizer(tok, folder)
        out[name] = folder
    return out


@pytest.mark.parametrize('name', sorted(SHAPES))
def test_llama_folder_matches_transformers(folders, name):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = folders[name]
    ours, tok, info = load_run(folder, 'cpu')
    theirs = AutoModelForCausalLM.from_pretrained(folder).eval()
    hf_tok = AutoTokenizer.from_pretrained(folder)
    assert type(theirs).__name__ == info['architecture'] == 'LlamaForCausalLM'
    args = info['model_args']
    assert (args['norm'], args['activation'], args['rotary']) == ('rmsnorm', 'swiglu', True)
    assert args['norm_eps'] == SHAPES[name]['rms_norm_eps'] and args['n_kv_head'] == SHAPES[name]['num_key_value_heads']
    assert args['tie_embeddings'] == SHAPES[name]['tie_word_embeddings']
    assert args['rope_theta'] == SHAPES[name].get('rope_theta', 10000.0)

    idx = torch.randint(0, theirs.config.vocab_size, (3, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(idx)[0] - theirs(idx).logits).abs().max().item()
    assert diff < 1e-5, diff
    prompt = [tok.start_token] + tok.encode('a cat sat on the mat')
    mine = ours.generate([prompt], 40, temperature=0)[0]
    ref = theirs.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, len(prompt):].tolist()
    assert mine == ref and len(mine) == 40

    # the tokenizer: BOS before a story, stop at </s> (config.json's eos_token_id), as transformers'
    assert (tok.kind, tok.start_token, tok.stop_token) == ('llama2c', hf_tok.bos_token_id, hf_tok.eos_token_id)
    again = tokenizer_from_record(info['tokenizer'])  # as a fine-tuned checkpoint stores it
    for text in random_texts(6, 200):
        ids = tok.encode(text)
        assert ids == hf_tok.encode(text, add_special_tokens=False) == again.encode(text), repr(text)
        assert tok.decode([tok.start_token] + ids) == hf_tok.decode(ids) == text
    assert again.stop_token == tok.stop_token


def test_hf_llama_through_the_local_hub_and_a_stage(folders, tmp_path, monkeypatch):
    """hf:OWNER/NAME downloads the folder once; sample.py writes transformers' greedy tokens."""
    from transformers import AutoModelForCausalLM
    s = FakeHub()
    s.add_model('tester/tiny-llama', folders['gqa-untied'])
    env = dict(os.environ, HF_ENDPOINT=s.url, TINYSTORIES_CACHE=str(tmp_path / 'cache'))
    try:
        r = subprocess.run([sys.executable, os.path.join(ROOT, 'sample.py'), '--out_dir=hf:tester/tiny-llama',
                            '--start=a cat', '--json', '--temperature=0', '--max_new_tokens=30', '--device=cpu',
                            '--num_samples=1'], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    finally:
        s.close()
    out = json.loads(r.stdout)
    monkeypatch.setenv('TINYSTORIES_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('HF_ENDPOINT', s.url)  # closed: the cached folder needs no network
    _, tok, info = load_run('hf:tester/tiny-llama', 'cpu')
    assert info['report_dir'] == os.path.join('out', 'hf', 'tester--tiny-llama')
    theirs = AutoModelForCausalLM.from_pretrained(info['model_dir']).eval()
    prompt = [tok.start_token] + tok.encode('a cat')
    ref = theirs.generate(torch.tensor([prompt]), max_new_tokens=30, do_sample=False, pad_token_id=0)[0].tolist()
    ref = ref[len(prompt):]
    if tok.stop_token in ref:  # transformers stops at eos_token_id too, and keeps it
        ref = ref[:ref.index(tok.stop_token)]
    assert out['tokens'] == len(ref) + out['finished']
    assert out['completion'] == tok.decode_bytes(prompt + ref)[len('a cat'):].decode('utf-8', errors='ignore')


def edited(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg = json.load(open(os.path.join(dst, 'config.json')))
    cfg.update(changes)
    json.dump(cfg, open(os.path.join(dst, 'config.json'), 'w'))
    return str(dst)


def test_what_a_llama_folder_cannot_be(folders, tmp_path):
    src = folders['mha-tied']
    cases = [(dict(rope_parameters={'rope_type': 'linear', 'factor': 2.0, 'rope_theta': 1e4}), "rope_type='linear'"),
             (dict(attention_bias=True), 'attention_bias=True'),
             (dict(hidden_act='gelu'), "hidden_act='gelu'"),
             (dict(head_dim=16), 'head_dim=16'),
             (dict(num_key_value_heads=3), 'do not make whole heads'),
             (dict(tie_word_embeddings=False), "lack 'lm_head.weight'"),
             (dict(hidden_size=40, head_dim=10), 'do not fit config.json')]
    for i, (change, words) in enumerate(cases):
        with pytest.raises(SystemExit) as e:
            load_run(edited(src, tmp_path / f'c{i}', **change), 'cpu')
        msg = str(e.value)
        assert msg.startswith('error: ') and '\n' not in msg and words in msg, (change, msg)
    folder = edited(src, tmp_path / 'no-tok')
    os.remove(os.path.join(folder, 'tokenizer.json'))
    with pytest.raises(SystemExit, match=r'^error: .* has no tokenizer.json'):
        load_run(folder, 'cpu')


def test_llama2c_files_on_the_hub(tmp_path, monkeypatch):
    """llama2.c's published models (hub.LLAMA2C_MODELS) as hf:karpathy/tinyllamas/<file>, served
    by the local hub with tiny stand-ins at the same paths: each loads with the tokenizer it
    needs (the top tokenizer.bin, or tok{vocab}.bin beside it), once; errors are one line."""
    from llama_reference import CONFIGS, random_weights
    from tinystories import hub
    from tinystories import llama2c as L
    from tinystories.llama2c_tokenizer import special_pieces, write_tokenizer_bin
    repo = tmp_path / 'tinyllamas'
    (repo / 'stories260K').mkdir(parents=True)
    for n, folder, tok_name in ((12, repo, 'tokenizer.bin'), (20, repo / 'stories260K', 'tok279.bin')):
        pieces = special_pieces() + [bytes([97 + i % 26]) * (1 + i // 26) for i in range(n)]
        write_tokenizer_bin(str(folder / tok_name), pieces, [0.0] * len(pieces))
    paths = [loc.split('/', 2)[2] for loc in hub.LLAMA2C_MODELS]
    for i, path in enumerate(paths):
        c = dict(CONFIGS['gqa-untied'], vocab_size=279 if 'stories260K' in path else 271)
        L.write_checkpoint(str(repo / path), random_weights(c, seed=i), c, version=0)
    s = FakeHub()
    s.add_model('karpathy/tinyllamas', str(repo))
    monkeypatch.setenv('HF_ENDPOINT', s.url)
    monkeypatch.setenv('TINYSTORIES_CACHE', str(tmp_path / 'cache'))
    try:
        for loc, path in zip(hub.LLAMA2C_MODELS, paths):
            model, tok, info = load_run(f'hf:{loc}', 'cpu')
            local, _, _ = load_run(str(repo / path), 'cpu')
            assert info['kind'] == 'llama2c' and tok.vocab_size == model.config.vocab_size
            assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), local.state_dict().values()))
            assert info['report_dir'] == os.path.join('out', 'llama2c', os.path.basename(path)[:-4])
        n = len(s.log)
        load_run('hf:karpathy/tinyllamas/stories15M.bin', 'cpu')  # cached: no request
        assert len(s.log) == n
        os.remove(repo / 'tokenizer.bin')
        s.add_model('karpathy/tinyllamas', str(repo), rev='v2')
        for spec, words in (('hf:karpathy/tinyllamas/stories15M.bin@v2', 'has no tokenizer for stories15M.bin'),
                            ('hf:karpathy/tinyllamas/none.bin', 'has no none.bin'),
                            ('hf:karpathy/tinyllamas/../x.bin', 'is not a llama2.c file on the hub')):
            with pytest.raises(SystemExit) as e:
                load_run(spec, 'cpu')
            assert str(e.value).startswith('error: ') and '\n' not in str(e.value) and words in str(e.value)
    finally:
        s.close()
