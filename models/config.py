"""`TitansConfig`: every hyper-parameter of a Titans model, JSON round-trippable."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VARIANTS = ("mac", "mag", "mal", "lmm")
MAC_MEMORY_INPUTS = ("attention", "segment")
MEMORY_GATES = ("silu", "sigmoid")
MEMORY_INITS = ("random", "induction")
MAX_KMER = 10  # 4^10 rows of d_model: already 1 M rows
ANSWER_STYLES = ("value", "quote")
CONTEXT_FIELDS = ("context_span", "context_rows_log2", "context_chunk", "context_signature")  # unused at span 0
MAX_CONTEXT_ROWS_LOG2 = 24  # a context memory's tables: 2^24 rows × 4 bases × 2 tables of float32 is 512 MB


@dataclass
class TitansConfig:
    """A Titans language model (SPEC 2–3).

    variant:          mac (memory as context), mag (memory as gate), mal (memory as layer), lmm (memory only)
    vocab_size:       token ids are 0..vocab_size-1 (see tokenizer.py)
    d_model:          residual width; n_heads heads of width d_model // n_heads share it
    memory_depth:     L_M, layers of the memory MLP (1 = linear memory)
    memory_expansion: hidden width of a deep memory, as a multiple of the head width
    chunk_size:       C, tokens whose inner gradients share the chunk-start weights
    segment_len:      S, MAC's attention segment (a multiple of C)
    window:           W, MAG/MAL sliding-window attention span (the token itself included)
    n_persistent:     N_p learned tokens prepended to every attention context
    theta_max:        upper bound of the inner learning rate θ_t
    memory_grad_clip: τ > 0 clips each token's inner gradient u_t to norm τ before it enters the momentum;
                      0 is the paper's unclipped rule. Bounds every step, so a memory whose gates
                      outer training has opened cannot diverge.
    max_chunk_step:   s > 0 caps a memory's step per chunk C·θ_t/(1 − η_t) at s by scaling θ_t's ceiling
                      to min(θ_max, s·(1 − η_t)/C); 0 leaves θ_t = θ_max·sigmoid(·) (SPEC 2). The clip above
                      bounds the forward pass only; a memory whose step had grown past about 2 made a training
                      run's gradient norm spike (BENCHMARKS.md, "Gradient spikes").
    mac_memory_input: what MAC's memory learns from: "attention", the attention output y (SPEC 3, paper
                      Eq. 24), or "segment", the normalised segment tokens that attention also reads (as
                      titans-pytorch does). From y, which near-uniform attention blurs at initialisation, a
                      recall toy stayed at chance for 3,500+ steps; from the tokens two of three seeds
                      learned it (27–32 % by 3,000 steps; BENCHMARKS.md, "MAC whose memory learns from
                      the segment tokens").
    memory_gate:      how the memory branch's normalised read is gated by the layer input before the output
                      projection (SPEC 3): "silu", SiLU(x W_g), or "sigmoid", σ(x W_g). A small random W_g makes
                      SiLU's gate a random ± pattern of the current token, so the read reaches the output
                      multiplied by it and a linear probe decodes nothing from it; σ starts near ½ everywhere
                      and passes the read on linearly (BENCHMARKS.md, "Reading a copy out of the memory").
    memory_init:      "random", or "induction": each memory's q_t and v_t start reading token t and k_t token
                      t − 1, with W_Q = W_K; θ_t starts at its ceiling and η_t near 0, so it needs
                      memory_grad_clip > 0. The memory then stores each token under its predecessor from
                      the first step, and a query for token t retrieves what followed t before: a copy
                      (BENCHMARKS.md, "Reading a copy out of the memory"). MAC's read query starts as W_K
                      too, which only approximates the shifted key (it has no conv and no SiLU); for MAC it
                      needs mac_memory_input "segment", since keys made from the attention output match nothing.
    induction_span:   with memory_init "induction", how many preceding tokens a key reads (the query reads
                      the same span ending one token later); needs conv_kernel > induction_span, and 1 for
                      MAC (its segment read query sees one token). One token is a bigram key; a span of n
                      keys each association on the last n tokens, with a random sign per channel and lag,
                      so that only an exact n-token context matches in full.
    tied_query:       q_t is the key token t + 1 will have: one projection and conv make the query, and
                      k_t = q_{t−1}. Where the memory's input depends on the tokens alone (the first layer), a
                      context read back then matches the key it was written under exactly, however training
                      moves the projection; with separate W_Q and W_K (the paper's, False)
                      training had pulled that match to cosine 0.5–0.7 in text-tiny's first layer. Not for MAC,
                      whose segment read has its own query.
    kmer_embedding:   DNA only, k ≥ 2 (0 = off), not MAC: every memory's query and key projections (before the
                      conv) add a learned vector for the k bases ending at each token (4^k rows, one more for
                      any k-mer holding N, a special or the start of the stream); values and the residual
                      stream keep the bases alone. Over single bases a key spanning 12 of them is SiLU of a
                      linear function of a 4-letter one-hot per lag, whose centred part has rank at most 36
                      whatever the head width before the SiLU (29 directions measured at width 128, 40 at
                      512, over 20 kb); with 6-mer vectors, 118 and 431. MAC's segment read has a query of
                      its own (BENCHMARKS.md, "Keys for DNA").
    context_span:     n ≥ 1 (0 = off): a context memory beside the layers (context_memory.py): a linear
                      Titans memory whose key for token t is the one-hot row of a hash of the n tokens before
                      it and whose value is token t's one-hot over the alphabet (4 bases, or 256 bytes), read
                      into the output logits with a gain from the final hidden state. It holds an association
                      per row, where a memory keyed by projections holds a few hundred per head
                      (BENCHMARKS.md, "The ceiling of a memory keyed on exact contexts").
    context_rows_log2: r, its 2^r rows: each stream's state holds two tables of 2^r × (alphabet + 1) floats
                      with signatures (40 MB for DNA at r = 20). The weights do not depend on r, so a model
                      may train with fewer rows than it runs with (`TrainConfig.context_rows_log2`).
    context_chunk:    its chunk C, tokens whose writes share the chunk-start table (SPEC 2b); each chunk
                      rescales both tables once, so it is larger than chunk_size
    context_signature: each row also holds the signatures of the contexts written to it, and a read counts
                      only where they are the query's own (`models/context_memory.py`); one float more per row
    answer_style:     "value": a QA answer is the value alone; "quote": a NIAH answer is the needle sentence
                      that holds it, so its value follows the same context as in the document (a copy
                      the memory can make); other tasks answer with the value.
    tokenizer:        "bytes" or "dna"
    prompt_template:  how a (document, question) pair becomes a prompt; `{question}` marks the question
    """

    variant: str = "mac"
    vocab_size: int = 260
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    memory_depth: int = 2
    memory_expansion: int = 2
    chunk_size: int = 64
    segment_len: int = 128
    window: int = 128
    n_persistent: int = 4
    conv_kernel: int = 4
    mlp_ratio: float = 4.0
    theta_max: float = 1.0
    memory_grad_clip: float = 0.0
    max_chunk_step: float = 0.0
    mac_memory_input: str = "attention"
    memory_gate: str = "silu"
    memory_init: str = "random"
    induction_span: int = 1
    tied_query: bool = False
    kmer_embedding: int = 0
    context_span: int = 0
    context_rows_log2: int = 20
    context_chunk: int = 256
    context_signature: bool = True
    rope_base: float = 10000.0
    tie_embeddings: bool = True
    norm_eps: float = 1e-6
    tokenizer: str = "bytes"
    prompt_template: str = "<SEP>{question}<SEP>"
    answer_style: str = "value"
    name: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.variant not in VARIANTS:
            problems.append(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.d_model % self.n_heads:
            problems.append(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.memory_depth < 1:
            problems.append("memory_depth must be ≥ 1")
        if self.chunk_size < 1:
            problems.append("chunk_size must be ≥ 1")
        if self.segment_len % self.chunk_size:
            problems.append(
                f"segment_len ({self.segment_len}) must be a multiple of chunk_size ({self.chunk_size})"
            )
        if self.memory_grad_clip < 0:
            problems.append("memory_grad_clip must be ≥ 0 (0 = no clipping)")
        if self.max_chunk_step < 0:
            problems.append("max_chunk_step must be ≥ 0 (0 = no cap)")
        if self.window < 1 or self.conv_kernel < 1 or self.n_persistent < 0:
            problems.append("window and conv_kernel must be ≥ 1 and n_persistent ≥ 0")
        if self.mac_memory_input not in MAC_MEMORY_INPUTS:
            problems.append(f"mac_memory_input must be one of {', '.join(MAC_MEMORY_INPUTS)}, "
                            f"got {self.mac_memory_input!r}")  # fmt: skip
        if self.memory_gate not in MEMORY_GATES:
            problems.append(f"memory_gate must be one of {', '.join(MEMORY_GATES)}, got {self.memory_gate!r}")
        if self.memory_init not in MEMORY_INITS:
            problems.append(f"memory_init must be one of {', '.join(MEMORY_INITS)}, got {self.memory_init!r}")
        if self.memory_init == "induction" and self.conv_kernel <= self.induction_span:
            problems.append(f"memory_init 'induction' needs conv_kernel > induction_span ({self.induction_span}): "
                            "keys look that many tokens back")  # fmt: skip
        if self.induction_span < 1:
            problems.append("induction_span must be ≥ 1")
        if self.memory_init == "induction" and self.variant == "mac" and self.induction_span > 1:
            problems.append("memory_init 'induction' for MAC needs induction_span 1: MAC's read query sees one "
                            "token, so it cannot match a key over several")  # fmt: skip
        if self.tied_query and self.variant == "mac":
            problems.append("tied_query is not for MAC: its segment read has a query of its own")
        if self.kmer_embedding and (self.tokenizer != "dna" or not 2 <= self.kmer_embedding <= MAX_KMER):
            problems.append(f"kmer_embedding is for the dna tokenizer, with k from 2 to {MAX_KMER} (0 = off)")
        if self.kmer_embedding and self.variant == "mac":
            problems.append("kmer_embedding is not for MAC: its segment read has a query of its own")
        if self.context_span < 0:
            problems.append("context_span must be ≥ 0 (0 = off)")
        if self.context_span and not (1 <= self.context_rows_log2 <= MAX_CONTEXT_ROWS_LOG2 and self.context_chunk >= 1):
            problems.append(f"context_rows_log2 must be 1 to {MAX_CONTEXT_ROWS_LOG2} and context_chunk ≥ 1")
        if self.answer_style not in ANSWER_STYLES:
            problems.append(f"answer_style must be one of {', '.join(ANSWER_STYLES)}, got {self.answer_style!r}")
        if self.memory_init == "induction" and self.variant == "mac" and self.mac_memory_input != "segment":
            problems.append("memory_init 'induction' for MAC needs mac_memory_input 'segment': its keys must come "
                            "from the tokens its read query sees")  # fmt: skip
        if self.memory_init == "induction" and not self.memory_grad_clip:
            problems.append("memory_init 'induction' needs memory_grad_clip > 0: it starts θ_t at its ceiling, "
                            "and a chunk of aligned keys would overshoot without the clip")  # fmt: skip
        if self.tokenizer not in ("bytes", "dna"):
            problems.append(f"tokenizer must be 'bytes' or 'dna', got {self.tokenizer!r}")
        if "{question}" not in self.prompt_template:
            problems.append("prompt_template must contain '{question}'")
        if problems:
            raise ValueError("invalid TitansConfig: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TitansConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TitansConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TitansConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> TitansConfig:
        return cls.from_json(Path(path).read_text())
