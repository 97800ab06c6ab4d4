"""
Train a TinyStories GPT on the token bins that prepare.py wrote.

    python train.py config/cpu_tiny.py --data_dir=data/ts               # one device
    python train.py --out_dir=out/run --init_from=resume                # continue exactly
    python train.py --out_dir=out/run --init_from=resume --eval_only    # whole-val-split bits/byte
    torchrun --standalone --nproc_per_node=2 train.py config/ts_33m.py  # DDP

Batches are a pure function of (seed, iteration, process, micro-step), so a resumed run sees the
same data an uninterrupted one would, and kill -9 at any moment loses only the work since the
last checkpoint. With `max_minutes` the run plans its LR schedule for that wall-clock budget from
the speed it measures, and ends with a whole-val-split evaluation and a checkpoint.
"""
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import torch
from tqdm import tqdm

from dataset import open_dataset
from model import GPT, GPTConfig, measure_peak_flops, pick_device

# -----------------------------------------------------------------------------
# I/O
out_dir = 'out'
data_dir = 'data/ts'
init_from = 'scratch'      # 'scratch' or 'resume' (from out_dir/ckpt.pt)
eval_only = False          # evaluate the checkpoint on the whole val split, then exit
# model (the paper's GPT-Neo shapes: see config/)
n_layer = 4
n_head = 4
n_embd = 128
block_size = 512
dropout = 0.0
bias = True
window_size = 0            # >0: GPT-Neo's local attention on odd layers (it used 256)
# optimisation (defaults from the paper's released models)
batch_size = 32            # sequences per micro-step, per process
grad_accum = 1             # micro-steps per optimizer step
learning_rate = 5e-4
min_lr = 5e-5              # the cosine decays to this
schedule = 'cosine'        # 'cosine' or 'constant' (both after a linear warmup)
warmup_iters = 100
max_iters = 20000
max_minutes = 0.0          # >0: a wall-clock budget that plans max_iters from measured speed
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0            # 0: off
muon_lr = 0.0              # >0: Muon for the blocks' matrices at this lr, AdamW for the rest
# evaluation and logging
eval_interval = 500        # iterations between a val estimate + checkpoint
eval_iters = 20            # val batches per estimate (the final evaluation uses the whole split)
log_interval = 10
progress = True            # a progress bar with ETA
# system
device = 'auto'            # 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'             # 'auto', 'float32', 'bfloat16', 'float16' (autocast dtype)
compile = False            # torch.compile the model
seed = 1337
threads = 0                # torch CPU threads (0: torch's default)
# -----------------------------------------------------------------------------
from configurator import configure  # noqa: E402
config = configure(globals())


def fail(msg):
    raise SystemExit(f"error: {msg}")


ckpt_path = os.path.join(out_dir, 'ckpt.pt')
ckpt = None
if init_from == 'resume' or eval_only:
    if not os.path.isfile(ckpt_path):
        fail(f"no checkpoint at {ckpt_path} to resume or evaluate")
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    # continue with the run's own settings; what this command line says still wins
    globals().update(ckpt['config'])
    config = configure(globals(), verbose=False)
elif init_from != 'scratch':
    fail(f"init_from={init_from!r}: use 'scratch' or 'resume'")


# ---- processes and devices ---------------------------------------------------
ddp = int(os.environ.get('RANK', -1)) != -1  # launched by torchrun?
device = pick_device(device)
if ddp:
    from torch.distributed import init_process_group, destroy_process_group
    from torch.nn.parallel import DistributedDataParallel as DDP
    init_process_group(backend='nccl' if device.startswith('cuda') else 'gloo')
    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    if device.startswith('cuda'):
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(device)
else:
    rank, world = 0, 1
master = rank == 0
device_type = 'cuda' if device.startswith('cuda') else device.split(':')[0]
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(seed + rank)
if device_type == 'cuda':
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def say(*args):
    if master:
        tqdm.write(' '.join(str(a) for a in args))


