"""
How a model is measured, written once for every stage that reports it (train.py, the sweep, a
Hugging Face model's evaluation): the precision to run it in, the loss over a whole split (and a
quick estimate over a few batches), and the training curve.

    dtype, _, autocast = pick_autocast('cuda')
    loss, bpb = whole_split_loss(model, dataset, 'val', batch_size=32, device='cuda', autocast=autocast)

Bits per byte divide the summed cross-entropy by the split's UTF-8 bytes (not its tokens), so
models with different tokenizers compare (the README's definition).
"""
import io
import math
from contextlib import nullcontext

import numpy as np
import torch

from tinystories.hardware import measure_peak_flops
from tinystories.progress import progress


def pick_autocast(device, dtype='auto'):
    """(dtype name, torch dtype, autocast context) for running a model on `device`. 'auto': bf16
    on CUDA with bf16 support, else fp16 (V100, T4: train with a loss scaler); on a CPU bf16 only
    when its matmul measures clearly faster than fp32 (some CPUs emulate bf16 at under 1 GFLOP/s)."""
    device_type = torch.device(device).type
    if dtype == 'auto' and device_type == 'cuda':
        dtype = 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    elif dtype == 'auto' and device_type == 'cpu':
        # the best of alternating windows: a busy machine only slows a measurement down, so the
        # best of each is its speed, and the choice does not flip with what else is running
        fp32 = bf16 = 0.0
        for _ in range(3):
            fp32 = max(fp32, measure_peak_flops(torch.float32, 'cpu', n=512, seconds=0.1))
            bf16 = max(bf16, measure_peak_flops(torch.bfloat16, 'cpu', n=512, seconds=0.1))
        dtype = 'bfloat16' if bf16 > 1.5 * fp32 else 'float32'
    elif dtype == 'auto':
        dtype = 'float32'
    ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
    return dtype, ptdtype, nullcontext() if dtype == 'float32' else torch.autocast(device_type, dtype=ptdtype)


@torch.no_grad()
def whole_split_loss(model, dataset, split='val', batch_size=32, device='cpu', autocast=None,
                     block_size=None, show_progress=True):
    """(nats/token, bits/byte) over every position of `split` that has a target: all tokens of
    the bin but the first. The bin is cut into windows of the model's context, each scored once.

    `model(x, y)` must return (anything, mean cross-entropy over the targets that are not -1),
    as GPT does; `dataset` is a dataset.Dataset. bits/byte is nan when meta.json does not record
    the split's bytes."""
    was_training = model.training
    model.eval()
    data = dataset.tokens(split)
    T = min(block_size or model.config.block_size, len(data) - 1)
    starts = range(0, len(data) - 1, T)
    total, count = 0.0, 0
    for i in progress(range(0, len(starts), batch_size), desc=f'eval {split}', unit='batch',
                      disable=not show_progress, leave=False):
        chunk = starts[i:i + batch_size]
        x = torch.zeros((len(chunk), T), dtype=torch.long)
        y = torch.full((len(chunk), T), -1, dtype=torch.long)  # -1: no target (the last window)
        for b, s in enumerate(chunk):
            n = min(T, len(data) - 1 - s)
            x[b, :n] = torch.from_numpy(data[s:s + n].astype(np.int64))
            y[b, :n] = torch.from_numpy(data[s + 1:s + 1 + n].astype(np.int64))
        x, y = x.to(device), y.to(device)
        with autocast or nullcontext():
            _, loss = model(x, y)
        n = int((y != -1).sum())
        total += loss.item() * n
        count += n
    model.train(was_training)
    n_bytes = dataset.split_info(split).get('bytes')
    return total / count, (total / math.log(2) / n_bytes) if n_bytes else float('nan')


def score_model(location, dataset, batch_size=32, device='cpu', dtype='auto'):
    """Print a model's whole-val-split loss and bits per byte on `dataset`: any model location
    (a run of ours, a Hugging Face folder, hf:OWNER/NAME), so the paper's released models are
    scored exactly as ours. A model with another tokenizer reads the text re-encoded in its own."""
    from tinystories.checkpoint import load_run
    model, enc, info = load_run(location, device)
    data = dataset.for_model(enc, info['tokenizer'])
    note = '' if data is dataset else f" (the text re-encoded with the model's {enc.vocab_size:,}-token tokenizer)"
    _, _, autocast = pick_autocast(device, dtype)
    loss, bpb = whole_split_loss(model, data, 'val', batch_size, device, autocast)
    where = f"{location} (iter {info['iter_num']})" if info.get('iter_num') is not None else location
    print(f"{where}: val loss {loss:.4f} nats/token, {bpb:.4f} bits/byte over the whole val split of "
          f"{dataset.dir} ({data.split_info('val').get('tokens', 0):,} tokens){note}")
    return loss, bpb


@torch.no_grad()
def mean_loss(model, batches, autocast=None):
    """The mean of model(x, y)'s loss over (x, y) batches: a quick estimate during training. One
    host sync at the end, not one per batch."""
    was_training = model.training
    model.eval()
    losses = []
    for x, y in batches:
        with autocast or nullcontext():
            losses.append(model(x, y)[1].float())
    model.train(was_training)
    return torch.stack(losses).mean().item()


def plot_log(records, title=''):
    """The training curve from log.jsonl's records, as PNG bytes (for atomic_write): people would
    rather look at it than read it."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    train = [(r['iter'], r['loss']) for r in records if 'loss' in r]
    val = [(r['iter'], r['val_loss']) for r in records if 'val_loss' in r]
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.7, label='train loss (batch)')
    if val:
        ax.plot(*zip(*val), 'o-', label='val loss')
    ax.set(xlabel='iteration', ylabel='cross-entropy (nats/token)', title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    png = io.BytesIO()
    fig.savefig(png, format='png', dpi=100)
    plt.close(fig)
    return png.getvalue()
