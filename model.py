"""
The TinyStories GPT, whole, in one file.

A decoder-only transformer like GPT-2 and GPT-Neo (the paper's models are GPT-Neo shapes):
token + learned position embeddings, pre-LayerNorm blocks of causal self-attention and a GELU
MLP, a final LayerNorm, and an output layer tied to the token embedding. Optionally GPT-Neo's
alternating global / local attention (odd layers see only the last `window_size` tokens).

The same code builds Llama-style blocks (llama2.c's models) by configuration, each a switch of
GPTConfig: RMSNorm instead of LayerNorm (norm), rotary position embeddings instead of learned
ones (rotary), a SwiGLU MLP with its own hidden size (activation, mlp_hidden), grouped-query
attention (n_kv_head), no biases (bias) and an untied output layer (tie_embeddings). One more,
from the nanoGPT speedruns, serves the CPU recipe: value embeddings, a token table per layer added
to its attention's values. The defaults are GPT-2's, so every run and checkpoint reads as before.

Read it top to bottom: the config, attention, the MLP, a block, the GPT (init, forward, the
loss), then generation, the plain sampler before the fast one. How the work is done fast (not
what is computed) lives in tinystories/speedups.py, reached through one named hook each:
attention_plans (FlexAttention, padded heads), chunked_loss, KVCache and static_decoder (CUDA
graphs), decoding_model (bf16 decoding). A few attributes pick them per model, set before
torch.compile and never saved in checkpoints: GPT.loss_impl, local_attention, pad_heads, decode,
decode_dtype; each defaults to 'auto', which picks per device.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinystories.optim import Muon, Optimizers
from tinystories.speedups import (AttentionPlan, KVCache, attend, attention_masks, attention_plans,
                                  chunked_loss, decoding_model, static_decoder)


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
    #                           | swiglu (Llama's gated MLP: w2(silu(w1 x) * w3 x))
    mlp_hidden: int = 0       # the MLP's hidden size; 0: 4 * n_embd (Llama: about 8/3 * n_embd)
    norm: str = 'layernorm'   # layernorm | rmsnorm (Llama's: scale only, no mean subtracted)
    norm_eps: float = 1e-5    # added to the variance in either norm (Hugging Face Llamas: often 1e-6)
    rotary: bool = False      # rotary position embeddings in attention instead of learned ones
    rope_theta: float = 10000.0  # rotary: the base of the rotation frequencies
    n_kv_head: int = 0        # key/value heads, each shared by n_head / n_kv_head query heads
    #                           (grouped-query attention); 0: n_head (plain multi-head)
    tie_embeddings: bool = True  # the output layer is the token embedding (False: its own matrix)
    value_embeddings: bool = False  # each layer adds its own embedding of the tokens to the values

    @property
    def kv_heads(self):
        return self.n_kv_head or self.n_head


def make_norm(config):
    if config.norm not in ('layernorm', 'rmsnorm'):
        raise ValueError(f"norm={config.norm!r}: use layernorm or rmsnorm")
    if config.norm == 'rmsnorm':
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rotary_tables(config):
    """cos and sin (block_size, head_size / 2) of the angle position * theta^(-2j / head_size)
    by which rotary embeddings turn the pair of dimensions (2j, 2j + 1) of every query and key:
    the dot product of a rotated query and key then depends only on their distance."""
    hs = config.n_embd // config.n_head
    freqs = 1.0 / config.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.float32) / hs)  # (hs/2,)
    angle = torch.outer(torch.arange(config.block_size, dtype=torch.float32), freqs)  # (block, hs/2)
    return torch.cos(angle), torch.sin(angle)


def rotate(x, rope):
    """x (B, heads, T, hs) with each pair (2j, 2j+1) turned by its position's angle; rope is
    (cos, sin), each (T, hs/2) or (B, 1, 1, hs/2). The pairing is llama2.c's (run.c's)."""
    cos, sin = rope
    x0, x1 = x[..., 0::2].float(), x[..., 1::2].float()                      # (B, h, T, hs/2)
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)    # (B, h, T, hs/2, 2)
    return out.flatten(-2).type_as(x)                                        # (B, h, T, hs)


class CausalSelfAttention(nn.Module):
    """Every head mixes the values of the positions it may see (the earlier ones; in a local
    layer only the last `window`), weighted by softmax(q . k / sqrt(head_size))."""

    def __init__(self, config, local):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        assert config.n_head % config.kv_heads == 0, "n_head must be a multiple of n_kv_head"
        self.n_head, self.n_kv_head = config.n_head, config.kv_heads
        self.window = config.window_size if local else 0
        self.kv_size = config.n_embd // config.n_head * self.n_kv_head  # k (or v) of all kv heads
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * self.kv_size,  # q, k, v at once
                                bias=config.bias and config.qkv_bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def qkv(self, x, rope=None, ve=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split([C, self.kv_size, self.kv_size], dim=2)  # (B, T, C), 2 x (B, T, kv)
        if ve is not None:  # value embeddings: what each token carries, straight into the values
            v = v + ve
        # every head attends independently: (B, T, C) -> (B, nh, T, hs); k, v: (B, n_kv, T, hs)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k, v = (t.view(B, T, self.n_kv_head, hs).transpose(1, 2) for t in (k, v))
        if rope is not None:  # positions enter here, not in the embedding
            q, k = rotate(q, rope), rotate(k, rope)
        return q, k, v

    def share_kv(self, k, v):
        """Grouped-query attention: query head h reads kv head h // (n_head / n_kv_head)."""
        group = self.n_head // self.n_kv_head
        if group == 1:
            return k, v
        return k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, nh, S, hs)

    def forward(self, x, plans=None, cache=None, layer=0, pos=None, rope=None, ve=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x, rope, ve)                                 # (B, nh, T, hs), (B, n_kv, T, hs)
        if cache is not None:  # generation: all keys/values so far, this step's included
            k, v = cache.update(layer, k, v, pos)                               # (B, n_kv, S, hs)
        k, v = self.share_kv(k, v)                                              # (B, nh, S, hs)
        plan = plans[bool(self.window)] if plans is not None else AttentionPlan()
        # scaled_dot_product_attention, or FlexAttention / padded heads as the plan says
        y = attend(q, k, v, plan, self.dropout if self.training else 0.0)       # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                        # (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def probs(self, x, mask, rope=None):
        """The attention probabilities (B, nh, T, T), computed explicitly: SDPA never forms
        them, but interpretability wants to look at them."""
        q, k, v = self.qkv(x, rope)
        k, _ = self.share_kv(k, v)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))                 # (B, nh, T, T)
        return att.masked_fill(~mask, float('-inf')).softmax(dim=-1)


