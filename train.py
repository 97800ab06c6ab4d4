"""
Train a TinyStories GPT on the token bins that prepare.py wrote.

    python train.py config/cpu_tiny.py --data_dir=data/ts               # one device
    python train.py --out_dir=out/run --init_from=resume                # continue exactly
    python train.py --out_dir=out/run --eval_only                       # whole-val-split bits/byte
    python train.py --out_dir=hf:roneneldan/TinyStories-33M --eval_only --data_dir=data/ts  # any model
    python train.py --init_from=hf:roneneldan/TinyStories-33M --data_dir=data/ts_gpt2 --out_dir=out/ft  # fine-tune
    torchrun --standalone --nproc_per_node=2 train.py config/ts_33m.py  # DDP

Batches are a pure function of (seed, iteration, process, micro-step), so a resumed run sees the
same data an uninterrupted one would, and kill -9 at any moment loses only the work since the
last checkpoint. One run writes an out_dir at a time (a lock), and a directory holding a
checkpoint is only replaced with --overwrite. With `max_minutes` the run plans its LR schedule
for that wall-clock budget from the speed it measures (or for max_iters, if that comes first),
and ends with a whole-val-split evaluation and a checkpoint.
"""
import io
import json
import math
import os
import time
from dataclasses import asdict

import numpy as np
import torch
from tqdm import tqdm

from tinystories.atomic_write import atomic_write
from tinystories.dataset import open_dataset
from tinystories.dirlock import lock_dir
from tinystories.evaluate import mean_loss, pick_autocast, plot_log, score_model, whole_split_loss
from tinystories.jsonl import append_jsonl, read_jsonl
from tinystories.hardware import measure_peak_flops, pick_device, spec_peak_flops
from model import GPT, GPTConfig
from tinystories.checkpoint import load_checkpoint, load_run
from tinystories.progress import progress as progress_bar

# -----------------------------------------------------------------------------
# I/O
out_dir = 'out'
data_dir = 'data/ts'
init_from = 'scratch'      # 'scratch', 'resume' (out_dir/ckpt.pt), or a model to fine-tune (hf:OWNER/NAME, a folder)
eval_only = False          # score the model at out_dir (any model location) on the whole val split; writes nothing
overwrite = False          # from scratch in an out_dir that holds a checkpoint: replace that run
# model (the paper's GPT-Neo shapes: see config/)
n_layer = 4
n_head = 4
n_embd = 128
block_size = 512
dropout = 0.0
bias = True
window_size = 0            # >0: GPT-Neo's local attention on odd layers (it used 256)
qkv_bias = True            # False: no query/key/value biases, as GPT-Neo (so a model exports to it)
activation = 'gelu'        # 'gelu' (exact) or 'gelu_tanh' (GPT-2/GPT-Neo's approximation)
# optimisation (defaults from the paper's released models)
batch_size = 32            # sequences per micro-step, per process
grad_accum = 1             # micro-steps per optimizer step
learning_rate = 5e-4
min_lr = 5e-5              # the cosine decays to this
schedule = 'cosine'        # 'cosine' or 'constant' (both after a linear warmup)
warmup_iters = 100
max_iters = 20000          # with max_minutes too, the run stops at whichever comes first
max_minutes = 0.0          # >0: a wall-clock budget that plans the iterations from measured speed
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0            # 0: off
muon_lr = 0.0              # >0: Muon for the blocks' matrices at this lr, AdamW for the rest
# evaluation and logging
eval_interval = 500        # iterations between a val estimate + checkpoint
eval_iters = 20            # val batches per estimate (the final evaluation uses the whole split)
log_interval = 10          # iterations between log records (the loss is read from the device only then)
progress = True            # a progress bar with ETA
# system
device = 'auto'            # 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'             # 'auto', 'float32', 'bfloat16', 'float16' (autocast dtype)
compile = None             # torch.compile the model (True/False); None or 'auto': on CUDA only
loss_impl = 'auto'         # how the model computes its loss: 'auto', 'chunked', 'few_chunks', 'plain'
seed = 1337
threads = 0                # torch CPU threads (0: torch's default)
# -----------------------------------------------------------------------------
from tinystories.configurator import configure  # noqa: E402
config = configure(globals())


def fail(msg):
    raise SystemExit(f"error: {msg}")


ckpt_path = os.path.join(out_dir, 'ckpt.pt')
ckpt = None
if init_from == 'resume' or (eval_only and os.path.isfile(ckpt_path)):
    ckpt_model, ckpt = load_checkpoint(ckpt_path)  # a one-line error if missing or damaged
    # continue with the run's own settings; what this command line says still wins
    globals().update(ckpt['config'])
    config = configure(globals(), verbose=False)

