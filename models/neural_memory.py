"""`NeuralMemory`: the Titans long-term memory layer (SPEC 2), streaming over absolute chunks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from titans_cli.kernels import causal_conv_silu, memory_read, memory_recurrence, recurrence_fits_one_core
from titans_cli.kernels.memory_mlp import layer_shapes
from titans_cli.models.config import TitansConfig
from titans_cli.models.layers import RMSNorm

# Under the induction init a fresh stream's first key reads only the zero conv tail, so it is exactly zero;
# F.normalize's default floor (1e-12) then multiplies its gradient by 1e12, and one such position made a
# whole batch's outer gradient norm 1e7–1e13. Real keys and queries have norms near 1, far above this floor.
NORM_FLOOR = 1e-3


def unit(x: Tensor) -> Tensor:
    """x / ‖x‖ over the last dimension (SPEC 2's ℓ2-normalised queries and keys), x / NORM_FLOOR below it."""
    return F.normalize(x, dim=-1, eps=NORM_FLOOR)


class NeuralMemory(nn.Module):
    """Projections and gates around the memory recurrence, plus the normalised, gated read-out.

    The memory weights live in the stream state (float32, or float64 for a float64 model), one copy
    per stream and head; the module's own parameters are the outer, trained ones, including the
    weights every stream's memory starts from.
    """

    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.chunk_size, self.theta_max, self.grad_clip = cfg.chunk_size, cfg.theta_max, cfg.memory_grad_clip
        self.max_chunk_step = cfg.max_chunk_step
        self.learning = True  # False freezes the memory (θ = 0, α = 0): the no-memory ablation
        inner = cfg.n_heads * cfg.head_dim
        # `tied_query`: one projection and conv make q_t, and k_t is q_{t−1}; otherwise q, k, v are separate.
        self.tied_query = cfg.tied_query
        self.streams = streams = 2 if cfg.tied_query else 3
        self.qkv = nn.Linear(cfg.d_model, streams * inner, bias=False)
        self.conv = nn.Conv1d(streams * inner, streams * inner, cfg.conv_kernel, groups=streams * inner, bias=False)
        # θ_t, η_t, α_t logits per head. All gradients of a chunk share the chunk-start weights, so
        # for aligned keys one chunk moves the memory by about C·θ/(1 − η) times its error, and more
        # than 2 diverges. Starting at C·θ/(1 − η) = 1.75 (any chunk size; less where θ_max is too low
        # for that) learns fast yet stays stable, with momentum η = 0.75 and almost no forgetting.
        # Training moves the gates from there.
        self.gates = nn.Linear(cfg.d_model, 3 * cfg.n_heads)
        eta0 = 0.75
        theta0 = 1.75 * (1 - eta0) / cfg.chunk_size
        # sigmoid(θ bias): θ₀ over θ's ceiling at η₀ (float64, so θ_max stays exact). Under a cap s ≥ 2 the
        # gate starts at 1.75/s of its top; a lower cap starts it at 0.875·s.
        ceiling0 = self.theta_ceiling(torch.tensor(math.log(eta0), dtype=torch.float64)).item()
        fraction = min(0.875 if cfg.max_chunk_step else 0.5, theta0 / ceiling0)
        with torch.no_grad():
            bias = self.gates.bias.view(3, cfg.n_heads)
            bias[0].fill_(math.log(fraction / (1 - fraction)))
            bias[1].fill_(math.log(eta0 / (1 - eta0)))
            bias[2].fill_(-6.0)
        self.initial = nn.ParameterList(
            nn.Parameter(torch.randn(cfg.n_heads, d_out, d_in) / math.sqrt(d_in))
            for d_out, d_in in layer_shapes(cfg.head_dim, cfg.memory_depth, cfg.memory_expansion)
        )
        self.out_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
        self.out_gate = nn.Linear(cfg.d_model, inner, bias=False)
        self.gate_activation = torch.sigmoid if cfg.memory_gate == "sigmoid" else F.silu
        self.out_proj = nn.Linear(inner, cfg.d_model, bias=False)

    @torch.no_grad()
    def init_induction(self, span: int = 1, read_query: nn.Linear | None = None) -> None:
        """`memory_init = "induction"`: v_t reads token t; k_t reads tokens t − span … t − 1 and q_t the same
        span one token later, t − span + 1 … t, with W_Q = W_K (under `tied_query` they stay so).

        Writing then stores each token's value under the span before it, and the query at token t matches
        the key of the token that followed the same span before: at step 0 the memory already retrieves a
        copy's next token. A span of one is a bigram key. Over n tokens each channel weighs each lag by a
        random sign (the most recent lag by +1), scaled by n^-½: contexts that agree on m of the n tokens
        give keys that agree in about m/n of their pre-activation, so only a full match reads back at full
        strength. θ_t starts at its ceiling and η_t near 0, so each association is written at full
        strength (a weak write is lost among a segment's others). W_K starts at std d_model^-½, not 0.02:
        in exploratory runs AdamW, which moves a weight by about the learning rate per step, erased a
        0.02-scale alignment within tens of steps (not measured by a committed script). MAC passes its
        read query, which starts as W_K too: no conv and no SiLU, so its read only approximates the
        shifted key (mean cosine 0.85 at the text-tiny widths, span 1).
        """
        inner, taps, streams = self.n_heads * self.head_dim, self.conv.kernel_size[0], self.streams
        # qkv's rows: [W_Q, W_K, W_V], or [W_K, W_V] under the tie (W_K makes the query too)
        w_k = self.qkv.weight.view(streams, inner, -1)[0 if self.tied_query else 1]
        w_k.normal_(std=self.qkv.in_features**-0.5)
        if not self.tied_query:
            self.qkv.weight.view(3, inner, -1)[0].copy_(w_k)
        if read_query is not None:
            read_query.weight.copy_(w_k)
        # Tap taps − 1 weighs the current token, tap taps − 1 − j the token j back.
        older = torch.randint(0, 2, (inner, span - 1), device=w_k.device).to(w_k.dtype) * 2 - 1
        # [channel, j]: the key's weight on the token j + 1 back, the query's on the token j back
        lags = torch.cat([torch.ones_like(w_k[:, :1]), older], dim=1) * span**-0.5
        tap_weights = self.conv.weight.view(streams, inner, taps)
        tap_weights.zero_()
        tap_weights[0, :, taps - span :] = lags.flip(-1)  # q_t: tokens t − span + 1 … t
        if not self.tied_query:
            tap_weights[1, :, taps - 1 - span : taps - 1] = lags.flip(-1)  # k_t: tokens t − span … t − 1
        tap_weights[-1, :, taps - 1] = 1.0
        bias = self.gates.bias.view(3, self.n_heads)
        bias[0].fill_(6.0)  # θ_t ≈ its ceiling
        bias[1].fill_(-6.0)  # η_t ≈ 0.0025

    @staticmethod
    def tie_query(qkv_weight: Tensor, conv_weight: Tensor) -> tuple[Tensor, Tensor]:
        """A memory's (qkv, conv) weights with separate W_Q and W_K, as `tied_query` weights: W_Q is dropped, and
        the key's taps, one token later, become the shared query taps, so q_t is the old k_{t+1} and k_t the
        old k_t, both less the key's weight on its own token, which a tied key cannot have. The old W_Q and
        query taps are dropped, so a trained model's reads change. Fine-tuning an untied model into a tied
        one (`init_from`) starts from these."""
        inner = qkv_weight.shape[0] // 3
        key_taps = conv_weight[inner : 2 * inner]
        query_taps = torch.zeros_like(key_taps)
        query_taps[..., 1:] = key_taps[..., :-1]
        return qkv_weight[inner:].clone(), torch.cat([query_taps, conv_weight[2 * inner :]])

    @property
    def state_dtype(self) -> torch.dtype:
        return torch.float64 if self.initial[0].dtype == torch.float64 else torch.float32

    def init_state(self, batch_size: int) -> dict[str, Tensor]:
        dtype, device = self.state_dtype, self.initial[0].device
        state: dict[str, Tensor] = {}
        for i, w in enumerate(self.initial):
            state[f"mem.w{i}"] = w.to(dtype).unsqueeze(0).expand(batch_size, *w.shape)
            state[f"mem.s{i}"] = torch.zeros(batch_size, *w.shape, dtype=dtype, device=device)
        channels = self.conv.in_channels
        # A tied query keeps one more token: k of a call's first token is q of the token before it.
        tail = self.conv.kernel_size[0] - 1 + self.tied_query
        state["mem.conv"] = torch.zeros(batch_size, tail, channels, dtype=self.qkv.weight.dtype, device=device)
        heads, width = (batch_size, self.n_heads), self.head_dim
        for name in ("q", "k", "v"):
            state[f"mem.pend_{name}"] = torch.zeros(*heads, 0, width, dtype=dtype, device=device)
        for name in ("theta", "log_eta", "log_keep"):
            state[f"mem.pend_{name}"] = torch.zeros(*heads, 0, dtype=dtype, device=device)
        return state

    def steps_on_one_core(self, batch_size: int) -> bool:
        """Whether inference over this many streams steps the recurrence on one core (`recurrence_fits_one_core`)."""
        first = self.initial[0]
        return recurrence_fits_one_core(batch_size * self.n_heads, self.chunk_size, self.head_dim, first.shape[-2],
                                        len(self.initial), self.state_dtype, first.device)  # fmt: skip

    def weights(self, state: dict[str, Tensor]) -> list[Tensor]:
        return [state[f"mem.w{i}"] for i in range(len(self.initial))]

    def forward(
        self, x: Tensor, state: dict[str, Tensor], key_input: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """Learn from x [B, T, D] and read the memory at every position (`key_input`: see `projections`).

        Returns the branch output [B, T, D], the new state, and the surprise ℓ_t(M₀) [B, T] (mean
        over heads).
        """
        length = x.shape[1]
        q, k, v, tail = self.projections(x, state["mem.conv"], key_input)
        theta, log_eta, log_keep = self.gate_values(x)

        # Redo the pending start of the current chunk together with the new tokens (none pending: the new
        # tokens as they are, uncopied).
        names = ("q", "k", "v", "theta", "log_eta", "log_keep")
        fresh = dict(zip(names, (q, k, v, theta, log_eta, log_keep)))
        n_pending = state["mem.pend_q"].shape[2]
        span = {n: torch.cat([state[f"mem.pend_{n}"], fresh[n]], dim=2) if n_pending else fresh[n] for n in names}
        depth = len(self.initial)
        result = memory_recurrence(
            span["q"], span["k"], span["v"], span["theta"], span["log_eta"], span["log_keep"],
            self.weights(state), [state[f"mem.s{i}"] for i in range(depth)], self.chunk_size, self.grad_clip,
        )  # fmt: skip

        new_state = {f"mem.w{i}": w for i, w in enumerate(result.weights)}
        new_state.update({f"mem.s{i}": s for i, s in enumerate(result.momentum)})
        new_state["mem.conv"] = tail.to(state["mem.conv"].dtype)
        keep = (n_pending + length) % self.chunk_size
        total = n_pending + length
        new_state.update({f"mem.pend_{n}": t[:, :, total - keep :] for n, t in span.items()})

        y = result.y[:, :, n_pending:]
        surprise = result.surprise[:, :, n_pending:].mean(1)
        return self.read_out(y, x), new_state, surprise

    def projections(
        self, x: Tensor, conv_tail: Tensor, key_input: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """q_t, k_t, v_t [B, H, T, d] in the state dtype (SPEC 2) and the next conv tail. The depthwise causal
        conv continues from the stream's tail, the last kernel − 1 projected tokens (kernel under
        `tied_query`, whose conv also remakes the query of the token before the call: the first key).
        `key_input` [B, T, H·d] (the k-mer vectors of `kmer_embedding`) is added to the query and key
        projections before the conv, not to the values."""
        batch, length, _ = x.shape
        projected = self.qkv(x)
        if key_input is not None:  # qkv's outputs: [q, k, v], or [q, v] under the tie
            inner = self.n_heads * self.head_dim
            query_key, values = projected.split([(self.streams - 1) * inner, inner], dim=-1)
            projected = torch.cat([query_key + key_input.repeat(1, 1, self.streams - 1), values], dim=-1)
        proj = torch.cat([conv_tail.to(x.dtype), projected], dim=1)
        tail = proj[:, proj.shape[1] - conv_tail.shape[1] :]
        mixed = causal_conv_silu(proj, self.conv.weight)
        if self.tied_query:  # positions −1 … T − 1
            query, v = mixed.chunk(2, dim=-1)
            q, k, v = query[:, 1:], query[:, :-1], v[:, 1:]
        else:
            q, k, v = mixed.chunk(3, dim=-1)
        q, k, v = (t.reshape(batch, length, self.n_heads, self.head_dim).transpose(1, 2).to(self.state_dtype)
                   for t in (q, k, v))  # fmt: skip
        return unit(q), unit(k), v, tail

    def gate_values(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """θ_t, log η_t and log(1 − α_t) [B, H, T] for the layer input x [B, T, D], in the state dtype (SPEC 2)."""
        batch, length, _ = x.shape
        g = self.gates(x).to(self.state_dtype).view(batch, length, 3, self.n_heads).permute(2, 0, 3, 1)
        log_eta = F.logsigmoid(g[1])  # log η_t
        theta = self.theta_ceiling(log_eta) * torch.sigmoid(g[0]) * float(self.learning)  # θ_t
        log_keep = F.logsigmoid(-g[2]) * float(self.learning)  # log(1 − α_t); no forgetting when frozen
        return theta, log_eta, log_keep

    def theta_ceiling(self, log_eta: Tensor) -> Tensor:
        """θ_t's upper bound: θ_max, lowered where needed to keep C·θ_t/(1 − η_t) ≤ max_chunk_step."""
        if self.max_chunk_step == 0:
            return torch.full_like(log_eta, self.theta_max)
        one_minus_eta = -torch.expm1(log_eta)  # exact where η rounds to 1
        return torch.clamp(self.max_chunk_step * one_minus_eta / self.chunk_size, max=self.theta_max)

    def read(self, queries: Tensor, weights: list[Tensor], gate_input: Tensor) -> Tensor:
        """M(q) with fixed weights (no update): MAC's read of a segment. queries [B, H, T, d]."""
        return self.read_out(memory_read(weights, queries.to(weights[0].dtype)), gate_input)

    def read_out(self, y: Tensor, gate_input: Tensor) -> Tensor:
        """Normalise each head's read, gate it by the layer input (`memory_gate`), and project back (SPEC 3)."""
        batch, _, length, _ = y.shape
        y = self.out_norm(y.to(gate_input.dtype)).transpose(1, 2).reshape(batch, length, -1)
        return self.out_proj(y * self.gate_activation(self.out_gate(gate_input)))
