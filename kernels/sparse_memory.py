"""The recurrence of a linear memory keyed by one-hot rows (the context memory), in SPEC 2b's closed form.

With key e_g (row g of R) and a linear memory M: R^R → R^A stored as a table [R, A], the inner gradient
of ℓ_i = ½‖M₀(e_{g_i}) − v_i‖² is δ_i e_{g_i}ᵀ with δ_i = M₀[g_i] − v_i: it touches one row. SPEC 2b's
dual form then needs no R-wide product:

    M_t[r] = β_t M₀[r] + b_t S₀[r] − Σ_{i≤t} c_{t,i} [g_i = r] δ_i        (the read of row r at token t)
    M_C = β_C M₀ + b_C S₀ − Σ_i c_{C,i} δ_i e_{g_i}ᵀ,   S_C = E_C S₀ − Σ_i θ_i (E_C/E_i) δ_i e_{g_i}ᵀ

so a chunk costs a C×C product per stream plus one scaling of the two tables and a scatter-add. A
token with θ_i = 0 writes nothing. `sparse_memory_reference` runs the token loop of
`memory_recurrence_reference` on explicit one-hot keys: the ground truth the fast form is tested against.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from titans_cli.kernels.memory_chunked import chunk_coefficients
from titans_cli.kernels.memory_reference import memory_recurrence_reference


class SparseMemoryResult(NamedTuple):
    """y [B, T, A]: each token's read M_t[query_t]; table and momentum [B, R, A] at the span's last chunk
    boundary (tokens after it are read but not committed: the caller keeps them pending, as in
    `RecurrenceResult`)."""

    y: Tensor
    table: Tensor
    momentum: Tensor


def sparse_memory_chunked(
    keys: Tensor,
    queries: Tensor,
    values: Tensor,
    theta: Tensor,
    log_eta: Tensor,
    log_keep: Tensor,
    table: Tensor,
    momentum: Tensor,
    chunk_size: int,
) -> SparseMemoryResult:
    """Chunk by chunk over a span that starts at a chunk boundary. keys, queries [B, T] (row numbers),
    values [B, T, A], gates [B, T] (θ_t, log η_t, log(1 − α_t)), table and momentum [B, R, A]."""
    outputs = []
    for start in range(0, keys.shape[1], chunk_size):
        span = slice(start, start + chunk_size)
        y, new_table, new_momentum = _chunk(keys[:, span], queries[:, span], values[:, span], theta[:, span],
                                            log_eta[:, span], log_keep[:, span], table, momentum)  # fmt: skip
        outputs.append(y)
        if y.shape[1] == chunk_size:  # a partial last chunk is read but not committed
            table, momentum = new_table, new_momentum
    y = torch.cat(outputs, 1) if outputs else values.new_zeros(values.shape)
    return SparseMemoryResult(y, table, momentum)


def _chunk(keys, queries, values, theta, log_eta, log_keep, table, momentum):
    c, beta, b, m = chunk_coefficients(theta, log_eta, log_keep)  # c [B, n, n]; the rest [B, n]
    batch = torch.arange(keys.shape[0], device=keys.device)[:, None]
    delta = table[batch, keys] - values  # δ_i = M₀[g_i] − v_i, [B, n, A]
    hits = (queries[:, :, None] == keys[:, None, :]).to(c.dtype)  # [g_i = r_t]
    y = beta[..., None] * table[batch, queries] + b[..., None] * momentum[batch, queries] - (c * hits) @ delta
    rows = (batch.expand_as(keys), keys)
    new_table = beta[:, -1, None, None] * table + b[:, -1, None, None] * momentum
    new_table = new_table.index_put(rows, -c[:, -1, :, None] * delta, accumulate=True)
    new_momentum = log_eta.sum(-1).exp()[:, None, None] * momentum
    new_momentum = new_momentum.index_put(rows, -m[..., None] * delta, accumulate=True)
    return y, new_table, new_momentum


def sparse_memory_reference(
    keys: Tensor,
    queries: Tensor,
    values: Tensor,
    theta: Tensor,
    log_eta: Tensor,
    log_keep: Tensor,
    table: Tensor,
    momentum: Tensor,
    chunk_size: int,
) -> SparseMemoryResult:
    """The same contract through the token-by-token autograd loop on dense one-hot keys (slow: tests only)."""
    rows = table.shape[1]

    def one_hot(r: Tensor) -> Tensor:
        return F.one_hot(r, rows).to(table.dtype)[:, None]  # one head: [B, 1, T, R]

    result = memory_recurrence_reference(
        one_hot(queries), one_hot(keys), values[:, None], theta[:, None], log_eta[:, None], log_keep[:, None],
        [table.transpose(1, 2)[:, None]], [momentum.transpose(1, 2)[:, None]], chunk_size,
    )  # fmt: skip
    return SparseMemoryResult(result.y[:, 0], result.weights[0][:, 0].transpose(1, 2),
                              result.momentum[0][:, 0].transpose(1, 2))  # fmt: skip
