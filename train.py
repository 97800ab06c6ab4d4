"""
Train a TinyStories GPT on the token bins that prepare.py wrote.

    python train.py config/cpu_tiny.py --data_dir=data/ts               # one device
    python train.py --out_dir=out/run --init_from=resume                # continue exactly
    python train.py --out_dir=out/run --init_from=resume --max_iters=N  # extend a finished run
    python train.py --out_dir=out/run --eval_only                       # whole-val-split bits/byte
    python train.py --out_dir=hf:roneneldan/TinyStories-33M --eval_only --data_dir=data/ts  # any model
    python train.py --init_from=hf:roneneldan/TinyStories-33M --data_dir=data/ts_gpt2 --out_dir=out/ft  # fine-tune
    python train.py --init_from=hf:karpathy/tinyllamas/stories15M.bin --data_dir=data/ts_llama --out_dir=out/ft15M
    torchrun --standalone --nproc_per_node=2 train.py config/ts_33m.py  # DDP
    python train.py --help                                              # every key, its meaning

Batches are a pure function of (seed, iteration, process, micro-step), so a resumed run sees the
same data an uninterrupted one would, and kill -9 at any moment loses only the work since the
last checkpoint. A resumed run continues with its own saved keys beneath the command line; the
keys of FIXED_ON_RESUME (the model's shape, the seed, the optimizer's settings) cannot change
then. One run writes an out_dir at a time (a lock), and a directory holding a checkpoint is only
replaced with --overwrite. With `max_minutes` the run plans its LR schedule (warmup included) for
that wall-clock budget from the speed it measures (or for max_iters, if that comes first), and
ends with a whole-val-split evaluation and a checkpoint.
"""
import functools
import gc
import io
import json
import math
import os
import time
from dataclasses import asdict

import numpy as np
import torch
from tqdm import tqdm

import tinystories.progress
from model import GPT, GPTConfig
from tinystories.atomic_write import atomic_write
from tinystories.checkpoint import load_checkpoint, load_run
from tinystories.configurator import Key, configure
from tinystories.dataset import open_dataset
from tinystories.dirlock import lock_dir
from tinystories.evaluate import mean_loss, pick_autocast, plot_log, score_model, whole_split_loss
from tinystories.hardware import measure_peak_flops, pick_device, spec_peak_flops
from tinystories.jsonl import append_jsonl
from tinystories.records import read_log

# -----------------------------------------------------------------------------
# I/O
out_dir = Key('out', "the run's folder: ckpt.pt, log.jsonl, loss.png")
data_dir = Key('data/ts', "the prepared dataset to train on (prepare.py's data_dir)")
init_from = Key('scratch', "scratch, resume (out_dir/ckpt.pt), or a model to fine-tune (hf:OWNER/NAME, a folder, "
                            "a llama2.c model.bin)")
eval_only = Key(False, "score the model at out_dir (any model location) on the whole val split; writes nothing")
overwrite = Key(False, "from scratch in an out_dir that holds a checkpoint: replace that run")
# model (the paper's GPT-Neo shapes: see config/)
n_layer = Key(4, "transformer blocks", min=1)
n_head = Key(4, "attention heads per block (they must divide n_embd)", min=1)
n_embd = Key(128, "the hidden size", min=1)
block_size = Key(512, "the context length in tokens", min=1)
dropout = Key(0.0, "dropout probability in training", min=0, below=1)
bias = Key(True, "biases in the linear layers and LayerNorms (GPT-2, GPT-Neo)")
window_size = Key(0, "above 0: GPT-Neo's local attention over this many tokens on odd layers (it used 256)", min=0)
qkv_bias = Key(True, "biases on the queries, keys and values (False: GPT-Neo's, so a model exports to it)")
activation = Key('gelu', "the MLP's nonlinearity: exact gelu, GPT-2/GPT-Neo's tanh approximation, or Llama's "
                         "gated swiglu", choices=('gelu', 'gelu_tanh', 'swiglu'))
# the Llama-style block (model.py): each switch alone; config/cpu_tiny_llama.py sets them together
mlp_hidden = Key(0, "the MLP's hidden size (0: 4 * n_embd; swiglu: about 8/3 * n_embd keeps the parameters)", min=0)
norm = Key('layernorm', "the blocks' normalisation: LayerNorm (GPT-2, GPT-Neo) or RMSNorm (Llama)",
           choices=('layernorm', 'rmsnorm'))