# ---- every key checked before any work: a one-line error that says what to use ------------
one_or_more, zero_or_more, in_0_1 = (lambda v: v >= 1, '1 or more'), (lambda v: v >= 0, '0 or more'), \
    (lambda v: 0 <= v < 1, 'a value in [0, 1)')
RULES = {**dict.fromkeys(('batch_size', 'block_size', 'n_layer', 'n_head', 'n_embd', 'grad_accum',
                          'eval_interval', 'eval_iters', 'log_interval'), one_or_more),
         **dict.fromkeys(('min_lr', 'warmup_iters', 'grad_clip', 'weight_decay', 'max_iters',
                          'max_minutes', 'muon_lr', 'window_size', 'threads'), zero_or_more),
         **dict.fromkeys(('dropout', 'beta1', 'beta2'), in_0_1),
         'learning_rate': (lambda v: v > 0, 'a value above 0')}
CHOICES = {'schedule': ('cosine', 'constant'), 'activation': ('gelu', 'gelu_tanh'),
           'dtype': ('auto', 'float32', 'bfloat16', 'float16'), 'compile': (None, 'auto', True, False),
           'loss_impl': ('auto', 'chunked', 'few_chunks', 'plain')}
for key, (ok, what) in RULES.items():
    value = globals()[key]
    if not (ok(value) and math.isfinite(value)):
        fail(f"--{key}={value!r} is out of range: use {what}")
for key, allowed in CHOICES.items():
    if globals()[key] not in allowed:
        fail(f"--{key}={globals()[key]!r}: use one of {', '.join(map(repr, allowed))}")
if init_from not in ('scratch', 'resume') and not (init_from.startswith('hf:') or os.path.isdir(init_from)):
    fail(f"--init_from={init_from!r}: use 'scratch', 'resume', or a model to fine-tune (hf:OWNER/NAME, "
         f"a Hugging Face model folder, or a run's out_dir)")
if n_embd % n_head:
    fail(f"n_embd={n_embd} is not divisible by n_head={n_head}: pick an n_head that divides it")
if muon_lr and dtype == 'float16':
    fail("muon_lr with dtype=float16 is not supported (the loss scaler needs one torch optimizer): use bfloat16")

# ---- processes and devices ------------------------------------------
ddp = int(os.environ.get('RANK', -1)) != -1  # launched by torchrun?
rank, world = (int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])) if ddp else (0, 1)
master = rank == 0
device = pick_device(device)
if ddp and device.startswith('cuda'):
    local_rank = int(os.environ['LOCAL_RANK'])
    if local_rank >= torch.cuda.device_count():
        fail(f"torchrun started more processes per node than this machine has GPUs "
             f"({torch.cuda.device_count()}): use --nproc_per_node={torch.cuda.device_count()}, or --device=cpu")
    device = f"cuda:{local_rank}"
device_type = 'cuda' if device.startswith('cuda') else device.split(':')[0]
if ddp:
    from torch.distributed import init_process_group, destroy_process_group
    from torch.nn.parallel import DistributedDataParallel as DDP
    init_process_group(backend='nccl' if device_type == 'cuda' else 'gloo')
    if device_type == 'cuda':
        torch.cuda.set_device(device)
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(seed + rank)
if device_type == 'cuda':
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def say(*args):
    if master:
        tqdm.write(' '.join(str(a) for a in args))


# ---- data, and the run's directory (locked) -----------------------------------------------
data = open_dataset(data_dir)  # meta.json validated, every bin's size checked against it
if eval_only:  # any model location; one of another tokenizer reads the text re-encoded (evaluate.py)
    if master:
        score_model(out_dir, data, batch_size, device, dtype)
    if ddp:
        destroy_process_group()
    raise SystemExit(0)
for split in ('train', 'val'):
    n_tokens = len(data.tokens(split))
    if n_tokens <= block_size + 1:
        fail(f"{data.path(split)} holds {n_tokens} tokens, not more than block_size+1 = "
             f"{block_size + 1}: use a smaller --block_size or more data")
tokenizer = data.tokenizer_record()
val = data.split_info('val')  # every position with a target (all tokens but the first) per byte:
bpb_per_nat = (val['tokens'] - 1) / val['bytes'] / math.log(2) if val.get('bytes') else float('nan')
if ckpt is not None:  # token ids mean nothing under another tokenizer, even one of the same size
    if ckpt['model_args']['vocab_size'] != data.vocab_size:
        fail(f"the checkpoint's vocabulary ({ckpt['model_args']['vocab_size']}) does not match "
             f"{data_dir}'s tokenizer ({data.vocab_size}): use the dataset it trained on")
    if (ckpt.get('tokenizer') or {}).get('sha256') != tokenizer['sha256']:
        fail(f"{data_dir}'s tokenizer is not the one {ckpt_path} was trained with (same size, other "
             f"tokens): use the dataset it trained on (its data_dir: {ckpt['config'].get('data_dir')})")
