"""Wall time of `titans score` on inputs of many records, beside `--batch 1` and optionally another install.

    python bench/score_records.py [--repeats 3] [--threads 2] [--other DIR] [--inputs NAME ...]

FASTA files cut from one synthetic genome (titans_cli.tasks.genome, seed 7), scored with the bundled
dna-tiny as `score --json` reports its seconds:
- "long reads": 24 records of 4,560–15,367 bases (lengths drawn uniformly from 4,500–16,000), 252,585
  bases in all, each longer than one 4,096-token piece;
- "short reads": 2,000 records of 100–150 bases, 250,757 in all;
- "one record, --rc-average": 160,000 bases, longer than the read-ahead, so it streams alone, both strands.
Each is timed with the default batch (32), with `--batch 1` (one record at a time, the baseline in the
same run), and with --other DIR, a second installation (see bench/bundled_cli.py), alternating.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
from bundled_cli import run  # beside this script: python puts bench/ on the path

from titans_cli.tasks.genome import make_genome

# name: (low, high, count) of the uniform record lengths, extra score flags
INPUTS = {
    "long reads": ((4_500, 16_001, 24), []),
    "short reads": ((100, 151, 2_000), []),
    "one record, --rc-average": ((160_000, 160_001, 1), ["--rc-average"]),
}


def write_reads(path: Path, genome: bytes, lengths: np.ndarray) -> int:
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    with path.open("w") as out:
        for i, (start, length) in enumerate(zip(starts, lengths)):
            out.write(f">read{i}\n{genome[start : start + length].decode()}\n")
    return int(lengths.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--other", help="a second installation of titans to time in the same run")
    parser.add_argument("--inputs", nargs="+", choices=list(INPUTS), default=list(INPUTS))
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    genome = make_genome(600_000, seed=7).sequence
    runs = {"this checkout": (None, []), "this checkout, --batch 1": (None, ["--batch", "1"])}
    if args.other:
        runs[f"other ({args.other})"] = (args.other, [])
    with tempfile.TemporaryDirectory() as tmp:
        inputs, bases = {}, {}
        for what, (lengths, flags) in INPUTS.items():  # drawn for every input, so each is the same whichever run
            path = Path(tmp, f"{len(inputs)}.fa")
            bases[what] = write_reads(path, genome, rng.integers(*lengths))
            if what in args.inputs:
                inputs[what] = (path, flags)
        results: dict[tuple[str, str], list[float]] = {}
        bits: dict[tuple[str, str], float] = {}
        for _ in range(args.repeats):
            for what, (path, flags) in inputs.items():
                for name, (site, extra) in runs.items():
                    command = ["score", str(path), "-o", str(Path(tmp, "s.tsv")), "--json", *flags, *extra]
                    summary = json.loads(run(site, args.threads, command))
                    results.setdefault((what, name), []).append(summary["seconds"])
                    bits[what, name] = summary["bits_per_base"]
                    print(f"{what}, {name}: {summary['seconds']:.2f} s, {summary['bits_per_base']:.6f} bits per base",
                          flush=True)  # fmt: skip
    print(f"\nmedians of {args.repeats}, {args.threads} thread(s)")
    for (what, name), values in results.items():
        median = statistics.median(values)
        print(f"{what:26} {name:34} {median:7.2f} s  {bases[what] / median:8,.0f} bases/s  "
              f"bits per base {bits[what, name]:.6f}  " + " / ".join(f"{v:.2f}" for v in values))  # fmt: skip


if __name__ == "__main__":
    main()
