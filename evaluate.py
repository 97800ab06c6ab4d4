"""
How a trained model is measured, written once for every stage that reports it (train.py, the
sweep, a Hugging Face model's evaluation): the loss over a whole split, and the training curve.

    loss, bpb = whole_split_loss(model, dataset, 'val', batch_size=32, device='cuda')

Bits per byte divide the summed cross-entropy by the split's UTF-8 bytes (not its tokens), so
models with different tokenizers compare (DESIGN.md's definition).
"""
import io
import math
from contextlib import nullcontext

import numpy as np
import torch

from atomic_write import atomic_write
from progress import progress


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


def plot_log(records, png_path, title=''):
    """The training curve from log.jsonl's records, written atomically: people would rather look
    at it than read it."""
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
    atomic_write(png_path, png.getvalue())
