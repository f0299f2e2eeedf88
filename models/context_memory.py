"""`ContextMemory`: a Titans memory keyed on the exact last n tokens, read into the output logits (`context_span`).

Why: a memory whose keys are projections of the layer input holds about one or two associations per unit
of head width (a few hundred in a head of 128), and a 5 kb repeat 50 kb later needs some 55,000 held at
once. Here the key of token t is the one-hot row of a hash of the n tokens before it, among R = 2^r rows,
and the value is the one-hot of token t beside a signature of its context: a depth-1 Titans memory
M: R^R → R^(A+1) (A = 4 bases, or 256 bytes), with SPEC 2's surprise, momentum and forgetting gates,
updated in SPEC 2b's chunked closed form (`kernels/sparse_memory.py`). The query at token t is the key
token t + 1 will have, so it reads what followed the same n tokens before. On the README genome a
last-writer-wins table of this kind read 96 % of a 50 kb-distant copy's bases right with n = 12–16 and
2^20 rows (BENCHMARKS.md, "The ceiling of a memory keyed on exact contexts").

Why the signature: contexts that share a row collide, and a collision read as a copy costs bits on every
base it touches (on a 256 kb genome with 2^20 rows, 0.14 bits per base over the memory without it). The
signature u ∈ [1, 2) comes from bits of the hash the row does not use; every write scales a row's channels
alike, so a row written only under the query's context holds signature/mass = u exactly, and a read
counts only as far as that ratio matches (`signature_match`).

The gates and the read-out's gain come from the model's final hidden state, so training decides how far
to trust a read. Rows are a capacity, not a weight: the module's parameters do not depend on r, so a model
trained with few rows runs with many.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from titans_cli.kernels.sparse_memory import sparse_memory_chunked
from titans_cli.models.config import TitansConfig

ALPHABET = {"dna": 4, "bytes": 256}  # the ids a context is made of and a value can be: bases, or bytes
HASH_BITS = 62  # each (lag, token) draws a 62-bit code; a context's row is the top r bits of their XOR
HASH_SEED = 20251231
SIGNATURE_BITS = 24  # the low bits of a code: u = 1 + low/2^24, independent of the row (the top r ≤ 24 bits)
SIGNATURE_TOLERANCE = 0.01  # a foreign row matches with chance about 1.5 %, a row of one context always
# θ_t ≤ STEP·(1 − η_t)/C: every write of a chunk is taken at its start table, so a row written k times in a
# chunk (a microsatellite) moves k·θ/(1 − η) times its error; at most C writes then land exactly on v.
STEP = 1.0
STATE_PREFIX = "ctx."  # its keys in the first layer's state dict
PENDING = ("key", "query", "value", "theta", "log_eta", "log_keep")


def signature(codes: Tensor) -> Tensor:
    """Each context's signature u ∈ [1, 2), from the low bits of its code."""
    return 1.0 + (codes & (2**SIGNATURE_BITS - 1)).to(torch.float64) / 2**SIGNATURE_BITS


def signature_match(read: Tensor, query_signature: Tensor, tolerance: float = SIGNATURE_TOLERANCE) -> Tensor:
    """How far a read [..., A + 1] comes from the query's own context, in [0, 1]: 1 where its signature
    channel over its mass is the query's signature, falling to 0 at a relative mismatch of `tolerance`;
    0 where the row is empty."""
    mass = read[..., :-1].sum(-1)
    expected = query_signature.to(read.dtype) * mass
    mismatch = (read[..., -1] - expected).abs() / expected.abs().clamp_min(torch.finfo(read.dtype).tiny)
    return torch.relu(1.0 - mismatch / tolerance) * (mass.abs() > 0)


def context_codes(ids: Tensor, hash_table: Tensor, alphabet: int) -> tuple[Tensor, Tensor]:
    """A hash code of each window of n = hash_table.shape[0] ids in ids [B, L] (tabulation hashing: the XOR of
    one random code per lag and token), and whether the window is all alphabet ids: both [B, L − n + 1]."""
    span = hash_table.shape[0]
    windows = ids.unfold(1, span, 1)  # [B, L − n + 1, n], oldest id first
    codes = torch.zeros(windows.shape[:2], dtype=torch.int64, device=ids.device)
    for lag in range(span):
        codes = codes ^ hash_table[lag][windows[..., span - 1 - lag]]
    return codes, (windows < alphabet).all(-1)


