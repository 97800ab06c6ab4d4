"""
Benchmarks: one JSON object per case, on one line, so that figures can be grepped, diffed and
plotted. Ratios are measured in the same run, since the machines here are shared and noisy.

    python bench.py                       # every case
    python bench.py --only=matmul,train   # cases whose name starts with one of these
    python bench.py --list_cases          # case names
    python bench.py --device=cuda         # the GPU cases: training steps at the paper's shapes
                                          # against a nanoGPT-style reference, decoding

Each case is a function decorated with @case; it yields dicts with at least
{"case", "value", "unit"}; extra keys give context (shapes, ratios, targets).
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinystories.configurator import Key, configure
from tinystories.hardware import measure_peak_flops, spec_peak_flops

# -----------------------------------------------------------------------------
only = Key([], "case-name prefixes to run (empty: all)")
list_cases = Key(False, "print the case names and exit")
data_file = Key('', "stories (any file or folder stories.py reads) for bpe_train, encode_throughput and "
                    "prepare_sample: e.g. data/demo_stories from generate_data.py")
threads = Key(0, "torch threads (0: torch's default, all cores)", min=0)
device = Key('cpu', "cpu, or cuda: run the GPU cases instead of the CPU ones", choices=('cpu', 'cuda'))
gpu_shapes = Key(['ts_33m', 'ts_1m'], "train_step_gpu: shapes, by their names in PAPER_SHAPES")
windows = Key([0, 256], "train_step_gpu: local attention windows (0: global attention only; GPT-Neo: 256)", min=0)
gpu_batch = Key(64, "train_step_gpu: sequences of 512 tokens per step", min=1)
gpu_variants = Key(['auto', 'few_chunks'], "train_step_gpu: our model's variants beside the reference: auto "
                  "(its CUDA defaults: the plain loss), a loss_impl (plain, few_chunks, chunked), or "
                  "reduce_overhead (auto, compiled with CUDA graphs)")
recipes = Key(['config/cpu_tiny.py', 'config/cpu_tiny_llama.py', 'config/cpu_nanogpt.py'],
              "recipe_step: the training configs whose steps are timed in turns (the first is the reference)")
recipe_minutes = Key(10.0, "recipe_step: the wall-clock budget each recipe's step count is given for", above=0)
table = Key(False, "also print the figures as one Markdown table at the end (make gpu-check)")
# -----------------------------------------------------------------------------
config = configure(globals())

CASES = {}


def case(name, devices=('cpu',)):
    def register(fn):
        CASES[name] = (fn, devices)
        return fn
    return register


RECORDS = []  # every figure emitted, for the table


def emit(**record):
    RECORDS.append(record)
    print(json.dumps(record), flush=True)


def print_table(records):
    """The figures as one Markdown table: case, value, and the ratios and MFU beside them."""
    extra = [k for k in ('vs_reference', 'vs_no_cache', 'mfu', 'mfu_spec', 'compile_s')
             if any(r.get(k) is not None for r in records)]
    print('\n| case | value | unit | ' + ' | '.join(extra) + ' |')
    print('|---|---:|---|' + '---:|' * len(extra))
    for r in records:
        cells = [r['case'], r['value'], r['unit']] + ['' if r.get(k) is None else r[k] for k in extra]
        print('| ' + ' | '.join(str(c) for c in cells) + ' |')
    gpu = next((f"{r['gpu']}, torch {r['torch']}" for r in records if 'gpu' in r), None)
    if gpu:
        print(f'\nmeasured on {gpu}')


def device_info():
    """What the figures were measured on, for every GPU record."""
    if device != 'cuda':
        return {}
    return {'device': device, 'gpu': torch.cuda.get_device_name(), 'torch': torch.__version__}


def timeit(fn, min_seconds=1.0, warmup=1):
    """Median seconds per call of fn(), after `warmup` calls, over at least min_seconds."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


