"""model.py's Llama-style block (RMSNorm, rotary embeddings, SwiGLU, grouped-query attention,
untied output) against tests/llama_reference.py, the plain transcription of llama2.c's run.c."""
import pytest
import torch

from llama_reference import CONFIGS, random_weights, reference_forward, reference_generate
from model import GPT, GPTConfig
from tinystories import llama2c as L


def llama_model(name, seed=0):
    config = CONFIGS[name]
    weights = random_weights(config, seed)
    model = GPT(GPTConfig(**L.gpt_args(config)))
    model.load_state_dict(L.gpt_state_dict(weights, config))
    return model.eval(), weights, config


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_llama_block_matches_the_reference(name):
    model, weights, config = llama_model(name)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, config['vocab_size'], (3, config['seq_len']), generator=g)
    with torch.no_grad():
        logits, _ = model(tokens)                                           # (3, T, vocab)
    for row, ids in zip(logits, tokens.tolist()):
        assert torch.allclose(row, reference_forward(weights, config, ids), atol=1e-5, rtol=0)
    # the loss path reads the same logits (untied: lm_head is its own matrix)
    _, loss = model(tokens[:, :-1], tokens[:, 1:])
    want = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, config['vocab_size']),
                                             tokens[:, 1:].reshape(-1))
    assert abs(loss.item() - want.item()) < 1e-5
    # and the weights go back to llama2.c's names unchanged
    back = L.weights_from_gpt(model.state_dict(), config)
    assert back.keys() == weights.keys()
    assert all(torch.equal(back[k], weights[k]) for k in weights)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_llama_generation_through_the_kv_cache_matches_run_c(name):
    """generate() (the KV cache, one token per step, and rows at different positions) writes
    run.c's greedy tokens, stopping at BOS as run.c does."""
    model, weights, config = llama_model(name, seed=2)
    prompts = [[5, 7, 9], [11], [3, 4, 5, 6, 8]]
    outs = model.generate([[1] + p for p in prompts], config['seq_len'], temperature=0, eot_token=1)
    for p, out in zip(prompts, outs):
        # run.c also samples a token from the last position; generate() stops at the context
        want = reference_generate(weights, config, p, config['seq_len'] - 1)[len(p):]
        got = out[:-1] if out and out[-1] == 1 else out  # run.c prints no BOS
        assert got == want
    for p in prompts:  # and the uncached sampler agrees
        assert model.generate_no_cache([1] + p, config['seq_len'], temperature=0)[:3] == \
            model.generate([[1] + p], 3, temperature=0)[0]


def test_llama_attention_maps_and_parameter_counts():
    model, weights, config = llama_model('gqa-untied')
    tokens = torch.tensor([[1, 5, 7, 9, 2]])
    maps = model.attention_maps(tokens)
    assert len(maps) == config['n_layers'] and maps[0].shape == (1, config['n_heads'], 5, 5)
    assert torch.allclose(maps[0].sum(-1), torch.ones(1, config['n_heads'], 5))
    assert maps[0][0, :, 0, 1:].abs().max() == 0  # causal
    assert model.num_params() == sum(w.numel() for w in weights.values())
    tied, _, c = llama_model('mha-tied')
    assert tied.lm_head.weight is tied.wte.weight
    assert tied.num_params(embeddings=False) == tied.num_params() - c['vocab_size'] * c['dim']


def test_default_config_is_still_gpt2():
    """The switches default to GPT-2's block: the same parameter names and shapes as before."""
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes['wpe.weight'] == (16, 8) and shapes['h.0.attn.c_attn.weight'] == (24, 8)
    assert shapes['h.0.mlp.c_fc.weight'] == (32, 8) and 'h.0.ln_1.bias' in shapes
    assert not any('rope' in k for k in shapes)
    assert isinstance(model.h[0].ln_1, torch.nn.LayerNorm)


def test_llama2c_file_is_a_model_location(tmp_path):
    """A llama2.c checkpoint with its tokenizer beside it (tok{vocab}.bin) loads through load_run,
    and sample.py writes run.c's greedy tokens from it; without a tokenizer, a one-line error."""
    import json
    import subprocess
    import sys
    from helpers import ROOT
    from llama_reference import reference_encode
    from tinystories.checkpoint import load_run
    from tinystories.llama2c_tokenizer import special_pieces, write_tokenizer_bin
    pieces = special_pieces() + [c.encode() for c in ' abcdefghij'] + [b' a', b' b', b'ab', b' ab']
    scores = [0.0] * 270 + [1.0, 2.0, 3.0, 4.0]
    config = dict(dim=16, hidden_dim=40, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=len(pieces),
                  seq_len=24, tied=False)
    weights = random_weights(config, seed=3)
    path = str(tmp_path / 'tiny.bin')
    L.write_checkpoint(path, weights, config, version=0)
    missing = subprocess.run([sys.executable, 'sample.py', f'--out_dir={path}'], cwd=ROOT,
                             capture_output=True, text=True)
    assert missing.returncode != 0 and missing.stderr.startswith('error: no tokenizer for llama2.c')
    assert len(missing.stderr.strip().splitlines()) == 1
    write_tokenizer_bin(str(tmp_path / f"tok{len(pieces)}.bin"), pieces, scores)
    model, tok, info = load_run(path, 'cpu')
    assert info['kind'] == 'llama2c' and (tok.start_token, tok.stop_token) == (1, 1)
    prompt = 'ab a'
    ids = reference_encode(pieces, scores, prompt)
    assert tok.encode(prompt) == ids
    r = subprocess.run([sys.executable, 'sample.py', f'--out_dir={path}', f'--start={prompt}', '--json',
                        '--temperature=0', '--max_new_tokens=100', '--device=cpu', '--num_samples=1'],
                       cwd=ROOT, capture_output=True, text=True, check=True)
    out = json.loads(r.stdout)
    want = reference_generate(weights, config, ids, config['seq_len'] - 1)[len(ids):]
    assert out['tokens'] == len(want) + out['finished']
    assert out['completion'] == tok.decode_bytes([1] + ids + want)[len(prompt):].decode('utf-8', errors='ignore')
