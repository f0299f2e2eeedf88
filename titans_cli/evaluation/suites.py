"""The long-context question-answering families, each example scaled to a document length.

Training mixes and evaluation draws the same families through `draw_example`, so a model is trained on
exactly the shape of example it is measured on (from disjoint splits and seeds). Sizes grow with the
document: a longer document holds more needles, pairs or story sentences.
"""

from __future__ import annotations

from titans_cli.tasks import QAExample, make_babi, make_kv, make_niah
from titans_cli.tasks.haystack import Split
from titans_cli.tasks.niah import NeedleKind

FAMILIES: dict[str, tuple[str, ...]] = {
    "niah": ("single", "multikey", "multivalue"),
    "kv": ("kv",),
    "babi": ("1", "2", "3", "8"),
}


def draw_example(
    family: str, subtask: str, length_chars: int, seed: int, split: Split, needle: NeedleKind = "number"
) -> QAExample:
    """One example whose document is exactly `length_chars` characters."""
    if family not in FAMILIES or subtask not in FAMILIES[family]:
        raise ValueError(f"unknown task {family}/{subtask}")
    if family == "niah":
        n_needles = 4 if length_chars >= 1024 else 2  # RULER's four, where they fit
        return make_niah(length_chars, seed, subtask, needle, split=split, n_needles=n_needles)  # type: ignore[arg-type]
    if family == "kv":
        return make_kv(max(2, min(64, length_chars // 256)), seed, length_chars=length_chars, split=split)
    n_sentences = max(4, min(20, length_chars // 200))  # task 3 needs a few moves to pose its question
    return make_babi(int(subtask), seed, n_sentences=n_sentences, length_chars=length_chars, split=split)
