"""The one shape every text task produces: a document, a question about it, and the exact answer.

Generators stop at text. Turning an example into model input (BOS, separators, where the question goes)
is the prompt template's job, which belongs to the model config, so the same example can be rendered for
any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QAExample:
    """A long-context question-answering example.

    document: the text the model reads (ASCII, so its length in characters equals its length in bytes).
    question: asked after the document.
    answer: the exact expected answer string (several answers are joined with ", ").
    task: a stable name such as ``niah_single_number`` or ``babi_2``, used to group scores.
    meta: what the generator knows and a scorer may want: needle depths and offsets, keys, supporting facts.
    """

    document: str
    question: str
    answer: str
    task: str
    meta: dict[str, Any] = field(default_factory=dict)
