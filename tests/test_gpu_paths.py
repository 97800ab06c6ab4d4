"""The GPU code paths of model.py (tinystories/speedups.py), run on a CPU: per-row generation budgets over a static KV cache
(the decode step CUDA graphs capture, uncaptured), FlexAttention's sliding-window layers and
zero-padded small heads against SDPA with an explicit mask, the loss implementations against
each other, and the spec-sheet peaks."""
import pytest
import torch

from tinystories.hardware import spec_peak_flops
from model import GPT, GPTConfig
from tinystories.speedups import attention_plans, padded_head_sizes


def tiny(window=0, block_size=32, **kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=61, block_size=block_size, n_layer=3, n_head=2, n_embd=16, window_size=window)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


@pytest.mark.parametrize('decode', ['dynamic', 'static'])
def test_every_row_keeps_its_own_budget(decode):
    """Prompts from 1 token to nearly the whole context in one batch: each row gets
    min(max_new_tokens, block_size - its length) tokens, the same as decoding it alone without
    a cache; a prompt that fills the context gets none and disturbs no other row."""
    m = tiny(window=4)
    m.decode = decode
    torch.manual_seed(1)
    lengths = [1, 5, 17, 29, 31, 32, 40]  # block_size 32: the last two have no room
    prompts = [torch.randint(0, 61, (n,)).tolist() for n in lengths]
    outs = m.generate(prompts, 10, temperature=0)
    assert [len(o) for o in outs] == [10, 10, 10, 3, 1, 0, 0]
    for p, out in zip(prompts, outs):
        assert out == m.generate_no_cache(p, 10, temperature=0)
    steps = list(m.generate_stream(prompts, 10, temperature=0))
    assert len(steps) == 10 and all(s[5] is None and s[6] is None for s in steps)
    assert [s[3] for s in steps[3:]] == [None] * 7  # row 3 is done after its 3 tokens
    assert list(m.generate_stream([[1] * 32], 10)) == [] and m.generate([[1] * 40], 5) == [[]]


@pytest.mark.parametrize('decode', ['dynamic', 'static'])
def test_eot_ends_only_its_own_row(decode):
    m = tiny()
    m.decode = decode
    prompts = [[3, 4, 5], [9] * 20, [2]]
    free = m.generate(prompts, 8, temperature=0)
    eot = free[1][2]  # the third token of row 1 becomes the end-of-text token
    outs = m.generate(prompts, 8, temperature=0, eot_token=eot)
    assert len(outs[1]) <= 3 and outs[1][-1] == eot
    for got, want in zip(outs, free):  # each row stops at its own first eot, if any
        assert got == (want[:want.index(eot) + 1] if eot in want else want)
    assert any(len(o) == 8 for o in outs)  # and a row without one runs on


def test_sampled_rows_match_single_prompts_static_and_dynamic():
    """With a seeded generator, static decoding (the CUDA-graph step) and dynamic decoding give
    the same tokens for a batch of mixed lengths (same logits, same random numbers)."""
    m = tiny(window=3)
    prompts = [[1, 2, 3, 4, 5, 6, 7], [8], [9, 10, 11]]
    runs = []
    for decode in ('dynamic', 'static'):
        m.decode = decode
        runs.append(m.generate(prompts, 12, temperature=1.0, top_k=20,
                               generator=torch.Generator().manual_seed(3)))
    assert runs[0] == runs[1]


def _loss_and_grads(m, idx, y):
    m.zero_grad()
    _, loss = m(idx, y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in m.parameters()]


@pytest.mark.parametrize('impl', ['few_chunks', 'plain'])
def test_loss_impls_agree_with_chunked(impl):
    m = tiny(window=4).train()
    idx = torch.randint(0, 61, (3, 32))
    y = torch.randint(0, 61, (3, 32))
    y[0, :5] = -1
    ref_loss, ref_grads = _loss_and_grads(m, idx, y)
    m.loss_impl = impl
    loss, grads = _loss_and_grads(m, idx, y)
    assert abs(loss.item() - ref_loss.item()) < 1e-5
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4)


def test_padded_heads_and_flex_local_attention_match_the_mask_path():
    """q/k/v zero-padded from head size 4 (as ts_1m) to 8 (SDPA) or 16 (FlexAttention), scaled
    by the true head size, give the same loss and gradients; FlexAttention with a sliding-window block mask gives the mask
    path's logits (forward only: FlexAttention has no backward on a CPU)."""
    m = tiny(window=5, block_size=40, n_embd=16, n_head=4).train()
    idx = torch.randint(0, 61, (2, 40))
    ref_loss, ref_grads = _loss_and_grads(m, idx, idx)
    plans = attention_plans(m, 40, 0, None, None, idx.device)
    assert plans[True].mask is not None and plans[True].block_mask is None
    assert plans[False].head_size == 0  # auto: no padding on a CPU
    m.pad_heads = True
    loss, grads = _loss_and_grads(m, idx, idx)
    assert attention_plans(m, 40, 0, None, None, idx.device)[False].head_size == 8  # SDPA: x8
    assert abs(loss.item() - ref_loss.item()) < 1e-5
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)
    m.eval()
    with torch.no_grad():
        ref_logits, _ = m(idx)
        m.local_attention = 'flex'
        plans = attention_plans(m, 40, 0, None, None, idx.device)
        assert plans[True].block_mask is not None and plans[True].head_size == 16
        torch.testing.assert_close(m(idx)[0], ref_logits, atol=1e-5, rtol=1e-4)
        assert abs(m(idx, idx)[1].item() - ref_loss.item()) < 1e-5


