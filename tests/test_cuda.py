"""The CUDA paths, on a GPU: the one script to run first on a GPU machine (`make gpu-check` runs
it, then bench.py's GPU cases). Skipped when torch sees no CUDA GPU. It runs under pytest or
alone, for a GPU machine without pytest: `PYTHONPATH=. python3 tests/test_cuda.py`.

- a compiled bf16 training step at ts_33m (window 256, head size 48: FlexAttention, padded to
  64) and ts_1m (head size 4: padded), its loss and gradients against SDPA with an explicit mask;
- decode='graph' against 'static' (the same step uncaptured), greedy and with a seeded CUDA
  generator, the graph kept for the next call; bf16 decoding's logits against fp32's;
- fp16 with a GradScaler for a few steps;
- train.py end to end, compiled, 30 steps with a resume; torchrun with a time budget (max_minutes
  broadcasts the plan over NCCL).
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

import torch

from bench import PAPER_SHAPES
from model import GPT, GPTConfig
from tinystories.speedups import attention_plans, decoding_model, padded_head_sizes

try:
    import pytest
    pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
except ImportError:  # a GPU machine with its own torch and no pytest: run as a script (the end)
    pytest = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 4096
BF16_LOGITS_TOLERANCE = 0.02  # bf16 decoding: the logits' RMS error, relative to fp32's RMS


def paper_model(shape, **kw):
    """A paper shape (GPT-Neo: window 256, no q/k/v biases) on the GPU, seeded."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB, block_size=512, window_size=256, qkv_bias=False,
                    **PAPER_SHAPES[shape], **kw)
    return GPT(cfg).cuda()


def batch(B, T=512, seed=1):
    g = torch.Generator('cuda').manual_seed(seed)
    return [torch.randint(0, VOCAB, (B, T), device='cuda', generator=g) for _ in range(2)]


def relative_error(got, want):
    return ((got.float() - want.float()).norm() / want.float().norm().clamp(min=1e-12)).item()


def loss_and_grads(model, x, y, forward=None):
    """The bf16 loss of forward (model, or its compiled wrapper) and model's gradients."""
    model.zero_grad(set_to_none=True)
    with torch.autocast('cuda', dtype=torch.bfloat16):
        _, loss = (forward or model)(x, y)
    loss.backward()
    return loss.item(), {n: p.grad.float().clone() for n, p in model.named_parameters()}


def compiled_step_matches_the_mask_path(shape, flex_head_size):
    """The compiled bf16 step (FlexAttention on the local layers, padded heads) gives the loss
    and gradients of eager SDPA with an explicit mask and unpadded heads, then trains."""
    model = paper_model(shape).train()
    hs = model.config.n_embd // model.config.n_head
    assert padded_head_sizes(hs)[1] == flex_head_size
    x, y = batch(4)
    model.local_attention, model.pad_heads = 'mask', False
    ref_loss, ref_grads = loss_and_grads(model, x, y)
    model.local_attention, model.pad_heads = 'flex', 'auto'
    plans = attention_plans(model, 512, 0, None, None, x.device)
    assert plans[True].block_mask is not None and plans[True].head_size == flex_head_size
    compiled = torch.compile(model)
    loss, grads = loss_and_grads(model, x, y, compiled)
    assert abs(loss - ref_loss) < 0.02, (loss, ref_loss)
    for name, want in ref_grads.items():
        assert relative_error(grads[name], want) < 0.05, (name, relative_error(grads[name], want))
    opt = model.configure_optimizer(0.1, 1e-3, (0.9, 0.95), 'cuda')
    opt.step()  # fused AdamW; the same batch again: the loss falls
    after, _ = loss_and_grads(model, x, y, compiled)
    assert math.isfinite(after) and after < loss, (after, loss)


def test_compiled_bf16_step_ts_33m_head_size_48():
    compiled_step_matches_the_mask_path('ts_33m', flex_head_size=64)


def test_compiled_bf16_step_ts_1m_padded_heads():
    compiled_step_matches_the_mask_path('ts_1m', flex_head_size=16)


def test_graph_decoding_matches_static_and_its_graph_is_kept():
    """Replaying the captured step gives the tokens of running it uncaptured, greedy and with
    a seeded CUDA generator; a second call with the same batch and length reuses the graph."""
    model = paper_model('ts_33m').eval()
    prompts = [list(range(1, 17)), [5], list(range(30, 70))]
    runs = []
    for decode in ('static', 'graph', 'graph'):
        model.decode = decode
        greedy = model.generate(prompts, 40, temperature=0)
        sampled = model.generate(prompts, 40, temperature=1.0, top_k=50,
                                 generator=torch.Generator('cuda').manual_seed(1))
        runs.append((greedy, sampled))
    assert runs[0] == runs[1] == runs[2]
    assert [len(o) for o in runs[0][0]] == [40, 40, 40]
    kept = decoding_model(model)._captured_decoders  # on the bf16 copy, where there is one
    assert len(kept) == 1  # one (batch, length): one graph


