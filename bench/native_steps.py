"""The fused CPU recurrence's chunk steps in C (kernels/memory_cpu_native.c) against its torch steps.

    python bench/native_steps.py [--widths 64 128] [--chunks 8 16 32 64] [--matrices 1 2 8 32] [--tokens 4096]
                                 [--repeats 3]

Depth 2, expansion 2, gradient clip 1, random weights and gates (bench/chunk_threads.py's inputs);
"matrices" is streams × heads. Both run through `memory_recurrence_cpu` with torch's default thread
count, the C steps by setting `memory_cpu.native`, the torch steps with it set to None; they alternate
within each repeat. Medians; the last column is the largest relative difference of the outputs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from chunk_threads import inputs

from titans_cli.kernels import memory_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--matrices", type=int, nargs="+", default=[1, 2, 8, 32])
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per matrix")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if memory_cpu.native is None:
        raise SystemExit("the C extension is not built: install a C compiler and rerun `pip install -e .`")
    c_steps = memory_cpu.native
    print("| width | chunk | matrices | torch steps, tok/s | C steps, tok/s | ratio | max rel. diff |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for width in args.widths:
        for chunk in args.chunks:
            for matrices in args.matrices:
                data = inputs(matrices, args.tokens, width)
                times: dict[str, list[float]] = {"torch": [], "C": []}
                outputs = {}
                with torch.no_grad():
                    for _ in range(args.repeats + 1):  # the first round warms up
                        for name in times:
                            memory_cpu.native = c_steps if name == "C" else None
                            started = time.perf_counter()
                            outputs[name] = memory_cpu.memory_recurrence_cpu(*data, chunk_size=chunk, grad_clip=1.0)
                            times[name].append(time.perf_counter() - started)
                memory_cpu.native = c_steps
                rate = {name: matrices * args.tokens / statistics.median(t[1:]) for name, t in times.items()}
                fast, slow = ([out.y, *out.weights] for out in (outputs["C"], outputs["torch"]))
                diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(fast, slow))
                print(f"| {width} | {chunk} | {matrices} | {rate['torch']:,.0f} | {rate['C']:,.0f} "
                      f"| {rate['C'] / rate['torch']:.2f}× | {diff:.1e} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
