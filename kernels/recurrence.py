"""The contract shared by every implementation of the memory recurrence."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class RecurrenceResult(NamedTuple):
    """What one pass of the memory over a span of tokens produces.

    The span starts at a chunk boundary. Tokens after the span's last chunk boundary are read
    (they get outputs and surprise) but their update is not committed: `weights` and `momentum` are
    the state at the last boundary, and the caller keeps the tail pending so the next call can redo
    that chunk with its full set of tokens.

    y:         [B, H, T, d]   retrieval y_t = M_t(q_t)
    weights:   per layer [B, H, d_out, d_in]
    momentum:  per layer [B, H, d_out, d_in]
    surprise:  [B, H, T]      inner loss ℓ_t(M₀) at the chunk-start weights
    """

    y: Tensor
    weights: list[Tensor]
    momentum: list[Tensor]
    surprise: Tensor
