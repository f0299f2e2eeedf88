"""Accuracy on the long-context QA families (NIAH, KV recall, bAbI) at chosen document lengths.

The model reads each document through its streaming state in pieces, then the prompt, then greedy-decodes
the answer; an answer counts when it equals the expected one after stripping whitespace, or for a quoting
model's NIAH answer when it holds every asked value in order (`is_correct`). Examples come
from the held-out split (`Haystack("eval")`) with evaluation seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from titans_cli.evaluation.answers import answer_text, is_correct
from titans_cli.evaluation.generate import PIECE_TOKENS, decode, prompt_ids, read, select_row, stop_ids
from titans_cli.evaluation.seeds import eval_seed
from titans_cli.evaluation.suites import FAMILIES, draw_example
from titans_cli.models import TitansModel, tokenizer_for
from titans_cli.tasks.niah import NeedleKind


@dataclass
class TextScore:
    task: str  # the generator's name, e.g. niah_single_number, kv_recall, babi_2
    length: int  # document characters (= tokens for byte models)
    n: int
    correct: int
    accuracy: float
    samples: list[dict[str, str]] = field(default_factory=list)  # a few expected / predicted pairs


@dataclass
class TextEval:
    family: str
    memory: bool  # False: run with the memory frozen (attention only)
    seed: int
    scores: list[TextScore]
    seconds: float


def evaluate_text(
    model: TitansModel,
    family: str,
    lengths: list[int],
    n: int,
    seed: int = 0,
    piece_tokens: int = PIECE_TOKENS,
    batch_size: int = 1,
    on_example: Callable[[], None] = lambda: None,
    keep_samples: int = 3,
    needle: NeedleKind = "number",
) -> TextEval:
    """`n` examples per subtask of `family` and per length; documents of a subtask and length are read in batches.
    `needle` is the kind of value NIAH needles carry (other families ignore it)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown text task family {family!r}")
    tokenizer = tokenizer_for(model.config.tokenizer)
    device = next(model.parameters()).device
    stops = stop_ids(tokenizer)
    started = time.monotonic()
    scores = []
    for length in lengths:
        for subtask in FAMILIES[family]:
            examples = [draw_example(family, subtask, length, eval_seed(seed, family, subtask, length, i), "eval",
                                     needle) for i in range(n)]  # fmt: skip
            correct, samples = 0, []
            for first in range(0, n, batch_size):
                batch = examples[first : first + batch_size]
                documents = torch.stack([tokenizer.encode(e.document.encode()) for e in batch]).to(device)
                _, state = read(model, documents, piece_tokens=piece_tokens)
                for row, example in enumerate(batch):
                    logits, row_state = read(model, prompt_ids(model.config, tokenizer, example.question)[None]
                                             .to(device), select_row(state, row))  # fmt: skip
                    expected = answer_text(model.config, example)
                    cap = 2 * len(expected) + 16  # room to run past the answer
                    (out,), _ = decode(model, logits, row_state, cap, stops)
                    predicted = tokenizer.decode(out.ids).decode("utf-8", errors="replace")
                    correct += is_correct(model.config, example, predicted)
                    if len(samples) < keep_samples:
                        samples.append({"expected": expected, "predicted": predicted})
                    on_example()
            task = examples[0].task if examples else f"{family}_{subtask}"
            scores.append(TextScore(task, length, n, correct, correct / n if n else 0.0, samples))
    return TextEval(family, model.memory_learning, seed, scores, time.monotonic() - started)
