"""The recurrence of a linear memory keyed by one-hot rows (the context memory), in SPEC 2b's closed form.

With key e_g (row g of R) and a linear memory M: R^R → R^A stored as a table [R, A], the inner gradient
of ℓ_i = ½‖M₀(e_{g_i}) − v_i‖² is δ_i e_{g_i}ᵀ with δ_i = M₀[g_i] − v_i: it touches one row. SPEC 2b's
dual form then needs no R-wide product:

    M_t[r] = β_t M₀[r] + b_t S₀[r] − Σ_{i≤t} c_{t,i} [g_i = r] δ_i        (the read of row r at token t)
    M_C = β_C M₀ + b_C S₀ − Σ_i c_{C,i} δ_i e_{g_i}ᵀ,   S_C = E_C S₀ − Σ_i θ_i (E_C/E_i) δ_i e_{g_i}ᵀ

so a chunk costs its gate coefficients c (`gate_coefficients`: in C on CPU, O(C²)), the sum over the
pairs i ≤ t whose rows agree, one scaling of the two tables and a scatter-add. A token with θ_i = 0
writes nothing. `sparse_memory_reference` runs the token loop of
`memory_recurrence_reference` on explicit one-hot keys: the ground truth the fast forms are tested against.

Three ways to hold the tables while a span is read, one per use:
- `DenseTables`, out of place: autograd trains the gates through it.
- `DenseTables`, in place (no autograd, CUDA): one copy per call, then three passes over the tables per chunk.
- `LazyTables` (no autograd, CPU): no pass over the tables per chunk while the momentum is wiped at every
  chunk end (E_C = 0 exactly, as in the bundled models: log E_C ≈ −1000). Then S_C is the chunk's own
  writes, a list of at most C rows, and the table is kept as M = p·M̃, so β_C scales the scalar p and the
  chunk writes only the rows it and the momentum touch. A chunk that keeps momentum switches the rest of
  the call to in-place dense tables.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from titans_cli.kernels import gate_coefficients
from titans_cli.kernels.memory_reference import memory_recurrence_reference

# Below this the table's scale p is folded back into M̃ (one dense pass), so M̃ = M/p stays well inside
# the float range whatever the forgetting.
MIN_SCALE = 2.0**-20


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
    The caller's tensors are never written."""
    tracked = (values, theta, log_eta, log_keep, table, momentum)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tracked):
        tables = DenseTables(table, momentum, in_place=False)
    elif table.device.type == "cpu":  # the lazy form asks the host about every chunk's gates: no CUDA graphs
        tables = LazyTables(table, momentum, chunk_size)
    else:
        tables = DenseTables(table, momentum, in_place=True)
    outputs = []
    for start in range(0, keys.shape[1], chunk_size):
        span = slice(start, start + chunk_size)
        k, q, v, th, eta, keep = (t[:, span] for t in (keys, queries, values, theta, log_eta, log_keep))
        c, beta, b, m = gate_coefficients(th, eta, keep)  # c [B, n, n]; the rest [B, n]
        y, delta = _chunk_read(k, q, v, c, beta, b, *tables.rows(k, q))
        outputs.append(y)
        if y.shape[1] == chunk_size:  # a partial last chunk is read but not committed
            tables.commit(k, delta, c[:, -1], beta[:, -1], b[:, -1], m, eta.sum(-1).exp())
    y = torch.cat(outputs, 1) if outputs else values.new_zeros(values.shape)
    return SparseMemoryResult(y, *tables.result())


def _chunk_read(keys, queries, values, c, beta, b, table_keys, table_queries, momentum_queries):
    """Each token's read M_t[r_t] and the chunk's errors δ_i = M₀[g_i] − v_i, [B, n, A], from the rows of
    M₀ at the keys and queries and of S₀ at the queries."""
    delta = table_keys - values
    y = beta[..., None] * table_queries + b[..., None] * momentum_queries
    # Σ_{i≤t} c_{t,i} [g_i = r_t] δ_i over the few pairs whose rows agree (a C×C product would be mostly zeros)
    stream, t, i = (queries[:, :, None] == keys[:, None, :]).tril_().nonzero(as_tuple=True)
    width = y.shape[-1]
    reads = -c[stream, t, i, None] * delta[stream, i]
    return y.view(-1, width).index_add(0, stream * y.shape[1] + t, reads).view(y.shape), delta


def _batch_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Indices (stream, row) for rows [B, n] of tables [B, R, A]."""
    return torch.arange(rows.shape[0], device=rows.device)[:, None].expand_as(rows), rows


def _add_rows(table: Tensor, rows: Tensor, values: Tensor, in_place: bool = True) -> Tensor:
    """table[b, rows[b, j]] += values[b, j] (repeated rows add up) for a contiguous table [B, R, A]: index_add
    on its flat [B·R, A] view, some 5× faster on CPU than index_put's accumulate."""
    batch, size, width = table.shape
    flat = (rows + size * torch.arange(batch, device=rows.device)[:, None]).reshape(-1)
    values = values.reshape(-1, width)
    if in_place:
        table.view(-1, width).index_add_(0, flat, values)
        return table
    return table.view(-1, width).index_add(0, flat, values).view(batch, size, width)


