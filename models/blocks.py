"""The four Titans blocks (SPEC 3). Each maps (x, layer state, position) to (x, layer state, surprise);
LMM, MAL and MAG also pass `key_input` (a DNA model's k-mer vectors) on to their memory's queries and keys.

All use pre-norm residuals and a gated MLP; they differ in how the memory meets attention.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from titans_cli.kernels.native import side_by_side
from titans_cli.models.attention import SegmentAttention, SlidingWindowAttention
from titans_cli.models.config import TitansConfig
from titans_cli.models.layers import GatedMLP, RMSNorm
from titans_cli.models.neural_memory import NeuralMemory, unit

LayerState = dict[str, Tensor]


class LMMBlock(nn.Module):
    """Memory alone: x + M(norm x), then the MLP."""

    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.norm_mem, self.norm_mlp = RMSNorm(cfg.d_model, cfg.norm_eps), RMSNorm(cfg.d_model, cfg.norm_eps)
        self.memory = NeuralMemory(cfg)
        self.mlp = GatedMLP(cfg.d_model, cfg.mlp_ratio)

    def init_state(self, batch_size: int) -> LayerState:
        return self.memory.init_state(batch_size)

    def forward(
        self, x: Tensor, state: LayerState, position: int, key_input: Tensor | None = None
    ) -> tuple[Tensor, LayerState, Tensor]:
        m, state, surprise = self.memory(self.norm_mem(x), state, key_input)
        x = x + m
        return x + self.mlp(self.norm_mlp(x)), state, surprise


class MALBlock(LMMBlock):
    """Memory as a layer: the memory first, then sliding-window attention, then the MLP."""

    def __init__(self, cfg: TitansConfig):
        super().__init__(cfg)
        self.norm_attn = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = SlidingWindowAttention(cfg)

    def init_state(self, batch_size: int) -> LayerState:
        return {**self.memory.init_state(batch_size), **self.attn.init_state(batch_size)}

    def forward(
        self, x: Tensor, state: LayerState, position: int, key_input: Tensor | None = None
    ) -> tuple[Tensor, LayerState, Tensor]:
        m, mem_state, surprise = self.memory(self.norm_mem(x), _part(state, "mem."), key_input)
        x = x + m
        a, attn_state = self.attn(self.norm_attn(x), _part(state, "attn."), position)
        x = x + a
        return x + self.mlp(self.norm_mlp(x)), {**mem_state, **attn_state}, surprise


class MAGBlock(nn.Module):
    """Memory as a gate: sliding-window attention and memory in parallel, mixed by a learned gate
    over their normalised outputs."""

    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.norm_in, self.norm_mlp = RMSNorm(cfg.d_model, cfg.norm_eps), RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = SlidingWindowAttention(cfg)
        self.memory = NeuralMemory(cfg)
        self.norm_attn_out = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.norm_mem_out = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mix = nn.Linear(cfg.d_model, cfg.d_model)
        self.mlp = GatedMLP(cfg.d_model, cfg.mlp_ratio)

    def init_state(self, batch_size: int) -> LayerState:
        return {**self.memory.init_state(batch_size), **self.attn.init_state(batch_size)}

    def forward(
        self, x: Tensor, state: LayerState, position: int, key_input: Tensor | None = None
    ) -> tuple[Tensor, LayerState, Tensor]:
        h = self.norm_in(x)

        def attend():
            return self.attn(h, _part(state, "attn."), position)

        def remember():
            return self.memory(h, _part(state, "mem."), key_input)

        if not torch.is_grad_enabled() and torch.get_num_threads() > 1 and self.memory.steps_on_one_core(x.shape[0]):
            # The two branches are independent: the memory's C steps keep one core busy, the attention takes
            # the other meanwhile (BENCHMARKS.md, "MAG's branches side by side").
            (m, mem_state, surprise), (a, attn_state) = side_by_side(remember, attend)
        else:
            (a, attn_state), (m, mem_state, surprise) = attend(), remember()
        g = torch.sigmoid(self.mix(h))
        x = x + g * self.norm_attn_out(a) + (1 - g) * self.norm_mem_out(m)
        return x + self.mlp(self.norm_mlp(x)), {**mem_state, **attn_state}, surprise


class MACBlock(nn.Module):
    """Memory as context, one segment of S tokens at a time:

    h = M_{s−1}(q(segment)) with the weights at the end of the previous segment; attention over
    [persistent ‖ h ‖ segment] gives y; the memory learns from y (or, with mac_memory_input "segment",
    from the normalised segment tokens) and gates y with its read of that input: y ⊙ σ(M_t(·)).
    """

    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.segment_len, self.n_heads, self.head_dim = cfg.segment_len, cfg.n_heads, cfg.head_dim
        self.norm_attn, self.norm_mlp = RMSNorm(cfg.d_model, cfg.norm_eps), RMSNorm(cfg.d_model, cfg.norm_eps)
        self.read_query = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.attn = SegmentAttention(cfg)
        self.memory = NeuralMemory(cfg)
        self.memory_reads_attention = cfg.mac_memory_input == "attention"
        self.mlp = GatedMLP(cfg.d_model, cfg.mlp_ratio)

    def init_state(self, batch_size: int) -> LayerState:
        state = {**self.memory.init_state(batch_size), **self.attn.init_state(batch_size)}
        state.update({f"seg.w{i}": w for i, w in enumerate(self.memory.weights(state))})
        return state

    def forward(self, x: Tensor, state: LayerState, position: int) -> tuple[Tensor, LayerState, Tensor]:
        outs, surprises = [], []
        start = 0
        while start < x.shape[1]:
            pos = position + start
            n = min(self.segment_len - pos % self.segment_len, x.shape[1] - start)
            out, state, surprise = self._segment_piece(x[:, start : start + n], state, pos)
            outs.append(out)
            surprises.append(surprise)
            start += n
        return torch.cat(outs, dim=1), state, torch.cat(surprises, dim=1)

    def _segment_piece(
        self, x: Tensor, state: LayerState, position: int
    ) -> tuple[Tensor, LayerState, Tensor]:
        """Tokens x [B, n, D] at `position`…, all inside one segment."""
        depth = len(self.memory.initial)
        segment_weights = [state[f"seg.w{i}"] for i in range(depth)]
        xn = self.norm_attn(x)
        batch, n, _ = x.shape
        q = self.read_query(xn).view(batch, n, self.n_heads, self.head_dim).transpose(1, 2)
        h = self.memory.read(unit(q), segment_weights, xn)
        segment_start = position - position % self.segment_len
        y, attn_state = self.attn(xn, h, _part(state, "attn."), position, segment_start)
        m, mem_state, surprise = self.memory(y if self.memory_reads_attention else xn, _part(state, "mem."))
        x = x + y * torch.sigmoid(m)
        x = x + self.mlp(self.norm_mlp(x))

        if (position + n) % self.segment_len == 0:
            # Segment complete: the next one reads the memory as it is now and starts a fresh cache.
            attn_state = self.attn.init_state(batch)
            segment_weights = self.memory.weights(mem_state)
        new_state = {**mem_state, **attn_state}
        new_state.update({f"seg.w{i}": w for i, w in enumerate(segment_weights)})
        return x, new_state, surprise


def _part(state: LayerState, prefix: str) -> LayerState:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


BLOCKS: dict[str, type[nn.Module]] = {"lmm": LMMBlock, "mal": MALBlock, "mag": MAGBlock, "mac": MACBlock}
