"""Training and held-out batches, regenerated deterministically from (run seed, step, stream).

Nothing is stored: a batch is a pure function of where it sits in the run, so a resumed run sees the data
an uninterrupted one would. Streams are rank-offset (stream = micro-batch × world size + rank): every rank
draws different data, and a run on R ranks sees the same sequences as one rank accumulating R micro-batches.

Text sequences are, per row, one component of the mixture:

* a QA example (NIAH, KV recall, bAbI; `evaluation.suites`) rendered as document bytes + the model's prompt
  template around the question + answer + <EOS>, the document sized to fill the row. Its loss is
  `answer_weight` × mean over answer targets + `context_weight` × mean over document and prompt targets;
* plain language modelling on haystack text, `lm_weight` × mean over its targets.

DNA rows are windows of synthetic training genomes, on a random strand, next-base prediction. With
chance `planted_repeats` per draw (`repeats_per_window` draws), a DNA or plain-text row, held-out rows
included, gets a stretch of itself copied further on (DNA copies lightly mutated, sometimes
reverse-complemented), by default more than an attention span after its source, so predicting the
copy needs the long-term memory; a genome's own segmental duplications lie farther apart than any
training window.
Rows are weighted so each contributes 1/batch of the loss; padding (rarely, after a QA example) weighs 0.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from titans_cli.evaluation.answers import answer_text
from titans_cli.evaluation.generate import prompt_ids
from titans_cli.evaluation.seeds import eval_seed, train_seed
from titans_cli.evaluation.suites import FAMILIES, draw_example
from titans_cli.models import tokenizer_for
from titans_cli.tasks import Haystack, make_genome, reverse_complement
from titans_cli.tasks.genome import mutate
from titans_cli.tasks.niah import NEEDLE_KINDS
from titans_cli.training.config import TrainConfig, component_task

_SUFFIX_GUESS = 96  # prompt + answer tokens, a first guess before the example is drawn
SeedOf = Callable[..., int]  # (row, *keys) → a seed in the split's half of the seed space


@dataclass
class Batch:
    tokens: Tensor  # [B, T] input ids
    targets: Tensor  # [B, T] the next token at each position
    weights: Tensor  # [B, T] loss weight per target; the whole batch sums to the mixture's weights
    answer: Tensor  # [B, T] bool: the target is an answer token or its EOS
    components: list[str]  # per row: niah / kv / babi / lm / dna


@dataclass
class _Row:
    ids: Tensor  # length + 1 tokens
    weights: Tensor  # length
    answer: Tensor  # length, bool
    component: str


class BatchMaker:
    """Builds the batches of one run; keeps the genomes windows are cut from (slow to regenerate)."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.tokenizer = tokenizer_for(config.model.tokenizer)
        self._genomes: dict[int, bytes] = {}

    def train_batch(self, step: int, stream: int) -> Batch:
        length = self.config.data.length_at(step)
        return self._batch(lambda row, *keys: train_seed(self.config.seed, step, stream, row, *keys), length, "train")

    def held_out_batch(self, index: int) -> Batch:
        """The index-th fixed held-out batch: eval split, eval seeds, `data.held_out_length` tokens."""
        length = self.config.data.held_out_length
        return self._batch(lambda row, *keys: eval_seed(self.config.seed, "held-out", index, row, *keys),
                           length, "eval")  # fmt: skip

    def _batch(self, seed_of: SeedOf, length: int, split: str) -> Batch:
        rows = [self._row(random.Random(seed_of(row)), length, split, seed_of(row, "example"))
                for row in range(self.config.batch_size)]  # fmt: skip
        ids = torch.stack([r.ids for r in rows])
        weights = torch.stack([r.weights for r in rows]) / len(rows)
        return Batch(ids[:, :-1], ids[:, 1:], weights, torch.stack([r.answer for r in rows]),
                     [r.component for r in rows])  # fmt: skip

    def _row(self, rng: random.Random, length: int, split: str, example_seed: int) -> _Row:
        data = self.config.data
        if data.kind == "dna":
            return self._dna_row(rng, length, split)
        names = [n for n, w in data.mixture.items() if w > 0]
        component = rng.choices(names, weights=[data.mixture[n] for n in names])[0]
        if component == "lm":
            text = Haystack(split).text(length + 1, rng).encode()  # type: ignore[arg-type]
            text = self._with_repeats(text, rng, dna=False)
            weights = torch.full((length,), data.lm_weight / length)
            return _Row(self.tokenizer.encode(text), weights, torch.zeros(length, dtype=torch.bool), "lm")
        return self._qa_row(rng, *component_task(component), length, split, example_seed)

    def _qa_row(self, rng: random.Random, family: str, subtask: str, length: int, split: str, seed: int) -> _Row:
        """A QA row of `subtask` ("" draws one of the family's uniformly), logged under its family."""
        subtask = subtask or rng.choice(FAMILIES[family])
        needle = rng.choice(NEEDLE_KINDS) if family == "niah" else "number"
        doc_chars = length + 1 - _SUFFIX_GUESS
        for attempt in range(4):  # the question barely depends on the document length: this settles at once
            example = draw_example(family, subtask, doc_chars, seed, split, needle)  # type: ignore[arg-type]
            prompt = prompt_ids(self.config.model, self.tokenizer, example.question)
            answer_ids = self.tokenizer.encode(answer_text(self.config.model, example).encode())
            answer = torch.cat([answer_ids, torch.tensor([self.tokenizer.eos])])
            spare = length + 1 - doc_chars - len(prompt) - len(answer)
            if spare == 0 or (spare > 0 and attempt > 0):
                break
            doc_chars += spare
        else:
            raise ValueError(f"a {family} example does not fit in {length} tokens")
        document = self.tokenizer.encode(example.document.encode())
        pad = torch.full((spare,), self.tokenizer.pad)
        ids = torch.cat([document, prompt, answer, pad])
        # Target t is token t+1: context targets predict document[1:] and the prompt; answer targets follow.
        n_context = len(document) + len(prompt) - 1
        data = self.config.data
        weights = torch.zeros(length)
        weights[:n_context] = data.context_weight / n_context
        weights[n_context : n_context + len(answer)] = data.answer_weight / len(answer)
        is_answer = torch.zeros(length, dtype=torch.bool)
        is_answer[n_context : n_context + len(answer)] = True
        return _Row(ids, weights, is_answer, family)

    def _dna_row(self, rng: random.Random, length: int, split: str) -> _Row:
        data = self.config.data
        pool = data.n_genomes if split == "train" else max(2, data.n_genomes // 8)
        j = rng.randrange(pool)
        seed = (train_seed if split == "train" else eval_seed)(self.config.seed, "genome", j)
        if seed not in self._genomes:
            self._genomes[seed] = make_genome(data.genome_length, seed).sequence
        genome = self._genomes[seed]
        start = rng.randrange(len(genome) - length)
        window = genome[start : start + length + 1]
        if rng.random() < 0.5:  # both strands are DNA the model must read
            window = reverse_complement(window)
        window = self._with_repeats(window, rng, dna=True)
        weights = torch.full((length,), 1.0 / length)
        return _Row(self.tokenizer.encode(window), weights, torch.zeros(length, dtype=torch.bool), "dna")

    def _with_repeats(self, sequence: bytes, rng: random.Random, dna: bool) -> bytes:
        """`repeats_per_window` draws, each planting a repeat with chance `planted_repeats`."""
        data = self.config.data
        gap = 2 * self.config.model.segment_len if data.repeat_gap_min is None else data.repeat_gap_min
        for _ in range(data.repeats_per_window):
            if rng.random() < data.planted_repeats:
                sequence = plant_repeat(sequence, rng, gap, dna)
        return sequence


def plant_repeat(window: bytes, rng: random.Random, gap: int, dna: bool = True) -> bytes:
    """Copy a stretch of `window` over a later part of it, at least `gap` tokens after the stretch ends.

    A DNA copy carries 1 % substitutions and is reverse-complemented one time in three (an inverted
    repeat); a text copy is exact. The window keeps its length. Windows too short for a 32-token stretch
    and the gap are returned as is.
    """
    n = len(window)
    longest = min(n // 4, (n - gap) // 2)
    if longest < 32:
        return window
    size = rng.randint(32, longest)
    source = rng.randrange(0, n - 2 * size - gap + 1)
    target = rng.randrange(source + size + gap, n - size + 1)
    copy = window[source : source + size]
    if dna:
        if rng.random() < 1 / 3:
            copy = reverse_complement(copy)
        copy, _ = mutate(copy, 0.01, 0.0, np.random.default_rng(rng.getrandbits(64)))
    return window[:target] + copy + window[target + size :]