if master:
    lock_dir(out_dir, 'training run')
    if init_from != 'resume' and os.path.exists(ckpt_path) and not overwrite:
        fail(f"{out_dir} holds a trained run ({ckpt_path}): continue it with --init_from=resume, "
             f"start over with --overwrite (replacing it), or use another --out_dir")


def get_batch(split, it, micro=0):
    """Batch `micro` of iteration `it` for this process: random windows, seeded by position."""
    tokens = data.tokens(split)
    key = (((seed * 1_000_003 + (split == 'val')) * 1_000_003 + it) * 1_000_003 + micro) * 1_000_003 + rank
    g = torch.Generator().manual_seed(key % 2 ** 63)
    ix = torch.randint(len(tokens) - block_size - 1, (batch_size,), generator=g).tolist()
    x = torch.from_numpy(np.stack([tokens[i:i + block_size] for i in ix]).astype(np.int64))
    y = torch.from_numpy(np.stack([tokens[i + 1:i + 1 + block_size] for i in ix]).astype(np.int64))
    if device_type == 'cuda':
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


# ---- precision: bf16 autocast where it pays; fp16 with loss scaling on GPUs without bf16 ------
dtype, ptdtype, autocast = pick_autocast(device, dtype)
scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')

# ---- model, optimizer, and where we start ------------------------------------------------------
if ckpt is not None:
    model_args = ckpt['model_args']
    for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'window_size'):
        globals()[k] = model_args[k]  # the architecture is the checkpoint's
    iter_num, plan = ckpt['iter_num'], ckpt['plan']
else:
    if init_from != 'scratch':  # fine-tune a model (its own tokenizer: prepare --tokenizer=<it>)
        start_model, _, start_info = load_run(init_from, 'cpu')
        if start_info['tokenizer'].get('sha256') != tokenizer['sha256']:
            fail(f"{data_dir} is not in {init_from}'s tokenizer: prepare it with "
                 f"prepare.py --tokenizer={init_from} --data_dir=... first")
        model_args = asdict(start_model.config)
        block_size = min(block_size, model_args['block_size'])
    else:
        model_args = asdict(GPTConfig(vocab_size=data.vocab_size, block_size=block_size, n_layer=n_layer,
                                      n_head=n_head, n_embd=n_embd, dropout=dropout, bias=bias,
                                      window_size=window_size, qkv_bias=qkv_bias, activation=activation))
    iter_num, plan = 0, {'max_iters': max_iters, 'elapsed_s': 0.0}
# a resume may extend or shorten the run; with a budget, the budget's plan stands until re-planned
plan['max_iters'] = min(plan['max_iters'], max_iters) if max_minutes and ckpt else max_iters


def check_memory(args):
    """Refuse what this machine cannot hold, before dying of it: weights, grads, AdamW's moments
    in fp32 and the activations kept for backward (Korthikanti et al. 2022), never whole logits."""
    L, d, V, T = args['n_layer'], args['n_embd'], args['vocab_size'], block_size
    need = (12 * L * d * d + (V + T) * d) * 16 + batch_size * T * L * (34 * d + 5 * args['n_head'] * T) * 2
    have = math.inf
    if device_type == 'cuda':
        have = torch.cuda.mem_get_info(device)[0]
    elif os.path.exists('/proc/meminfo'):
        with open('/proc/meminfo') as f:
            have = next((int(l.split()[1]) * 1024 for l in f if l.startswith('MemAvailable')), have)
    if need > 0.9 * have:
        fail(f"this configuration needs about {need / 2**30:.1f} GiB but {device} has "
             f"{have / 2**30:.1f} GiB free: lower batch_size (raise grad_accum), block_size or the model")


check_memory(model_args)
model = (ckpt_model.train() if ckpt is not None else start_model.train() if init_from != 'scratch'
         else GPT(GPTConfig(**model_args))).to(device)
model.loss_impl = loss_impl  # how, not what: model.py picks per device for 'auto'
optimizer = model.configure_optimizer(weight_decay, learning_rate, (beta1, beta2), device_type, muon_lr)
if ckpt is not None:
    optimizer.load_state_dict(ckpt['optimizer'])
    if scaler.is_enabled() and ckpt.get('scaler'):
        scaler.load_state_dict(ckpt['scaler'])
    torch.set_rng_state(ckpt['rng']['torch'])  # dropout's randomness
    if device_type == 'cuda' and ckpt['rng'].get('cuda') is not None:
        torch.cuda.set_rng_state(ckpt['rng']['cuda'])
