"""Ground truth for the memory recurrence (SPEC 2): a plain loop over tokens with autograd.

Slow by design and never on a fast path. Every other form (the chunked dual form, the Triton kernel)
is tested against it. Gradients come from `torch.autograd.grad` on the inner loss, so this file shares
no gradient algebra with the fast forms.
"""

from __future__ import annotations

import torch
from torch import Tensor

from titans_cli.kernels.memory_mlp import clip_scale, mlp_forward
from titans_cli.kernels.recurrence import RecurrenceResult


def memory_recurrence_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    log_eta: Tensor,
    log_keep: Tensor,
    weights: list[Tensor],
    momentum: list[Tensor],
    chunk_size: int,
    grad_clip: float = 0.0,
) -> RecurrenceResult:
    """Token-by-token update and retrieval; see `RecurrenceResult` for the contract."""
    eta, keep = log_eta.exp(), log_keep.exp()
    w = [t.clone() for t in weights]
    s = [t.clone() for t in momentum]
    committed_w, committed_s = w, s
    outputs, surprises = [], []
    for t in range(q.shape[2]):
        if t % chunk_size == 0:  # every gradient of a chunk is taken at the chunk-start weights
            w0 = [x.detach().clone().requires_grad_(True) for x in w]
        with torch.enable_grad():
            err = mlp_forward(w0, k[:, :, t : t + 1]) - v[:, :, t : t + 1]
            loss = 0.5 * err.pow(2).sum(dim=(-1, -2))  # ℓ_t(M₀) per stream and head
            grads = torch.autograd.grad(loss.sum(), w0)  # the sum separates: each (b, h) owns its weights
        surprises.append(loss.detach())
        if grad_clip:  # u_t ← u_t · min(1, τ/‖u_t‖), the norm taken over all layers together
            norm_sq = sum(u.pow(2).sum(dim=(-1, -2)) for u in grads)
            grads = [u * clip_scale(norm_sq, grad_clip)[..., None, None] for u in grads]
        g_eta = eta[:, :, t, None, None]
        g_theta = theta[:, :, t, None, None]
        g_keep = keep[:, :, t, None, None]
        s = [g_eta * s_l - g_theta * u_l for s_l, u_l in zip(s, grads)]  # S_t = η_t S_{t−1} − θ_t u_t
        w = [g_keep * w_l + s_l for w_l, s_l in zip(w, s)]  # M_t = (1 − α_t) M_{t−1} + S_t
        outputs.append(mlp_forward(w, q[:, :, t : t + 1]))  # y_t = M_t(q_t)
        if (t + 1) % chunk_size == 0:
            committed_w, committed_s = w, s
    y = torch.cat(outputs, dim=2) if outputs else q.new_zeros(*q.shape[:-1], weights[-1].shape[-2])
    surprise = torch.stack(surprises, dim=2) if surprises else q.new_zeros(q.shape[:-1])
    return RecurrenceResult(y, committed_w, committed_s, surprise)