# ---- data ----------------------------------------------------------------------
data = open_dataset(data_dir)  # meta.json validated, every bin's size checked against it
meta = data.meta
for split in ('train', 'val'):
    n_tokens = len(data.tokens(split))
    if n_tokens <= block_size + 1:
        fail(f"{data.path(split)} holds {n_tokens} tokens, not more than block_size+1 = "
             f"{block_size + 1}: use a smaller --block_size or more data")
tokens = data.tokens


def get_batch(split, it, micro=0):
    """Batch `micro` of iteration `it` for this process: random windows, seeded by position."""
    data = tokens(split)
    key = (((seed * 1_000_003 + (split == 'val')) * 1_000_003 + it) * 1_000_003 + micro) * 1_000_003 + rank
    g = torch.Generator().manual_seed(key % 2 ** 63)
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=g).tolist()
    x = torch.from_numpy(np.stack([data[i:i + block_size] for i in ix]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[i + 1:i + 1 + block_size] for i in ix]).astype(np.int64))
    if device_type == 'cuda':
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# ---- precision -------------------------------------------------------------------
def pick_dtype():
    """bf16 autocast where it pays: always on CUDA with bf16 support; on a CPU only when a bf16
    matmul measures clearly faster than fp32 (some CPUs here emulate bf16 at under 1 GFLOP/s)."""
    if dtype != 'auto':
        return dtype
    if device_type == 'cuda':
        return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    if device_type == 'cpu':
        fp32 = measure_peak_flops(torch.float32, 'cpu', n=512, seconds=0.2)
        bf16 = measure_peak_flops(torch.bfloat16, 'cpu', n=512, seconds=0.2)
        return 'bfloat16' if bf16 > 1.5 * fp32 else 'float32'
    return 'float32'


dtype = pick_dtype()
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
autocast = nullcontext() if dtype == 'float32' else torch.autocast(device_type, dtype=ptdtype)
scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')
peak_flops = measure_peak_flops(ptdtype, device, n=2048 if device_type == 'cuda' else 1024, seconds=0.3)

# ---- model, optimizer, and where we start ---------------------------------------
if ckpt is not None:
    if ckpt['model_args']['vocab_size'] != meta['vocab_size']:
        fail(f"the checkpoint's vocabulary ({ckpt['model_args']['vocab_size']}) does not match "
             f"{data_dir}'s tokenizer ({meta['vocab_size']}): resume on the dataset it trained on")
    model_args = ckpt['model_args']
    for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'window_size'):
        globals()[k] = model_args[k]  # the architecture is the checkpoint's
    iter_num, plan = ckpt['iter_num'], ckpt['plan']
    if not max_minutes:
        plan['max_iters'] = max_iters  # a resume may extend (or shorten) the run
else:
    model_args = asdict(GPTConfig(vocab_size=meta['vocab_size'], block_size=block_size, n_layer=n_layer,
                                  n_head=n_head, n_embd=n_embd, dropout=dropout, bias=bias,
                                  window_size=window_size))
    iter_num, plan = 0, {'max_iters': max_iters, 'elapsed_s': 0.0}
if muon_lr and dtype == 'float16':
    fail("muon_lr with dtype=float16 is not supported (the loss scaler needs one torch optimizer): use bfloat16")
if n_embd % n_head:
    fail(f"n_embd={n_embd} is not divisible by n_head={n_head}")