@case('matmul_peak', devices=('cpu', 'cuda'))
def bench_matmul_peak():
    for dtype in (torch.float32, torch.bfloat16):  # a GPU needs a big matmul to reach its roof
        n = 8192 if device == 'cuda' else 1024
        flops = measure_peak_flops(dtype, device, n=n, seconds=1.0)
        spec = spec_peak_flops(device, dtype)
        emit(case=f'matmul_peak_{str(dtype).split(".")[-1]}', value=round(flops / 1e9, 1),
             unit='GFLOP/s', n=n, **device_info(), spec_gflops=spec and round(spec / 1e9))


# the fixed shape the training figures use (nanoGPT-ish, small enough for a CPU)
BENCH_SHAPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=256, vocab_size=4096)


def _train_step(dtype, use_compile, plain_loss=False, batch_size=32, **shape):
    """One training step of the kind train.py runs (forward, backward, AdamW) at the bench shape,
    as a function; plus its tokens and FLOPs per token.
    plain_loss: F.cross_entropy over the whole logits instead of the model's own loss (on a CPU
    the chunked one, tinystories/speedups.py's LinearCrossEntropy)."""
    from contextlib import nullcontext
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    cfg = GPTConfig(**{**BENCH_SHAPE, **shape})
    model = GPT(cfg)
    opt = model.configure_optimizer(0.1, 5e-4, (0.9, 0.95), 'cpu')
    fwd = torch.compile(model) if use_compile else model
    autocast = torch.autocast('cpu', dtype=torch.bfloat16) if dtype == 'bfloat16' else nullcontext()
    x = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size))
    y = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size))

    def step():
        with autocast:
            if plain_loss:
                logits, _ = fwd(x)
                loss = torch.nn.functional.cross_entropy(logits.float().view(-1, cfg.vocab_size), y.view(-1))
            else:
                _, loss = fwd(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()
    return step, x.numel(), model.flops_per_token()


def _interleaved_tokens_per_s(steps, rounds=7, warmup=3, sync=lambda: None):
    """Tokens/s of each (step, tokens) in `steps`: warmed up, then timed in turns, one step of
    each per round, the median round kept. Taking turns makes the ratios fair on a shared,
    drifting machine where timing one variant after another would not be."""
    for step, _ in steps:
        for _ in range(warmup):  # the first calls compile, allocate and warm caches
            step()
    times = [[] for _ in steps]
    for _ in range(rounds):
        for (step, _), t in zip(steps, times):
            t0 = time.perf_counter()
            step()
            sync()  # a GPU runs asynchronously: wait for the step's kernels
            t.append(time.perf_counter() - t0)
    return [n / sorted(t)[len(t) // 2] for (_, n), t in zip(steps, times)]


@case('train_step')
def bench_train_step():
    """Training tokens/s and MFU at the fixed shape: fp32 eager (the plain baseline) against
    bf16 autocast and torch.compile, and the chunked loss against F.cross_entropy over the whole
    logits, measured in turns in the same run. MFU is against the measured peak of the dtype."""
    peaks = {d: measure_peak_flops(getattr(torch, d), seconds=1.0) for d in ('float32', 'bfloat16')}
    variants = [('float32', False, False), ('bfloat16', False, False), ('float32', True, False),
                ('bfloat16', True, False), ('float32', False, True), ('bfloat16', False, True)]
    built = [_train_step(*v) for v in variants]
    fpt = built[0][2]
    rates = _interleaved_tokens_per_s([(step, n) for step, n, _ in built])
    for (dtype, use_compile, plain), tps in zip(variants, rates):
        name = f'train_step_{dtype}{"_compiled" if use_compile else "_eager"}{"_plain_loss" if plain else ""}'
        emit(case=name, value=round(tps), unit='tokens/s', mfu=round(tps * fpt / peaks[dtype], 3),
             vs_fp32_eager=round(tps / rates[0], 2), peak_gflops=round(peaks[dtype] / 1e9),
             shape=BENCH_SHAPE, batch_size=32)


def _recipe_step(path):
    """One training step of a config file's recipe as train.py runs it on a CPU (its shape, batch,
    optimizer (Muon or not), its dtype, the gradient clipped), as a function; plus its tokens per step."""
    import runpy
    from dataclasses import fields
    from tinystories.evaluate import pick_autocast
    from model import GPT, GPTConfig
    cfg = runpy.run_path(path)
    get = lambda k, default: cfg.get(k, default)  # noqa: E731 (train.py's defaults where a recipe is silent)
    torch.manual_seed(0)
    shape = {f.name: cfg[f.name] for f in fields(GPTConfig) if f.name in cfg}
    model = GPT(GPTConfig(**shape))
    _, ptdtype, autocast = pick_autocast('cpu', get('dtype', 'auto'))
    opt = model.configure_optimizer(get('weight_decay', 0.1), get('learning_rate', 5e-4),
                                    (get('beta1', 0.9), get('beta2', 0.95)), 'cpu', get('muon_lr', 0.0),
                                    autocast_dtype=ptdtype)
    T, B, V = model.config.block_size, get('batch_size', 32), model.config.vocab_size
    x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))

    def step():
        with autocast:
            _, loss = model(x, y)
        loss.backward()
        if get('grad_clip', 1.0):
            torch.nn.utils.clip_grad_norm_(model.parameters(), get('grad_clip', 1.0))
        opt.step()
        model.zero_grad(set_to_none=True)
        return loss.detach()
    return step, B * T


@case('recipe_step')
def bench_recipe_step():
    """The CPU recipes' steps, timed in turns: each recipe's time per step, and the steps that
    fill the same wall-clock budget (recipe_minutes). Issue 24's recipe comparison trains each
    recipe for that many steps, so that equal wall time on an idle machine is compared without
    timing the runs themselves on a shared one (docs/measurements.md)."""
    built = [_recipe_step(p) for p in recipes]
    rates = _interleaved_tokens_per_s(built, rounds=21, warmup=5)
    for path, (_, n), tps in zip(recipes, built, rates):
        step_s = n / tps
        emit(case=f'recipe_step_{os.path.splitext(os.path.basename(path))[0]}', value=round(step_s * 1000, 2),
             unit='ms/step', tokens_per_s=round(tps), tokens_per_step=n, vs_first=round(tps / rates[0], 3),
             steps_in_budget=int(recipe_minutes * 60 / step_s), budget_minutes=recipe_minutes)


@case('sample')
def bench_sample():
    """Generation tokens/s from a 16-token prompt up to a full 512-token context: the KV cache
    against recomputing the whole sequence every step, same model, same run."""
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**BENCH_SHAPE, 'block_size': 512})).eval()
    prompt, new = list(range(16)), 512 - 16
    cached, full = _interleaved_tokens_per_s(
        [(lambda: model.generate([prompt], new, temperature=1.0), new),
         (lambda: model.generate_no_cache(prompt, new, temperature=1.0), new)],
        rounds=3, warmup=1)
    emit(case='sample_kv_cache', value=round(cached, 1), unit='tokens/s', prompt=16, context=512)
    emit(case='sample_no_cache', value=round(full, 1), unit='tokens/s', prompt=16, context=512)
    emit(case='sample_kv_cache_speedup', value=round(cached / full, 1), unit='x')
    batch = 16
    t0 = time.perf_counter()
    model.generate([prompt] * batch, new, temperature=1.0)
    emit(case='sample_kv_cache_batch16', value=round(batch * new / (time.perf_counter() - t0), 1),
         unit='tokens/s', prompt=16, context=512)


