"""The memory MLP M (SPEC 2): per-head weights, applied to a batch of vectors.

Weights are a list, one tensor per layer, of shape [B, H, d_out, d_in] (one memory per stream and
head). Layer l computes z^l = W^l a^{l-1} and a^l = σ(z^l); the last layer has no activation, so depth
1 is a linear associative memory.
"""

from __future__ import annotations

import torch
from torch import Tensor


def activation(z: Tensor) -> Tensor:
    """σ, the hidden activation: SiLU (smooth, so the inner gradient is well defined everywhere)."""
    return torch.nn.functional.silu(z)


def activation_grad(z: Tensor) -> Tensor:
    """σ'(z) for SiLU: s·(1 + z·(1 − s)) with s = sigmoid(z)."""
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def mlp_forward(weights: list[Tensor], x: Tensor) -> Tensor:
    """M(x) for x of shape [B, H, T, d_in] → [B, H, T, d_out]."""
    a = x
    for layer, w in enumerate(weights):
        a = a @ w.transpose(-1, -2)
        if layer < len(weights) - 1:
            a = activation(a)
    return a


def layer_shapes(head_dim: int, depth: int, expansion: int) -> list[tuple[int, int]]:
    """(d_out, d_in) of each layer: d → e·d → … → e·d → d, or d → d for depth 1."""
    if depth < 1:
        raise ValueError(f"memory depth must be ≥ 1, got {depth}")
    widths = [head_dim] + [expansion * head_dim] * (depth - 1) + [head_dim]
    return [(widths[i + 1], widths[i]) for i in range(depth)]


def clip_scale(norm_sq: Tensor, max_norm: float) -> Tensor:
    """min(1, τ/‖u‖) from ‖u‖²: the factor that clips a token's inner gradient u to norm τ.

    Clamping ‖u‖² before the square root keeps the factor differentiable where u = 0.
    """
    return max_norm * norm_sq.clamp_min(max_norm * max_norm).rsqrt()
