"""Wall time of `titans score` and `titans ingest` with the bundled models, optionally beside another install.

    python bench/bundled_cli.py [--repeats 3] [--text-kb 256] [--threads 1 2] [--other DIR]

score: samples/genome.fa (two records, 124,000 bases) with dna-tiny, as `score --json` reports its
seconds. ingest: the first --text-kb KiB of Python's own standard-library sources with text-tiny into
a new memory, as `ingest --json` reports its seconds (reading and the final commit, not start-up).
--other DIR times a second installation of titans in the same run, alternating with this checkout,
so the two compare on a shared machine: for an earlier commit,
`git worktree add /tmp/old COMMIT && pip install --no-deps --target DIR /tmp/old`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Runs the CLI from DIR even where this checkout is installed in editable mode (its import hook comes first).
LAUNCH = """import sys
root = sys.argv.pop(1)
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, root)
import titans_cli
assert titans_cli.__file__.startswith(root), titans_cli.__file__
from titans_cli.cli import main
sys.argv[0] = "titans"
main()
"""


def stdlib_text(size: int) -> bytes:
    parts, total = [], 0
    for path in sorted(Path(os.__file__).parent.glob("*.py")):
        data = path.read_bytes()
        parts.append(data)
        total += len(data)
        if total >= size:
            break
    return b"".join(parts)[:size]


def command(site: str | None, args: list[str]) -> list[str]:
    if site is None:
        return [sys.executable, "-m", "titans_cli.cli", *args]
    return [sys.executable, "-c", LAUNCH, site, *args]


def run(site: str | None, threads: int, args: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command(site, args), env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"titans {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--text-kb", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--other", help="a second installation of titans to time in the same run")
    args = parser.parse_args()
    sites = {"this checkout": None} | ({f"other ({args.other})": args.other} if args.other else {})
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp, "stdlib.txt")
        text.write_bytes(stdlib_text(args.text_kb * 1024))
        genome = str(ROOT / "samples" / "genome.fa")
        results: dict[tuple[str, str, int], list[float]] = {}
        for _ in range(args.repeats):
            for threads in args.threads:
                for name, site in sites.items():
                    summary = json.loads(run(site, threads, ["score", genome, "-o", str(Path(tmp, "s.tsv")), "--json"]))
                    results.setdefault((name, "score", threads), []).append(summary["seconds"])
                    memory = Path(tmp, "bench.mem")  # a new memory every time
                    report = json.loads(run(site, threads, ["ingest", str(text), "-m", str(memory), "--json"]))
                    shutil.rmtree(memory)
                    seconds = report["seconds"]
                    results.setdefault((name, "ingest", threads), []).append(seconds)
                    print(f"{name}, {threads} thread(s): score {summary['seconds']:.1f} s (bits per base "
                          f"{summary['bits_per_base']:.6f}), ingest {seconds:.1f} s", flush=True)  # fmt: skip
        size = text.stat().st_size
    print(f"\nmedians of {args.repeats}; score: {summary['tokens']:,} bases; ingest: {size:,} bytes")
    for (name, what, threads), values in results.items():
        print(f"{what:6} {name:30} {threads} thread(s): {statistics.median(values):7.2f} s  "
              + " / ".join(f"{v:.2f}" for v in values))  # fmt: skip


if __name__ == "__main__":
    main()