# The distinct model shapes of config/ (context 512; vocab 8,193 as the measurements)
PAPER_SHAPES = {
    'ts_1m': dict(n_embd=64, n_layer=8, n_head=16), 'ts_3m': dict(n_embd=128, n_layer=8, n_head=16),
    'ts_8m': dict(n_embd=256, n_layer=8, n_head=16), 'ts_28m': dict(n_embd=512, n_layer=8, n_head=16),
    'ts_33m': dict(n_embd=768, n_layer=4, n_head=16), 'ts_2layers_33m': dict(n_embd=1024, n_layer=2, n_head=16),
    'ts_1layer_21m': dict(n_embd=1024, n_layer=1, n_head=16),
}


class ReferenceGPT(nn.Module):
    """nanoGPT's model, as plain as it comes, for the GPU training step to be measured against:
    the same architecture as model.GPT (pre-LayerNorm blocks, GELU MLP, tied output layer,
    learned positions, GPT-Neo's local layers as an SDPA mask), whole logits into
    F.cross_entropy. Written here so that nothing model.py does can speed up the reference."""

    def __init__(self, vocab_size, n_embd, n_layer, n_head, block_size=512, window_size=0):
        super().__init__()
        self.n_head = n_head
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList(nn.ModuleDict(dict(
            ln_1=nn.LayerNorm(n_embd), c_attn=nn.Linear(n_embd, 3 * n_embd), attn_proj=nn.Linear(n_embd, n_embd),
            ln_2=nn.LayerNorm(n_embd), c_fc=nn.Linear(n_embd, 4 * n_embd), mlp_proj=nn.Linear(4 * n_embd, n_embd)))
            for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        i = torch.arange(block_size)
        self.register_buffer('local', (i[None] <= i[:, None]) & (i[:, None] - i[None] < window_size)
                             if window_size else None, persistent=False)
        for p in self.parameters():
            nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for i, b in enumerate(self.h):
            q, k, v = b.c_attn(b.ln_1(x)).split(x.size(-1), dim=2)
            q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
            local = self.local is not None and i % 2 == 1
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.local[:T, :T] if local else None,
                                               is_causal=not local)
            x = x + b.attn_proj(y.transpose(1, 2).contiguous().view(B, T, -1))
            x = x + b.mlp_proj(F.gelu(b.c_fc(b.ln_2(x))))
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def _gpu_train_step(variant, shape, window):
    """A compiled bf16 training step (forward, backward, fused AdamW) on the GPU at a paper shape,
    batch gpu_batch x 512: our model (variant 'auto': its GPU defaults; a loss_impl, 'plain_loss'
    being 'plain'; 'reduce_overhead': auto, compiled with CUDA graphs) or the 'reference'.
    Returns (step, tokens per step, FLOPs per token)."""
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=8193, block_size=512, window_size=window, **PAPER_SHAPES[shape])
    fpt = GPT(cfg).flops_per_token()
    if variant == 'reference':
        model = ReferenceGPT(cfg.vocab_size, cfg.n_embd, cfg.n_layer, cfg.n_head, 512, window).cuda()
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.95), fused=True)
        loss_of = torch.compile(model)
    else:
        model = GPT(cfg).cuda()
        loss_impl = {'plain_loss': 'plain', 'reduce_overhead': 'auto'}.get(variant, variant)
        if loss_impl not in ('auto', 'plain', 'chunked', 'few_chunks'):
            raise SystemExit(f"error: gpu_variants: unknown variant {variant!r}: use auto, plain, "
                             f"few_chunks, chunked or reduce_overhead")
        model.loss_impl = loss_impl
        opt = model.configure_optimizer(0.1, 5e-4, (0.9, 0.95), 'cuda')
        fwd = torch.compile(model, mode='reduce-overhead' if variant == 'reduce_overhead' else None)
        loss_of = lambda x, y: fwd(x, y)[1]
    x = torch.randint(0, cfg.vocab_size, (gpu_batch, 512), device='cuda')
    y = torch.randint(0, cfg.vocab_size, (gpu_batch, 512), device='cuda')

    def step():
        with torch.autocast('cuda', dtype=torch.bfloat16):
            loss = loss_of(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()
    return step, x.numel(), fpt


@case('train_step_gpu', devices=('cuda',))
def bench_train_step_gpu():
    """Training tokens/s on the GPU at the paper's shapes (gpu_shapes, with and without the local
    window): our model's variants against the nanoGPT-style ReferenceGPT, all compiled, bf16,
    fused AdamW, timed in turns in the same run (median of 20 steps after warm-up). compile_s
    is the first step (compilation included). MFU against the measured and the spec-sheet peak."""
    peak = measure_peak_flops(torch.bfloat16, 'cuda', seconds=1.0)
    spec = spec_peak_flops('cuda', torch.bfloat16)
    for shape in gpu_shapes:
        for window in windows:
            names = ['reference'] + list(gpu_variants)
            built, compile_s = [], []
            for name in names:
                step, n, fpt = _gpu_train_step(name, shape, int(window))
                t0 = time.perf_counter()
                step()
                torch.cuda.synchronize()
                compile_s.append(time.perf_counter() - t0)
                built.append((step, n))
            rates = _interleaved_tokens_per_s(built, rounds=20, warmup=3, sync=torch.cuda.synchronize)
            for name, tps, secs in zip(names, rates, compile_s):
                emit(case=f'train_step_gpu_{shape}{"_local" if int(window) else ""}_{name}',
                     value=round(tps), unit='tokens/s', ms_per_step=round(gpu_batch * 512 / tps * 1e3, 2),
                     vs_reference=round(tps / rates[0], 2), compile_s=round(secs, 1),
                     mfu=round(tps * fpt / peak, 3), mfu_spec=spec and round(tps * fpt / spec, 3),
                     peak_tflops=round(peak / 1e12), shape=shape, window=int(window),
                     batch=f'{gpu_batch}x512', **device_info())
            del built
            torch.cuda.empty_cache()


@case('sample_gpu', devices=('cuda',))
def bench_sample_gpu():
    """Generation on the GPU from a 16-token prompt to a full 512-token context, batch 1: the KV
    cache with the decode step replayed as a CUDA graph, the same step uncaptured (decode
    'static': the same algorithm, so the ratio is the capture's alone), and the no-cache
    reference (fp32, the plain sampler), in turns; then a batch of 32 prompts. The cached ones
    decode in the model's decode_dtype (auto: bf16). A 1-layer model (as the issue's
    measurement) and the ts_33m shape."""
    from model import GPT, GPTConfig
    from tinystories.speedups import decoding_model
    for shape in ('ts_1layer_21m', 'ts_33m'):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=8193, block_size=512, window_size=0 if shape == 'ts_1layer_21m' else 256,
                              **PAPER_SHAPES[shape])).cuda().eval()
        prompt, new = list(range(16)), 512 - 16

        def cached(decode, batch=1):
            model.decode = decode
            return model.generate([prompt] * batch, new, temperature=1.0)
        graph, eager, full = _interleaved_tokens_per_s(
            [(lambda: cached('graph'), new), (lambda: cached('static'), new),
             (lambda: model.generate_no_cache(prompt, new, temperature=1.0), new)],
            rounds=3, warmup=1, sync=torch.cuda.synchronize)
        decode_dtype = str(decoding_model(model).wte.weight.dtype).split('.')[-1]
        common = dict(shape=shape, prompt=16, context=512, decode_dtype=decode_dtype, **device_info())
        emit(case=f'sample_gpu_{shape}_kv_cache_graph', value=round(graph, 1), unit='tokens/s',
             vs_no_cache=round(graph / full, 1), target_vs_no_cache=10, **common)
        emit(case=f'sample_gpu_{shape}_kv_cache_eager', value=round(eager, 1), unit='tokens/s',
             vs_no_cache=round(eager / full, 1), decode='static', **common)
        emit(case=f'sample_gpu_{shape}_no_cache', value=round(full, 1), unit='tokens/s', **common)
        (batch32,) = _interleaved_tokens_per_s([(lambda: cached('graph', 32), 32 * new)], rounds=3,
                                               warmup=1, sync=torch.cuda.synchronize)
        emit(case=f'sample_gpu_{shape}_kv_cache_graph_batch32', value=round(batch32, 1), unit='tokens/s',
             batch=32, **common)