norm_eps = Key(1e-5, "added to the variance in either norm", above=0)
rotary = Key(False, "rotary position embeddings in attention instead of learned positions (Llama)")
rope_theta = Key(10000.0, "rotary: the base of the rotation frequencies", above=0)
n_kv_head = Key(0, "key/value heads, each shared by a group of query heads (0: n_head; it must divide n_head)",
                min=0)
tie_embeddings = Key(True, "the output layer is the token embedding (False: its own matrix)")
value_embeddings = Key(False, "each layer adds its own embedding of the tokens to the attention's values")
# optimisation (defaults from the paper's released models)
batch_size = Key(32, "sequences per micro-step, per process", min=1)
grad_accum = Key(1, "micro-steps per optimizer step (a larger batch in the same memory)", min=1)
learning_rate = Key(5e-4, "the peak learning rate (AdamW's)", above=0)
min_lr = Key(5e-5, "the learning rate the cosine decays to", min=0)
schedule = Key('cosine', "the learning rate's shape after warmup", choices=('cosine', 'constant'))
warmup_iters = Key(100, "iterations of linear warmup (a time-budgeted run: at most a tenth of its plan)", min=0)
max_iters = Key(20000, "optimizer steps in all (with max_minutes too: whichever comes first)", min=0)
max_minutes = Key(0.0, "above 0: a wall-clock budget; the schedule is planned from the measured speed", min=0)
weight_decay = Key(0.1, "AdamW's decoupled weight decay (matrices only)", min=0)
beta1 = Key(0.9, "AdamW's momentum", min=0, below=1)
beta2 = Key(0.95, "AdamW's second-moment decay", min=0, below=1)
grad_clip = Key(1.0, "clip the gradient's norm to this (0: off)", min=0)
muon_lr = Key(0.0, "above 0: Muon for the blocks' matrices at this learning rate, AdamW for the rest", min=0)
# evaluation and logging
eval_interval = Key(500, "iterations between a val estimate and a checkpoint", min=1)
eval_iters = Key(20, "val batches per estimate (the final evaluation reads the whole split)", min=1)
log_interval = Key(10, "iterations between log records (the loss is read from the device only then)", min=1)
progress = Key(True, "a progress bar with an ETA (False: a line per log record)")
tuned_tokens_per_s = Key(0, "the tokens/s a recipe was tuned at (its config sets it): a much slower "
                            "machine is told what its budget buys (0: no comparison)", min=0)
# system
device = Key('auto', "auto (a GPU if there is one), cpu, cuda, cuda:1, mps")
dtype = Key('auto', "the autocast dtype (auto: bf16 where it pays, fp16 with loss scaling on older GPUs)",
            choices=('auto', 'float32', 'bfloat16', 'float16'))
compile = Key(None, "torch.compile the model (None or auto: on CUDA only)", choices=(None, 'auto', True, False))
loss_impl = Key('auto', "how the model computes its loss, not what (auto: model.py picks per device)",
                choices=('auto', 'chunked', 'few_chunks', 'plain'))
seed = Key(1337, "seeds the weights, dropout and every batch")
threads = Key(0, "torch CPU threads (0: torch's default)", min=0)
# -----------------------------------------------------------------------------
# A resumed run keeps these: the model's shape (its model_args are the truth), the context and
# the seed its batches were drawn with, and the optimizer's settings (its saved state holds them).
MODEL_KEYS = ('n_layer', 'n_head', 'n_embd', 'bias', 'qkv_bias', 'window_size', 'activation', 'dropout',
              'mlp_hidden', 'norm', 'norm_eps', 'rotary', 'rope_theta', 'n_kv_head', 'tie_embeddings',
              'value_embeddings')
FIXED_ON_RESUME = MODEL_KEYS + ('block_size', 'seed', 'learning_rate', 'muon_lr', 'weight_decay', 'beta1', 'beta2')


def fail(msg):
    raise SystemExit(f"error: {msg}")


@functools.cache
def read_checkpoint(path):
    """(model, checkpoint) of the run to resume or score; a one-line error if it is damaged."""
    model, ckpt = load_checkpoint(path)
    if not isinstance(ckpt.get('config'), dict):
        fail(f"{path} has no config: it is not a run of train.py (train a new one)")
    return model, ckpt


