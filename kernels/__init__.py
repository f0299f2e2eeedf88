"""Implementations of the memory recurrence: a token-loop reference, the chunked torch form, kernels.

Each fast form sits beside the reference it is tested against:

    memory_reference.py   token loop with autograd: the ground truth
    memory_chunked.py     closed-form chunks in torch: differentiable, used for training
    memory_cpu.py         the same math fused for CPU throughput (inference)
    memory_cpu_native.c   memory_cpu.py's chunk steps in C, beside their torch version there
    memory_triton.py      one Triton program per stream and head (inference on CUDA)

and the memory's conv and SiLU before the recurrence:

    causal_conv.py        the torch taps form (differentiable) and its C fast path, causal_conv_native.c

`memory_recurrence` and `causal_conv_silu` pick one per call; `TITANS_KERNEL=torch|cpu|triton` forces a
choice (torch: the plain torch forms throughout).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from titans_cli.kernels.causal_conv import causal_conv_silu_native, causal_conv_silu_reference, native_supports
from titans_cli.kernels.memory_chunked import chunk_coefficients, memory_recurrence_chunked
from titans_cli.kernels.memory_cpu import (
    c_steps_run,
    chunk_coefficients_native,
    fits_one_thread,
    memory_recurrence_cpu,
)
from titans_cli.kernels.memory_mlp import mlp_forward
from titans_cli.kernels.memory_reference import memory_recurrence_reference
from titans_cli.kernels.recurrence import RecurrenceResult

KERNEL_CHOICES = ("auto", "torch", "cpu", "triton")


def kernel_choice() -> str:
    choice = os.environ.get("TITANS_KERNEL", "auto").lower()
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"TITANS_KERNEL={choice!r}: use one of {', '.join(KERNEL_CHOICES)}")
    return choice


def memory_recurrence(
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
    """The memory recurrence over a span (see `RecurrenceResult`), by the fastest fitting implementation.

    Whenever a gradient is needed the differentiable chunked form runs (the fast forms have no
    backward). Otherwise: Triton on CUDA where the shape is supported, the fused path on CPU.
    """
    args = (q, k, v, theta, log_eta, log_keep, weights, momentum, chunk_size, grad_clip)
    choice = kernel_choice()
    tensors = (q, k, v, theta, log_eta, log_keep, *weights, *momentum)
    # A fresh state's weights are views of parameters, so they count here even under no_grad views.
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if choice == "torch" or needs_grad:
        return memory_recurrence_chunked(*args)
    if q.is_cuda:
        if choice == "cpu":
            raise ValueError("TITANS_KERNEL=cpu cannot run on a CUDA device")
        from titans_cli.kernels import memory_triton  # imports triton: only where it can run

        hidden = weights[0].shape[-2] if len(weights) > 1 else None
        # TITANS_KERNEL=triton also runs shapes that have not yet run on a GPU (UNVERIFIED_CHUNK_SIZES).
        verified = choice != "triton"
        if memory_triton.triton_supported(q.shape[-1], len(weights), chunk_size, q.device, hidden, verified):
            try:
                return memory_triton.memory_recurrence_triton(*args)
            except memory_triton.TritonUnsupported:
                if choice == "triton":
                    raise
        elif choice == "triton":
            raise ValueError(f"TITANS_KERNEL=triton: no Triton kernel for head width {q.shape[-1]}, "
                             f"depth {len(weights)}, chunk {chunk_size}")  # fmt: skip
        return memory_recurrence_chunked(*args)
    if choice == "triton":
        raise ValueError("TITANS_KERNEL=triton needs a CUDA device")
    return memory_recurrence_cpu(*args)


def recurrence_fits_one_core(matrices: int, chunk: int, width: int, hidden: int, depth: int, dtype: torch.dtype,
                             device: torch.device) -> bool:  # fmt: skip
    """Whether `memory_recurrence`, for inference, would step these matrices (streams × heads, of head width
    `width` and first hidden layer `hidden`) in the fused CPU path's C steps on one core, as fast there as
    on two (`fits_one_thread`): a caller with other work (MAG's attention) can give it the other core."""
    return (kernel_choice() in ("auto", "cpu") and device.type == "cpu" and c_steps_run(dtype, depth)
            and fits_one_thread(matrices, matrices * chunk * width * hidden))  # fmt: skip


def memory_read(weights: list[Tensor], queries: Tensor) -> Tensor:
    """M(q) with fixed weights (MAC's segment read), by the same choice as `memory_recurrence`:
    the Triton read kernel on CUDA without gradients where it supports the shape, else plain torch."""
    choice = kernel_choice()
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (queries, *weights))
    if queries.is_cuda and choice in ("auto", "triton") and not needs_grad:
        from titans_cli.kernels import memory_triton

        try:
            return memory_triton.mlp_read_triton(weights, queries).to(queries.dtype)
        except memory_triton.TritonUnsupported:
            if choice == "triton":
                raise
    return mlp_forward(weights, queries)


def gate_coefficients(theta: Tensor, log_eta: Tensor, log_keep: Tensor) -> tuple[Tensor, ...]:
    """`chunk_coefficients` (SPEC 2b) of gates [..., n]: in C for CPU inference in float32, unless
    TITANS_KERNEL=torch; else the torch reference (differentiable)."""
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (theta, log_eta, log_keep))
    fits = theta.device.type == "cpu" and c_steps_run(theta.dtype, 1) and theta.shape[-1] > 0
    if kernel_choice() != "torch" and fits and not needs_grad:
        return chunk_coefficients_native(theta, log_eta, log_keep)
    return chunk_coefficients(theta, log_eta, log_keep)


def causal_conv_silu(x: Tensor, weight: Tensor) -> Tensor:
    """SiLU of the memory's causal depthwise conv (kernels/causal_conv.py): in C for CPU inference in
    float32, unless TITANS_KERNEL=torch; else the torch taps form."""
    if kernel_choice() != "torch" and native_supports(x, weight):
        return causal_conv_silu_native(x, weight)
    return causal_conv_silu_reference(x, weight)


__all__ = [
    "RecurrenceResult",
    "causal_conv_silu",
    "gate_coefficients",
    "kernel_choice",
    "memory_read",
    "memory_recurrence",
    "memory_recurrence_chunked",
    "memory_recurrence_cpu",
    "memory_recurrence_reference",
    "mlp_forward",
    "recurrence_fits_one_core",
]