def _stories(path):
    """The stories of data_file, read by stories.py (the one reader of story files)."""
    from tinystories import stories
    if not path:
        raise SystemExit("error: this case needs --data_file=PATH (stories: a .txt, .jsonl or .json "
                         "file or a folder, e.g. data/demo_stories from generate_data.py)")
    try:
        return list(stories.iter_stories(path))
    except stories.StoryError as e:
        raise SystemExit(f"error: {e}")


@case('bpe_train')
def bench_bpe_train():
    """Our BPE trainer vs Hugging Face tokenizers' (Rust) on the same stories, same run."""
    from tinystories import tokenizer as T
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    stories = _stories(data_file)
    mb = sum(len(s.encode()) for s in stories) / 1e6
    for vocab in (4096, 8192):
        t0 = time.perf_counter()
        T.train_bpe(stories, vocab_size=vocab)
        ours = time.perf_counter() - t0
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=['<|endoftext|>'], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        t0 = time.perf_counter()
        hf.train_from_iterator(stories, trainer)
        theirs = time.perf_counter() - t0
        emit(case=f'bpe_train_{vocab}', value=round(ours, 2), unit='s', hf_tokenizers_s=round(theirs, 2),
             ratio_vs_hf=round(ours / theirs, 2), text_mb=round(mb, 1), target_s=20 if vocab == 4096 else None)