def test_bf16_decoding_logits_are_close_to_fp32():
    """Decoding runs a bf16 copy of the weights and cache on a GPU with bf16: its logits are
    within BF16_LOGITS_TOLERANCE of fp32's. Greedy tokens may part where two logits are near
    ties (common in a random-init model): where they first do is printed, not asserted."""
    if not torch.cuda.is_bf16_supported():
        raise unittest.SkipTest('this GPU has no bf16: decoding stays in fp32')
    model = paper_model('ts_33m').eval()
    x, _ = batch(2, 256)
    with torch.inference_mode():
        want = model(x)[0]
        got = decoding_model(model)(x)[0]
    assert got.dtype == torch.bfloat16
    err = relative_error(got, want)
    assert err < BF16_LOGITS_TOLERANCE, err
    prompt = x[0, :16].tolist()
    model.decode_dtype = 'float32'
    fp32 = model.generate([prompt], 200, temperature=0)[0]
    model.decode_dtype = 'auto'
    bf16 = model.generate([prompt], 200, temperature=0)[0]
    first = next((i for i, (a, b) in enumerate(zip(fp32, bf16)) if a != b), None)
    print(f"\nbf16 decoding: logits' relative RMS error {err:.4f} (tolerance {BF16_LOGITS_TOLERANCE}); "
          f"greedy tokens vs fp32 (random-init ts_33m): "
          f"{'all 200 equal' if first is None else f'first differ at token {first}'}")


def test_float16_with_grad_scaler_trains():
    """fp16 autocast with loss scaling (GPUs without bf16), the plain and the few-chunks loss:
    a few steps on one batch, every loss finite and falling, the scale still positive."""
    x, y = batch(8, seed=2)
    for loss_impl in ('plain', 'few_chunks'):
        model = paper_model('ts_1m').train()
        model.loss_impl = loss_impl
        opt = model.configure_optimizer(0.0, 3e-3, (0.9, 0.95), 'cuda')
        scaler = torch.amp.GradScaler('cuda')
        losses = []
        for _ in range(6):
            with torch.autocast('cuda', dtype=torch.float16):
                _, loss = model(x, y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], (loss_impl, losses)
        assert scaler.get_scale() > 0


# ---------------------------------------------------------------------------- train.py

TINY = ['--n_layer=2', '--n_head=4', '--n_embd=64', '--block_size=128', '--window_size=64',
        '--batch_size=8', '--eval_iters=2', '--log_interval=5', '--progress=False', '--warmup_iters=5',
        '--learning_rate=3e-3']


def byte_dataset(folder):
    """A prepared data_dir (tests/helpers.py's byte-level one); it needs train.py's packages."""
    missing = [m for m in ('numpy', 'regex', 'tiktoken', 'tqdm', 'matplotlib') if not importlib.util.find_spec(m)]
    if missing:
        raise unittest.SkipTest(f"train.py needs {', '.join(missing)} (pip install -r requirements.txt)")
    from helpers import tiny_stories, write_byte_dataset
    write_byte_dataset(folder, tiny_stories(300, seed=1), tiny_stories(30, seed=2))
    return folder


def run(cmd):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def read_log(out_dir):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [json.loads(line) for line in f]


def test_train_py_compiled_30_steps_with_a_resume():
    with tempfile.TemporaryDirectory(prefix='test_cuda_') as tmp:
        data, out = byte_dataset(os.path.join(tmp, 'data')), os.path.join(tmp, 'run')
        common = [sys.executable, 'train.py', f'--data_dir={data}', f'--out_dir={out}', *TINY,
                  '--device=cuda', '--compile=True', '--eval_interval=15']
        run(common + ['--max_iters=15'])
        run(common + ['--init_from=resume', '--max_iters=30'])
        log = read_log(out)
        losses = [r['loss'] for r in log if 'loss' in r]
        assert log[-1].get('final') and log[-1]['iter'] == 30
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_torchrun_one_process_with_max_minutes():
    """DDP on NCCL with a time budget: the planning step broadcasts from rank 0 (NCCL takes
    only GPU tensors)."""
    with tempfile.TemporaryDirectory(prefix='test_cuda_') as tmp:
        data, out = byte_dataset(os.path.join(tmp, 'data')), os.path.join(tmp, 'ddp')
        run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1',
             'train.py', f'--data_dir={data}', f'--out_dir={out}', *TINY, '--compile=False',
             '--max_minutes=0.1', '--eval_interval=50'])
        log = read_log(out)
        assert log[-1].get('final') and log[0]['tokens_per_s'] > 0


if __name__ == '__main__':  # without pytest: run every test, say which failed
    if not torch.cuda.is_available():
        print('tests/test_cuda.py: skipped, torch sees no CUDA GPU')
        sys.exit(0)
    failed = 0
    for name, test in [(n, f) for n, f in globals().items() if n.startswith('test_') and callable(f)]:
        t0 = time.time()
        try:
            test()
            print(f"ok      {name} ({time.time() - t0:.0f} s)")
        except unittest.SkipTest as e:
            print(f"skipped {name}: {e}")
        except Exception:
            failed += 1
            print(f"FAILED  {name}\n{traceback.format_exc()}")
    sys.exit(1 if failed else 0)
