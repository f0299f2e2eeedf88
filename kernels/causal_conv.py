"""SiLU of the memory's causal depthwise conv (SPEC 2: q, k and v are SiLU of a short causal conv of
their projections), token-major: a torch reference, differentiable, and its C fast path for inference.

Both take x [B, T + K − 1, C], the K − 1 tokens before the window and then its T, and the weight [C, 1, K]
of `nn.Conv1d(C, C, K, groups=C)`, and return [B, T, C], never transposing to the [B, C, T] that
conv1d wants: on CPU conv1d on the transposed view was slow itself and left its output strided by T,
which slowed every op after it (bench/causal_conv.py, BENCHMARKS.md).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from titans_cli.kernels.native import native, run_parts


def causal_depthwise_conv(x: Tensor, weight: Tensor) -> Tensor:
    """The conv alone, as K shifted multiply-adds over whole rows, summed in float32 at least, as the
    conv's own sums are (a bf16 x is rounded once, at the end)."""
    taps, length = weight.shape[-1], x.shape[1] - weight.shape[-1] + 1
    tap_weights = weight[:, 0, :].t().to(torch.promote_types(x.dtype, torch.float32))  # [K, C]
    out = x[:, :length] * tap_weights[0]
    for j in range(1, taps):
        out = out.addcmul_(x[:, j : j + length], tap_weights[j])
    return out.to(x.dtype)


def causal_conv_silu_reference(x: Tensor, weight: Tensor) -> Tensor:
    return F.silu(causal_depthwise_conv(x, weight), inplace=True)


def native_supports(x: Tensor, weight: Tensor) -> bool:
    """Whether `causal_conv_silu_native` runs these: float32 on a CPU with the C extension, no gradient."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return native is not None and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and not needs_grad


# Rows per thread below which a call stays on one thread (a part's fixed cost is some µs).
_ROWS_PER_THREAD = 1024


def causal_conv_silu_native(x: Tensor, weight: Tensor) -> Tensor:
    """One pass in C (causal_conv_native.c) over the rows, where the reference makes K over all of x; the
    rows are shared among torch's thread count, which also shares out the page faults of a fresh output
    (about half the time of a 16k-token call on one thread)."""
    batch, rows, channels = x.shape
    taps = weight.shape[-1]
    x = x.contiguous()
    tap_weights = weight[:, 0, :].t().contiguous()
    out = x.new_empty(batch, rows - taps + 1, channels)
    length = out.shape[1]
    parts = max(1, min(torch.get_num_threads(), batch * length // _ROWS_PER_THREAD))

    def part(i: int) -> None:
        native.conv_silu(x.data_ptr(), tap_weights.data_ptr(), out.data_ptr(), batch, length, channels, taps, i, parts)

    run_parts(part, parts)
    return out
