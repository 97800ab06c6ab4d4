"""model.py: the KV cache gives the same logits as a full forward pass, padded batches of
different prompt lengths match single prompts, local attention masks, sampling filters and
frequencies, the chunked loss against F.cross_entropy."""
import pytest
import torch
import torch.nn.functional as F

from model import GPT, GPTConfig, sample_next
from tinystories.speedups import KVCache, LinearCrossEntropy, attention_masks


def tiny(window=0, **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=61, block_size=32, n_layer=3, n_head=2, n_embd=16, window_size=window)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def test_kv_cache_logits_match_full_forward():
    for m in (tiny(0), tiny(3), tiny(value_embeddings=True)):
        idx = torch.randint(0, 61, (2, 12))
        full, _ = m(idx)
        cache = KVCache(m.config, 2, 12, 'cpu', torch.float32)
        parts = [m(idx[:, :5], cache=cache)[0]]  # prefill 5, then one token at a time
        for t in range(5, 12):
            parts.append(m(idx[:, t:t + 1], cache=cache)[0])
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-4)


def test_batched_prompts_of_different_lengths_match_single_prompts():
    m = tiny(window=4)
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8], [9]]
    batched = m.generate(prompts, 8, temperature=0)
    for p, out in zip(prompts, batched):
        assert out == m.generate([p], 8, temperature=0)[0]
        assert out == m.generate_no_cache(p, 8, temperature=0)


def test_generate_stops_at_eot_and_at_context_end():
    m = tiny()
    with torch.no_grad():  # final LayerNorm outputs all ones, so the logits are the
        m.ln_f.weight.zero_()  # (tied) embedding rows' sums: make token 7's the largest
        m.ln_f.bias.fill_(1.0)
        m.lm_head.weight[7].fill_(1.0)
    assert m.generate([[1, 2]], 10, temperature=0, eot_token=7) == [[7]]
    assert len(m.generate([[1] * 30], 10, temperature=0)[0]) == 2  # 32-token context


def test_local_attention_mask_window():
    masks = attention_masks(torch.arange(6), 6, window=2)
    assert masks[False].sum() == 21  # causal: 1 + 2 + ... + 6
    assert masks[True][5].tolist() == [False, False, False, False, True, True]


def test_sampling_filters():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat(200, 1)
    assert set(sample_next(logits, 1.0, top_k=2, generator=g).tolist()) == {2, 3}
    # probabilities 0.032, 0.087, 0.237, 0.644: top_p=0.7 keeps tokens 3 and 2
    assert set(sample_next(logits, 1.0, top_p=0.7, generator=g).tolist()) == {2, 3}
    assert sample_next(logits[:1], 0).item() == 3


def test_sampling_frequencies_follow_softmax():
    g = torch.Generator().manual_seed(1)
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, float('-inf')]]).repeat(20000, 1)
    counts = torch.bincount(sample_next(logits, 1.0, generator=g), minlength=5).double()
    expected = logits[0].softmax(-1).double() * 20000
    assert counts[4] == 0  # probability 0 is never drawn
    # within 5 standard deviations of the binomial count, for every token
    assert ((counts - expected).abs() <= 5 * (expected * (1 - expected / 20000)).sqrt() + 1e-9).all()
    # temperature: a low one concentrates the mass on the top token
    assert (sample_next(logits[:2000], 0.05, generator=g) == 3).all()


@pytest.mark.parametrize('autocast', [False, True])
def test_chunked_loss_matches_plain_cross_entropy(autocast):
    """LinearCrossEntropy (gradients computed in forward, 256 rows at a time) gives the loss and
    the gradients of F.cross_entropy over the whole logits, ignored targets included."""
    torch.manual_seed(0)
    x = torch.randn(600, 24, requires_grad=True)   # 600 rows: two full chunks and a partial one
    w = torch.randn(50, 24, requires_grad=True)
    t = torch.randint(0, 50, (600,))
    t[::7] = -1
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        ref = F.cross_entropy((x @ w.t()).float(), t, ignore_index=-1)
        ref_gx, ref_gw = torch.autograd.grad(ref * 3, (x, w))
        loss = LinearCrossEntropy.apply(x, w, t, True)
        gx, gw = torch.autograd.grad(loss * 3, (x, w))
    tol = 2e-2 if autocast else 1e-5  # bf16 matmuls round to ~3 significant digits
    assert abs(loss.item() - ref.item()) < tol * ref.item()
    for got, want in ((gx, ref_gx), (gw, ref_gw)):
        assert (got - want).abs().max() < tol * want.abs().max()
    with torch.no_grad():  # evaluation: the same loss, no gradients computed
        assert abs(LinearCrossEntropy.apply(x, w, t, False).item() - loss.item()) < tol * loss.item()


def test_model_loss_is_the_cross_entropy_of_its_logits():
    m = tiny()
    idx = torch.randint(0, 61, (2, 20))
    y = torch.randint(0, 61, (2, 20))
    logits, _ = m(idx)
    none, loss = m(idx, y)
    assert none is None
    assert abs(loss.item() - F.cross_entropy(logits.view(-1, 61), y.view(-1)).item()) < 1e-5


def test_param_counts_and_flops():
    m = tiny()
    c = m.config
    per_layer = 12 * c.n_embd ** 2 + 13 * c.n_embd  # attention + MLP weights and biases, 2 LayerNorms
    assert m.num_params(embeddings=False) == c.n_layer * per_layer + 2 * c.n_embd
    assert m.num_params() == m.num_params(False) + (c.vocab_size + c.block_size) * c.n_embd
    assert m.flops_per_token() == 6 * (m.num_params() - c.block_size * c.n_embd) + 12 * 3 * 32 * 16


