"""Milliseconds per call of a bundled model's context memory (`ContextMemory.forward`), one stream.

    python bench/context_memory.py [--model text-tiny] [--tokens 4096] [--calls 12] [--threads 2]

Feeds `--calls` consecutive blocks of `--tokens` tokens (ingest's block) through the context memory alone,
carrying its state: the standard library's own source as bytes for a text model, uniform random bases for
a DNA model, random hidden states for its gates. Prints the median over the calls after the first two, and
one JSON line. Run it from another install with PYTHONPATH=DIR to compare versions in the same session.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

import titans_cli
from titans_cli.model_registry import resolve_model


def stdlib_bytes(size: int) -> bytes:
    data = b"".join(p.read_bytes() for p in sorted(Path(os.__file__).parent.glob("*.py"))[:200])
    return data[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="text-tiny")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = resolve_model(args.model).load("cpu")
    memory = model.context_memory
    state = {k: v for k, v in model.init_state(1).layers[0].items() if k.startswith("ctx.")}
    g = torch.Generator().manual_seed(0)
    total = args.tokens * args.calls
    if model.config.tokenizer == "dna":
        tokens = torch.randint(0, 4, (1, total), generator=g)
    else:
        tokens = torch.tensor(list(stdlib_bytes(total)))[None]
    times = []
    with torch.no_grad():
        for i in range(args.calls):
            block = tokens[:, i * args.tokens : (i + 1) * args.tokens]
            hidden = torch.randn(1, block.shape[1], model.config.d_model, generator=g)
            start = time.perf_counter()
            _, state = memory(block, hidden, state)
            times.append(time.perf_counter() - start)
    median = statistics.median(times[2:]) * 1e3
    print(f"{args.model}: {median:.1f} ms per {args.tokens}-token call (median of {len(times) - 2}; "
          f"titans from {Path(titans_cli.__file__).parent})")  # fmt: skip
    print(json.dumps({"bench": "context_memory", "model": args.model, "tokens": args.tokens,
                      "ms_per_call": median, "times_s": times, "site": titans_cli.__file__}))  # fmt: skip


if __name__ == "__main__":
    main()
