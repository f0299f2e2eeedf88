"""The chunked dual form against the token-loop autograd reference (SPEC 2, 2b)."""

import pytest
import torch
from torch.nn import functional as F

from titans_cli.kernels import memory_recurrence_chunked, memory_recurrence_reference
from titans_cli.kernels.memory_chunked import chunk_coefficients
from titans_cli.kernels.memory_mlp import layer_shapes


def random_inputs(depth, length, seed, batch=2, heads=3, width=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    q = F.normalize(rand(batch, heads, length, width), dim=-1)
    k = F.normalize(rand(batch, heads, length, width), dim=-1)
    v = rand(batch, heads, length, width)
    theta = 0.3 * torch.rand(batch, heads, length, generator=g, dtype=dtype)
    log_eta = F.logsigmoid(rand(batch, heads, length) + 1)
    log_keep = F.logsigmoid(rand(batch, heads, length) + 3)
    weights = [rand(batch, heads, o, i) / i**0.5 for o, i in layer_shapes(width, depth, 2)]
    momentum = [0.05 * rand(*w.shape) for w in weights]
    return q, k, v, theta, log_eta, log_keep, weights, momentum


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 4, 7, 16])
@pytest.mark.parametrize("length", [1, 13, 40])
def test_chunked_matches_token_loop_reference(depth, chunk, length):
    args = random_inputs(depth, length, seed=depth * 100 + chunk * 10 + length)
    fast = memory_recurrence_chunked(*args, chunk_size=chunk)
    slow = memory_recurrence_reference(*args, chunk_size=chunk)
    assert fast.y.shape == slow.y.shape == args[0].shape
    assert (fast.y - slow.y).abs().max() <= 1e-8
    assert (fast.surprise - slow.surprise).abs().max() <= 1e-8
    for a, b in zip(fast.weights + fast.momentum, slow.weights + slow.momentum):
        assert (a - b).abs().max() <= 1e-8


def test_chunk_size_one_is_the_sequential_rule():
    """With C = 1 every token's gradient is taken at the weights just before it."""
    args = random_inputs(1, 9, seed=7)
    _, k, v, theta, log_eta, log_keep, (w,), (s,) = args
    out = memory_recurrence_chunked(*args, chunk_size=1)
    for t in range(9):
        err = torch.einsum("bhoi,bhi->bho", w, k[:, :, t]) - v[:, :, t]
        u = err[..., :, None] * k[:, :, t, None, :]
        s = log_eta[:, :, t, None, None].exp() * s - theta[:, :, t, None, None] * u
        w = log_keep[:, :, t, None, None].exp() * w + s
    assert (out.weights[0] - w).abs().max() <= 1e-10
    assert (out.momentum[0] - s).abs().max() <= 1e-10


def test_partial_last_chunk_is_read_but_not_committed():
    q, k, v, theta, log_eta, log_keep, w, s = random_inputs(2, 20, seed=3)
    full = memory_recurrence_chunked(q, k, v, theta, log_eta, log_keep, w, s, chunk_size=8)
    first16 = [t[:, :, :16] for t in (q, k, v, theta, log_eta, log_keep)]
    head = memory_recurrence_chunked(*first16, w, s, chunk_size=8)
    for a, b in zip(full.weights, head.weights):
        assert torch.equal(a, b)
    assert not torch.allclose(full.y[:, :, 16:], torch.zeros_like(full.y[:, :, 16:]))


def test_gate_coefficients_are_bounded_and_lower_triangular():
    g = torch.Generator().manual_seed(0)
    n = 64
    theta = torch.rand(3, n, generator=g, dtype=torch.float64)
    log_eta = F.logsigmoid(torch.randn(3, n, generator=g, dtype=torch.float64) * 8)
    log_keep = F.logsigmoid(torch.randn(3, n, generator=g, dtype=torch.float64) * 8)
    c, beta, b, m = chunk_coefficients(theta, log_eta, log_keep)
    assert torch.isfinite(c).all() and torch.isfinite(b).all()
    assert torch.equal(c.triu(1), torch.zeros_like(c))
    assert (beta <= 1).all() and (beta >= 0).all()
    # c_{t,t} = θ_t: a token's own gradient enters its own weights with exactly its learning rate
    assert torch.allclose(c.diagonal(dim1=-2, dim2=-1), theta)
    assert torch.allclose(m[..., -1], theta[..., -1])


def test_chunked_form_is_differentiable():
    args = [a.requires_grad_(True) if isinstance(a, torch.Tensor) else [w.requires_grad_(True) for w in a]
            for a in random_inputs(2, 12, seed=5)]  # fmt: skip
    out = memory_recurrence_chunked(*args, chunk_size=4)
    loss = out.y.pow(2).sum() + sum(w.pow(2).sum() for w in out.weights)
    loss.backward()
    for a in args[:6]:
        assert a.grad is not None and torch.isfinite(a.grad).all()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in args[6] + args[7])


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 4, 16])
def test_clipped_chunked_matches_clipped_token_loop(depth, chunk):
    """Per-token inner-gradient clipping: the dual form scales δ_i, the reference scales autograd's u_i."""
    args = random_inputs(depth, 40, seed=depth * 10 + chunk)
    fast = memory_recurrence_chunked(*args, chunk_size=chunk, grad_clip=0.5)
    slow = memory_recurrence_reference(*args, chunk_size=chunk, grad_clip=0.5)
    unclipped = memory_recurrence_chunked(*args, chunk_size=chunk)
    assert (fast.y - unclipped.y).abs().max() > 1e-3  # the clip is active on these inputs
    assert (fast.y - slow.y).abs().max() <= 1e-8
    assert (fast.surprise - slow.surprise).abs().max() <= 1e-8
    for a, b in zip(fast.weights + fast.momentum, slow.weights + slow.momentum):
        assert (a - b).abs().max() <= 1e-8


def test_clipping_bounds_every_step():
    """With no momentum and no forgetting, a token moves the weights by θ_t·u_t with ‖u_t‖ ≤ τ."""
    q, k, v, theta, _, _, w, s = random_inputs(2, 12, seed=5)
    v = 100 * v  # huge errors: unclipped steps would be ~100× larger
    log_eta = torch.full_like(theta, -80.0)  # η ≈ 0
    log_keep = torch.zeros_like(theta)  # α = 0
    s = [torch.zeros_like(t) for t in s]
    before = w
    for t in range(12):
        span = [x[:, :, t : t + 1] for x in (q, k, v, theta, log_eta, log_keep)]
        after = memory_recurrence_chunked(*span, before, s, chunk_size=1, grad_clip=0.25).weights
        step = sum((a - b).pow(2).sum((-1, -2)) for a, b in zip(after, before)).sqrt()
        assert (step <= theta[:, :, t] * 0.25 + 1e-12).all()
        assert (step >= theta[:, :, t] * 0.25 * (1 - 1e-9)).all()  # and these errors do reach the clip
        before = after


def test_clipped_form_is_differentiable():
    q, k, v, theta, log_eta, log_keep, w, s = random_inputs(2, 10, seed=9, batch=1, heads=1, width=3)
    leaves = [t.clone().requires_grad_(True) for t in (v, theta, w[0])]

    def run(v, theta, w0):
        out = memory_recurrence_chunked(q, k, v, theta, log_eta, log_keep, [w0, w[1]], s, 4, grad_clip=0.3)
        return out.y.sum() + out.weights[0].sum()

    assert torch.autograd.gradcheck(run, leaves)
