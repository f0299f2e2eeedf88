"""`describe_memory`: what a memory holds, as one JSON-ready dict (the body of `titans info`)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from titans_cli.memory_store import FORMAT_VERSION, MemoryStore, state_digest

SPARK = "▁▂▃▄▅▆▇█"


def describe_memory(path: str | Path, profile_width: int = 60) -> dict[str, Any]:
    store = MemoryStore(path)
    snapshot = store.load()
    surprise = store.surprise(snapshot).to_pydict()
    return {
        "memory": str(path),
        "format_version": FORMAT_VERSION,
        "commit": snapshot.commit,
        "model": {"name": snapshot.model_name, "hash": snapshot.model_hash, "source": snapshot.model_source},
        "kind": snapshot.kind,
        "created": snapshot.created,
        "updated": snapshot.updated,
        "tokens": snapshot.tokens,
        "sources": [dataclasses.asdict(s) for s in snapshot.sources],
        "state_bytes_on_disk": store.size_on_disk(snapshot),
        "state_digest": state_digest(snapshot.stored_tensors()),
        "surprise_profile": surprise_profile(
            surprise["start"], surprise["end"], surprise["mean_surprise"], snapshot.tokens, profile_width
        ),
    }


def surprise_profile(starts, ends, means, total: int, width: int) -> list[dict[str, float]]:
    """Token-weighted mean surprise over `width` equal spans of the stream."""
    if not total or not starts:
        return []
    width = min(width, len(starts))
    bins = [[0.0, 0] for _ in range(width)]
    for start, end, mean in zip(starts, ends, means):
        index = min(width - 1, start * width // total)
        bins[index][0] += mean * (end - start)
        bins[index][1] += end - start
    return [{"start": i * total // width, "end": (i + 1) * total // width, "mean_surprise": s / n if n else 0.0}
            for i, (s, n) in enumerate(bins)]  # fmt: skip


def sparkline(values: list[float]) -> str:
    """One bar per value; non-finite values (a diverged memory) show as '?'."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "?" * len(values)
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * len(SPARK)))] if math.isfinite(v) else "?"
                   for v in values)  # fmt: skip
