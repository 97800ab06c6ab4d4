"""
The optimizers train.py can use beyond AdamW: Muon for the transformer blocks' matrices, and a
wrapper that steps several optimizers as one (Muon for the hidden matrices, AdamW for the rest).
GPT.configure_optimizer picks them.
"""
import torch


def orthogonalize(G, steps=5, dtype=torch.float32):
    """Approximately U V^T for G = U S V^T: every direction of the update gets the same size.
    A Newton-Schulz iteration, with a quintic tuned to push singular values near 1 fast
    (Jordan et al. 2024, "Muon"); a few matmuls, no SVD. G is a matrix (..., m, n), or a stack of
    them, each orthogonalized on its own (one batched matmul for a layer's same-shape matrices)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = (G / (G.norm(dim=(-2, -1), keepdim=True) + 1e-7)).to(dtype)  # singular values now at most 1
    tall = X.size(-2) > X.size(-1)
    if tall:  # iterate on the smaller Gram matrix
        X = X.mT
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


class Muon(torch.optim.Optimizer):
    """Nesterov momentum whose update is orthogonalized: for the hidden layers' matrices. At
    small scale it learns more per step than AdamW (the nanoGPT speedruns' finding)."""

    def __init__(self, params, lr=0.02, momentum=0.95, weight_decay=0.0, dtype=torch.float32):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.dtype = dtype  # the Newton-Schulz matmuls' (bf16: 2x faster where the CPU has it)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            by_shape = {}  # the matrices of one shape (one per layer) are orthogonalized together
            for p in group['params']:
                if p.grad is None:
                    continue
                state = self.state[p]
                if 'momentum_buffer' not in state:
                    state['momentum_buffer'] = torch.zeros_like(p)
                buf = state['momentum_buffer'].mul_(group['momentum']).add_(p.grad)
                by_shape.setdefault(p.shape, []).append((p, p.grad.add(buf, alpha=group['momentum'])))
            for (rows, cols), items in by_shape.items():
                updates = orthogonalize(torch.stack([g for _, g in items]), dtype=self.dtype)  # (n, rows, cols)
                for (p, _), update in zip(items, updates):
                    p.mul_(1 - group['lr'] * group['weight_decay'])
                    # tall matrices: the same RMS step as square ones
                    p.add_(update.to(p.dtype), alpha=-group['lr'] * max(1.0, rows / cols) ** 0.5)


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