def saved_keys(settings):
    """Resuming (or scoring a run of ours): the run's own saved keys, and its model's shape, are
    the defaults beneath this command line, so `--init_from=resume` alone continues the run."""
    path = os.path.join(settings['out_dir'], 'ckpt.pt')
    if settings['init_from'] != 'resume' and not (settings['eval_only'] and os.path.isfile(path)):
        return {}
    _, ckpt = read_checkpoint(path)
    return {**ckpt['config'], **model_keys(ckpt['model_args'])}


def model_keys(model_args):
    """The MODEL_KEYS of a model's args. A checkpoint older than a key holds a model of the key's
    default (GPTConfig's defaults are the GPT-2 block), so a missing one reads as that default."""
    args = {**asdict(GPTConfig()), **model_args}
    return {k: args[k] for k in MODEL_KEYS}


config = configure(globals(), saved=saved_keys)  # defaults < a resumed run's keys < files < --key=value


# ---- set-up: each step a function, called in order below ---------------------------------------
def check_settings(ckpt):
    """What one key's range cannot say: a one-line error before any work."""
    if init_from not in ('scratch', 'resume') and not (init_from.startswith('hf:') or os.path.isdir(init_from) or
                                                       (os.path.isfile(init_from) and init_from.endswith('.bin'))):
        fail(f"--init_from={init_from!r}: use 'scratch', 'resume', or a model to fine-tune (hf:OWNER/NAME, "
             f"a Hugging Face model folder, a run's out_dir, or a llama2.c checkpoint file model.bin)")
    if n_embd % n_head:
        fail(f"n_embd={n_embd} is not divisible by n_head={n_head}: pick an n_head that divides it")
    if n_kv_head and n_head % n_kv_head:
        fail(f"n_head={n_head} is not a multiple of n_kv_head={n_kv_head}: pick an n_kv_head that divides it")
    if rotary and (n_embd // n_head) % 2:
        fail(f"rotary turns pairs of dimensions, but a head has {n_embd // n_head}: pick an even n_embd / n_head")
    if muon_lr and dtype == 'float16':
        fail("muon_lr with dtype=float16 is not supported (the loss scaler needs one torch optimizer): use bfloat16")
    if ckpt is not None and init_from == 'resume':
        if not isinstance(ckpt.get('iter_num'), int) or not isinstance(ckpt.get('plan'), dict):
            fail(f"{ckpt_path} has no iter_num or plan: it is not a run train.py can continue (train a new one)")
        saved = saved_keys(config)
        for k in FIXED_ON_RESUME:
            if k in saved and config[k] != saved[k]:
                fail(f"--{k}={config[k]!r}, but {out_dir} was trained with {k}={saved[k]!r}, which a resumed run "
                     f"keeps: drop --{k}, or train a new run (another --out_dir, or --overwrite)")


def start_processes():
    """(ddp, rank, world, device): one process per GPU under torchrun, else one process."""
    ddp = int(os.environ.get('RANK', -1)) != -1  # launched by torchrun?
    rank, world = (int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])) if ddp else (0, 1)
    dev = pick_device(device)
    if ddp and dev.startswith('cuda'):
        local_rank = int(os.environ['LOCAL_RANK'])
        if local_rank >= torch.cuda.device_count():
            fail(f"torchrun started more processes per node than this machine has GPUs "
                 f"({torch.cuda.device_count()}): use --nproc_per_node={torch.cuda.device_count()}, or --device=cpu")
        dev = f"cuda:{local_rank}"
        torch.cuda.set_device(dev)  # before the process group: NCCL binds each process to its GPU
    if dev.startswith('cuda'):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if ddp:
        torch.distributed.init_process_group(backend='nccl' if dev.startswith('cuda') else 'gloo')
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed + rank)
    return ddp, rank, world, dev