def check_memory(model_args):
    """Refuse a configuration this machine cannot hold, before it dies trying."""
    L, d, V, T = model_args['n_layer'], model_args['n_embd'], model_args['vocab_size'], block_size
    params = 12 * L * d * d + (V + T) * d
    state = params * 4 * 4  # weights, grads and AdamW's two moments in fp32
    # activations kept for backward, per layer (Korthikanti et al. 2022, in fp32); the loss
    # never holds the whole logits (model.LinearCrossEntropy), so they do not count
    acts = batch_size * T * L * (34 * d + 5 * model_args['n_head'] * T) * 2
    need = state + acts
    if device_type == 'cuda':
        have = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            with open('/proc/meminfo') as f:
                have = next(int(l.split()[1]) * 1024 for l in f if l.startswith('MemAvailable'))
        except (OSError, StopIteration):
            return
    if need > 0.9 * have:
        fail(f"this configuration needs about {need / 2**30:.1f} GiB but {device} has "
             f"{have / 2**30:.1f} GiB free: lower batch_size (raise grad_accum), block_size or the model")


check_memory(model_args)
model = GPT(GPTConfig(**model_args)).to(device)
if ckpt is not None:
    model.load_state_dict(ckpt['model'])
optimizer = model.configure_optimizer(weight_decay, learning_rate, (beta1, beta2), device_type, muon_lr)
if ckpt is not None and not eval_only:
    optimizer.load_state_dict(ckpt['optimizer'])
    torch.set_rng_state(ckpt['rng']['torch'])  # dropout's randomness
    if device_type == 'cuda' and ckpt['rng'].get('cuda') is not None:
        torch.cuda.set_rng_state(ckpt['rng']['cuda'])
raw_model = model
if compile:
    say("compiling the model (the first steps are slow)...")
    model = torch.compile(model)
if ddp:
    model = DDP(model, device_ids=[int(os.environ['LOCAL_RANK'])] if device_type == 'cuda' else None)
flops_per_iter = raw_model.flops_per_token() * batch_size * block_size * grad_accum * world


# ---- evaluation -------------------------------------------------------------------
bits_per_token_to_bpb = {}
for split in ('train', 'val'):
    s = meta.get('splits', {}).get(split, {})
    if s.get('bytes'):
        # every position with a target: all tokens but the first of the bin
        bits_per_token_to_bpb[split] = (s['tokens'] - 1) / s['bytes'] / math.log(2)


@torch.no_grad()
def estimate_loss():
    """Mean loss over `eval_iters` fixed batches of each split (fixed: comparable across evals)."""
    model.eval()
    out = {}
    for split in ('train', 'val'):
        losses = []
        for k in range(eval_iters):
            x, y = get_batch(split, -1 - k)
            with autocast:
                losses.append(model(x, y)[1].item())
        out[split] = sum(losses) / len(losses)
    model.train()
    return out


@torch.no_grad()
def evaluate_whole_split(split='val'):
    """Summed cross-entropy over every position of the split that has a target, in nats/token
    and bits per byte (DESIGN.md's definition, so different tokenizers compare)."""
    raw_model.eval()
    data = tokens(split)
    T = min(block_size, len(data) - 1)
    starts = list(range(0, len(data) - 1, T))
    total, count = 0.0, 0
    for i in tqdm(range(0, len(starts), batch_size), desc=f'eval {split}', disable=not master,
                  leave=False):
        chunk = starts[i:i + batch_size]
        x = torch.full((len(chunk), T), 0, dtype=torch.long)
        y = torch.full((len(chunk), T), -1, dtype=torch.long)
        for b, s in enumerate(chunk):
            n = min(T, len(data) - 1 - s)
            x[b, :n] = torch.from_numpy(data[s:s + n].astype(np.int64))
            y[b, :n] = torch.from_numpy(data[s + 1:s + 1 + n].astype(np.int64))
        x, y = x.to(device), y.to(device)
        with autocast:
            _, loss = raw_model(x, y)  # the mean over the targets that are not -1
        n = (y != -1).sum().item()
        total += loss.item() * n
        count += n
    raw_model.train()
    loss = total / count
    bytes_ = meta['splits'][split]['bytes']
    return loss, total / math.log(2) / bytes_


def log(record):
    if master:
        with open(os.path.join(out_dir, 'log.jsonl'), 'a') as f:
            f.write(json.dumps(record) + '\n')


