"""The one-hot-key memory's closed form against the token-loop autograd reference on dense one-hot keys."""

import pytest
import torch
from torch.nn import functional as F

from titans_cli.kernels.sparse_memory import LazyTables, momentum_rows, sparse_memory_chunked, sparse_memory_reference


def random_inputs(length, seed, rows=5, alphabet=4, batch=2, dtype=torch.float64):
    """Few rows, so keys collide inside a chunk and queries hit rows written earlier in it."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randint(0, rows, (batch, length), generator=g)
    queries = torch.randint(0, rows, (batch, length), generator=g)
    values = F.one_hot(torch.randint(0, alphabet, (batch, length), generator=g), alphabet).to(dtype)
    theta = torch.rand(batch, length, generator=g, dtype=dtype) * (torch.rand(batch, length, generator=g) > 0.2)
    log_eta = F.logsigmoid(torch.randn(batch, length, generator=g, dtype=dtype))
    log_keep = F.logsigmoid(torch.randn(batch, length, generator=g, dtype=dtype) + 3)
    table = torch.randn(batch, rows, alphabet, generator=g, dtype=dtype)
    momentum = 0.1 * torch.randn(batch, rows, alphabet, generator=g, dtype=dtype)
    return keys, queries, values, theta, log_eta, log_keep, table, momentum


@pytest.mark.parametrize("chunk", [1, 3, 8, 32])
@pytest.mark.parametrize("length", [1, 17, 40])
def test_closed_form_matches_token_loop_reference(chunk, length):
    args = random_inputs(length, seed=chunk * 100 + length)
    fast = sparse_memory_chunked(*args, chunk_size=chunk)
    slow = sparse_memory_reference(*args, chunk_size=chunk)
    assert fast.y.shape == slow.y.shape == args[2].shape
    for a, b in zip(fast, slow):
        assert (a - b).abs().max() <= 1e-10


def test_gradients_match_the_reference():
    """The model's gates train through the closed form: within a chunk its gradients are the reference's (the
    reference takes each chunk's gradients at detached start weights, so only one chunk compares)."""
    keys, queries, values, theta, log_eta, log_keep, table, momentum = random_inputs(20, seed=5)
    grads = []
    for recurrence in (sparse_memory_chunked, sparse_memory_reference):
        gates = [t.clone().requires_grad_(True) for t in (theta, log_eta, log_keep)]
        out = recurrence(keys, queries, values, *gates, table, momentum, chunk_size=32)
        (out.y.pow(2).sum() + out.table.sum() + out.momentum.pow(2).sum()).backward()
        grads.append([t.grad for t in gates])
    for a, b in zip(*grads):
        assert (a - b).abs().max() <= 1e-9


def test_in_place_commits_match_the_autograd_path_and_leave_the_callers_tables_alone():
    """Without autograd the tables are updated in place; with it, as new tensors. Same numbers, and the
    state passed in (a saved memory every record starts from) is unchanged either way."""
    keys, queries, values, theta, log_eta, log_keep, table, momentum = random_inputs(45, seed=11)
    before = table.clone(), momentum.clone()
    with torch.no_grad():
        in_place = sparse_memory_chunked(keys, queries, values, theta, log_eta, log_keep, table, momentum, 8)
    tracked = sparse_memory_chunked(keys, queries, values, theta.clone().requires_grad_(True), log_eta, log_keep,
                                    table, momentum, 8)  # fmt: skip
    for a, b in zip(in_place, tracked):
        assert (a - b).abs().max() <= 1e-12
    assert torch.equal(table, before[0]) and torch.equal(momentum, before[1])
    assert not torch.equal(in_place.table, table)


def test_a_token_with_zero_theta_writes_nothing():
    keys, queries, values, theta, log_eta, log_keep, table, momentum = random_inputs(12, seed=9)
    silent = theta.clone()
    silent[:, 4] = 0
    out = sparse_memory_chunked(keys, queries, values, silent, log_eta, log_keep, table, momentum, chunk_size=12)
    changed = values.clone()
    changed[:, 4] = 1 - changed[:, 4]  # what token 4 would have written no longer matters
    again = sparse_memory_chunked(keys, queries, changed, silent, log_eta, log_keep, table, momentum, chunk_size=12)
    assert torch.equal(out.table, again.table) and torch.equal(out.y, again.y)


def test_full_strength_write_reads_back_the_value():
    """θ = 1, η = 0, α = 0 on an empty table: a row reads back the last value written to it."""
    keys = torch.tensor([[2, 0, 2]])
    values = F.one_hot(torch.tensor([[1, 3, 0]]), 4).double()
    zeros = torch.zeros(1, 3, dtype=torch.float64)
    table = torch.zeros(1, 4, 4, dtype=torch.float64)
    out = sparse_memory_chunked(keys, torch.tensor([[2, 2, 0]]), values, torch.ones(1, 3, dtype=torch.float64),
                                torch.full_like(zeros, -1e9), zeros, table, table, chunk_size=1)  # fmt: skip
    assert out.y[0].tolist() == [[0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert out.table[0, 2].tolist() == [1, 0, 0, 0]


def wiped(length, seed, chunk, start_rows=0, **kwargs):
    """Inputs whose momentum every chunk end wipes (E_C = 0 exactly), starting from a momentum with
    `start_rows` nonzero rows: what the bundled models' context memories see."""
    keys, queries, values, theta, log_eta, log_keep, table, momentum = random_inputs(length, seed, **kwargs)
    # One token per chunk all but forgets the momentum (exp(−800) is 0 in float64), so E_C = 0, while the
    # tokens before it read S₀ and those after it write the next chunk's momentum.
    g = torch.Generator().manual_seed(seed)
    log_eta = log_eta.clone()
    for start in range(0, length, chunk):
        log_eta[:, start + int(torch.randint(0, min(chunk, length - start), (), generator=g))] = -800.0
    momentum = momentum.clone()
    momentum[:, start_rows:] = 0
    return keys, queries, values, theta, log_eta, log_keep, table, momentum


def compare_with_reference(args, chunk):
    fast = sparse_memory_chunked(*args, chunk_size=chunk)
    slow = sparse_memory_reference(*args, chunk_size=chunk)
    for a, b in zip(fast, slow):
        assert (a - b).abs().max() <= 1e-10


@pytest.mark.parametrize("chunk, start_rows", [(1, 1), (3, 0), (3, 2), (8, 5)])
def test_lazy_tables_stay_sparse_and_match_the_reference_while_the_momentum_is_wiped(chunk, start_rows, monkeypatch):
    def no_dense_pass(self):
        pytest.fail("the lazy tables fell back to dense ones")

    monkeypatch.setattr(LazyTables, "_to_dense", no_dense_pass)
    compare_with_reference(wiped(40, seed=chunk + start_rows, chunk=chunk, start_rows=start_rows), chunk)


def dense_passes(monkeypatch) -> list[int]:
    """Counts the lazy tables' switches to dense ones."""
    calls, switch = [], LazyTables._to_dense

    def counted(self):
        calls.append(1)
        switch(self)

    monkeypatch.setattr(LazyTables, "_to_dense", counted)
    return calls


def test_lazy_tables_turn_dense_at_the_first_chunk_that_keeps_momentum(monkeypatch):
    calls = dense_passes(monkeypatch)
    args = list(wiped(40, seed=3, chunk=8))
    args[4] = args[4].clone()
    args[4][:, 16:24] = -1.0  # chunk 2 keeps some momentum
    compare_with_reference(args, 8)
    assert len(calls) == 1


def test_lazy_tables_start_dense_from_a_momentum_wider_than_a_chunk(monkeypatch):
    calls = dense_passes(monkeypatch)
    args = wiped(24, seed=4, chunk=3, start_rows=5)  # 5 live rows, more than one 3-token chunk writes
    assert momentum_rows(args[7], 3) is None
    compare_with_reference(args, 3)
    assert not calls  # dense from the start: nothing to switch


@pytest.mark.parametrize("log_keep, dense", [(-2.0, 0), (-900.0, 1)])
def test_lazy_tables_under_strong_forgetting(log_keep, dense, monkeypatch):
    """The table's scale p falls below MIN_SCALE, so it is folded back into the table; or β_C is 0: dense."""
    calls = dense_passes(monkeypatch)
    args = list(wiped(64, seed=6, chunk=4))
    args[5] = torch.full_like(args[5], log_keep)  # β per 4-token chunk: e^−8 (p < 2^−20 every 2 chunks), or 0
    compare_with_reference(args, 4)
    assert len(calls) == dense


def test_momentum_rows_hold_the_momentum_exactly():
    momentum = torch.zeros(3, 10, 4, dtype=torch.float64)
    momentum[0, [2, 7]] = torch.randn(2, 4, dtype=torch.float64)
    momentum[2, 9, 1] = 0.5
    rows, values = momentum_rows(momentum, limit=2)
    assert rows.shape == (3, 2)
    rebuilt = torch.zeros_like(momentum)
    for stream in range(3):
        rebuilt[stream].index_add_(0, rows[stream], values[stream])
    assert torch.equal(rebuilt, momentum)
    assert momentum_rows(momentum, limit=1) is None


def test_momentum_rows_of_one_stream_expanded_to_a_batch():
    """A fresh batch shares one stream's momentum (stride 0): it is scanned once, with the same answer."""
    one = torch.zeros(1, 10, 4, dtype=torch.float64)
    one[0, [3, 5]] = torch.randn(2, 4, dtype=torch.float64)
    shared, whole = one.expand(4, -1, -1), one.repeat(4, 1, 1)
    for got, expected in zip(momentum_rows(shared, limit=2), momentum_rows(whole, limit=2)):
        assert torch.equal(got, expected)
    assert momentum_rows(shared, limit=1) is None


def extreme_gates(shape, seed):
    """Gates as trained models have them: some momentum (η up to 0.99) beside none at all (log η = −1000, so E_t
    underflows within a chunk), forgetting from none to strong, θ zero for some tokens."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(shape, generator=g) * (torch.rand(shape, generator=g) > 0.2)
    log_eta = F.logsigmoid(4 * torch.randn(shape, generator=g))
    log_eta[..., ::5] = -1000.0
    log_keep = F.logsigmoid(3 * torch.randn(shape, generator=g) + 4)
    return theta, log_eta, log_keep


@pytest.mark.parametrize("chunk", [1, 7, 8, 64, 256])
def test_c_gate_coefficients_match_the_torch_reference(chunk):
    from titans_cli.kernels.memory_chunked import chunk_coefficients
    from titans_cli.kernels.memory_cpu import chunk_coefficients_native

    gates = extreme_gates((2, 3, chunk), seed=chunk)
    fast = chunk_coefficients_native(*gates)
    exact = chunk_coefficients(*(t.double() for t in gates))
    for a, b in zip(fast, exact):
        assert a.dtype == torch.float32 and a.shape == b.shape
        assert (a.double() - b).abs().max() <= 1e-5 * b.abs().max().clamp_min(1.0)
    assert torch.equal(fast[0].triu(1), torch.zeros_like(fast[0]))  # c_{t,i} = 0 for i > t


def test_gate_coefficients_run_in_c_only_for_float32_cpu_inference(monkeypatch):
    from titans_cli import kernels
    from titans_cli.kernels import gate_coefficients

    calls = []
    native_form = kernels.chunk_coefficients_native
    monkeypatch.setattr(kernels, "chunk_coefficients_native", lambda *a: calls.append(1) or native_form(*a))
    gates = extreme_gates((2, 16), seed=1)
    with torch.no_grad():
        gate_coefficients(*gates)
        assert len(calls) == 1
        gate_coefficients(*(t.double() for t in gates))
        monkeypatch.setenv("TITANS_KERNEL", "torch")
        gate_coefficients(*gates)
    monkeypatch.setenv("TITANS_KERNEL", "auto")
    gate_coefficients(gates[0].requires_grad_(True), *gates[1:])
    assert len(calls) == 1


@pytest.mark.parametrize("chunk", [8, 256])
def test_float32_inference_matches_the_float64_reference(chunk):
    """The path ingest and score take (float32, no autograd: C gate coefficients, lazy tables, sparse reads)."""
    args = random_inputs(600, seed=chunk, rows=40, dtype=torch.float32)
    keys, queries, values, theta, log_eta, log_keep, table, momentum = args
    log_eta = log_eta.clone()
    log_eta[:, ::3] = -1000.0  # E_t underflows inside a chunk, as with the bundled gates
    with torch.no_grad():
        fast = sparse_memory_chunked(keys, queries, values, theta, log_eta, log_keep, table, momentum, chunk)
    slow = sparse_memory_reference(keys, queries, *(t.double() for t in (values, theta, log_eta, log_keep, table,
                                                                           momentum)), chunk_size=chunk)  # fmt: skip
    for a, b in zip(fast, slow):
        assert a.dtype == torch.float32
        assert (a.double() - b).abs().max() <= 1e-4 * b.abs().max()