class SwiGLU(nn.Module):
    """Llama's gate: the first half of the input (w1 x) through SiLU, times the second (w3 x)."""

    def forward(self, x):
        gate, up = x.chunk(2, dim=-1)                                           # 2 x (B, T, hidden)
        return F.silu(gate) * up


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden = config.mlp_hidden or 4 * config.n_embd
        if config.activation not in ('gelu', 'gelu_tanh', 'swiglu'):
            raise ValueError(f"activation={config.activation!r}: use gelu, gelu_tanh or swiglu")
        gated = config.activation == 'swiglu'  # c_fc computes w1 x and w3 x at once
        self.c_fc = nn.Linear(config.n_embd, 2 * hidden if gated else hidden, bias=config.bias)
        # a module, so a forward hook can read the neurons' activations
        self.act = SwiGLU() if gated else nn.GELU(approximate='tanh' if config.activation == 'gelu_tanh' else 'none')
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm: each sublayer reads a normalised copy and adds to the residual stream."""

    def __init__(self, config, local):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, local)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, plans=None, cache=None, layer=0, pos=None, rope=None, ve=None):
        x = x + self.attn(self.ln_1(x), plans, cache, layer, pos, rope, ve)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        if config.rotary:  # positions rotate queries and keys instead (not saved: recomputed)
            cos, sin = rotary_tables(config)
            self.register_buffer('rope_cos', cos, persistent=False)
            self.register_buffer('rope_sin', sin, persistent=False)
        else:
            self.wpe = nn.Embedding(config.block_size, config.n_embd)  # learned position embedding
        self.drop = nn.Dropout(config.dropout)
        if config.value_embeddings:  # one table per layer, of the values' width
            kv = config.n_embd // config.n_head * config.kv_heads
            self.vte = nn.ModuleList([nn.Embedding(config.vocab_size, kv) for _ in range(config.n_layer)])
        # GPT-Neo alternates global and local attention layers: 0 global, 1 local, 2 global, ...
        self.h = nn.ModuleList([Block(config, local=bool(config.window_size) and i % 2 == 1)
                                for i in range(config.n_layer)])
        self.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
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
        return n if embeddings else n - self.wte.weight.numel() - self.lookup_params()

    def lookup_params(self):
        """The tables that are only looked up, never multiplied: positions, value embeddings."""
        ve = sum(p.numel() for p in self.vte.parameters()) if self.config.value_embeddings else 0
        return ve + (0 if self.config.rotary else self.wpe.weight.numel())

    def flops_per_token(self):
        """Training FLOPs per token: 6 per weight (forward + backward multiply-adds) plus the
        attention scores and mixing, 12 * layers * context * width (see docs/contracts.md, MFU)."""
        c = self.config
        n = self.num_params() - self.lookup_params()
        return 6 * n + 12 * c.n_layer * c.block_size * c.n_embd

    # How to compute, not what (tinystories/speedups.py): set on a model before torch.compile
    # (model.loss_impl = 'chunked'); none is saved in checkpoints. 'auto' picks per device.
    loss_impl = 'auto'        # 'plain': whole logits + F.cross_entropy (nanoGPT's way; under
    #                           compile the fp32 copy is fused away); 'chunked': 256 rows at a
    #                           time, never the whole logits (a CPU's cache); 'few_chunks': the
    #                           same in at most 8 chunks. auto: chunked on CPU, plain elsewhere
    loss_chunk_rows = 256     # 'chunked': rows per chunk
    local_attention = 'auto'  # 'flex': FlexAttention with a sliding-window block mask; 'mask':
    #                           SDPA with an explicit mask. auto: flex on CUDA under torch.compile
    pad_heads = 'auto'        # True: zero-pad head sizes the fused kernels refuse (SDPA: to a
    #                           multiple of 8; FlexAttention: a power of two >= 16). auto: on CUDA
    decode = 'auto'           # generate()'s steps: 'graph': over the whole static cache, captured
    #                           once per (batch, length) as a CUDA graph and replayed (CUDA only);
    #                           'static': the same uncaptured; 'dynamic': over the filled part of
    #                           the cache only. auto: graph on CUDA, dynamic elsewhere
    decode_dtype = 'auto'     # generate()'s weights and cache: 'bfloat16', 'float32'. auto: bf16
    #                           on a CUDA GPU that has it, else the model's own dtype

    def forward(self, idx, targets=None, cache=None, pos=None):
        """idx (B, T) token ids -> (logits (B, T, vocab), None), or with targets (B, T) given
        (-1 marks positions without a target): (None, mean cross-entropy).

        Generation passes a KVCache: a prefill (or rows all at one position) fills it at its
        `len`; with pos (B,), idx (B, 1) holds one token per row at its own position pos[b],
        attending to its row's cached keys 0..pos[b] (the cache's first `len` are looked at)."""
        B, T = idx.shape
        start = cache.len if cache is not None and pos is None else 0
        # each token's position: (B, 1), one per row at its own pos, or (T,) shared by the rows
        positions = pos[:, None] if pos is not None else torch.arange(start, start + T, device=idx.device)
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        x, rope = self.embed(idx, positions)                                    # (B, T, C)
        x = self.drop(x)
        # which positions each layer sees (global / local), and with which kernel
        plans = attention_plans(self, T, start, cache, pos, idx.device)
        for i, block in enumerate(self.h):
            x = block(x, plans, cache, i, pos, rope, self.value_embeds(idx, i))
        if cache is not None and pos is None:
            cache.len += T
        x = self.ln_f(x)
        if targets is None:
            return self.lm_head(x), None                                        # (B, T, vocab)
        return None, self.loss(x, targets)

    def embed(self, idx, positions):
        """The token embeddings of idx (B, T) plus learned position embeddings, or with rotary
        embeddings the tokens alone and each position's (cos, sin) for attention to turn q, k by:
        (T, hs/2) each, or (B, 1, 1, hs/2) for one token per row at its own position."""
        x = self.wte(idx)                                                       # (B, T, C)
        if not self.config.rotary:
            return x + self.wpe(positions), None
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        if positions.dim() == 2:  # (B, 1, hs/2) -> (B, 1, 1, hs/2): per row, across heads
            cos, sin = cos[:, None], sin[:, None]
        return x, (cos, sin)

    def value_embeds(self, idx, layer):
        return self.vte[layer](idx) if self.config.value_embeddings else None   # (B, T, kv) or None

    def loss(self, x, targets):
        """Mean cross-entropy of the next-token predictions from x (B, T, C), the final
        LayerNorm's output, against targets (B, T); -1 marks positions without a target."""
        impl = self.loss_impl if self.loss_impl != 'auto' else 'chunked' if x.device.type == 'cpu' else 'plain'
        if impl != 'plain':  # the same loss without ever holding the whole logits
            return chunked_loss(x, self.lm_head.weight, targets, impl, self.loss_chunk_rows)
        logits = self.lm_head(x).float()                                        # (B, T, vocab)
        # every position is one classification: (B*T, vocab) logits against (B*T,) targets
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)

    @torch.no_grad()
    def attention_maps(self, idx):
        """Each layer's attention probabilities for idx (B, T): a list of (B, nh, T, T)."""
        T = idx.size(1)
        masks = attention_masks(torch.arange(T, device=idx.device), T, self.config.window_size)
        plans = {kind: AttentionPlan(m, False) for kind, m in masks.items()}
        x, rope = self.embed(idx, torch.arange(T, device=idx.device))           # (B, T, C)
        maps = []
        for i, block in enumerate(self.h):
            maps.append(block.attn.probs(block.ln_1(x), masks[bool(block.attn.window)], rope))
            x = block(x, plans, rope=rope, ve=self.value_embeds(idx, i))
        return maps

    def configure_optimizer(self, weight_decay, learning_rate, betas, device_type, muon_lr=0.0,
                            autocast_dtype=torch.float32):
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
                    lr=muon_lr, weight_decay=weight_decay,  # Newton-Schulz in bf16 only under bf16
                    dtype=torch.bfloat16 if autocast_dtype == torch.bfloat16 else torch.float32)
        return Optimizers(muon, adamw)

    # ------------------------------------------------------------------------- generation

    @torch.inference_mode()
    def generate_no_cache(self, prompt, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                          generator=None):
        """The plain sampler: rerun the whole sequence for every new token (the reference the
        tests and bench.py compare the cached one against)."""
        idx = torch.tensor([prompt], dtype=torch.long, device=self.wte.weight.device)  # (1, T)
        for _ in range(min(max_new_tokens, self.config.block_size - len(prompt))):
            logits, _ = self(idx)                                               # (1, T, vocab)
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)
            idx = torch.cat([idx, nxt[:, None]], dim=1)                         # (1, T + 1)
        return idx[0, len(prompt):].tolist()

    @torch.inference_mode()  # no autograd bookkeeping at all: ~1.5x faster decoding on CPU
    def generate_stream(self, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                        eot_token=None, generator=None):
        """The fast sampler, for a batch of prompts (lists of token ids, any lengths): each
        token's keys and values are computed once and kept (KVCache), so a step feeds one token.

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
        net = decoding_model(self)  # this model, or its bf16 copy on a GPU
        device = net.wte.weight.device
        lens, budget = [len(prompts[b]) for b in rows], [budget[b] for b in rows]
        R, T0 = len(rows), max(lens)
        S = max(n + m - 1 for n, m in zip(lens, budget))  # the last token sampled is never fed
        mode = self.decode if self.decode != 'auto' else 'graph' if device.type == 'cuda' else 'dynamic'
        decoder = None
        if mode != 'dynamic':  # every step over the whole static cache: a CUDA graph on a GPU
            decoder = static_decoder(net, R, S, capture=mode == 'graph' and device.type == 'cuda')
        cache = decoder.cache if decoder else KVCache(self.config, R, S, device, net.wte.weight.dtype)
        # prefill: right-padded, so every prompt starts at position 0; causal attention keeps the
        # padding (after each prompt) out of the real tokens, and decoding overwrites it
        idx = torch.zeros(R, T0, dtype=torch.long, device=device)               # (R, T0)
        for i, b in enumerate(rows):
            idx[i, :lens[i]] = torch.tensor(prompts[b], dtype=torch.long)
        logits, _ = net(idx, cache=cache)                                       # (R, T0, vocab)
        last = torch.tensor(lens, device=device) - 1
        logits = logits[torch.arange(R, device=device), last]                   # (R, vocab)
        uniform = len(set(lens)) == 1  # all rows at one position: the plain cache path is cheapest
        made, done = [0] * R, [False] * R
        for step in range(max(budget)):
            nxt = sample_next(logits, temperature, top_k, top_p, generator)     # (R,)
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
            pos = (last + 1 + step).clamp_(max=S - 1)                           # (R,)
            if decoder is not None:
                logits = decoder.step(nxt, pos)
            elif uniform:
                logits = net(nxt[:, None], cache=cache)[0][:, -1]                 # (R, vocab)
            else:
                cache.len = min(T0 + step + 1, S)  # keys up to the furthest row's position
                logits = net(nxt[:, None], cache=cache, pos=pos)[0][:, -1]        # (R, vocab)

    def generate(self, prompts, max_new_tokens, **kwargs):
        """Like generate_stream, but returns each sequence's new tokens (EOT included if hit)."""
        outs = [[] for _ in prompts]
        for step in self.generate_stream(prompts, max_new_tokens, **kwargs):
            for b, t in enumerate(step):
                if t is not None:
                    outs[b].append(t)
        return outs


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token per row from logits (B, vocab): temperature 0 is greedy; top_k keeps the k most
    likely tokens; top_p keeps the smallest set whose probability reaches p (nucleus)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]   # (B, 1)
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
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)                                 # (B, vocab)
    u = torch.rand(cdf.size(0), 1, device=cdf.device, generator=generator) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.size(-1) - 1).squeeze(-1)  # (B,)
