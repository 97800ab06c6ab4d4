"""
model.py's speed-ups: the numbers of its plain code, computed in less time or memory. model.py
calls each through one short hook, so that the transformer reads without them.

- attention_plans, attend: how each layer attends in one forward pass. Plain causal attention
  goes to SDPA without a mask tensor (flash attention on CUDA); compiled on CUDA, GPT-Neo's local
  layers go to FlexAttention with a sliding-window block mask; small or odd head sizes are
  zero-padded to sizes the fused kernels take.
- chunked_loss (LinearCrossEntropy): the output layer and the cross-entropy a chunk of rows at a
  time, the gradients computed in the forward pass, never the whole (B, T, vocab) logits.
- KVCache, static_decoder, decoding_model: generation keeps every layer's keys and values; on a
  GPU each decode step runs over the whole static cache, captured once per (batch, length) as a
  CUDA graph and replayed, with the weights and cache in bf16.

Nothing here imports model.py (model.py imports this module): functions take the model.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from torch.nn.attention.flex_attention import create_block_mask, flex_attention


# ----------------------------------------------------------------------------- attention

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
    sizes they would refuse."""
    hs = q.size(-1)
    scale = 1.0 / math.sqrt(hs)
    if plan.head_size > hs:
        q, k, v = (F.pad(t, (0, plan.head_size - hs)) for t in (q, k, v))  # (B, nh, T, padded)
    if plan.block_mask is not None:
        y = flex_attention(q, k, v, block_mask=plan.block_mask, scale=scale)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=plan.mask, is_causal=plan.causal,
                                           dropout_p=dropout_p, scale=scale)
    return y[..., :hs]  # (B, nh, T, hs)


def attention_masks(q_pos, n_keys, window=0):
    """Boolean masks (True = may attend) for queries at positions `q_pos` (T,) over keys
    0..n_keys-1: causal, and for local layers only the last `window` positions.
    Returns {False: global mask, True: local mask}."""
    k_pos = torch.arange(n_keys, device=q_pos.device)
    causal = k_pos[None, :] <= q_pos[:, None]                                   # (T, S)
    masks = {False: causal}
    masks[True] = causal & (q_pos[:, None] - k_pos[None, :] < window) if window else causal
    return masks


def local_block_mask(T, window, device):
    """FlexAttention's block mask for causal attention to the last `window` positions: it skips
    the blocks of the score matrix that are wholly masked, so a local layer costs about
    window / T of a global one."""
    def local(b, h, q, k):
        return (k <= q) & (q - k < window)
    return create_block_mask(local, None, None, T, T, device=device)