def test_heads_are_padded_only_as_far_as_each_kernel_needs():
    """(SDPA, FlexAttention) head sizes: flash attention takes multiples of 8, FlexAttention
    powers of two from 16 (ts_1m's 4 and ts_33m's 48 included); 0 = as it is."""
    table = {4: (8, 16), 8: (0, 16), 12: (16, 16), 16: (0, 0), 24: (0, 32), 32: (0, 0),
             48: (0, 64), 64: (0, 0), 96: (0, 128)}
    assert {hs: padded_head_sizes(hs) for hs in table} == table


def test_spec_peak_flops():
    assert spec_peak_flops('cpu') is None
    assert spec_peak_flops('cuda', name='NVIDIA H100 80GB HBM3') == 989e12
    assert spec_peak_flops('cuda', name='NVIDIA H100 PCIe') == 756e12
    assert spec_peak_flops('cuda', name='NVIDIA A100-SXM4-40GB') == 312e12
    assert spec_peak_flops('cuda', name='NVIDIA A10') == 125e12  # not the A100's figure
    assert spec_peak_flops('cuda', name='Tesla V100-SXM2-16GB') is None  # no bf16 on a V100
    assert spec_peak_flops('cuda', torch.float16, name='Tesla V100-SXM2-16GB') == 125e12
    assert spec_peak_flops('cuda', name='Some Future GPU') is None
    # MFU against the peak of the dtype in use: fp32 with TF32 matmuls is the TF32 tensor peak
    h100 = 'NVIDIA H100 80GB HBM3'
    assert spec_peak_flops('cuda', torch.float16, name=h100) == 989e12
    assert spec_peak_flops('cuda', torch.float32, name=h100, tf32=True) == 495e12
    assert spec_peak_flops('cuda', torch.float32, name=h100, tf32=False) == 67e12
    assert spec_peak_flops('cuda', torch.float32, name='Tesla V100-SXM2-16GB', tf32=True) == 15.7e12


def test_loss_auto_is_chunked_on_cpu_and_plain_elsewhere():
    """'auto' picks the chunked loss on a CPU and nanoGPT's whole-logits cross-entropy on any
    other device (the only loss ever measured fast on a GPU); the meta device stands in for CUDA."""
    cfg = GPTConfig(vocab_size=61, block_size=16, n_layer=1, n_head=2, n_embd=16)
    for device, backward in (('cpu', 'LinearCrossEntropyBackward'), ('meta', 'NllLossBackward')):
        torch.manual_seed(0)
        m = GPT(cfg).to(device)
        x = torch.zeros(2, 8, dtype=torch.long, device=device)
        assert type(m(x, x)[1].grad_fn).__name__.startswith(backward)


def test_bf16_decoding_runs_a_fresh_copy_and_leaves_the_model_alone():
    """decode_dtype='bfloat16' (the CUDA default) decodes with a bf16 copy of the weights, copied
    again at every call (so it follows training), kept out of the state_dict and parameters."""
    m = tiny(window=4)
    keys, n = list(m.state_dict()), m.num_params()
    prompts = [[1, 2, 3], [4]]
    m.decode_dtype = 'bfloat16'
    for decode in ('dynamic', 'static'):
        m.decode = decode
        assert [len(o) for o in m.generate(prompts, 6, temperature=0)] == [6, 6]
    copy = m._decoding_copy
    assert copy.wte.weight.dtype == torch.bfloat16 and copy is not m
    assert list(m.state_dict()) == keys and m.num_params() == n
    with torch.no_grad():
        m.h[0].mlp.c_fc.weight.mul_(2)
    m.generate(prompts, 1)
    assert m._decoding_copy is copy  # refreshed in place (a captured graph keeps reading it)
    torch.testing.assert_close(copy.h[0].mlp.c_fc.weight, m.h[0].mlp.c_fc.weight.bfloat16())


def test_captured_decoders_are_kept_per_batch_and_length():
    """One decoder (its cache and, on CUDA, its graph) per (batch, length rounded up to 64), kept
    across generate() calls and handed back with an empty cache; at most MAX_GRAPHS kept. Made
    here without capturing (capture happens at the first step, on CUDA only)."""
    from tinystories.speedups import MAX_GRAPHS, static_decoder
    m = tiny(block_size=512)
    a = static_decoder(m, 2, 100, capture=True)
    assert a.cache.k.size(3) == 128
    a.cache.k.fill_(1.0)
    a.cache.len = 7
    b = static_decoder(m, 2, 120, capture=True)
    assert b is a and b.cache.len == 0 and not b.cache.k.any()
    assert static_decoder(m, 3, 100, capture=True) is not a
    assert static_decoder(m, 2, 100, capture=False) is not a  # uncaptured: made for the call
    for batch in range(4, 4 + MAX_GRAPHS):
        static_decoder(m, batch, 100, capture=True)
    assert len(m._captured_decoders) == MAX_GRAPHS and static_decoder(m, 2, 100, capture=True) is not a