class DenseTables:
    """M and S as whole tables; with `in_place`, one private copy updated in place (no autograd)."""

    def __init__(self, table: Tensor, momentum: Tensor, in_place: bool, owned: bool = False):
        self.table, self.momentum, self.in_place, self.owned = table, momentum, in_place, owned

    def rows(self, keys: Tensor, queries: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k, q = _batch_rows(keys), _batch_rows(queries)
        return self.table[k], self.table[q], self.momentum[q]

    def commit(self, keys, delta, c_last, beta_last, b_last, m, decay) -> None:
        """M_C and S_C (module docstring) from M₀, S₀."""
        table_writes, momentum_writes = -c_last[..., None] * delta, -m[..., None] * delta
        beta_last, b_last, decay = beta_last[:, None, None], b_last[:, None, None], decay[:, None, None]
        if not self.in_place:
            table = beta_last * self.table + b_last * self.momentum
            self.table = _add_rows(table, keys, table_writes, in_place=False)
            self.momentum = _add_rows(decay * self.momentum, keys, momentum_writes, in_place=False)
            return
        if not self.owned:
            self.table, self.momentum, self.owned = self.table.clone(), self.momentum.clone(), True
        # The table first: it reads S₀ before S₀ decays.
        _add_rows(self.table.mul_(beta_last).addcmul_(self.momentum, b_last), keys, table_writes)
        _add_rows(self.momentum.mul_(decay), keys, momentum_writes)

    def result(self) -> tuple[Tensor, Tensor]:
        return self.table, self.momentum


class LazyTables:
    """M = p·M̃ with p [B], and S = Σ_j e_{r_j} u_jᵀ: rows r [B, K] and values u [B, K, A] (repeated rows
    add up), while every chunk wipes the momentum; `dense` (in place) once one does not."""

    def __init__(self, table: Tensor, momentum: Tensor, chunk_size: int):
        self.table, self.momentum = table, momentum  # the caller's, returned as they are if nothing commits
        self.scaled = table  # M̃: the caller's table until the first commit, then a private copy
        self.scale = table.new_ones(table.shape[0])
        self.dense: DenseTables | None = None
        self.momentum_rows = momentum_rows(momentum, chunk_size)
        if self.momentum_rows is None:  # S₀ holds more rows than one chunk writes: not a wiped momentum
            self.dense = DenseTables(table, momentum, in_place=True)

    def rows(self, keys: Tensor, queries: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.dense is not None:
            return self.dense.rows(keys, queries)
        p = self.scale[:, None, None]
        rows, u = self.momentum_rows
        hits = (queries[:, :, None] == rows[:, None, :]).to(u.dtype)  # S₀[r_t] = Σ_j [r_j = r_t] u_j
        return p * self.scaled[_batch_rows(keys)], p * self.scaled[_batch_rows(queries)], hits @ u

    def commit(self, keys, delta, c_last, beta_last, b_last, m, decay) -> None:
        if self.dense is None and bool((decay != 0).any()):
            self._to_dense()
        if self.dense is not None:
            self.dense.commit(keys, delta, c_last, beta_last, b_last, m, decay)
            return
        if self.scaled is self.table:
            self.scaled = self.table.clone()
        scale = beta_last * self.scale
        if bool((scale < MIN_SCALE).any()):  # fold p into M̃ before dividing by it
            self.scaled.mul_(self.scale[:, None, None])
            self.scale, scale = torch.ones_like(scale), beta_last
            if bool((scale < MIN_SCALE).any()):  # β_C itself ≈ 0: this chunk forgets the table
                self._to_dense()
                self.dense.commit(keys, delta, c_last, beta_last, b_last, m, decay)
                return
        # M_C = β_C p M̃ + b_C S₀ − Σ_i c_{C,i} δ_i e_{g_i}ᵀ, written as p' = β_C p and M̃ += (the rest)/p'.
        rows, u = self.momentum_rows
        writes = torch.cat([(b_last / scale)[:, None, None] * u, -(c_last / scale[:, None])[..., None] * delta], 1)
        _add_rows(self.scaled, torch.cat([rows, keys], 1), writes)
        self.scale = scale
        self.momentum_rows = keys, -m[..., None] * delta  # S_C = −Σ_i m_i δ_i e_{g_i}ᵀ, as E_C = 0

    def _to_dense(self) -> None:
        table = self.scaled.clone() if self.scaled is self.table else self.scaled
        table.mul_(self.scale[:, None, None])
        self.dense = DenseTables(table, self._whole_momentum(), in_place=True, owned=True)

    def _whole_momentum(self) -> Tensor:
        rows, u = self.momentum_rows
        return _add_rows(self.momentum.new_zeros(self.momentum.shape), rows, u)

    def result(self) -> tuple[Tensor, Tensor]:
        if self.dense is not None:
            return self.dense.result()
        if self.scaled is self.table:
            return self.table, self.momentum
        return self.scaled.mul_(self.scale[:, None, None]), self._whole_momentum()


def momentum_rows(momentum: Tensor, limit: int) -> tuple[Tensor, Tensor] | None:
    """S [B, R, A] as rows [B, K] and their values [B, K, A] (K ≤ limit; a short stream's list is padded
    with row 0 and zero values, which add nothing), or None when some stream has more than `limit`
    nonzero rows."""
    if momentum.shape[0] > 1 and momentum.stride(0) == 0:  # one stream's momentum for all (a fresh batch)
        found = momentum_rows(momentum[:1], limit)
        return None if found is None else tuple(t.expand(momentum.shape[0], *t.shape[1:]) for t in found)
    used = momentum.ne(0).any(-1)  # [B, R]
    counts = used.sum(-1)
    width = int(counts.max())
    if width > limit:
        return None
    rows = momentum.new_zeros(momentum.shape[0], width, dtype=torch.int64)
    valid = torch.arange(width, device=momentum.device) < counts[:, None]
    rows[valid] = used.nonzero()[:, 1]  # nonzero() lists stream by stream, rows in order
    values = momentum[_batch_rows(rows)] * valid[..., None]
    return rows, values


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
