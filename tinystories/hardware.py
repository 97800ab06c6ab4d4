"""
What the machine is and what it can do: the device a stage runs on, the matmul peak it measures,
and the spec sheet's peak of a known GPU (MFU is reported against both).
"""
import time

import torch


def measure_peak_flops(dtype=torch.float32, device='cpu', n=None, seconds=0.5):
    """FLOP/s of a large square matmul on this machine: the roof MFU is reported against.
    (CPUs differ a lot here, and some have no fast bf16 at all, so it is measured, never assumed.)
    n: the matmul's size; by default 8192 on a GPU (smaller ones leave an H100 well below its
    roof, which would make MFU read high) and 1024 on a CPU."""
    if n is None:
        n = 8192 if str(device).startswith('cuda') else 1024
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)
    best = 0.0
    for _ in range(4):  # the best of a few windows: the first runs pay for warming up threads
        calls, start = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - start < seconds / 4:
            a @ b
            calls += 1
        sync()
        best = max(best, 2 * n ** 3 * calls / (time.perf_counter() - start))
    return best


def pick_device(name='auto'):
    """A validated torch device name. 'auto': the GPU if there is one, else the CPU. Every stage
    that picks a device goes through here, so `--device=cuda` on a machine without a GPU, or a
    typo, is the same one-line error everywhere."""
    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    kind, _, index = name.partition(':')
    if kind not in ('cpu', 'cuda', 'mps') or (index and not index.isdigit()) or (index and kind != 'cuda'):
        raise SystemExit(f"error: device={name!r}: use auto, cpu, cuda, cuda:N or mps")
    if kind == 'cuda' and not torch.cuda.is_available():
        raise SystemExit(f"error: device={name!r} but torch sees no CUDA GPU here: use --device=cpu (or auto)")
    if kind == 'cuda' and index and int(index) >= torch.cuda.device_count():
        raise SystemExit(f"error: device={name!r} but this machine has {torch.cuda.device_count()} GPU(s)")
    if kind == 'mps' and not torch.backends.mps.is_available():
        raise SystemExit(f"error: device={name!r} but MPS is not available here")
    return name


# Spec-sheet dense peaks in TFLOP/s (bf16 and fp16 on the tensor cores, TF32 on the tensor
# cores, fp32 without them), by a piece of torch.cuda.get_device_name: what MFU is quoted against
# beside the measured peak. More specific names first ('a100' before 'a10', 'l40s' before 'l4').
# None: no such unit.
GPU_SPECS = [
    ('h100 pcie', 756, 756, 378, 51), ('h100 nvl', 835, 835, 418, 60),
    ('h100', 989, 989, 495, 67), ('gh200', 989, 989, 495, 67), ('h200', 989, 989, 495, 67),  # SXM
    ('b200', 2250, 2250, 1100, 80), ('a100', 312, 312, 156, 19.5), ('v100', None, 125, None, 15.7),
    ('t4', None, 65, None, 8.1), ('l40s', 362, 362, 183, 91.6), ('l4', 121, 121, 60, 30.3),
    ('a10', 125, 125, 62.5, 31.2),
    ('rtx 4090', 165, 165, 82.6, 82.6), ('rtx 3090', 71, 71, 35.6, 35.6),  # GeForce: fp32 accumulation
]


def spec_peak_flops(device, dtype=torch.bfloat16, name=None, tf32=None):
    """The spec sheet's dense peak FLOP/s of `device` (a CUDA GPU, known by its name) for
    `dtype`, or None (a CPU, an unknown GPU, or a dtype the GPU has no fast path for). fp32 with
    TF32 matmuls allowed (tf32 None: as torch is set now; train.py allows them) is the TF32
    tensor-core peak: against the plain fp32 one MFU would read above 100%."""
    if name is None:
        if torch.device(device).type != 'cuda':
            return None
        name = torch.cuda.get_device_name(device)
    if tf32 is None:
        tf32 = torch.backends.cuda.matmul.allow_tf32
    column = {torch.bfloat16: 0, torch.float16: 1, torch.float32: 2 if tf32 else 3}[dtype]
    for key, *tflops in GPU_SPECS:
        if key in name.lower():
            peak = tflops[column] or (tflops[3] if column == 2 else None)  # no TF32 unit: fp32's
            return peak * 1e12 if peak else None
    return None