class ContextMemory(nn.Module):
    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.span, self.rows_log2, self.chunk_size = cfg.context_span, cfg.context_rows_log2, cfg.context_chunk
        self.alphabet = ALPHABET[cfg.tokenizer]
        self.signed = cfg.context_signature
        self.learning = True  # False freezes it (θ = 0, α = 0), with the other memories (`memory_learning`)
        generator = torch.Generator().manual_seed(HASH_SEED)
        codes = torch.randint(0, 2**HASH_BITS, (self.span, cfg.vocab_size), generator=generator)
        self.register_buffer("hash_table", codes)  # saved with the weights, so rows never depend on torch's RNG
        # θ, η, α and the read-out gain per token, from the final hidden state; they start constant: every
        # context written at full strength (θ at its ceiling), no momentum (η ≈ 0.0025), almost no
        # forgetting (α ≈ 1e-7: 99.5 % of a table survives 50 kb), and a gain of 2: one write read back adds
        # about 1.5 to its token's logit.
        self.gates = nn.Linear(cfg.d_model, 4)
        with torch.no_grad():
            self.gates.weight.zero_()
            self.gates.bias.copy_(torch.tensor([6.0, -6.0, -16.0, math.log(math.expm1(2.0))]))
        # A single write leaves θ·v ≈ v/C in its row: the read is scaled by C before its tanh.
        self.log_sharpness = nn.Parameter(torch.tensor(math.log(self.chunk_size / STEP)))

    def init_state(self, batch_size: int, device: torch.device) -> dict[str, Tensor]:
        dtype, width = self.state_dtype, self.alphabet + self.signed
        table = torch.zeros(batch_size, 2**self.rows_log2, width, dtype=dtype, device=device)
        # No tokens yet: a fresh stream's first n contexts are incomplete, so they neither write nor read.
        tail = torch.full((batch_size, self.span), self.alphabet, dtype=torch.int64, device=device)
        state = {"table": table, "momentum": torch.zeros_like(table), "tail": tail}
        for name in PENDING:
            rows = name in ("key", "query")
            shape = (batch_size, 0, width) if name == "value" else (batch_size, 0)
            state[f"pend_{name}"] = torch.zeros(shape, dtype=torch.int64 if rows else dtype, device=device)
        return {STATE_PREFIX + name: value for name, value in state.items()}

    @property
    def state_dtype(self) -> torch.dtype:
        return torch.float64 if self.gates.weight.dtype == torch.float64 else torch.float32

    def forward(self, tokens: Tensor, hidden: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """What the memory adds to the alphabet's logits for tokens [B, T] with final hidden states
        [B, T, D] (the read before each next token, [B, T, A]), and the next state (its `ctx.*` keys)."""
        state = {k.removeprefix(STATE_PREFIX): v for k, v in state.items()}
        ids = torch.cat([state["tail"], tokens], dim=1)
        codes, complete = context_codes(ids, self.hash_table, self.alphabet)  # windows ending at t − 1 … T − 1
        rows = codes >> (HASH_BITS - self.rows_log2)
        writes = complete[:, :-1] & (tokens < self.alphabet)  # token t written under the n tokens before it
        signatures = signature(codes).to(self.state_dtype)
        values = F.one_hot(tokens.clamp(max=self.alphabet - 1), self.alphabet).to(self.state_dtype)
        if self.signed:
            values = torch.cat([values, signatures[:, :-1, None]], dim=-1)
        theta, log_eta, log_keep, gain = self.gate_values(hidden, writes)

        fresh = dict(zip(PENDING, (rows[:, :-1], rows[:, 1:], values, theta, log_eta, log_keep)))
        span = {n: torch.cat([state[f"pend_{n}"], fresh[n]], dim=1) for n in PENDING}
        pending = state["pend_key"].shape[1]
        result = sparse_memory_chunked(*(span[n] for n in PENDING), state["table"], state["momentum"],
                                       self.chunk_size)  # fmt: skip
        keep = span["key"].shape[1] % self.chunk_size
        new_state = {"table": result.table, "momentum": result.momentum, "tail": ids[:, ids.shape[1] - self.span :]}
        new_state.update({f"pend_{n}": t[:, t.shape[1] - keep :] for n, t in span.items()})

        y = result.y[:, pending:]
        match = complete[:, 1:].to(y.dtype)  # an incomplete context reads nothing
        if self.signed:
            match = match * signature_match(y, signatures[:, 1:])
            y = y[..., :-1]
        read = y * match[..., None]
        bonus = gain[..., None] * torch.tanh(self.log_sharpness.exp() * read)
        return bonus.to(hidden.dtype), {STATE_PREFIX + k: v for k, v in new_state.items()}

    def gate_values(self, hidden: Tensor, writes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """θ_t (0 where token t writes nothing), log η_t, log(1 − α_t) and the read's gain, each [B, T]."""
        g = self.gates(hidden.to(self.state_dtype)).unbind(-1)
        log_eta = F.logsigmoid(g[1])
        ceiling = STEP * -torch.expm1(log_eta) / self.chunk_size
        theta = ceiling * torch.sigmoid(g[0]) * writes * float(self.learning)
        log_keep = F.logsigmoid(-g[2]) * float(self.learning)
        return theta, log_eta, log_keep, F.softplus(g[3])