def test_value_embeddings_add_only_to_the_values():
    plain, m = tiny(), tiny(value_embeddings=True)
    c = m.config
    # the tables are looked up, not multiplied: counted as embeddings, not in the FLOPs
    assert m.num_params() == plain.num_params() + c.n_layer * c.vocab_size * c.n_embd
    assert m.num_params(False) == plain.num_params(False) and m.flops_per_token() == plain.flops_per_token()
    m.load_state_dict(plain.state_dict(), strict=False)
    idx = torch.randint(0, 61, (2, 10))
    for table in m.vte:  # zero tables: exactly the plain model
        torch.nn.init.zeros_(table.weight)
    torch.testing.assert_close(m(idx)[0], plain(idx)[0])
    with torch.no_grad():
        m.vte[0].weight[idx[0, 0]] += 1.0
    assert not torch.allclose(m(idx)[0], plain(idx)[0])
    with torch.no_grad():  # ... through layer 0's attention output alone
        m.h[0].attn.c_proj.weight.zero_()
        plain.h[0].attn.c_proj.weight.zero_()
    torch.testing.assert_close(m(idx)[0], plain(idx)[0])


def test_attention_maps_are_causal_distributions():
    m = tiny(window=2)
    maps = m.attention_maps(torch.randint(0, 61, (1, 8)))
    assert len(maps) == 3 and maps[0].shape == (1, 2, 8, 8)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(1, 2, 8))
    assert maps[0].triu(1).abs().sum() == 0
    assert maps[1][0, 0, 7, :6].abs().sum() == 0  # local layer: only the last 2 positions


def test_orthogonalize_flattens_singular_values():
    from tinystories.optim import orthogonalize
    torch.manual_seed(0)
    for m, n in ((16, 48), (48, 16)):
        k = min(m, n)
        u, v = torch.linalg.qr(torch.randn(m, k))[0], torch.linalg.qr(torch.randn(n, k))[0]
        g = u @ torch.diag(torch.logspace(-1, 1, k)) @ v.T  # singular values from 0.1 to 10
        after = torch.linalg.svdvals(orthogonalize(g))
        assert after.max() < 1.3 and after.max() / after.min() < 4, after  # roughly all 1
        # a stack of matrices (Muon's one batched call per shape): each as if alone; bf16 close
        stack = torch.stack([g, 3 * g.flip(0), torch.randn(m, n)])
        torch.testing.assert_close(orthogonalize(stack)[1], orthogonalize(3 * g.flip(0)))
        assert (orthogonalize(stack, dtype=torch.bfloat16).float() - orthogonalize(stack)).abs().max() < 0.05


def test_muon_optimizer_state_round_trip():
    m = tiny()
    opt = m.configure_optimizer(0.1, 1e-3, (0.9, 0.95), 'cpu', muon_lr=0.02)
    n_muon = sum(p.numel() for p in opt.optimizers[0].param_groups[0]['params'])
    assert n_muon == m.config.n_layer * 12 * m.config.n_embd ** 2  # exactly the blocks' matrices
    x = torch.randint(0, 61, (2, 8))
    m(x, x)[1].backward()
    opt.step()
    state = opt.state_dict()
    opt2 = m.configure_optimizer(0.1, 1e-3, (0.9, 0.95), 'cpu', muon_lr=0.02)
    opt2.load_state_dict(state)
    assert {g['initial_lr'] for g in opt2.param_groups} == {1e-3, 0.02}
    a, b = opt.optimizers[0], opt2.optimizers[0]
    for p in a.param_groups[0]['params']:
        assert torch.equal(a.state[p]['momentum_buffer'], b.state[p]['momentum_buffer'])


# the torch release that added each API the code calls (a piece of its source text), newest first
TORCH_APIS = {
    'torch.nn.attention.flex_attention': (2, 5),  # flex_attention, create_block_mask
    'torch.get_autocast_dtype': (2, 4),
    'torch.is_autocast_enabled(device': (2, 4),   # the device-type argument
    'torch.compiler.is_compiling': (2, 3),
    'torch.amp.GradScaler': (2, 3),
    'bias=config.bias)': (2, 1),                  # nn.LayerNorm's bias argument
    'scale=scale)': (2, 1),                       # scaled_dot_product_attention's scale
    'fused=True': (2, 0),                         # AdamW's fused kernel
    'weights_only=True': (1, 13),
    'torch.cuda.CUDAGraph': (1, 10),
}
OLD_TORCH_MODULES = {'torch', 'torch.distributed', 'torch.nn.parallel', 'torch.nn', 'torch.nn.functional'}


def test_requirements_torch_floor_covers_every_api_used():
    """requirements.txt's torch floor is the newest release among the APIs the code calls, and
    every `from torch.x import` in the code is one the table knows."""
    import glob
    import os
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = ''.join(open(f).read() for f in sorted(glob.glob(os.path.join(root, '*.py')) +
                                                     glob.glob(os.path.join(root, 'tinystories', '*.py'))))
    with open(os.path.join(root, 'requirements.txt')) as f:
        floor = re.search(r'^torch>=(\d+)\.(\d+)', f.read(), re.M)
    floor = (int(floor[1]), int(floor[2]))
    used = {api: version for api, version in TORCH_APIS.items() if api in source}
    assert 'torch.nn.attention.flex_attention' in used and 'torch.get_autocast_dtype' in used
    assert floor == max(used.values()), (floor, used)
    for module in set(re.findall(r'^\s*(?:from|import) (torch[\w.]*)', source, re.M)):
        assert module in OLD_TORCH_MODULES or module in TORCH_APIS, f"add {module} to TORCH_APIS"
