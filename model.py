"""
The TinyStories GPT, whole, in one file.

A decoder-only transformer like GPT-2 and GPT-Neo (the paper's models are GPT-Neo shapes):
token + learned position embeddings, pre-LayerNorm blocks of causal self-attention and a GELU
MLP, a final LayerNorm, and an output layer tied to the token embedding. Optionally GPT-Neo's
alternating global / local attention (odd layers see only the last `window_size` tokens).

Attention goes through torch's scaled_dot_product_attention, which picks a fused kernel (flash
attention on CUDA); compiled on CUDA, the local layers use FlexAttention with a sliding-window
block mask. generate() keeps a static KV cache: the prompts are run once (prefill), then each step
feeds one new token per sequence at its own position; on CUDA that step is a replayed CUDA graph.

How the work is done (not what is computed) is chosen per model by a few attributes, set before
torch.compile and never saved in checkpoints: GPT.loss_impl, local_attention, pad_heads, decode.
train.py sets e.g. `model.loss_impl = 'plain'`; each defaults to 'auto', which picks per device.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from tinystories.optim import Muon, Optimizers


@dataclass
class GPTConfig:
    vocab_size: int = 4097   # from the dataset's meta.json
    block_size: int = 512    # context length (the paper's models: 512)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True        # biases in Linear and LayerNorm, as GPT-2/GPT-Neo
    window_size: int = 0     # >0: odd layers attend locally to this many tokens (GPT-Neo used 256)
    qkv_bias: bool = True    # biases on the queries, keys, values too (GPT-2); GPT-Neo has none
    activation: str = 'gelu'  # gelu (exact) | gelu_tanh (the tanh approximation: GPT-2/Neo's gelu_new)


@dataclass
class AttentionPlan:
    """How one kind of layer (global or local) attends in one forward pass."""
    mask: torch.Tensor = None  # boolean, True = may attend; None with causal=True: plain causal
    causal: bool = True
    block_mask: object = None  # a FlexAttention BlockMask, used instead of mask when set
    head_size: int = 0         # > the true head size: pad q, k, v with zeros to it


def attend(q, k, v, plan, dropout_p=0.0):
    """Attention of q over k, v (B, n_head, T, head_size) as `plan` says. Padding the heads with
    zero columns changes no dot product and only adds output columns that are cut off again, so
    with the true head size's scale the result is the same; it lets the fused kernels take head
    sizes they would refuse (FlexAttention needs at least 16; flash attention a multiple of 8)."""
    hs = q.size(-1)
    scale = 1.0 / math.sqrt(hs)
    if plan.head_size > hs:
        q, k, v = (F.pad(t, (0, plan.head_size - hs)) for t in (q, k, v))
    if plan.block_mask is not None:
        y = flex_attention(q, k, v, block_mask=plan.block_mask, scale=scale)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=plan.mask, is_causal=plan.causal,
                                           dropout_p=dropout_p, scale=scale)
    return y[..., :hs]


def local_block_mask(T, window, device):
    """FlexAttention's block mask for causal attention to the last `window` positions: it skips
    the blocks of the score matrix that are wholly masked, so a local layer costs about
    window / T of a global one."""
    def local(b, h, q, k):
        return (k <= q) & (q - k < window)
    return create_block_mask(local, None, None, T, T, device=device)


class CausalSelfAttention(nn.Module):
    def __init__(self, config, local):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = config.n_head
        self.window = config.window_size if local else 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd,  # q, k, v at once
                                bias=config.bias and config.qkv_bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def qkv(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size): every head attends independently
        return [t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v)]

    def forward(self, x, plans=None, cache=None, layer=0, pos=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        if cache is not None:
            k, v = cache.update(layer, k, v, pos)  # all keys/values so far, this step's included
        plan = plans[bool(self.window)] if plans is not None else AttentionPlan()
        y = attend(q, k, v, plan, self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def probs(self, x, mask):
        """The attention probabilities (B, n_head, T, T), computed explicitly: SDPA never forms
        them, but interpretability wants to look at them."""
        q, k, _ = self.qkv(x)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        return att.masked_fill(~mask, float('-inf')).softmax(dim=-1)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        if config.activation not in ('gelu', 'gelu_tanh'):
            raise ValueError(f"activation={config.activation!r}: use gelu or gelu_tanh")
        # a module, so a forward hook can read the neurons' activations
        self.act = nn.GELU(approximate='tanh' if config.activation == 'gelu_tanh' else 'none')
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config, local):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, local)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, plans=None, cache=None, layer=0, pos=None):
        x = x + self.attn(self.ln_1(x), plans, cache, layer, pos)
        return x + self.mlp(self.ln_2(x))


class LinearCrossEntropy(torch.autograd.Function):
    """cross_entropy(x @ weight.T, targets) for x (N, C), a chunk of rows at a time.

    The plain way materialises the (N, vocab) logits and walks them about five times (logits,
    log-softmax, a zero-filled gradient, its backward, and under autocast fp32 copies): at 8192
    tokens and vocab 4096 that is 134 MB each, and on a CPU the walks cost more than the lm_head
    matmul itself. The gradient of the loss with respect to the logits is softmax - one_hot, known
    as soon as a chunk's softmax is, so forward computes the gradients while the chunk is hot in
    cache, and backward only scales them. Rows with target -1 are ignored."""

    @staticmethod
    def forward(ctx, x, weight, targets, need_grad, chunk_rows=256):
        device = x.device.type
        # the matmuls run in the autocast dtype when autocast is on, the softmax always in fp32
        mm_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        w = weight.to(mm_dtype)
        n = (targets != -1).sum().clamp(min=1)
        loss = torch.zeros((), device=x.device)
        grad_x = torch.empty_like(x) if need_grad else None
        grad_w = torch.zeros(weight.shape, device=x.device) if need_grad else None
        for i in range(0, x.size(0), chunk_rows):
            xi, ti = x[i:i + chunk_rows].to(mm_dtype), targets[i:i + chunk_rows]
            valid = (ti != -1).unsqueeze(1)
            ti = ti.clamp(min=0).unsqueeze(1)
            logits = (xi @ w.t()).float()
            logits -= logits.amax(dim=1, keepdim=True)            # stable: exp of values <= 0
            picked = logits.gather(1, ti)
            p = logits.exp_()
            total = p.sum(dim=1, keepdim=True)
            loss += ((total.log() - picked) * valid).sum()          # -log softmax[target]
            if need_grad:
                p /= total                                          # softmax
                p.scatter_add_(1, ti, -valid.float())               # minus one-hot
                p *= valid                                          # ignored rows: no gradient
                p = p.to(mm_dtype)  # unscaled by 1/n, so fp16 cannot underflow it
                grad_x[i:i + chunk_rows] = p @ w
                grad_w += p.t() @ xi
        ctx.save_for_backward(grad_x, grad_w, n)
        return loss / n

    @staticmethod
    def backward(ctx, grad_loss):
        grad_x, grad_w, n = ctx.saved_tensors
        scale = grad_loss / n
        return grad_x * scale, grad_w * scale, None, None, None


class KVCache:
    """Keys and values of every layer for a batch, preallocated for `max_len` positions (static:
    nothing is reallocated while decoding, which CUDA graphs need).

    Filled two ways: contiguously, T positions at `len` for every row (a prefill, or rows that
    all sit at the same position), or one token per row, each at its own position `pos` (B,)."""

    def __init__(self, config, batch_size, max_len, device, dtype):
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.rows = torch.arange(batch_size, device=device)
        self.len = 0  # contiguous: positions filled (GPT.forward advances it); per row: keys seen

    def update(self, layer, k, v, pos=None):
        if pos is None:
            end = self.len + k.size(2)
            self.k[layer, :, :, self.len:end] = k
            self.v[layer, :, :, self.len:end] = v
        else:  # row b's one new token goes to position pos[b]
            end = self.len
            self.k[layer, self.rows, :, pos] = k[:, :, 0]
            self.v[layer, self.rows, :, pos] = v[:, :, 0]
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def attention_masks(q_pos, n_keys, window=0):
    """Boolean masks (True = may attend) for queries at positions `q_pos` (T,) over keys
    0..n_keys-1: causal, and for local layers only the last `window` positions.
    Returns {False: global mask, True: local mask}."""
    k_pos = torch.arange(n_keys, device=q_pos.device)
    causal = k_pos[None, :] <= q_pos[:, None]                                   # (T, S)
    masks = {False: causal}
    masks[True] = causal & (q_pos[:, None] - k_pos[None, :] < window) if window else causal
    return masks


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        self.wpe = nn.Embedding(config.block_size, config.n_embd)  # learned position embedding
        self.drop = nn.Dropout(config.dropout)
        # GPT-Neo alternates global and local attention layers: 0 global, 1 local, 2 global, ...
        self.h = nn.ModuleList([Block(config, local=bool(config.window_size) and i % 2 == 1)
                                for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer), so the residual stream's
        # variance does not grow with depth
        for name, p in self.named_parameters():
            if name.endswith('c_proj.weight'):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, embeddings=True):
        """Parameters, with or without the embeddings (the paper's tables count both ways). The
        tied output layer is the token embedding, so it is counted once."""
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.wte.weight.numel() - self.wpe.weight.numel()

    def flops_per_token(self):
        """Training FLOPs per token: 6 per weight (forward + backward multiply-adds) plus the
        attention scores and mixing, 12 * layers * context * width (see docs/contracts.md, MFU)."""
        c = self.config
        n = self.num_params() - self.wpe.weight.numel()
        return 6 * n + 12 * c.n_layer * c.block_size * c.n_embd

    # How to compute, not what: set on a model (model.loss_impl = 'plain') before torch.compile;
    # none of these is saved in checkpoints. 'auto' picks per device.
    loss_impl = 'auto'        # 'chunked': LinearCrossEntropy, 256 rows at a time (a CPU's cache);
    #                           'few_chunks': LinearCrossEntropy in at most 8 chunks (GPU: few
    #                           launches, a short compile); 'plain': whole logits + F.cross_entropy
    #                           (nanoGPT's way). auto: chunked on CPU, few_chunks elsewhere
    loss_chunk_rows = 256     # 'chunked': rows per chunk
    local_attention = 'auto'  # 'flex': FlexAttention with a sliding-window block mask; 'mask':
    #                           SDPA with an explicit mask. auto: flex on CUDA under torch.compile
    pad_heads = 'auto'        # True: pad head sizes under 16 (or not a multiple of 8) with zeros
    #                           for the fused kernels; auto: on CUDA
    decode = 'auto'           # generate()'s steps: 'graph': over the whole static cache, captured
    #                           once as a CUDA graph and replayed (CUDA only); 'static': the same
    #                           uncaptured; 'dynamic': over the filled part of the cache only.
    #                           auto: graph on CUDA, dynamic elsewhere

    def forward(self, idx, targets=None, cache=None, pos=None):
        """idx (B, T) token ids -> (logits (B, T, vocab), None), or with targets (B, T) given
        (-1 marks positions without a target): (None, mean cross-entropy).

        Generation passes a KVCache: a prefill (or rows all at one position) fills it at its
        `len`; with pos (B,), idx (B, 1) holds one token per row at its own position pos[b],
        attending to its row's cached keys 0..pos[b] (the cache's first `len` are looked at)."""
        B, T = idx.shape
        start = cache.len if cache is not None and pos is None else 0
        positions = pos[:, None] if pos is not None else torch.arange(start, start + T, device=idx.device)
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        x = self.drop(self.wte(idx) + self.wpe(positions))
        plans = self.attention_plans(T, start, cache, pos, idx.device)
        for i, block in enumerate(self.h):
            x = block(x, plans, cache, i, pos)
        if cache is not None and pos is None:
            cache.len += T
        x = self.ln_f(x)
        if targets is None:
            return self.lm_head(x), None
        impl = self.loss_impl
        if impl == 'auto':
            impl = 'chunked' if x.device.type == 'cpu' else 'few_chunks'
        if impl == 'plain':  # the whole logits; under torch.compile the fp32 copy is fused away
            logits = self.lm_head(x).float()
            return None, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        # the loss without ever holding the whole (B, T, vocab) logits
        x = x.view(-1, x.size(-1))
        rows = self.loss_chunk_rows if impl == 'chunked' else max(256, -(-x.size(0) // 8))
        return None, LinearCrossEntropy.apply(x, self.lm_head.weight, targets.reshape(-1),
                                              torch.is_grad_enabled(), rows)

    def attention_plans(self, T, start, cache, pos, device):
        """{False: AttentionPlan of the global layers, True: of the local layers} for T new
        tokens, from position `start` (or each row at its own pos)."""
        window = self.config.window_size
        if pos is not None:  # one token per row at its own position: mask each row's keys
            k_pos = torch.arange(cache.len, device=device)
            seen = k_pos[None, :] <= pos[:, None]                                # (B, keys)
            plans = {False: AttentionPlan(seen[:, None, None], False)}
            if window:
                local = seen & (pos[:, None] - k_pos[None, :] < window)
                plans[True] = AttentionPlan(local[:, None, None], False)
        elif start > 0:  # more tokens after a filled cache: queries at start.., keys from 0
            if T == 1 and start < (window or start + 1):
                plans = {False: AttentionPlan(None, False)}  # one new token sees every key
            else:
                built = attention_masks(torch.arange(start, start + T, device=device), start + T, window)
                plans = {kind: AttentionPlan(m, False) for kind, m in built.items()}
        else:  # from position 0 (training, evaluation, a prefill): plain causal needs no mask
            # tensor, which lets SDPA take its fastest path (flash attention on CUDA)
            hs = self.config.n_embd // self.config.n_head
            pad = self.pad_heads if self.pad_heads != 'auto' else device.type == 'cuda'
            head_size = max(16, -(-hs // 8) * 8) if pad and (hs < 16 or hs % 8) else 0
            plans = {False: AttentionPlan(None, True, head_size=head_size)}
            if window:
                flex = self.local_attention
                if flex == 'auto':  # eager FlexAttention is an unfused reference: compiled only
                    flex = 'flex' if device.type == 'cuda' and torch.compiler.is_compiling() else 'mask'
                if flex == 'flex' and not (self.training and self.config.dropout):  # no dropout in flex
                    plans[True] = AttentionPlan(block_mask=local_block_mask(T, window, device),
                                                head_size=head_size)
                else:
                    local = attention_masks(torch.arange(T, device=device), T, window)[True]
                    plans[True] = AttentionPlan(local, False, head_size=head_size)
        plans.setdefault(True, plans[False])
        return plans

    @torch.no_grad()
    def attention_maps(self, idx):
        """Each layer's attention probabilities for idx (B, T): a list of (B, n_head, T, T)."""
        T = idx.size(1)
        masks = attention_masks(torch.arange(T, device=idx.device), T, self.config.window_size)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        maps = []
        for block in self.h:
            maps.append(block.attn.probs(block.ln_1(x), masks[bool(block.attn.window)]))
            x = block(x, {kind: AttentionPlan(m, False) for kind, m in masks.items()})
        return maps

    @torch.inference_mode()  # no autograd bookkeeping at all: ~1.5x faster decoding on CPU
    def generate_stream(self, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                        eot_token=None, generator=None):
        """Sample continuations of a batch of prompts (lists of token ids, any lengths).

        Every row has its own budget, min(max_new_tokens, block_size - its prompt's length): a
        short prompt next to a long one keeps all its room, since each row writes its tokens at
        its own positions of the cache. A prompt that fills the context (len >= block_size) has
        no room and gets no tokens (its row is None at every step; callers report it), without
        disturbing the other rows; if no row has room, nothing is yielded.

        Yields, per step, a list with each row's new token, or None for rows that have finished
        (emitted eot_token or used their budget) or had no room. Stops when every row is done."""
        if any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token (e.g. the EOT token)")
        block = self.config.block_size
        budget = [max(0, min(max_new_tokens, block - len(p))) for p in prompts]
        rows = [b for b, n in enumerate(budget) if n > 0]  # the rows that get tokens
        if not rows:
            return
        device = self.wte.weight.device
        lens, budget = [len(prompts[b]) for b in rows], [budget[b] for b in rows]
        R, T0 = len(rows), max(lens)
        S = max(n + m - 1 for n, m in zip(lens, budget))  # the last token sampled is never fed
        # prefill: right-padded, so every prompt starts at position 0; causal attention keeps the
        # padding (after each prompt) out of the real tokens, and decoding overwrites it
        idx = torch.zeros(R, T0, dtype=torch.long, device=device)
        for i, b in enumerate(rows):
            idx[i, :lens[i]] = torch.tensor(prompts[b], dtype=torch.long)
        cache = KVCache(self.config, R, S, device, self.wte.weight.dtype)
        logits, _ = self(idx, cache=cache)
        last = torch.tensor(lens, device=device) - 1
        logits = logits[torch.arange(R, device=device), last]
        uniform = len(set(lens)) == 1  # all rows at one position: the plain cache path is cheapest
        mode = self.decode if self.decode != 'auto' else 'graph' if device.type == 'cuda' else 'dynamic'
        step_fn = None
        if mode != 'dynamic':
            capture = mode == 'graph' and device.type == 'cuda'
            step_fn = self._static_decode(cache, R, S, capture, temperature, top_k, top_p, generator)
        made, done = [0] * R, [False] * R
        nxt = sample_next(logits, temperature, top_k, top_p, generator)
        for step in range(max(budget)):
            out = [None] * len(prompts)
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    out[rows[i]] = t
                    made[i] += 1
                    done[i] = t == eot_token or made[i] == budget[i]
            yield out
            if all(done):
                return
            # row i's new token goes to position lens[i] + step; finished rows stay at their last
            # position (<= S - 1): they still run (the batch keeps its shape), their output unused
            pos = (last + 1 + step).clamp_(max=S - 1)
            if step_fn is not None:
                nxt = step_fn(nxt, pos)
            elif uniform:
                nxt = sample_next(self(nxt[:, None], cache=cache)[0][:, -1], temperature, top_k, top_p, generator)
            else:
                cache.len = min(T0 + step + 1, S)  # keys up to the furthest row's position
                nxt = sample_next(self(nxt[:, None], cache=cache, pos=pos)[0][:, -1],
                                  temperature, top_k, top_p, generator)

    def _static_decode(self, cache, R, S, capture, temperature, top_k, top_p, generator):
        """One decode step (a token per row in, the next token per row out) over the whole static
        cache (S positions, each row masked to its own keys), so its shapes never change; with
        capture (CUDA), captured once as a CUDA graph and replayed: a step is ~100 small
        kernels, whose launches cost more than their work at batch 1."""
        idx = torch.zeros(R, 1, dtype=torch.long, device=cache.k.device)
        pos = torch.zeros(R, dtype=torch.long, device=cache.k.device)
        cache.len = S
        graph, out = None, None

        def decode():
            logits = self(idx, cache=cache, pos=pos)[0][:, -1]
            return sample_next(logits, temperature, top_k, top_p, generator)

        def step(nxt, p):
            nonlocal graph, out
            idx.copy_(nxt[:, None])
            pos.copy_(p)
            if not capture:
                return decode()
            if graph is not None:
                graph.replay()
                return out.clone()
            # the first step runs eagerly (on a side stream, which warms up cuBLAS and the
            # allocator as capture needs), then the same step is captured, not run
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                first = decode()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            if generator is not None:  # its state advances on every replay
                graph.register_generator_state(generator)
            with torch.cuda.graph(graph):
                out = decode()
            return first
        return step

    def generate(self, prompts, max_new_tokens, **kwargs):
        """Like generate_stream, but returns each sequence's new tokens (EOT included if hit)."""
        outs = [[] for _ in prompts]
        for step in self.generate_stream(prompts, max_new_tokens, **kwargs):
            for b, t in enumerate(step):
                if t is not None:
                    outs[b].append(t)
        return outs

    @torch.inference_mode()
    def generate_no_cache(self, prompt, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                          generator=None):
        """Reference sampler that reruns the whole sequence every step (for tests and bench.py)."""
        idx = torch.tensor([prompt], dtype=torch.long, device=self.wte.weight.device)
        for _ in range(min(max_new_tokens, self.config.block_size - len(prompt))):
            logits, _ = self(idx)
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)
            idx = torch.cat([idx, nxt[:, None]], dim=1)
        return idx[0, len(prompt):].tolist()

    def configure_optimizer(self, weight_decay, learning_rate, betas, device_type, muon_lr=0.0):
        """AdamW, decaying the matrices (weights and embeddings) but not biases or LayerNorm
        gains; torch's fused kernel where it has one. With muon_lr > 0, the blocks' matrices
        go to Muon instead, and AdamW keeps the embeddings, biases and gains. Every group
        remembers its initial_lr, which the training loop's schedule scales."""
        params = [p for p in self.parameters() if p.requires_grad]
        hidden = {id(p) for p in self.h.parameters() if p.dim() == 2} if muon_lr else set()
        decay = [p for p in params if p.dim() >= 2 and id(p) not in hidden]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{'params': decay, 'weight_decay': weight_decay, 'initial_lr': learning_rate},
                  {'params': no_decay, 'weight_decay': 0.0, 'initial_lr': learning_rate}]
        try:
            adamw = torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=True)
        except (RuntimeError, TypeError):  # no fused AdamW for this device / torch version
            adamw = torch.optim.AdamW(groups, lr=learning_rate, betas=betas)
        if not muon_lr:
            return adamw
        muon = Muon([{'params': [p for p in params if id(p) in hidden], 'initial_lr': muon_lr}],
                    lr=muon_lr, weight_decay=weight_decay)
        return Optimizers(muon, adamw)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token per row from logits (B, vocab): temperature 0 is greedy; top_k keeps the k most
    likely tokens; top_p keeps the smallest set whose probability reaches p (nucleus)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float('-inf'))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) >= top_p  # the mass before this token is enough
        sorted_logits = sorted_logits.masked_fill(drop, float('-inf'))
        logits = torch.full_like(logits, float('-inf')).scatter(-1, order, sorted_logits)
    # inverse-CDF sampling: the first token whose cumulative probability exceeds one uniform
    # number per row. Same distribution as torch.multinomial, ~8x cheaper per decode step on a
    # CPU at vocab 4096 (multinomial draws an exponential for every token). right=True never
    # picks a token of probability 0, and scaling by the total absorbs the cumsum's rounding.
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)
    u = torch.rand(cdf.size(0), 1, device=cdf.device, generator=generator) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.size(-1) - 1).squeeze(-1)