def _encode_worker(args):
    from tinystories import tokenizer as T
    ranks, block = args
    return len(T.ChunkEncoder(T.make_encoding(ranks)).encode_stories(block))


@case('encode_throughput')
def bench_encode():
    """MB/s of text -> token ids: tiktoken alone, our chunk-cached encoder, and it on all cores."""
    import multiprocessing
    from tinystories import tokenizer as T
    stories = _stories(data_file)
    mb = sum(len(s.encode()) for s in stories) / 1e6
    ranks = T.train_bpe(stories, vocab_size=4096)
    enc = T.make_encoding(ranks)
    t0 = time.perf_counter()
    for s in stories:
        enc.encode_ordinary(s)
    tik = mb / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    T.ChunkEncoder(enc).encode_stories(stories)
    one = mb / (time.perf_counter() - t0)
    n = os.cpu_count() or 1
    blocks = [(ranks, stories[i::n]) for i in range(n)]
    with multiprocessing.get_context('fork').Pool(n) as pool:
        pool.map(abs, range(n))  # workers up before the clock starts
        t0 = time.perf_counter()
        pool.map(_encode_worker, blocks)
        par = mb / (time.perf_counter() - t0)
    emit(case='encode_tiktoken_1proc', value=round(tik, 1), unit='MB/s', vocab=4096)
    emit(case='encode_chunk_1proc', value=round(one, 1), unit='MB/s', vocab=4096, vs_tiktoken=round(one / tik, 2))
    emit(case=f'encode_chunk_{n}proc', value=round(par, 1), unit='MB/s', vocab=4096, procs=n,
         vs_tiktoken_1proc=round(par / tik, 2), target_mb_s=10)


