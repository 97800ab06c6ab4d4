"""
The TinyStories GPT, whole, in one file.

A decoder-only transformer like GPT-2 and GPT-Neo (the paper's models are GPT-Neo shapes):
token + learned position embeddings, pre-LayerNorm blocks of causal self-attention and a GELU
MLP, a final LayerNorm, and an output layer tied to the token embedding. Optionally GPT-Neo's
alternating global / local attention (odd layers see only the last `window_size` tokens).

Attention goes through torch's scaled_dot_product_attention, which picks a fused kernel (flash
attention on CUDA). generate() keeps a KV cache: the prompt is run once (prefill), then each step
feeds one new token per sequence and attends to the cached keys and values.
"""
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


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

    def forward(self, x, masks=None, cache=None, layer=0):
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # all keys/values so far, this step's included
        # (mask, is_causal) for this layer's kind; plain causal needs no mask tensor, which lets
        # SDPA take its fastest path (flash attention on CUDA)
        mask, causal = (None, True) if masks is None else masks[bool(self.window)]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0)
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

    def forward(self, x, masks=None, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), masks, cache, layer)
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
    """Keys and values of every layer for a batch, preallocated for `max_len` positions."""

    def __init__(self, config, batch_size, max_len, device, dtype):
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.len = 0  # positions filled; advanced by GPT.forward after all layers have written

    def update(self, layer, k, v):
        end = self.len + k.size(2)
        self.k[layer, :, :, self.len:end] = k
        self.v[layer, :, :, self.len:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def attention_masks(q_pos, n_keys, key_valid=None, window=0):
    """Boolean masks (True = may attend) for queries at cache positions `q_pos` (T,) over keys
    0..n_keys-1: causal, optionally only over valid (non-padding) keys (B, n_keys), and for local
    layers only the last `window` positions. Returns {False: global mask, True: local mask}."""
    k_pos = torch.arange(n_keys, device=q_pos.device)
    causal = k_pos[None, :] <= q_pos[:, None]                                   # (T, S)
    masks = {False: causal}
    if window:
        masks[True] = causal & (q_pos[:, None] - k_pos[None, :] < window)
    if key_valid is not None:
        # a padding query sees only itself, so no row is all -inf (its output is never used)
        own = k_pos[None, :] == q_pos[:, None]
        masks = {w: ((m[None] & key_valid[:, None, :]) | own[None])[:, None] for w, m in masks.items()}
    masks.setdefault(True, masks[False])
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
        attention scores and mixing, 12 * layers * context * width (see DESIGN.md's MFU)."""
        c = self.config
        n = self.num_params() - self.wpe.weight.numel()
        return 6 * n + 12 * c.n_layer * c.block_size * c.n_embd

    def forward(self, idx, targets=None, cache=None, pos=None, key_valid=None):
        """idx (B, T) token ids -> (logits (B, T, vocab), None), or with targets (B, T) given
        (-1 marks positions without a target): (None, mean cross-entropy).

        Generation passes a KVCache, the positions pos (B, T) of each token in its own sequence,
        and key_valid (B, cache positions) marking the non-padding keys."""
        B, T = idx.shape
        start = cache.len if cache is not None else 0
        if pos is None:
            pos = torch.arange(start, start + T, device=idx.device)
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        x = self.drop(self.wte(idx) + self.wpe(pos))
        # each layer kind (global False, local True) gets (attn_mask, is_causal)
        window = self.config.window_size
        masks = None  # plain causal attention everywhere: training, or a prefill with no padding
        if cache is not None and key_valid is None and T == 1 and start < (window or start + 1):
            masks = {False: (None, False), True: (None, False)}  # one new token sees every key
        elif cache is not None and (key_valid is not None or start > 0 or window):
            # queries sit at cache positions start.., keys at 0..start+T-1
            built = attention_masks(torch.arange(start, start + T, device=idx.device), start + T,
                                    key_valid, window)
            masks = {kind: (m, False) for kind, m in built.items()}
        elif window:  # training: only the local layers need an explicit mask
            local = attention_masks(torch.arange(T, device=idx.device), T, None, window)[True]
            masks = {False: (None, True), True: (local, False)}
        for i, block in enumerate(self.h):
            x = block(x, masks, cache, i)
        if cache is not None:
            cache.len += T
        x = self.ln_f(x)
        if targets is not None:  # the loss without ever holding the whole (B, T, vocab) logits
            x = x.view(-1, x.size(-1))
            return None, LinearCrossEntropy.apply(x, self.lm_head.weight, targets.reshape(-1),
                                                  torch.is_grad_enabled())
        return self.lm_head(x), None

    @torch.no_grad()
    def attention_maps(self, idx):
        """Each layer's attention probabilities for idx (B, T): a list of (B, n_head, T, T)."""
        T = idx.size(1)
        masks = attention_masks(torch.arange(T, device=idx.device), T, None, self.config.window_size)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        maps = []
        for block in self.h:
            maps.append(block.attn.probs(block.ln_1(x), masks[bool(block.attn.window)]))
            x = block(x, {kind: (m, False) for kind, m in masks.items()})
        return maps

    @torch.inference_mode()  # no autograd bookkeeping at all: ~1.5x faster decoding on CPU
    def generate_stream(self, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                        eot_token=None, generator=None):
        """Sample continuations of a batch of prompts (lists of token ids, any lengths).

        Yields, per step, a list with each sequence's new token, or None for sequences that have
        finished (emitted eot_token). Stops after max_new_tokens, when every sequence has
        finished, or when the context is full."""
        device = self.wte.weight.device
        B, lens = len(prompts), [len(p) for p in prompts]
        T0 = max(lens)
        if min(lens) == 0:
            raise ValueError("every prompt needs at least one token (e.g. the EOT token)")
        max_new_tokens = min(max_new_tokens, self.config.block_size - T0)
        if max_new_tokens <= 0:
            return
        # left-pad to a rectangle; each token keeps its own position within its own sequence
        idx = torch.zeros(B, T0, dtype=torch.long, device=device)
        key_valid = torch.zeros(B, T0 + max_new_tokens, dtype=torch.bool, device=device)
        for b, p in enumerate(prompts):
            idx[b, T0 - len(p):] = torch.tensor(p, dtype=torch.long)
            key_valid[b, T0 - len(p):] = True
        padded = min(lens) < T0  # without padding, attention needs no explicit masks
        pad = torch.tensor([T0 - n for n in lens], device=device)
        pos = (torch.arange(T0, device=device)[None, :] - pad[:, None]).clamp(min=0)
        cache = KVCache(self.config, B, T0 + max_new_tokens, device, self.wte.weight.dtype)
        done = [False] * B
        logits, _ = self(idx, cache=cache, pos=pos, key_valid=key_valid[:, :T0] if padded else None)
        for step in range(max_new_tokens):
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)
            out = []
            for b, t in enumerate(nxt.tolist()):
                out.append(None if done[b] else t)
                done[b] = done[b] or t == eot_token
            yield out
            if all(done) or step == max_new_tokens - 1:
                return
            pos = pos[:, -1:] + 1
            logits, _ = self(nxt[:, None], cache=cache, pos=pos,
                             key_valid=key_valid[:, :cache.len + 1] if padded else None)

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


def orthogonalize(G, steps=5):
    """Approximately U V^T for G = U S V^T: every direction of the update gets the same size.
    A Newton-Schulz iteration, with a quintic tuned to push singular values near 1 fast
    (Jordan et al. 2024, "Muon"); a few matmuls, no SVD."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G / (G.norm() + 1e-7)  # singular values now at most 1
    tall = X.size(0) > X.size(1)
    if tall:  # iterate on the smaller Gram matrix
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


class Muon(torch.optim.Optimizer):
    """Nesterov momentum whose update is orthogonalized: for the hidden layers' matrices. At
    small scale it learns more per step than AdamW (the nanoGPT speedruns' finding)."""

    def __init__(self, params, lr=0.02, momentum=0.95, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                state = self.state[p]
                if 'momentum_buffer' not in state:
                    state['momentum_buffer'] = torch.zeros_like(p)
                buf = state['momentum_buffer'].mul_(group['momentum']).add_(p.grad)
                update = orthogonalize(p.grad.add(buf, alpha=group['momentum']))
                update *= max(1.0, p.size(0) / p.size(1)) ** 0.5  # tall matrices: same RMS step
                p.mul_(1 - group['lr'] * group['weight_decay'])
                p.add_(update.to(p.dtype), alpha=-group['lr'])


class Optimizers:
    """Several optimizers stepped as one (Muon for the hidden matrices, AdamW for the rest)."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self):
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none=True):
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {'optimizers': [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state):
        for o, s in zip(self.optimizers, state['optimizers']):
            o.load_state_dict(s)


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


def measure_peak_flops(dtype=torch.float32, device='cpu', n=1024, seconds=0.5):
    """FLOP/s of a large square matmul on this machine: the roof MFU is reported against.
    (CPUs differ a lot here, and some have no fast bf16 at all, so it is measured, never assumed.)"""
    import time
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


def load_checkpoint(path, device='cpu'):
    """(model, checkpoint dict) from out_dir/ckpt.pt (or a .pt path), in eval mode.

    weights_only=True: a checkpoint is data, and loading it must not run code from the file."""
    if os.path.isdir(path):
        path = os.path.join(path, 'ckpt.pt')
    if not os.path.isfile(path):
        raise SystemExit(f"error: no checkpoint at {path} (train one with train.py --out_dir=...)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        model = GPT(GPTConfig(**ckpt['model_args']))
        model.load_state_dict(ckpt['model'])
    except Exception as e:  # truncated, empty, random bytes, a pickle with code, another format
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
        if reason.startswith('Weights only load failed'):
            reason = 'not a weights-only torch file'
        raise SystemExit(f"error: {path} is not a readable checkpoint of this repo ({reason}); "
                         f"train again, or resume from an intact copy")
    return model.to(device).eval(), ckpt


def load_run(out_dir, device='auto'):
    """(model, encoding, info): what the later stages (sample, grade, diversity, interpret) need
    from a model location, the model in eval mode and its tokenizer. The location is a run of
    ours (a directory with ckpt.pt; info is the checkpoint dict), a Hugging Face model folder
    (config.json + weights), or hf:OWNER/NAME[@REVISION] (downloaded once; both are hf.py's).
    info always has tokenizer (its eot_token ...), model_args, config, kind ('run' | 'hf') and
    report_dir (where a stage writes its reports). device 'auto': cuda if there is one, else cpu."""
    from tokenizer import encoding_from_record  # here, so this file needs only torch
    device = pick_device(device)
    if out_dir.startswith('hf:') or (os.path.isfile(os.path.join(out_dir, 'config.json')) and
                                     not os.path.exists(os.path.join(out_dir, 'ckpt.pt'))):
        from hf import load_hf
        return load_hf(out_dir, device)
    model, ckpt = load_checkpoint(out_dir, device)
    if 'tokenizer' not in ckpt:
        raise SystemExit(f"error: {out_dir}/ckpt.pt has no tokenizer record")
    ckpt.update(kind='run', report_dir=out_dir if os.path.isdir(out_dir) else os.path.dirname(out_dir))
    return model, encoding_from_record(ckpt['tokenizer']), ckpt

