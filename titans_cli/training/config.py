"""`TrainConfig`: the model, the data mixture and the optimiser of a training run, JSON round-trippable.

A run directory keeps its config as `train_config.json`; `load_train_config` also reads TOML (Python ≥ 3.11).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from titans_cli.evaluation.suites import FAMILIES
from titans_cli.models import TitansConfig, tokenizer_for
from titans_cli.models.config import MAX_CONTEXT_ROWS_LOG2

# A QA family draws its subtasks uniformly; "family.subtask" draws that subtask alone.
# A family with one subtask (kv) is named by itself alone.
TEXT_COMPONENTS = (
    *FAMILIES,
    *(f"{f}.{s}" for f, subtasks in FAMILIES.items() if len(subtasks) > 1 for s in subtasks),
    "lm",
)


def component_task(component: str) -> tuple[str, str]:
    """(family, subtask) of a mixture component; the subtask is "" where the family draws them all."""
    family, _, subtask = component.partition(".")
    return family, subtask


@dataclass
class DataConfig:
    """What a training sequence is.

    kind:           "text" (a mixture of QA families and plain language modelling) or "dna" (genome windows)
    mixture:        text only: relative odds of each component per sequence: a QA family (niah, kv, babi),
                    one of its subtasks ("niah.multikey"), or lm
    curriculum:     (from_step, tokens per sequence) pairs: sequences grow as training goes
    answer_weight:  loss weight of a QA example's answer tokens (and its EOS), as a mean over them
    context_weight: loss weight of its document and prompt tokens, as a mean over them: reading is learnt,
                    but the answer dominates however long the document
    lm_weight:      loss weight of a plain language-modelling sequence (mean over its tokens)
    genome_length:  dna: bases per synthetic training genome; windows are cut from them
    n_genomes:      dna: how many training genomes (seeds disjoint from evaluation's)
    planted_repeats: chance, per draw, that a DNA window or a plain-text (lm) row gets a copy of one of its
                    own stretches planted later (see data.py; held-out rows too): the long-range repeats a
                    genome has, at the distances a training window can hold, and in text the copying
                    retrieval needs
    repeats_per_window: how many times a row draws a planted repeat (each with that chance)
    repeat_gap_min: fewest tokens between a planted stretch and its copy; None is 2·segment_len, out of
                    attention's reach in the presets, and 0 lets short-range copies teach attention too
    eval_length:    tokens per held-out sequence in periodic evaluation (default: the last curriculum length)
    """

    kind: str = "text"
    mixture: dict[str, float] = field(default_factory=lambda: {"niah": 0.3, "kv": 0.2, "babi": 0.3, "lm": 0.2})
    curriculum: list[tuple[int, int]] = field(default_factory=lambda: [(0, 512)])
    answer_weight: float = 1.0
    context_weight: float = 0.1
    lm_weight: float = 1.0
    genome_length: int = 1_000_000
    n_genomes: int = 16
    planted_repeats: float = 0.0
    repeats_per_window: int = 1
    repeat_gap_min: int | None = None
    eval_length: int | None = None

    def __post_init__(self) -> None:
        self.curriculum = sorted((int(s), int(n)) for s, n in self.curriculum)
        problems = []
        if self.kind not in ("text", "dna"):
            problems.append(f"data.kind must be 'text' or 'dna', got {self.kind!r}")
        unknown = sorted(set(self.mixture) - set(TEXT_COMPONENTS))
        if unknown:
            known = ", ".join(TEXT_COMPONENTS)
            problems.append(f"data.mixture: unknown components {', '.join(unknown)} (known: {known})")
        if self.kind == "text" and (any(w < 0 for w in self.mixture.values()) or sum(self.mixture.values()) <= 0):
            problems.append("data.mixture weights must be ≥ 0 with a positive sum")
        if not self.curriculum or self.curriculum[0][0] != 0:
            problems.append("data.curriculum must start at step 0")
        shortest = self.min_length
        if any(n < shortest for _, n in self.curriculum):
            problems.append(f"data.curriculum lengths must be ≥ {shortest} tokens for this data (room for an example)")
        if self.eval_length is not None and self.eval_length < 2:
            problems.append("data.eval_length must be ≥ 2")
        if self.kind == "dna" and self.genome_length <= max(n for _, n in self.curriculum or [(0, 0)]):
            problems.append("data.genome_length must exceed the longest sequence")
        if not 0 <= self.planted_repeats <= 1:
            problems.append("data.planted_repeats must be in [0, 1]")
        if self.repeats_per_window < 1 or (self.repeat_gap_min is not None and self.repeat_gap_min < 0):
            problems.append("data.repeats_per_window must be ≥ 1 and data.repeat_gap_min ≥ 0")
        if min(self.answer_weight, self.context_weight, self.lm_weight) < 0 or self.n_genomes < 1:
            problems.append("loss weights must be ≥ 0 and data.n_genomes ≥ 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def min_length(self) -> int:
        """Shortest sequence that fits an example: NIAH's long questions and answers need 512 tokens."""
        if self.kind == "dna":
            return 2
        niah = any(w > 0 and component_task(name)[0] == "niah" for name, w in self.mixture.items())
        return 512 if niah else 256

    def length_at(self, step: int) -> int:
        """Tokens per sequence at `step` (the curriculum entry in force)."""
        return [n for start, n in self.curriculum if start <= step][-1]

    @property
    def held_out_length(self) -> int:
        return self.eval_length or self.curriculum[-1][1]


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to `min_lr_ratio · lr`, gradient clipping, bf16 on GPU."""

    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0
    bf16: bool = True  # autocast to bfloat16 on CUDA; CPU always trains in float32

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_steps < 0 or self.grad_clip <= 0:
            raise ValueError("optim: need lr > 0, 0 ≤ min_lr_ratio ≤ 1, warmup_steps ≥ 0, grad_clip > 0")


@dataclass
class TrainConfig:
    """A whole run. Batch per optimiser step = batch_size × grad_accum × world size sequences.

    steps:            length of the learning-rate schedule (a run may be stopped earlier and resumed)
    tbptt_len:        a sequence is fed in pieces of this many tokens, the memory state carried across them
                      detached: truncated backpropagation through the memory, memory bounded in length
    eval_every:       steps between held-out evaluations (0: never); eval_batches batches each
    checkpoint_every: steps between checkpoints (a run also checkpoints when it stops)
    init_from:        a model (bundled name or directory) whose weights a new run starts from instead of a
                      fresh initialisation: fine-tuning. Its config must be `model`'s, names aside, or differ
                      only in `model` adding tied_query (NeuralMemory.tie_query converts the weights); the
                      optimiser and the schedule start afresh. A model may also add a context memory
                      (`context_span`) to one without: its own weights start fresh
    context_rows_log2: rows of the context memory while training (2^r; 0: the model's own). Its weights do
                      not depend on the row count, and autograd keeps both tables of every chunk of a
                      window, so training with fewer rows than the model runs with saves time and memory
    """

    model: TitansConfig = field(default_factory=TitansConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 10_000
    batch_size: int = 8
    grad_accum: int = 1
    tbptt_len: int = 512
    seed: int = 0
    eval_every: int = 250
    eval_batches: int = 4
    log_every: int = 10
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    init_from: str | None = None
    context_rows_log2: int = 0

    def __post_init__(self) -> None:
        problems = []
        want = "dna" if self.data.kind == "dna" else "bytes"
        if self.model.tokenizer != want:
            problems.append(f"data.kind {self.data.kind!r} needs model.tokenizer {want!r}")
        elif self.model.vocab_size < tokenizer_for(self.model.tokenizer).vocab_size:
            problems.append(f"model.vocab_size must be ≥ {tokenizer_for(self.model.tokenizer).vocab_size}")
        for name in ("steps", "batch_size", "grad_accum", "tbptt_len", "log_every", "checkpoint_every",
                     "keep_checkpoints", "eval_batches"):  # fmt: skip
            if getattr(self, name) < 1:
                problems.append(f"{name} must be ≥ 1")
        if self.eval_every < 0:
            problems.append("eval_every must be ≥ 0")
        if self.context_rows_log2 and not self.model.context_span:
            problems.append("context_rows_log2 is for a model with a context memory (model.context_span > 0)")
        elif not 0 <= self.context_rows_log2 <= MAX_CONTEXT_ROWS_LOG2:
            problems.append(f"context_rows_log2 must be 0 (the model's own) to {MAX_CONTEXT_ROWS_LOG2}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        nested = {"model": TitansConfig.from_dict, "data": _build(DataConfig), "optim": _build(OptimConfig)}
        for key, build in nested.items():
            if key in data:
                data[key] = build(data[key])
        return _build(cls)(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))


def _build(cls: type) -> Any:
    def build(data: dict[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
        return cls(**data)

    return build


def load_train_config(path: str | Path) -> TrainConfig:
    """A TrainConfig from a JSON or TOML file (by extension); fields left out take their defaults."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError as err:  # Python 3.10
            raise ValueError("TOML configs need Python ≥ 3.11; write the config as JSON") from err
        return TrainConfig.from_dict(tomllib.loads(text))
    return TrainConfig.from_json(text)
