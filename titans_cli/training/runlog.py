"""`RUN/log.jsonl`: one JSON object per event (start, train, eval, checkpoint, end), appended as it happens."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class RunLog:
    def __init__(self, path: Path):
        self.path = path

    def write(self, event: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 3), **event}
        with open(self.path, "a") as f:  # reopened per event: a killed run loses at most the line in flight
            f.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a run log (a torn last line from a kill is skipped)."""
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