@case('prepare_sample')
def bench_prepare():
    """prepare.py end to end on the sample (fresh data_dir), peak RSS, and a linear projection
    to the 2.2 GB TinyStories V2 train file (memory: the sample's peak plus the duplicate
    filter's ~80 B per story, the one structure that grows with the corpus besides chunk counts)."""
    import resource
    import shutil
    import subprocess
    import tempfile
    root = os.path.dirname(os.path.abspath(__file__))
    _stories(data_file)  # a clear error before starting prepare.py
    out = tempfile.mkdtemp(prefix='bench_prepare_')
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(root, 'prepare.py'), f'--source={data_file}',
                        f'--data_dir={out}', '--vocab_size=4096'], check=True, cwd=root,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        secs = time.perf_counter() - t0
        with open(os.path.join(out, 'meta.json')) as f:
            meta = json.load(f)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    from tinystories import stories
    size = sum(os.path.getsize(f) for f in stories.list_files(data_file))
    scale = 2.2e9 / size
    stories = sum(v['stories'] for v in meta['splits'].values())
    emit(case='prepare_sample', value=round(secs, 2), unit='s', mb=round(size / 1e6, 1),
         mb_per_s=round(size / 1e6 / secs, 1), peak_rss_mb=round(rss_mb))
    emit(case='prepare_projected_2.2GB_time', value=round(secs * scale / 60, 1), unit='min', target_min=10)
    emit(case='prepare_projected_2.2GB_rss', value=round((rss_mb + stories * scale * 80 / 1e6) / 1024, 2),
         unit='GB', target_gb=4)