raw_model = model
compiling = device_type == 'cuda' if compile in (None, 'auto') else bool(compile)
if compiling:
    say("compiling the model with torch.compile: the first steps are slow")
    model = torch.compile(model)
if ddp:
    model = DDP(model, device_ids=[int(os.environ['LOCAL_RANK'])] if device_type == 'cuda' else None)

# ---- what a run writes: the log and checkpoints, each atomically --------------------------
log_path = os.path.join(out_dir, 'log.jsonl')
finite = torch.ones((), dtype=torch.bool, device=device)  # every loss (and checkpoint) so far was finite


def write(path, content, append=False):
    """The whole file atomically (or whole lines appended): a full disk leaves nothing half-written."""
    try:
        append_jsonl(path, content, fsync=False) if append else atomic_write(path, content)
    except OSError as e:
        fail(f"cannot write {path} ({e.strerror or e}): free some space or fix {out_dir}'s "
             f"permissions, then re-run with --init_from=resume (the last checkpoint is intact)")


def log(record):
    if master:
        write(log_path, [record], append=True)


def check_finite(loss_value):  # a host sync: at log intervals and before checkpoints, not per step
    if not bool(finite):
        fail(f"training diverged (a loss or weight not finite; loss {loss_value}) by iteration {iter_num}: "
             f"stopping; the last good checkpoint ({ckpt_path}) is intact. Try a lower learning_rate "
             f"or dtype=float32.")


def save_checkpoint():
    """Atomically and only if finite: the last good checkpoint survives kill -9, a full disk, NaN."""
    finite.logical_and_(torch.stack([p.isfinite().all() for p in raw_model.parameters()]).all())
    check_finite(loss.item() * grad_accum)
    if not master:
        return
    buf = io.BytesIO()
    torch.save({'model_args': model_args, 'model': raw_model.state_dict(),
                'optimizer': optimizer.state_dict(), 'iter_num': iter_num, 'plan': plan,
                'config': config, 'meta': data.meta, 'tokenizer': tokenizer,
                'scaler': scaler.state_dict() if scaler.is_enabled() else None,
                'rng': {'torch': torch.get_rng_state(),
                        'cuda': torch.cuda.get_rng_state() if device_type == 'cuda' else None}}, buf)
    write(ckpt_path, buf.getvalue())


if master:
    if ckpt is None and os.path.exists(ckpt_path):  # --overwrite: the old run goes now, whole
        os.remove(ckpt_path)
    # keep only what the checkpoint has: records after it (and the final evaluation) come again
    kept = [r for r in read_jsonl(log_path) if r['iter'] <= iter_num and not r.get('final')] if ckpt else []
    write(log_path, ''.join(json.dumps(r) + '\n' for r in kept))


def estimate_loss():
    """Mean loss over `eval_iters` fixed batches of each split (fixed: comparable across evals)."""
    return {split: mean_loss(model, (get_batch(split, -1 - k) for k in range(eval_iters)), autocast)
            for split in ('train', 'val')}


def get_lr(it):
    if it < warmup_iters:
        return learning_rate * (it + 1) / warmup_iters
    if schedule == 'constant':
        return learning_rate
    progress_ = min(1.0, (it - warmup_iters) / max(1, plan['max_iters'] - warmup_iters))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress_)) * (learning_rate - min_lr)


tokens_per_iter = batch_size * block_size * grad_accum * world
flops_per_iter = raw_model.flops_per_token() * tokens_per_iter
peak_flops = measure_peak_flops(ptdtype, device, n=2048 if device_type == 'cuda' else 1024, seconds=0.3)
spec_flops = None
if device_type == 'cuda':
    spec_flops = spec_peak_flops(device)  # the spec sheet's dense bf16 figure (None: unknown GPU)
budget_s = max_minutes * 60
say(f"model: {raw_model.num_params() / 1e6:.2f}M parameters ({raw_model.num_params(embeddings=False) / 1e6:.2f}M "
    f"without embeddings) | {device} {dtype}{' compiled' if compiling else ''} | {world} process(es) | "
    f"{tokens_per_iter:,} tokens per step")
say(f"stops at iteration {plan['max_iters']:,}" + (f" or after {max_minutes:g} minutes, whichever comes first "
                                                  f"(planned from the measured speed)" if budget_s else ''))

