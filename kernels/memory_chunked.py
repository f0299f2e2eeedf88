"""The chunked memory recurrence in closed form (SPEC 2b): the differentiable torch fast path.

Per chunk, with all gradients taken at the chunk-start weights M₀, the gate recurrences unroll into
a C×C lower-triangular matrix `c` of scalars per head, and each layer of M_t applied to a query is

    W_t^l z = β_t W₀^l z + b_t S₀^l z − Σ_{i≤t} c_{t,i} δ_i^l (a_i^{l−1} · z)

(the test-time-training "dual form"): two matmuls and one masked C×C product per layer, for all the
queries of a chunk at once, with no per-token weight copies. Everything is plain torch, so the outer
model trains through the inner updates.
"""

from __future__ import annotations

import torch
from torch import Tensor

from titans_cli.kernels.memory_mlp import activation, activation_grad, clip_scale
from titans_cli.kernels.recurrence import RecurrenceResult


def chunk_coefficients(theta: Tensor, log_eta: Tensor, log_keep: Tensor) -> tuple[Tensor, ...]:
    """Gate coefficients of one chunk (SPEC 2b), from per-token gates of shape [..., n].

    Returns c [..., n, n] (c_{t,i}), beta [..., n] (β_t), b [..., n] (b_t), and the momentum's
    end-of-chunk coefficients m [..., n] = θ_i E_n / E_i. Cumulative products are taken in log space,
    and every ratio is formed as exp(difference) of a later over an earlier index, so each is ≤ 1.
    """
    n = theta.shape[-1]
    log_e = log_eta.cumsum(-1)  # log E_t
    log_b = log_keep.cumsum(-1)  # log β_t
    causal = torch.ones(n, n, dtype=torch.bool, device=theta.device).tril()
    neg_inf = torch.full((), float("-inf"), dtype=theta.dtype, device=theta.device)  # no host copy: graph-safe
    decay_keep = torch.where(causal, log_b[..., :, None] - log_b[..., None, :], neg_inf).exp()  # β_t/β_s
    decay_mom = torch.where(causal, log_e[..., :, None] - log_e[..., None, :], neg_inf).exp()  # E_s/E_i
    c = (decay_keep @ decay_mom) * theta[..., None, :]
    b = decay_keep @ log_e.exp()[..., None]
    m = decay_mom[..., -1, :] * theta
    return c, log_b.exp(), b.squeeze(-1), m


def _chunk(q, k, v, theta, log_eta, log_keep, w0, s0, grad_clip):
    """One chunk: retrieval for its tokens, surprise, and the weights and momentum at its end."""
    c, beta, b, m = chunk_coefficients(theta, log_eta, log_keep)
    depth = len(w0)

    # Forward pass at M₀ on the keys, keeping each layer's input a^{l−1} and pre-activation z^l.
    inputs, pre = [], []
    a = k
    for layer, w in enumerate(w0):
        inputs.append(a)
        z = a @ w.transpose(-1, -2)
        pre.append(z)
        if layer < depth - 1:
            a = activation(z)
    # Backward pass of ℓ = ½‖M₀(k) − v‖² by hand: δ^L = M₀(k) − v, δ^l = (W^{l+1ᵀ} δ^{l+1}) ⊙ σ'(z^l).
    err = pre[-1] - v
    surprise = 0.5 * err.pow(2).sum(-1)
    deltas = [err]
    for layer in range(depth - 2, -1, -1):
        deltas.insert(0, (deltas[0] @ w0[layer + 1]) * activation_grad(pre[layer]))
    if grad_clip:
        # ‖u_i‖² = Σ_l ‖δ_i^l‖² ‖a_i^{l−1}‖²; scaling δ_i scales every layer of u_i = δ_i aᵢᵀ.
        norm_sq = sum(d.pow(2).sum(-1) * a.pow(2).sum(-1) for d, a in zip(deltas, inputs))
        scale = clip_scale(norm_sq, grad_clip)[..., None]
        deltas = [d * scale for d in deltas]

    # Retrieval y_t = M_t(q_t), layer by layer in the dual form.
    r = q
    for layer in range(depth):
        w, s, a_in, d = w0[layer], s0[layer], inputs[layer], deltas[layer]
        p = beta[..., None] * (r @ w.transpose(-1, -2)) + b[..., None] * (r @ s.transpose(-1, -2))
        p = p - (c * (r @ a_in.transpose(-1, -2))) @ d
        r = activation(p) if layer < depth - 1 else p

    # Chunk end: M_n = β_n M₀ + b_n S₀ − Σ_i c_{n,i} u_i and S_n = E_n S₀ − Σ_i θ_i (E_n/E_i) u_i.
    c_end = c[..., -1, :, None]
    m_end = m[..., :, None]
    beta_n, b_n = beta[..., -1, None, None], b[..., -1, None, None]
    e_n = log_eta.sum(-1).exp()[..., None, None]
    w1, s1 = [], []
    for w, s, d, a in zip(w0, s0, deltas, inputs):
        w1.append(beta_n * w + b_n * s - (d * c_end).transpose(-1, -2) @ a)
        s1.append(e_n * s - (d * m_end).transpose(-1, -2) @ a)
    return r, w1, s1, surprise


def memory_recurrence_chunked(
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
    """Chunk by chunk over a span that starts at a chunk boundary; see `RecurrenceResult`."""
    w, s = list(weights), list(momentum)
    outputs, surprises = [], []
    length = q.shape[2]
    for start in range(0, length, chunk_size):
        end = min(start + chunk_size, length)
        span = slice(start, end)
        y, w1, s1, sur = _chunk(
            q[:, :, span], k[:, :, span], v[:, :, span],
            theta[..., span], log_eta[..., span], log_keep[..., span], w, s, grad_clip,
        )  # fmt: skip
        outputs.append(y)
        surprises.append(sur)
        if end - start == chunk_size:  # a partial last chunk is read but not committed
            w, s = w1, s1
    if not outputs:
        empty = q.new_zeros(*q.shape[:-1], weights[-1].shape[-2])
        return RecurrenceResult(empty, w, s, q.new_zeros(q.shape[:-1]))
    return RecurrenceResult(torch.cat(outputs, 2), w, s, torch.cat(surprises, 2))