if eval_only:
    loss, bpb = evaluate_whole_split('val')
    say(f"{ckpt_path} (iter {iter_num}): val loss {loss:.4f} nats/token, {bpb:.4f} bits/byte "
        f"over the whole val split ({meta['splits']['val']['tokens']:,} tokens)")
    if ddp:
        destroy_process_group()
    raise SystemExit(0)


# ---- checkpoints --------------------------------------------------------------------
def save_checkpoint():
    """Atomically: the last good checkpoint survives a kill at any moment."""
    if not master:
        return
    ckpt = {'model_args': model_args, 'model': raw_model.state_dict(),
            'optimizer': optimizer.state_dict(), 'iter_num': iter_num, 'plan': plan,
            'config': config, 'meta': meta, 'tokenizer': data.tokenizer_record(),
            'rng': {'torch': torch.get_rng_state(),
                    'cuda': torch.cuda.get_rng_state() if device_type == 'cuda' else None}}
    tmp = ckpt_path + '.tmp'
    torch.save(ckpt, tmp)
    os.replace(tmp, ckpt_path)


if master:
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, 'log.jsonl')
    if os.path.exists(log_path):
        # keep only what the checkpoint has: records after it (and the final evaluation) are
        # written again by this run
        with open(log_path) as f:
            records = [json.loads(l) for l in f if l.strip()] if ckpt else []
        kept = [json.dumps(r) + '\n' for r in records if r['iter'] <= iter_num and not r.get('final')]
        with open(log_path + '.tmp', 'w') as f:
            f.writelines(kept)
        os.replace(log_path + '.tmp', log_path)