def end_processes():
    """Every process leaves together, its process group freed before Python exits: a gloo group
    still held at exit (by the DDP wrapper) can abort the process there (SIGABRT, 'terminate
    called without an active exception'), failing a run whose work is all saved."""
    global model
    if ddp:
        model = None  # the DDP wrapper, and with it its hold on the group
        gc.collect()
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def check_data(data, ckpt):
    """Every split holds a window, and a resumed run reads the tokenizer it was trained with."""
    for split in ('train', 'val'):
        n_tokens = len(data.tokens(split))
        if n_tokens <= block_size + 1:
            fail(f"{data.path(split)} holds {n_tokens} tokens, not more than block_size+1 = "
                 f"{block_size + 1}: use a smaller --block_size or more data")
    if ckpt is not None:  # token ids mean nothing under another tokenizer, even one of the same size
        if ckpt['model_args']['vocab_size'] < data.vocab_size:  # (a Llama's may have padded embeddings)
            fail(f"the checkpoint's vocabulary ({ckpt['model_args']['vocab_size']}) does not match "
                 f"{data_dir}'s tokenizer ({data.vocab_size}): use the dataset it trained on")
        if (ckpt.get('tokenizer') or {}).get('sha256') != data.tokenizer_record()['sha256']:
            fail(f"{data_dir}'s tokenizer is not the one {ckpt_path} was trained with (same size, other "
                 f"tokens): use the dataset it trained on (its data_dir: {ckpt['config'].get('data_dir')})")


def take_out_dir():
    """One writer per out_dir (a lock that kill -9 frees), and a trained run is only replaced on request."""
    lock_dir(out_dir, 'training run')
    if init_from != 'resume' and os.path.exists(ckpt_path) and not overwrite:
        fail(f"{out_dir} holds a trained run ({ckpt_path}): continue it with --init_from=resume, "
             f"start over with --overwrite (replacing it), or use another --out_dir")


def starting_model(data):
    """(model, model_args): the checkpoint's, a model to fine-tune, or a new one of the keys' shape."""
    if ckpt is not None:
        check_memory(ckpt['model_args'])
        return read_checkpoint(ckpt_path)[0], ckpt['model_args']
    if init_from != 'scratch':  # fine-tune a model (its own tokenizer: prepare --tokenizer=<it>)
        model, _, info = load_run(init_from, 'cpu')
        if info['tokenizer'].get('sha256') != data.tokenizer_record()['sha256']:
            fail(f"{data_dir} is not in {init_from}'s tokenizer: prepare it with "
                 f"prepare.py --tokenizer={init_from} --data_dir=... first")
        check_memory(asdict(model.config))  # its weights fit; training needs more
        return model, asdict(model.config)
    args = GPTConfig(vocab_size=data.vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                     n_embd=n_embd, dropout=dropout, bias=bias, window_size=window_size, qkv_bias=qkv_bias,
                     activation=activation, mlp_hidden=mlp_hidden, norm=norm, norm_eps=norm_eps, rotary=rotary,
                     rope_theta=rope_theta, n_kv_head=n_kv_head, tie_embeddings=tie_embeddings,
                     value_embeddings=value_embeddings)
    check_memory(asdict(args))  # before the weights are made: a shape too large gets a line, not a crash
    return GPT(args), asdict(args)


def check_memory(args):
    """Refuse what this machine cannot hold, before dying of it: weights, grads, AdamW's moments
    in fp32, the activations kept for backward (Korthikanti et al. 2022) and, when the loss is
    computed over the whole logits (plain; on a GPU 'auto' may pick it), the fp32 logits and
    their gradient (batch 64 x 512 x 50,257 vocabulary: 6.6 GB each)."""
    L, d, V, T = args['n_layer'], args['n_embd'], args['vocab_size'], min(block_size, args['block_size'])
    shape = model_keys(args)
    mlp = (3 if shape['activation'] == 'swiglu' else 2) * d * (shape['mlp_hidden'] or 4 * d)
    weights = L * (4 * d * d + mlp) + (V * (1 if shape['tie_embeddings'] else 2) + T) * d
    kv = d // args['n_head'] * (shape['n_kv_head'] or args['n_head'])  # the key/value width
    weights += L * V * kv if shape['value_embeddings'] else 0  # a value table per layer
    need = weights * 16 + batch_size * T * L * (34 * d + 5 * args['n_head'] * T) * 2
    if loss_impl == 'plain' or (loss_impl == 'auto' and device_type != 'cpu'):
        need += 2 * batch_size * T * V * 4
    have = math.inf
    if device_type == 'cuda':
        have = torch.cuda.mem_get_info(device)[0]
    elif os.path.exists('/proc/meminfo'):
        with open('/proc/meminfo') as f:
            have = next((int(l.split()[1]) * 1024 for l in f if l.startswith('MemAvailable')), have)
    if need > 0.9 * have:
        fail(f"this configuration needs about {need / 2**30:.1f} GiB but {device} has "
             f"{have / 2**30:.1f} GiB free: lower batch_size (raise grad_accum), block_size or the model")


