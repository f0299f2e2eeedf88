"""Attention for the Titans variants: sliding-window (MAG, MAL) and segment attention (MAC).

Both prepend the learned persistent tokens to every context (SPEC 3) and keep, in the stream state,
exactly the keys and values later positions can still see, so a stream can be split anywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from titans_cli.models.config import TitansConfig
from titans_cli.models.layers import rotate


def attend(q: Tensor, k: Tensor, v: Tensor, q_pos: Tensor, k_pos: Tensor, window: int | None,
           persistent_k: Tensor, persistent_v: Tensor) -> Tensor:  # fmt: skip
    """Softmax attention of q over [persistent ‖ k]; key j is visible to query i when
    k_pos[j] ≤ q_pos[i] (and k_pos[j] > q_pos[i] − window for a window). Persistent keys are always visible.
    """
    visible = k_pos[None, :] <= q_pos[:, None]
    if window is not None:
        visible &= k_pos[None, :] > q_pos[:, None] - window
    n_p = persistent_k.shape[2]
    mask = torch.cat([visible.new_ones(len(q_pos), n_p), visible], dim=1)
    batch = q.shape[0]
    keys = torch.cat([persistent_k.expand(batch, -1, -1, -1), k], dim=2)
    values = torch.cat([persistent_v.expand(batch, -1, -1, -1), v], dim=2)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


class _Attention(nn.Module):
    """Projections, rotary embedding and persistent tokens shared by both attention forms."""

    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.n_heads, self.head_dim, self.rope_base = cfg.n_heads, cfg.head_dim, cfg.rope_base
        self.q = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.persistent = nn.Parameter(torch.randn(cfg.n_persistent, cfg.d_model) * 0.02)
        # Added to the rotary positions while a CUDA graph is captured (`GraphedStream`): a replay writes it,
        # moving the captured positions to the replayed ones. None in eager use.
        self.position_offset: Tensor | None = None

    def heads(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: Tensor, positions: Tensor | None) -> tuple[Tensor, Tensor]:
        k, v = (self.heads(t) for t in self.kv(x).chunk(2, dim=-1))
        return (k if positions is None else self._rotate(k, positions)), v

    def query(self, x: Tensor, positions: Tensor) -> Tensor:
        return self._rotate(self.heads(self.q(x)), positions)

    def _rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        if self.position_offset is not None:
            positions = positions + self.position_offset
        return rotate(x, positions, self.rope_base)

    def persistent_kv(self) -> tuple[Tensor, Tensor]:
        return self.keys_values(self.persistent[None], None)  # no position: visible from everywhere

    def merge(self, out: Tensor) -> Tensor:
        return self.out(out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1))

    def empty_cache(self, batch_size: int) -> Tensor:
        w = self.q.weight
        return torch.zeros(batch_size, self.n_heads, 0, self.head_dim, dtype=w.dtype, device=w.device)


class SlidingWindowAttention(_Attention):
    """Causal attention over the last `window` tokens (the current one included), MAG and MAL."""

    def __init__(self, cfg: TitansConfig):
        super().__init__(cfg)
        self.window = cfg.window

    def init_state(self, batch_size: int) -> dict[str, Tensor]:
        return {f"attn.{n}": self.empty_cache(batch_size) for n in ("k", "v")}

    def forward(self, x: Tensor, state: dict[str, Tensor], position: int) -> tuple[Tensor, dict[str, Tensor]]:
        length, cached = x.shape[1], state["attn.k"].shape[2]
        positions = torch.arange(position, position + length, device=x.device)
        q = self.query(x, positions)
        k, v = self.keys_values(x, positions)
        k, v = torch.cat([state["attn.k"], k], dim=2), torch.cat([state["attn.v"], v], dim=2)
        k_pos = torch.arange(position - cached, position + length, device=x.device)
        pk, pv = self.persistent_kv()
        # Query blocks of one window each see at most 2·window keys: memory stays linear in length.
        outs = []
        for start in range(0, length, self.window):
            end = min(start + self.window, length)
            lo = max(0, cached + start - (self.window - 1))
            hi = cached + end
            outs.append(attend(q[:, :, start:end], k[:, :, lo:hi], v[:, :, lo:hi], positions[start:end],
                               k_pos[lo:hi], self.window, pk, pv))  # fmt: skip
        keep = min(self.window - 1, k.shape[2])
        new_state = {"attn.k": k[:, :, k.shape[2] - keep :], "attn.v": v[:, :, v.shape[2] - keep :]}
        return self.merge(torch.cat(outs, dim=2)), new_state


class SegmentAttention(_Attention):
    """MAC's attention over [persistent ‖ h ‖ segment], causal in both h and the segment.

    h_t (the memory's read of token t) is visible to positions ≥ t only: h_t depends on x_t, and
    causality is absolute (SPEC 2). The cache holds the current segment's keys and values.
    """

    def init_state(self, batch_size: int) -> dict[str, Tensor]:
        return {f"attn.{n}": self.empty_cache(batch_size) for n in ("kh", "vh", "kx", "vx")}

    def forward(self, x: Tensor, h: Tensor, state: dict[str, Tensor], position: int,
                segment_start: int) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        """x, h [B, n, D] lie inside one segment, from absolute `position` on."""
        length = x.shape[1]
        positions = torch.arange(position, position + length, device=x.device)
        q = self.query(x, positions)
        kh, vh = self.keys_values(h, positions)
        kx, vx = self.keys_values(x, positions)
        new_state = {
            "attn.kh": torch.cat([state["attn.kh"], kh], dim=2),
            "attn.vh": torch.cat([state["attn.vh"], vh], dim=2),
            "attn.kx": torch.cat([state["attn.kx"], kx], dim=2),
            "attn.vx": torch.cat([state["attn.vx"], vx], dim=2),
        }
        seen = torch.arange(segment_start, position + length, device=x.device)
        k = torch.cat([new_state["attn.kh"], new_state["attn.kx"]], dim=2)
        v = torch.cat([new_state["attn.vh"], new_state["attn.vx"]], dim=2)
        pk, pv = self.persistent_kv()
        out = attend(q, k, v, positions, torch.cat([seen, seen]), None, pk, pv)
        return self.merge(out), new_state
