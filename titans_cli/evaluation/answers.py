"""What a model is trained to answer for a QA example, and when its generated answer counts as right.

A model's `answer_style` decides the form: "value" answers with the value alone; "quote" answers a NIAH
question with the asked needle sentences, so that the value follows the same bytes as in the document (a
copy the memory can make; README, "The memory, in one paragraph").
"""

from __future__ import annotations

from titans_cli.models import TitansConfig
from titans_cli.tasks import QAExample
from titans_cli.tasks.niah import quoted_values


def answer_text(config: TitansConfig, example: QAExample) -> str:
    """The answer a model is trained on: the value, or for a quoting model the NIAH needle sentences of the
    asked key in document order (one, or all of a multivalue question's; the value is inside)."""
    meta = example.meta
    if config.answer_style == "quote" and "needles" in meta:
        asked = sorted((o, s) for o, s, k in zip(meta["offsets"], meta["needles"], meta["keys"], strict=True)
                       if k == meta["key"])  # fmt: skip
        return " ".join(s for _, s in asked)
    return example.answer


def is_correct(config: TitansConfig, example: QAExample, predicted: str) -> bool:
    """Exact match with `answer_text`, after stripping whitespace; a quoting model's NIAH answer is right
    when the values its sentences quote are exactly the asked ones, in order. A slip in the key it copies
    around a value is forgiven: the value is what the memory retrieved and what the user asked for."""
    if config.answer_style == "quote" and "needles" in example.meta:
        return quoted_values(predicted) == example.answer.split(", ")
    return predicted.strip() == answer_text(config, example).strip()