def plot_log(log_path, png_path):
    """The training curve from log.jsonl: people would rather look at it than read it."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    with open(log_path) as f:
        records = [json.loads(l) for l in f if l.strip()]
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    train_ = [(r['iter'], r['loss']) for r in records if 'loss' in r]
    val = [(r['iter'], r['val_loss']) for r in records if 'val_loss' in r]
    if train_:
        ax.plot(*zip(*train_), lw=0.8, alpha=0.7, label='train loss (batch)')
    if val:
        ax.plot(*zip(*val), 'o-', label='val loss')
    ax.set(xlabel='iteration', ylabel='cross-entropy (nats/token)', title=out_dir)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(png_path + '.tmp.png', dpi=100)
    plt.close(fig)
    os.replace(png_path + '.tmp.png', png_path)


def get_lr(it):
    if it < warmup_iters:
        return learning_rate * (it + 1) / warmup_iters
    if schedule == 'constant':
        return learning_rate
    progress_ = min(1.0, (it - warmup_iters) / max(1, plan['max_iters'] - warmup_iters))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress_)) * (learning_rate - min_lr)


if schedule not in ('cosine', 'constant'):
    fail(f"schedule={schedule!r}: use 'cosine' or 'constant'")
n_params = raw_model.num_params()
say(f"model: {n_params / 1e6:.2f}M parameters ({raw_model.num_params(embeddings=False) / 1e6:.2f}M "
    f"without embeddings) | {device} {dtype} | {world} process(es) | "
    f"{batch_size * block_size * grad_accum * world:,} tokens per step")

# ---- the training loop ----------------------------------------------------------------
budget_s = max_minutes * 60
if budget_s:
    plan['max_iters'] = 10 ** 9  # until measured: planned after a few steps
bar = tqdm(total=plan['max_iters'] if not budget_s else None, initial=iter_num, disable=not (master and progress),
           unit='it', dynamic_ncols=True)
t_start = time.time() - plan['elapsed_s']  # the budget counts time spent before a resume too
t_last, timed_iters, timed_s, eval_s = time.time(), 0, 0.0, 0.0
x, y = get_batch('train', iter_num, 0)
while iter_num < plan['max_iters']:
    lr = get_lr(iter_num)
    for group in optimizer.param_groups:  # each group follows the schedule from its own initial lr
        group['lr'] = group['initial_lr'] * lr / learning_rate
    t0 = time.time()
    for micro in range(grad_accum):
        if ddp:  # synchronise gradients only on the last micro-step
            model.require_backward_grad_sync = micro == grad_accum - 1
        with autocast:
            _, loss = model(x, y)
            loss = loss / grad_accum
        # fetch the next batch while the CPU/GPU is still busy with this one (async on CUDA)
        x, y = get_batch('train', iter_num + (micro + 1) // grad_accum, (micro + 1) % grad_accum)
        scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    loss_value = loss.item() * grad_accum
    if not math.isfinite(loss_value):
        fail(f"loss is {loss_value} at iteration {iter_num}: stopping; the last good checkpoint "
             f"({ckpt_path}) is intact. Try a lower learning_rate or dtype=float32.")
    dt = time.time() - t0
    iter_num += 1
    if iter_num > 3:  # the first steps warm up caches (and compile): not representative
        timed_iters, timed_s = timed_iters + 1, timed_s + dt
    bar.update(1)

    # plan the schedule for the wall-clock budget from the measured speed
    if budget_s and timed_iters >= 5 and (plan['max_iters'] == 10 ** 9 or iter_num % eval_interval == 0):
        per_iter = timed_s / timed_iters + eval_s / eval_interval  # evaluations cost time too
        final_eval = timed_s / timed_iters / 3 * meta['splits']['val']['tokens'] / (batch_size * block_size)
        left = budget_s - (time.time() - t_start) - final_eval
        planned = torch.tensor(max(iter_num + 1, iter_num + int(left / per_iter)))
        if ddp:  # every process must stop at the same step
            torch.distributed.broadcast(planned, src=0)
        plan['max_iters'] = int(planned)
        bar.total = plan['max_iters']
        bar.refresh()

    if iter_num % log_interval == 0 and master:
        tokens_per_s = batch_size * block_size * grad_accum * world / dt
        mfu = flops_per_iter / dt / peak_flops
        record = {'iter': iter_num, 'loss': round(loss_value, 5), 'lr': lr, 'ms': round(dt * 1000, 1),
                  'tokens_per_s': round(tokens_per_s), 'mfu': round(mfu, 4)}
        log(record)
        bar.set_postfix(loss=f'{loss_value:.3f}', tok_s=f'{tokens_per_s:,.0f}', mfu=f'{mfu:.0%}')
        if not progress:  # without the bar, a line per interval
            say(f"iter {iter_num}: loss {loss_value:.4f}, lr {lr:.2e}, {dt * 1000:.0f} ms, "
                f"{tokens_per_s:,.0f} tokens/s, MFU {mfu:.1%}")

    if iter_num % eval_interval == 0 and iter_num < plan['max_iters']:
        t0 = time.time()
        losses = estimate_loss()
        bpb = losses['val'] * bits_per_token_to_bpb.get('val', float('nan'))
        say(f"iter {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
            f"(~{bpb:.3f} bits/byte)")
        log({'iter': iter_num, 'val_loss': round(losses['val'], 5), 'val_bpb': round(bpb, 5)})
        plan['elapsed_s'] = time.time() - t_start
        save_checkpoint()
        eval_s = time.time() - t0
bar.close()

# ---- the end: whole-split evaluation and the final checkpoint ---------------------------
plan['elapsed_s'] = time.time() - t_start
save_checkpoint()
if master:
    loss, bpb = evaluate_whole_split('val')
    say(f"done: {iter_num} iterations in {plan['elapsed_s'] / 60:.1f} min; val loss {loss:.4f} "
        f"nats/token, {bpb:.4f} bits/byte over the whole val split")
    log({'iter': iter_num, 'val_loss': round(loss, 5), 'val_bpb': round(bpb, 5), 'final': True})
    plot_log(os.path.join(out_dir, 'log.jsonl'), os.path.join(out_dir, 'loss.png'))
if ddp:
    destroy_process_group()
