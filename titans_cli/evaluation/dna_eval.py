"""Bits per base on held-out synthetic genomes: overall and on repeat copies whose source is out of reach.

The model streams each genome in pieces and pays -log2 P(base) for every base after the first (which has
no context). Repeat copies are the annotated segmental duplications, inverted repeats and interspersed
repeats whose source lies farther back than the model's attention span: there only the long-term memory
can help. gzip, xz and adaptive order-k Markov models are measured on the same genomes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from titans_cli.evaluation.baselines import MARKOV_ORDERS, base_codes, compressed_bits_per_base, markov_bits
from titans_cli.evaluation.generate import PIECE_TOKENS
from titans_cli.evaluation.seeds import eval_seed
from titans_cli.models import TitansConfig, TitansModel, tokenizer_for
from titans_cli.tasks import SyntheticGenome, make_genome

REPEAT_KINDS = ("segmental_duplication", "inverted_repeat", "interspersed_repeat")


@dataclass
class DnaScore:
    length: int  # bases per genome
    genomes: int
    bases: int  # scored bases (all but each genome's first)
    repeat_bases: int  # of those, inside far repeat copies
    model: float  # bits per base
    model_repeats: float
    gzip: float
    xz: float
    markov: dict[int, float]  # order k → bits per base
    markov_repeats: dict[int, float]

    @property
    def markov_best_k(self) -> int:
        return min(self.markov, key=self.markov.__getitem__)


@dataclass
class DnaEval:
    memory: bool
    seed: int
    attention_span: int
    scores: list[DnaScore]
    seconds: float


def attention_span(config: TitansConfig) -> int:
    """How far back attention alone can see: MAC a segment, MAG/MAL a window, LMM nothing."""
    return {"mac": config.segment_len, "mag": config.window, "mal": config.window}.get(config.variant, 0)


def far_repeat_mask(genome: SyntheticGenome, span: int) -> np.ndarray:
    """Bases inside repeat copies whose source ends more than `span` bases before the copy starts.

    An interspersed copy's source is the nearest earlier copy of its family (the consensus itself is never
    in the genome), so a family's first copy does not count.
    """
    mask = np.zeros(len(genome.sequence), dtype=bool)
    last_copy_end: dict[int, int] = {}
    for f in genome.annotations:
        if f.kind not in REPEAT_KINDS:
            continue
        if f.kind == "interspersed_repeat":
            source_end = last_copy_end.get(f.family)  # type: ignore[arg-type]
            last_copy_end[f.family] = f.end  # type: ignore[index]
        else:
            source_end = f.source_end
        if source_end is not None and f.start - source_end > span:
            mask[f.start : f.end] = True
    return mask


@torch.no_grad()
def model_bits(model: TitansModel, sequence: bytes, piece_tokens: int = PIECE_TOKENS) -> np.ndarray:
    """-log2 P(base t | bases < t) for t = 1 … n-1, streaming the sequence in pieces."""
    tokens = tokenizer_for(model.config.tokenizer).encode(sequence)[None].to(next(model.parameters()).device)
    state = model.init_state(1)
    out = []
    for start in range(0, tokens.shape[1] - 1, piece_tokens):
        end = min(start + piece_tokens, tokens.shape[1] - 1)
        logits, state = model(tokens[:, start:end], state)
        logp = F.log_softmax(logits[0].float(), dim=-1).gather(1, tokens[0, start + 1 : end + 1, None])
        out.append((-logp[:, 0] / np.log(2)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_dna(
    model: TitansModel,
    lengths: list[int],
    n: int,
    seed: int = 0,
    piece_tokens: int = PIECE_TOKENS,
    markov_orders: tuple[int, ...] = MARKOV_ORDERS,
    on_genome: Callable[[], None] = lambda: None,
) -> DnaEval:
    """`n` held-out genomes per length; totals are pooled over genomes (total bits / total bases)."""
    if model.config.tokenizer != "dna":
        raise ValueError("DNA evaluation needs a DNA model")
    span = attention_span(model.config)
    started = time.monotonic()
    scores = []
    for length in lengths:
        bits = {"model": [0.0, 0.0], **{k: [0.0, 0.0] for k in markov_orders}}  # [all, repeats]
        compressed = {"gzip": 0.0, "xz": 0.0}
        bases = repeat_bases = 0
        for i in range(n):
            genome = make_genome(length, eval_seed(seed, "dna", length, i))
            repeats = far_repeat_mask(genome, span)[1:]
            per_base = {"model": model_bits(model, genome.sequence, piece_tokens)}
            codes = base_codes(genome.sequence)
            per_base.update({k: markov_bits(codes, k)[1:] for k in markov_orders})
            for name, values in per_base.items():
                bits[name][0] += float(values.sum())
                bits[name][1] += float(values[repeats].sum())
            for name, rate in compressed_bits_per_base(genome.sequence).items():
                compressed[name] += rate * length
            bases += length - 1
            repeat_bases += int(repeats.sum())
            on_genome()

        def rate(total: float, count: int) -> float:
            return total / count if count else float("nan")

        scores.append(DnaScore(
            length=length, genomes=n, bases=bases, repeat_bases=repeat_bases,
            model=rate(bits["model"][0], bases), model_repeats=rate(bits["model"][1], repeat_bases),
            gzip=compressed["gzip"] / (n * length), xz=compressed["xz"] / (n * length),
            markov={k: rate(bits[k][0], bases) for k in markov_orders},
            markov_repeats={k: rate(bits[k][1], repeat_bases) for k in markov_orders},
        ))  # fmt: skip
    return DnaEval(model.memory_learning, seed, span, scores, time.monotonic() - started)