def starting_plan():
    """(the schedule's plan {max_iters, warmup_iters, elapsed_s}, whether it extends a finished run).
    A resume keeps its plan (a budget's plan stands until re-planned); a larger max_iters given
    to a finished run extends it, its spent time budget no longer governing."""
    if ckpt is None:
        return {'max_iters': max_iters, 'warmup_iters': warmup_iters, 'elapsed_s': 0.0}, False
    plan = {'warmup_iters': warmup_iters, **ckpt['plan']}
    finished = iter_num >= plan['max_iters']
    extend = finished and max_iters > iter_num and max_iters != ckpt['config'].get('max_iters')
    if extend:
        say(f"plan: extending the finished run from {iter_num:,} to {max_iters:,} iterations "
            f"(--max_iters{'; its time budget is spent and no longer governs' if max_minutes else ''})")
    plan['max_iters'] = min(plan['max_iters'], max_iters) if max_minutes and not extend else max_iters
    if not max_minutes:
        plan['warmup_iters'] = warmup_iters  # without a budget, the key itself (it may change)
    return plan, extend


def steps_in_budget(per_iter_s, elapsed_s):
    """(the iteration to stop at, what the budget alone allows): from the measured time per
    iteration, leaving time for the final whole-split evaluation. Every process takes rank 0's
    answer, so all stop at the same step."""
    # the final evaluation reads every val token forward only: about a third of a step's work per token
    final_eval_s = per_iter_s / grad_accum / 3 * val.get('tokens', 0) / (batch_size * block_size)
    by_time = iter_num + max(1, int((budget_s - elapsed_s - final_eval_s) / per_iter_s))
    steps = torch.tensor(min(max_iters, by_time), device=device)  # on the run's device: NCCL refuses CPU tensors
    if ddp:
        torch.distributed.broadcast(steps, src=0)
    return int(steps), by_time


def say(*args):
    if master:
        tqdm.write(' '.join(str(a) for a in args))


# ---- the set-up, in order ---------------------------------------------------------------------
ckpt_path = os.path.join(out_dir, 'ckpt.pt')
ckpt = read_checkpoint(ckpt_path)[1] if init_from == 'resume' or (eval_only and os.path.isfile(ckpt_path)) else None
check_settings(ckpt)
ddp, rank, world, device = start_processes()
master = rank == 0
device_type = device.split(':')[0]
data = open_dataset(data_dir)  # meta.json validated, every bin's size checked against it
if eval_only:  # any model location; one of another tokenizer reads the text re-encoded (evaluate.py)
    if master:
        score_model(out_dir, data, batch_size, device, dtype)
    end_processes()
    raise SystemExit(0)
check_data(data, ckpt)
if master:
    take_out_dir()
tokenizer = data.tokenizer_record()
val = data.split_info('val')  # every position with a target (all tokens but the first) per byte:
bpb_per_nat = (val['tokens'] - 1) / val['bytes'] / math.log(2) if val.get('bytes') else float('nan')
if dtype == 'auto' and ckpt is not None and init_from == 'resume':  # a run goes on in the dtype it began in
    dtype = ckpt.get('dtype', 'auto')
dtype, ptdtype, autocast = pick_autocast(device, dtype)  # bf16 where it pays; fp16 with loss scaling
scaler = torch.amp.GradScaler(device_type, enabled=dtype == 'float16')
model, model_args = starting_model(data)
block_size = min(block_size, model_args['block_size'])  # a model to fine-tune may have a shorter context
config.update(block_size=block_size, **model_keys(model_args))  # what it is
model = model.train().to(device)
model.loss_impl = loss_impl  # how, not what: model.py picks per device for 'auto'
optimizer = model.configure_optimizer(weight_decay, learning_rate, (beta1, beta2), device_type, muon_lr,
                                      autocast_dtype=ptdtype)
iter_num = 0 if ckpt is None else ckpt['iter_num']
if ckpt is not None:  # where the run stopped: optimizer moments, loss scale, dropout's randomness
    optimizer.load_state_dict(ckpt['optimizer'])
    if scaler.is_enabled() and ckpt.get('scaler'):
        scaler.load_state_dict(ckpt['scaler'])
    torch.set_rng_state(ckpt['rng']['torch'])
    if device_type == 'cuda' and ckpt['rng'].get('cuda') is not None:
        torch.cuda.set_rng_state(ckpt['rng']['cuda'])
