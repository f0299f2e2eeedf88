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
    values [B, T, A], gates [B, T] (θ_t, log η_t, log(1 − α_t)), table and momentum [B, R, A].

    Without autograd the tables are copied once and then updated in place: a chunk then costs three passes
    over them instead of six, most of all a context memory's cost (BENCHMARKS.md). The caller's tensors
    are never written."""
    tracked = (values, theta, log_eta, log_keep, table, momentum)
    in_place = not (torch.is_grad_enabled() and any(t.requires_grad for t in tracked))
    outputs, owned = [], False
    for start in range(0, keys.shape[1], chunk_size):
        span = slice(start, start + chunk_size)
        k, q, v, th, eta, keep = (t[:, span] for t in (keys, queries, values, theta, log_eta, log_keep))
        c, beta, b, m = chunk_coefficients(th, eta, keep)  # c [B, n, n]; the rest [B, n]
        y, delta = _chunk_read(k, q, v, c, beta, b, table, momentum)
        outputs.append(y)
        if y.shape[1] < chunk_size:  # a partial last chunk is read but not committed
            continue
        if in_place and not owned:
            table, momentum, owned = table.clone(), momentum.clone(), True
        table, momentum = _chunk_commit(k, delta, c[:, -1], beta[:, -1], b[:, -1], m, eta.sum(-1).exp(),
                                        table, momentum, in_place)  # fmt: skip
    y = torch.cat(outputs, 1) if outputs else values.new_zeros(values.shape)
    return SparseMemoryResult(y, table, momentum)


def _chunk_read(keys, queries, values, c, beta, b, table, momentum):
    """Each token's read M_t[r_t] and the chunk's errors δ_i = M₀[g_i] − v_i, [B, n, A]."""
    batch = torch.arange(keys.shape[0], device=keys.device)[:, None]
    delta = table[batch, keys] - values
    hits = (queries[:, :, None] == keys[:, None, :]).to(c.dtype)  # [g_i = r_t]
    y = beta[..., None] * table[batch, queries] + b[..., None] * momentum[batch, queries] - (c * hits) @ delta
    return y, delta


def _chunk_commit(keys, delta, c_last, beta_last, b_last, m, decay, table, momentum, in_place):
    """M_C and S_C (module docstring) from M₀, S₀: in place when `in_place`, else as new tensors."""
    rows = (torch.arange(keys.shape[0], device=keys.device)[:, None].expand_as(keys), keys)
    table_writes, momentum_writes = -c_last[..., None] * delta, -m[..., None] * delta
    beta_last, b_last, decay = beta_last[:, None, None], b_last[:, None, None], decay[:, None, None]
    if in_place:  # the table first: it reads S₀ before S₀ decays
        table.mul_(beta_last).addcmul_(momentum, b_last).index_put_(rows, table_writes, accumulate=True)
        momentum.mul_(decay).index_put_(rows, momentum_writes, accumulate=True)
        return table, momentum
    table = (beta_last * table + b_last * momentum).index_put(rows, table_writes, accumulate=True)
    return table, (decay * momentum).index_put(rows, momentum_writes, accumulate=True)


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