@case('llm_requests')
def bench_llm_requests():
    """llm.run against the local stand-in server (tinystories/fake_openai.py) at 1 s per request:
    completed requests/s at concurrency 64 (the ceiling is 64/s), nothing lost; overall (start-up
    included) and steady (from the first round's end to the last answer)."""
    import shutil
    import tempfile
    from tinystories import llm
    from tinystories.fake_openai import FakeOpenAI
    n, conc = 512, 64
    reqs = [{'custom_id': f'b{i}', 'params': {'max_tokens': 50},
             'messages': [{'role': 'user', 'content': f'Story {i}: use the verb "run"'}]} for i in range(n)]
    state = tempfile.mkdtemp(prefix='bench_llm_')
    got, times = set(), []
    try:
        with FakeOpenAI(latency=1.0) as server:
            t0 = time.perf_counter()
            report = llm.run(reqs, state, on_result=lambda req, res: (got.add(res['custom_id']),
                                                                      times.append(time.perf_counter())),
                             base_url=server.base_url, model='local', concurrency=conc, yes=True)
            dt = time.perf_counter() - t0
    finally:
        shutil.rmtree(state, ignore_errors=True)
    emit(case='llm_requests_per_s', value=round(len(got) / dt, 1), unit='req/s', requests=n,
         steady=round((len(times) - conc) / (times[-1] - times[conc - 1]), 1),
         concurrency=conc, latency_s=1.0, lost=n - len(got), failed=report['failed'],
         ideal=conc, target=50)


@case('offline_stories')
def bench_offline_stories():
    """generate_data.py's offline generator, run as a user runs it (start-up included): records
    (story, prompt, summary, sentence) per s."""
    import tempfile
    n = 5000
    with tempfile.TemporaryDirectory(prefix='bench_offline_') as out:
        t0 = time.perf_counter()
        stories = offline_stories(n, seed=1, stories_dir=out)
        dt = time.perf_counter() - t0
    words = sum(len(s.split()) for s in stories)
    emit(case='offline_stories_per_s', value=round(n / dt), unit='stories/s', stories=n,
         mean_words=round(words / n, 1), target=1000)


def offline_stories(n, seed, stories_dir):
    """n stories from `generate_data.py --backend=offline` (a stage is run, never imported)."""
    import glob
    import subprocess
    subprocess.run([sys.executable, 'generate_data.py', '--backend=offline', f'--num_stories={n}',
                    f'--seed={seed}', f'--stories_dir={stories_dir}', '--shard_size=100000'], check=True,
                   cwd=os.path.dirname(os.path.abspath(__file__)), stdout=subprocess.DEVNULL)
    stories = []
    for path in sorted(glob.glob(os.path.join(stories_dir, 'stories-*.jsonl'))):
        with open(path, encoding='utf-8') as f:
            stories.extend(json.loads(line)['story'] for line in f)
    return stories[:n]


@case('grade_probes')
def bench_grade_probes():
    """grade.py's offline probes (the repo's 73 items) on a random demo-sized model with the
    byte tokenizer (sequences ~4x longer than with a 4k BPE): batched scoring vs one candidate
    per forward pass, in the same run."""
    from model import GPT, GPTConfig
    from tinystories.probes import load_probes, run_probes
    from tinystories.tokenizer import byte_tokenizer_record, encoding_from_record
    enc = encoding_from_record(byte_tokenizer_record())
    model = GPT(GPTConfig(vocab_size=257, block_size=256, n_layer=4, n_head=4, n_embd=128)).eval()
    items = load_probes(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'eval', 'probes.jsonl'))
    batched = timeit(lambda: run_probes(model, enc, items, batch_size=32), min_seconds=2.0)
    single = timeit(lambda: run_probes(model, enc, items, batch_size=1), min_seconds=2.0)
    emit(case='grade_probes_items_per_s', value=round(len(items) / batched, 1), unit='items/s',
         items=len(items), batch_size=32, unbatched_items_per_s=round(len(items) / single, 1),
         speedup=round(single / batched, 2))

