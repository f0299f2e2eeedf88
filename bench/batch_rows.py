"""What a further row in a batch costs: the bundled dna-tiny scoring the same sequences in batches of 1–8.

    python bench/batch_rows.py [--sequences 8] [--length 12288] [--repeats 2]

Scores --sequences random sequences of --length bases through `Scorer.score_sequences`, in batches of
1, 2, 4 and 8, and prints bases/s (best of --repeats) and what a batch costs relative to one stream.
This is what `length_batches`' `_JOIN` in titans_cli/scoring.py rests on. No peer: a setting of our own.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from titans_cli.model_registry import resolve_model
from titans_cli.scoring import Scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--length", type=int, default=12_288)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sequences = [rng.choice(list(b"ACGT"), args.length).astype(np.uint8).tobytes() for _ in range(args.sequences)]
    scorer = Scorer(resolve_model("dna-tiny").load().eval())
    alone = None
    for rows in (1, 2, 4, 8):
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for i in range(0, len(sequences), rows):
                scorer.score_sequences(sequences[i : i + rows])
            seconds.append(time.perf_counter() - start)
        speed = len(sequences) * args.length / min(seconds)
        alone = alone or speed
        cost = rows * alone / speed  # one batch of `rows` against one stream
        further = (cost - 1) / (rows - 1) if rows > 1 else float("nan")
        print(f"batch {rows}: {speed:8,.0f} bases/s, a batch costs {cost:.2f} streams, a further row {further:.2f}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