# ---- the training loop -------------------------------------------------------------------------
bar = progress_bar(total=plan['max_iters'], initial=iter_num, disable=not (master and progress),
                   unit='it', desc='train')
t_start = time.time() - plan['elapsed_s']  # the budget counts time spent before a resume too
first_iter, planned, t_log, iter_log = iter_num, False, time.time(), iter_num
x, y = get_batch('train', iter_num, 0)
while iter_num < plan['max_iters']:
    lr = get_lr(iter_num)
    for group in optimizer.param_groups:  # each group follows the schedule from its own initial lr
        group['lr'] = group['initial_lr'] * lr / learning_rate
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
    finite.logical_and_(torch.isfinite(loss.detach()))  # on the device: no host sync per step
    iter_num += 1
    bar.update(1)

    # the loss is read from the device (a host sync) only to log it, or to time the run
    log_now, warm = iter_num % log_interval == 0, iter_num - first_iter == 3
    plan_now = budget_s and iter_num - first_iter >= 8 and (not planned or iter_num % eval_interval == 0)
    if log_now or warm or plan_now:
        loss_value = loss.item() * grad_accum
        check_finite(loss_value)
    now = time.time()
    if warm:  # the first steps warm up caches (and compile): the budget is planned from the next
        t_warm = now

    if plan_now:  # plan the schedule for the wall-clock budget from the measured speed
        per_iter = (now - t_warm) / (iter_num - first_iter - 3)  # evaluations included
        final_eval = per_iter / grad_accum / 3 * val.get('tokens', 0) / (batch_size * block_size)
        left = budget_s - (now - t_start) - final_eval
        by_time = max(iter_num + 1, iter_num + int(left / per_iter))
        steps = torch.tensor(min(max_iters, by_time))
        if ddp:  # every process must stop at the same step
            torch.distributed.broadcast(steps, src=0)
        plan['max_iters'] = int(steps)
        bar.total = plan['max_iters']
        if not planned:
            limit = 'max_iters' if max_iters < by_time else f'the {max_minutes:g}-minute budget'
            say(f"plan: {plan['max_iters']:,} iterations; {limit} governs (the budget allows about {by_time:,})")
        planned = True

    if log_now and master:
        step_s = (now - t_log) / (iter_num - iter_log)
        tokens_per_s, mfu = tokens_per_iter / step_s, flops_per_iter / step_s / peak_flops
        record = {'iter': iter_num, 'loss': round(loss_value, 5), 'lr': lr, 'ms': round(step_s * 1000, 1),
                  'tokens_per_s': round(tokens_per_s), 'mfu': round(mfu, 4)}
        if spec_flops:
            record['mfu_spec'] = round(flops_per_iter / step_s / spec_flops, 4)
        note = ' (compiling)' if compiling and iter_num - first_iter <= log_interval else ''
        log(record)
        bar.set_postfix(loss=f'{loss_value:.3f}', tok_s=f'{tokens_per_s:,.0f}', mfu=f'{mfu:.0%}{note}')
        if not progress:  # without the bar, a line per interval
            say(f"iter {iter_num}: loss {loss_value:.4f}, lr {lr:.2e}, {step_s * 1000:.0f} ms, "
                f"{tokens_per_s:,.0f} tokens/s, MFU {mfu:.1%}{note}")
    if log_now:
        t_log, iter_log = now, iter_num

    if iter_num % eval_interval == 0 and iter_num < plan['max_iters']:
        losses = estimate_loss()
        bpb = losses['val'] * bpb_per_nat
        say(f"iter {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f} (~{bpb:.3f} bits/byte)")
        log({'iter': iter_num, 'val_loss': round(losses['val'], 5), 'val_bpb': round(bpb, 5)})
        plan['elapsed_s'] = time.time() - t_start
        save_checkpoint()
        t_log, iter_log = time.time(), iter_num  # evaluation is not a training step's time
bar.close()

# ---- the end: the final checkpoint and the whole-split evaluation -----------------------------
plan['elapsed_s'] = time.time() - t_start
if iter_num > first_iter:
    save_checkpoint()
if master:
    loss, bpb = whole_split_loss(raw_model, data, 'val', batch_size, device, autocast)
    say(f"done: {iter_num} iterations in {plan['elapsed_s'] / 60:.1f} min; val loss {loss:.4f} "
        f"nats/token, {bpb:.4f} bits/byte over the whole val split")
    log({'iter': iter_num, 'val_loss': round(loss, 5), 'val_bpb': round(bpb, 5), 'final': True})
    write(os.path.join(out_dir, 'loss.png'), plot_log(read_jsonl(log_path), title=out_dir))
if ddp:
    destroy_process_group()