plan, extending = starting_plan()
budget_s = 0.0 if extending else max_minutes * 60
raw_model = model
compiling = device_type == 'cuda' if compile in (None, 'auto') else bool(compile)
if compiling:
    say("compiling the model with torch.compile: the first steps are slow")
    model = torch.compile(model)
if ddp:
    gpu = [torch.device(device).index] if device_type == 'cuda' else None
    model = torch.nn.parallel.DistributedDataParallel(model, device_ids=gpu)


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


def get_lr(it):
    """Linear warmup to learning_rate, then a cosine down to min_lr at the plan's end (or constant)."""
    warmup = plan['warmup_iters']
    if it < warmup:
        return learning_rate * ((it + 1) / warmup)  # the last warmup step: exactly learning_rate
    if schedule == 'constant':
        return learning_rate
    done = min(1.0, (it - warmup) / max(1, plan['max_iters'] - warmup))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * done)) * (learning_rate - min_lr)


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
                'config': config, 'dtype': dtype, 'meta': data.meta, 'tokenizer': tokenizer,
                'scaler': scaler.state_dict() if scaler.is_enabled() else None,
                'rng': {'torch': torch.get_rng_state(),
                        'cuda': torch.cuda.get_rng_state() if device_type == 'cuda' else None}}, buf)
    write(ckpt_path, buf.getvalue())


if master:
    if ckpt is None and os.path.exists(ckpt_path):  # --overwrite: the old run goes now, whole
        os.remove(ckpt_path)
    # keep only what the checkpoint has: records after it (and the final evaluation) come again
    kept = [r for r in read_log(out_dir) if r['iter'] <= iter_num and not r.get('final')] if ckpt else []
    write(log_path, ''.join(json.dumps(r) + '\n' for r in kept))


def estimate_loss():
    """Mean loss over `eval_iters` fixed batches of each split (fixed: comparable across evals)."""
    return {split: mean_loss(model, (get_batch(split, -1 - k) for k in range(eval_iters)), autocast)
            for split in ('train', 'val')}


tokens_per_iter = batch_size * block_size * grad_accum * world
flops_per_iter = raw_model.flops_per_token() * tokens_per_iter
peak_flops = measure_peak_flops(ptdtype, device, n=None if device_type == 'cuda' else 1024, seconds=0.3)
spec_flops = spec_peak_flops(device, ptdtype) if device_type == 'cuda' else None  # the spec sheet's (None: unknown GPU)
say(f"model: {raw_model.num_params() / 1e6:.2f}M parameters ({raw_model.num_params(embeddings=False) / 1e6:.2f}M "
    f"without embeddings) | {device} {dtype}{' compiled' if compiling else ''} | {world} process(es) | "
    f"{tokens_per_iter:,} tokens per step")
say(f"stops at iteration {plan['max_iters']:,}" + (f" or after {max_minutes:g} minutes, whichever comes first "
                                                  f"(planned from the measured speed)" if budget_s else ''))