DIVERSITY_STORIES = 1_000_000  # the scale target: 100 completions against 1M stories
DIVERSITY_DIR = '/tmp/tinystories_bench_1m'  # offline stories, made once (never in the repo)


@case('diversity_closest')
def bench_diversity_closest():
    """diversity.py's exact closest-training-story search at scale: an index of the word bigrams
    of 1M offline stories (generate_data.py), then 100 completion-like texts (the endings of
    stories from another seed) queried; 2 of them also by brute force (every story compared),
    for the speed-up and to check the answers are equal. Projected to the 2.7M-story V2 set
    linearly (index size and postings grow with the stories)."""
    import resource
    import tempfile
    from tinystories import kgram_index
    n = DIVERSITY_STORIES
    t0 = time.perf_counter()
    stories = offline_stories(n, seed=1337, stories_dir=DIVERSITY_DIR)  # resumes: made once
    t_read = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()  # CPU time too: the machine is shared
    index = kgram_index.KGramIndex(stories, k=2)
    t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
    index_bytes = index.grams.nbytes + index.offsets.nbytes + index.postings.nbytes
    emit(case='diversity_index_build', value=round(t_build, 1), unit='s', stories=len(stories),
         cpu_s=round(c_build, 1), read_s=round(t_read, 1), distinct_bigrams=int(len(index.grams)),
         postings=int(len(index.postings)), index_mb=round(index_bytes / 2**20),
         max_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
         projected_2_7M_s=round(t_build * 2.7e6 / len(stories), 1),
         projected_2_7M_index_mb=round(index_bytes * 2.7e6 / len(stories) / 2**20))
    queries = []
    with tempfile.TemporaryDirectory(prefix='bench_queries_') as out:
        for story in offline_stories(100, seed=7, stories_dir=out):  # another seed: new text in the same style
            ws = story.split()
            queries.append(' '.join(ws[int(0.4 * len(ws)):]))
    t0, c0 = time.perf_counter(), time.process_time()
    answers, counted = [], 0
    for q in queries:
        answers.append(index.closest(q))
        counted += index.last_stats['counted_postings'] / max(index.last_stats['postings'], 1)
    t_query, c_query = time.perf_counter() - t0, time.process_time() - c0
    emit(case='diversity_closest_100', value=round(t_query, 2), unit='s', stories=len(stories),
         cpu_s=round(c_query, 2),
         target=120, projected_2_7M_s=round(t_query * 2.7e6 / len(stories), 1),
         mean_precision=round(sum(s / max(m, 1) for _, s, m in answers) / len(answers), 3),
         postings_counted=round(counted / len(queries), 3))
    t0, c0 = time.perf_counter(), time.process_time()
    brute = [kgram_index.closest_brute_force(stories, q) for q in queries[:2]]
    t_brute, c_brute = (time.perf_counter() - t0) / 2, (time.process_time() - c0) / 2
    emit(case='diversity_brute_force', value=round(t_brute, 1), unit='s/query', stories=len(stories),
         cpu_s=round(c_brute, 1), index_s_per_query=round(t_query / len(queries), 4),
         speedup_cpu=round(c_brute / (c_query / len(queries))), equal=brute == answers[:2])


def main():
    if threads:
        torch.set_num_threads(threads)
    if list_cases:
        print('\n'.join(CASES))
        return
    if device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit("error: --device=cuda but torch sees no CUDA GPU")
    for name, (fn, devices) in CASES.items():
        if device in devices and (not only or any(name.startswith(p) for p in only)):
            fn()
    if table and RECORDS:
        print_table(RECORDS)


if __name__ == '__main__':
    main()
