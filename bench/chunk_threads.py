"""Intra-op threads for the fused CPU recurrence: torch's count against one thread.

    python bench/chunk_threads.py [--matrices 1 2 4 8] [--width 128] [--chunk 8] [--tokens 2048] [--repeats 7]

By default the shapes of dna-tiny's memory (one head of width 128, depth 2, expansion 2, chunk 8,
gradient clip 1) with 1–8 matrices (streams × heads); `--width 64` is text-tiny's head, `--width 64
--chunk 64` the benchmark config's. Each run follows a large two-thread matmul, as in the model,
where the projections run before the recurrence. "2 threads" replaces `_chunk_threads` (which steps one
matrix, or several small ones, on one thread) by torch's own count; "1 thread" runs every call on one. Medians.
These are the torch steps' settings: the C steps (bench/native_steps.py) are switched off here.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from titans_cli.kernels import memory_cpu


def inputs(matrices: int, tokens: int, width: int = 128, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    shape = (matrices, 1, tokens)
    q, k = rand(*shape, width) / width**0.5, rand(*shape, width) / width**0.5
    v = rand(*shape, width)
    theta = 0.25 * torch.rand(*shape, generator=g)
    log_eta, log_keep = -4 * torch.rand(*shape, generator=g), -1e-4 * torch.rand(*shape, generator=g)
    hidden = 2 * width
    weights = [rand(matrices, 1, hidden, width) / width**0.5, rand(matrices, 1, width, hidden) / hidden**0.5]
    momentum = [0.01 * torch.randn_like(w) for w in weights]
    return q, k, v, theta, log_eta, log_keep, weights, momentum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--width", type=int, default=128, help="head width (the hidden layer is twice it)")
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    policy, memory_cpu.native = memory_cpu._chunk_threads, None
    big, other = torch.randn(4096, 512), torch.randn(512, 512)
    for matrices in args.matrices:
        data = inputs(matrices, args.tokens, args.width)
        times: dict[str, list[float]] = {"policy": [], "2 threads": [], "1 thread": []}
        for _ in range(args.repeats):
            for name in times:
                torch.set_num_threads(2)
                big @ other
                memory_cpu._chunk_threads = (lambda *_: contextlib.nullcontext()) if name == "2 threads" else policy
                torch.set_num_threads(1 if name == "1 thread" else 2)
                started = time.perf_counter()
                with torch.no_grad():
                    memory_cpu.memory_recurrence_cpu(*data, chunk_size=args.chunk, grad_clip=1.0)
                times[name].append(time.perf_counter() - started)
        rates = {name: matrices * args.tokens / statistics.median(t) for name, t in times.items()}
        print(f"{matrices} matrices: " + ", ".join(f"{name} {rate:,.0f} tok/s" for name, rate in rates.items())
              + f"; 1 thread / 2 threads {rates['1 thread'] / rates['2 threads']:.2f}")  # fmt: skip
    memory_cpu._chunk_threads = policy


if __name__ == "__main__":
    main()