def replan(per_iter_s, elapsed_s, first):
    """Fit the schedule to the wall-clock budget from the measured speed. The first plan also
    fixes the warmup (a tenth of the plan at most, unless the plan is tiny: a slow machine still
    reaches the peak rate and decays) and says in one line what the budget buys, and whether the
    recipe expected more."""
    plan['max_iters'], by_time = steps_in_budget(per_iter_s, elapsed_s)
    bar.total = plan['max_iters']
    if not first:
        return
    if not plan.get('planned'):  # once per run (a resume keeps it), ending after this step: the peak is reached
        plan['warmup_iters'] = min(warmup_iters, max(plan['max_iters'] // 10, iter_num + 1))
        plan['planned'] = True
    limit = 'max_iters' if max_iters < by_time else f'the {max_minutes:g}-minute budget'
    say(f"plan: {plan['max_iters']:,} iterations; {limit} governs (the budget allows about {by_time:,}); "
        f"warmup {plan['warmup_iters']:,}")
    tokens_per_s = tokens_per_iter / per_iter_s
    if tuned_tokens_per_s and tokens_per_s < tuned_tokens_per_s / 3:
        say(f"note: this machine trains at {tokens_per_s:,.0f} tokens/s, {tuned_tokens_per_s / tokens_per_s:.0f}x "
            f"slower than the {tuned_tokens_per_s:,} this recipe was tuned at: its budget buys about "
            f"{by_time:,} steps here, not {by_time * tuned_tokens_per_s / tokens_per_s:,.0f}; expect a weaker "
            f"model, or raise --max_minutes toward {max_minutes * tuned_tokens_per_s / tokens_per_s:,.0f}")


def log_step(now):
    """A log record: the loss (read from the device: a host sync), the lr, the speed, the MFU."""
    loss_value = loss.item() * grad_accum
    check_finite(loss_value)
    step_s = (now - clock['t_log']) / (iter_num - clock['iter_log'])
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
    clock.update(t_log=now, iter_log=iter_num)


def evaluate_and_save():
    """A val estimate on fixed batches, then a checkpoint (its time is not a training step's)."""
    losses = estimate_loss()
    bpb = losses['val'] * bpb_per_nat
    say(f"iter {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f} (~{bpb:.3f} bits/byte)")
    log({'iter': iter_num, 'val_loss': round(losses['val'], 5), 'val_bpb': round(bpb, 5)})
    plan['elapsed_s'] = time.time() - clock['t_start']
    save_checkpoint()
    clock.update(t_log=time.time(), iter_log=iter_num)


# ---- the training loop -------------------------------------------------------------------------
bar = tinystories.progress.progress(total=plan['max_iters'], initial=iter_num, unit='it', desc='train',
                                    disable=not (master and progress))
first_iter = iter_num
clock = {'t_start': time.time() - plan['elapsed_s'],  # the budget counts time spent before a resume too
         't_log': time.time(), 'iter_log': iter_num, 't_warm': None}
x, y = get_batch('train', iter_num, 0)
while iter_num < plan['max_iters']:
    # this step's learning rate: the schedule, applied to each group from its own initial lr
    lr = get_lr(iter_num)
    for group in optimizer.param_groups:
        group['lr'] = group['initial_lr'] * lr / learning_rate
    # forward and backward over grad_accum micro-batches: their gradients add up to one batch's
    for micro in range(grad_accum):
        if ddp:  # synchronise gradients across processes only on the last micro-step
            model.require_backward_grad_sync = micro == grad_accum - 1
        with autocast:
            _, loss = model(x, y)
            loss = loss / grad_accum  # the step's mean loss, not the sum of the micro-steps' means
        finite.logical_and_(torch.isfinite(loss.detach()))  # every micro-step, on the device: no sync
        # fetch the next batch while the device is still busy with this one (async on CUDA)
        x, y = get_batch('train', iter_num + (micro + 1) // grad_accum, (micro + 1) % grad_accum)
        scaler.scale(loss).backward()  # fp16: scaled up, so small gradients do not underflow
    # clip the gradient's norm, so one bad batch cannot throw the weights far
    if grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)  # fp16: skipped when the gradients overflowed (and the scale lowered)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)  # free the gradients' memory until the next backward
    iter_num += 1
    bar.update(1)
    # the rest reads the device (a host sync), so only every so often: time, plan, log, evaluate
    now = time.time()
    if iter_num - first_iter == 3:  # the first steps warm up caches (and compile): time from here
        clock['t_warm'] = now
    if budget_s and iter_num - first_iter >= 8 and (iter_num - first_iter == 8 or iter_num % eval_interval == 0):
        replan((now - clock['t_warm']) / (iter_num - first_iter - 3), now - clock['t_start'],
               first=iter_num - first_iter == 8)
    if iter_num % log_interval == 0:
        log_step(now)
    if iter_num % eval_interval == 0 and iter_num < plan['max_iters']:
        evaluate_and_save()
bar.close()

# ---- the end: the final checkpoint and the whole-split evaluation -----------------------------
plan['elapsed_s'] = time.time() - clock['t_start']
if iter_num > first_iter:
    save_checkpoint()
if master:
    loss, bpb = whole_split_loss(raw_model, data, 'val', batch_size, device, autocast)
    tokens = iter_num * tokens_per_iter
    say(f"done: {iter_num} iterations in {plan['elapsed_s'] / 60:.1f} min; {tokens:,} tokens seen, "
        f"{tokens / max(plan['elapsed_s'], 1e-9):,.0f} tokens/s; val loss {loss:.4f} nats/token, "
        f"{bpb:.4f} bits/byte over the whole val split")
    log({'iter': iter_num, 'val_loss': round(loss, 5), 'val_bpb': round(bpb, 5), 'final': True})
    write(os.path.join(out_dir, 'loss.png'), plot_log(read_log(out_dir), title=out_dir))
end_processes()