def padded_head_sizes(hs):
    """(for SDPA, for FlexAttention): the head size each kernel gets, 0 where hs is fine as it
    is. Flash attention takes multiples of 8; FlexAttention at least 16, and torch releases up to
    2.10 at least refuse a size that is not a power of two (48, ts_33m's, goes to 64)."""
    sdpa = -(-hs // 8) * 8 if hs % 8 else 0
    flex = max(16, 1 << (hs - 1).bit_length()) if hs < 16 or hs & (hs - 1) else 0
    return sdpa, flex


def attention_plans(model, T, start, cache, pos, device):
    """{False: AttentionPlan of the global layers, True: of the local layers} for T new tokens
    from position `start` (or one token per row, each at its own pos (B,)). Reads the model's
    switches local_attention and pad_heads (see GPT)."""
    window = model.config.window_size
    if pos is not None:  # one token per row at its own position: mask each row's keys
        k_pos = torch.arange(cache.len, device=device)
        seen = k_pos[None, :] <= pos[:, None]                                    # (B, keys)
        plans = {False: AttentionPlan(seen[:, None, None], False)}               # (B, 1, 1, keys)
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
        pad = model.pad_heads if model.pad_heads != 'auto' else device.type == 'cuda'
        sdpa_hs, flex_hs = padded_head_sizes(model.config.n_embd // model.config.n_head) if pad else (0, 0)
        plans = {False: AttentionPlan(None, True, head_size=sdpa_hs)}
        if window:
            flex = model.local_attention
            if flex == 'auto':  # eager FlexAttention is an unfused reference: compiled only
                flex = 'flex' if device.type == 'cuda' and torch.compiler.is_compiling() else 'mask'
            if flex == 'flex' and not (model.training and model.config.dropout):  # no dropout in flex
                plans[True] = AttentionPlan(block_mask=local_block_mask(T, window, device), head_size=flex_hs)
            else:
                local = attention_masks(torch.arange(T, device=device), T, window)[True]
                plans[True] = AttentionPlan(local, False, head_size=sdpa_hs)
    plans.setdefault(True, plans[False])
    return plans


# ----------------------------------------------------------------------------- the loss

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
            valid = (ti != -1).unsqueeze(1)                                     # (rows, 1)
            ti = ti.clamp(min=0).unsqueeze(1)                                   # (rows, 1)
            logits = (xi @ w.t()).float()                                       # (rows, vocab)
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


def chunked_loss(x, weight, targets, impl='chunked', chunk_rows=256):
    """The mean cross-entropy of x (B, T, C) @ weight.T against targets (B, T), -1 ignored,
    without holding the whole logits: 'chunked' `chunk_rows` rows at a time (a CPU's cache),
    'few_chunks' in at most 8 chunks (few launches on a GPU)."""
    x = x.view(-1, x.size(-1))                                                  # (B*T, C)
    rows = chunk_rows if impl == 'chunked' else max(256, -(-x.size(0) // 8))
    return LinearCrossEntropy.apply(x, weight, targets.reshape(-1), torch.is_grad_enabled(), rows)


# ----------------------------------------------------------------------------- decoding

class KVCache:
    """Keys and values of every layer for a batch, preallocated for `max_len` positions (static:
    nothing is reallocated while decoding, which CUDA graphs need).

    Filled two ways: contiguously, T positions at `len` for every row (a prefill, or rows that
    all sit at the same position), or one token per row, each at its own position `pos` (B,)."""

    def __init__(self, config, batch_size, max_len, device, dtype):
        # only the key/value heads are kept (fewer than the query heads under grouped-query attention)
        shape = (config.n_layer, batch_size, config.kv_heads, max_len, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, n_kv, max_len, hs)
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
            self.k[layer, self.rows, :, pos] = k[:, :, 0]                     # (B, n_kv, hs)
            self.v[layer, self.rows, :, pos] = v[:, :, 0]
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]          # (B, n_kv, end, hs)


def decoding_model(model):
    """The model generate() runs. On a CUDA GPU with bf16 (model.decode_dtype 'auto'), a bf16
    copy of it, refreshed from the model at every call: decoding a token reads every weight and
    the whole cache, so half the bytes is about half the time. Otherwise the model itself."""
    device, dtype = model.wte.weight.device, model.wte.weight.dtype
    want = model.decode_dtype
    if want == 'auto':
        want = 'bfloat16' if device.type == 'cuda' and torch.cuda.is_bf16_supported() else None
    want = getattr(torch, want) if want else dtype
    if want == dtype:
        return model
    copy = model.__dict__.get('_decoding_copy')
    if copy is None or copy.wte.weight.device != device or copy.wte.weight.dtype != want:
        copy = type(model)(model.config).to(device=device, dtype=want).eval()
        object.__setattr__(model, '_decoding_copy', copy)  # not a submodule: not in state_dict
    copy.load_state_dict(model.state_dict())  # in place: a captured graph keeps reading it
    copy.local_attention, copy.pad_heads = model.local_attention, model.pad_heads
    return copy


class StaticDecoder:
    """One decode step (a token per row in, each row's next-token logits out) over the whole
    static cache, every row masked to its own keys, so that its shapes never change. With
    capture (CUDA), the step is captured once as a CUDA graph and replayed: a step is ~100 small
    kernels, whose launches cost more than their work at batch 1. Sampling stays outside the
    graph, so one graph serves every temperature, top-k, top-p and generator."""

    def __init__(self, model, batch_size, max_len, capture):
        device = model.wte.weight.device
        self.model, self.capture = model, capture
        self.cache = KVCache(model.config, batch_size, max_len, device, model.wte.weight.dtype)
        self.idx = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.graph = self.logits = None

    def decode(self):
        self.cache.len = self.cache.k.size(3)  # every key position, masked per row
        return self.model(self.idx, cache=self.cache, pos=self.pos)[0][:, -1]  # (B, vocab)

    def step(self, tokens, pos):
        self.idx.copy_(tokens[:, None])                                         # (B, 1)
        self.pos.copy_(pos)
        if not self.capture:
            return self.decode()
        if self.graph is None:
            # the first step runs eagerly (on a side stream, which warms up cuBLAS and the
            # allocator as capture needs), then the same step is captured, not run
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                first = self.decode()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = self.decode()
            return first
        self.graph.replay()
        return self.logits  # the graph's output buffer: read before the next step


MAX_GRAPHS = 8  # captured decoders a model keeps (each holds its cache: batch x length)


def static_decoder(model, batch_size, length, capture):
    """A StaticDecoder for `batch_size` rows of up to `length` positions, its cache empty. The
    length is rounded up to a multiple of 64 (within the context), so batches of similar lengths
    share one. Captured decoders are kept on the model, one per (batch, length): capture
    synchronizes and empties the allocator's cache, too costly once per generate() call."""
    length = min(model.config.block_size, -(-length // 64) * 64)
    if not capture:
        return StaticDecoder(model, batch_size, length, capture)
    kept = model.__dict__.setdefault('_captured_decoders', {})
    key = (batch_size, length, model.wte.weight.data_ptr())  # a model moved since: capture anew
    decoder = kept.pop(key, None) or StaticDecoder(model, batch_size, length, capture)
    kept[key] = decoder  # the most recently used last
    while len(kept) > MAX_GRAPHS:
        del kept[next(iter(kept))]
    decoder.cache.k.zero_()
    decoder.cache.v.zero_()
    decoder.cache.len = 0
    return decoder
