"""The one-hot-key memory's closed form against the token-loop autograd reference on dense one-hot keys."""

import pytest
import torch
from torch.nn import functional as F

from titans_cli.kernels.sparse_memory import sparse_memory_chunked, sparse_memory_reference


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
