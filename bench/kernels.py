"""Tokens/s of one memory layer on CPU: the chunked torch path against the inference CPU path.

    python bench/kernels.py [--tokens 1048576] [--piece 16384] [--batch 1 8] [--repeats 3]
                            [--threads 2] [--peer-tokens 8192] [--no-peer]

Configuration: d_model 256, 4 heads (head width 64), memory depth 2, expansion 2, chunk 64, float32,
no autograd. Each path streams `--tokens` tokens per stream (batch B streams get `--tokens // B` each)
in pieces of `--piece` tokens, carrying the memory state from piece to piece as ingest does. Two levels:

  recurrence  `memory_recurrence_chunked` / `memory_recurrence_cpu` alone, on one piece of projections
              fed again and again (the arithmetic does not depend on the values);
  layer       `NeuralMemory.forward` (projections, conv, gates, recurrence, read-out) on random layer
              inputs, with the layer's recurrence swapped between the two paths.

The two paths alternate within every repeat, so both see the same machine load; figures are medians
of wall-clock time. The peer is titans-pytorch's NeuralMemory layer (`bench/peer_titans_pytorch.py
--mode memory`, one call over `--peer-tokens` tokens, with the same memory: 4 heads of width 64, depth 2,
expansion 2), run in its own venv (bench/peer_env.sh) and skipped if that is missing.

Prints a Markdown table, then one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from titans_cli.kernels import memory_recurrence_chunked
from titans_cli.kernels.memory_cpu import memory_recurrence_cpu
from titans_cli.models import TitansConfig, neural_memory
from titans_cli.models.neural_memory import NeuralMemory

PATHS = {"chunked": memory_recurrence_chunked, "cpu": memory_recurrence_cpu}
CONFIG = dict(d_model=256, n_heads=4, memory_depth=2, memory_expansion=2, chunk_size=64)
HERE = Path(__file__).parent
PEER_PYTHON = HERE / ".peer-venv" / "bin" / "python"


def recurrence_stream(layer: NeuralMemory, batch: int, length: int, piece: int):
    """A function that streams `length` tokens per stream through the recurrence alone.

    Its inputs are the layer's own projections and gates of one random piece, captured from a call of
    the layer: random q, k and gates let the inner loop diverge, which real projections do not.
    """
    captured = []

    def capture(*args):
        captured.append(args[:6])
        return memory_recurrence_chunked(*args)

    neural_memory.memory_recurrence = capture
    x = torch.randn(batch, piece, CONFIG["d_model"], generator=torch.Generator().manual_seed(0))
    layer(x, layer.init_state(batch))
    neural_memory.memory_recurrence = memory_recurrence_chunked
    inputs = captured[0]

    def run(path):
        state = layer.init_state(batch)
        weights = layer.weights(state)
        momentum = [state[f"mem.s{i}"] for i in range(len(weights))]
        for _ in range(length // piece):
            out = path(*inputs, weights, momentum, layer.chunk_size)
            weights, momentum = out.weights, out.momentum
        return out

    return run


def layer_stream(layer: NeuralMemory, batch: int, length: int, piece: int):
    """A function that streams `length` tokens per stream through the whole memory layer."""
    x = torch.randn(batch, piece, CONFIG["d_model"], generator=torch.Generator().manual_seed(0))

    def run(path):
        neural_memory.memory_recurrence = path  # the name the layer calls
        state = layer.init_state(batch)
        for _ in range(length // piece):
            out, state, _ = layer(x, state)
        return out

    return run


def measure(run, repeats: int) -> dict[str, list[float]]:
    """Wall seconds per repeat for each path, the paths alternating; one untimed warm-up each.

    The warm-up's last outputs must be finite: a diverging memory (or denormals) is not a benchmark.
    """
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    for repeat in range(repeats + 1):
        for name, path in PATHS.items():
            start = time.perf_counter()
            out = run(path)
            if repeat:
                times[name].append(time.perf_counter() - start)
            else:
                tensors = out if isinstance(out, Tensor) else [out.y, *out.weights, *out.momentum]
                if not all(torch.isfinite(t).all() for t in tensors):
                    raise SystemExit(f"{name}: outputs are not finite")
    return times


def measure_peer(tokens: int, threads: int) -> dict:
    script = HERE / "peer_titans_pytorch.py"
    if not PEER_PYTHON.exists() or not script.exists():
        missing = PEER_PYTHON if not PEER_PYTHON.exists() else script
        return {"skipped": f"{missing} missing (bash bench/peer_env.sh makes the venv)"}
    cmd = [str(PEER_PYTHON), str(script), "--mode", "memory", "--tokens", str(tokens),
           "--warmup", "0", "--repeats", "1", "--threads", str(threads)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"skipped": f"peer failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"tokens": tokens, "tokens_per_s": result["tokens_per_s"], "times_s": result["times_s"],
            "command": " ".join(cmd[1:])}  # fmt: skip


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--tokens", type=int, default=1 << 20, help="tokens per run, over all streams")
    parser.add_argument("--piece", type=int, default=16384, help="tokens per call and stream (× chunk)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    levels = ["recurrence", "layer"]
    parser.add_argument("--levels", nargs="+", choices=levels, default=levels)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer-tokens", type=int, default=8192)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = NeuralMemory(TitansConfig(**CONFIG)).eval()
    if args.piece % layer.chunk_size:
        parser.error(f"--piece must be a multiple of the chunk size {layer.chunk_size}")

    rows = []
    with torch.no_grad():
        for level in args.levels:
            for batch in args.batch:
                length = args.tokens // batch
                piece = min(args.piece, length)
                make = recurrence_stream if level == "recurrence" else layer_stream
                run = make(layer, batch, length // piece * piece, piece)
                times = measure(run, args.repeats)
                tokens = batch * (length // piece * piece)
                rate = {name: tokens / statistics.median(t) for name, t in times.items()}
                rows.append({"level": level, "batch": batch, "tokens": tokens, "piece": piece,
                             "chunked_tokens_per_s": rate["chunked"], "cpu_tokens_per_s": rate["cpu"],
                             "speedup": rate["cpu"] / rate["chunked"], "times_s": times})  # fmt: skip
        neural_memory.memory_recurrence = memory_recurrence_chunked
    peer = {"skipped": "--no-peer"} if args.no_peer else measure_peer(args.peer_tokens, args.threads)

    print(f"memory layer, d_model 256, 4 heads, depth 2, chunk 64, float32, {args.threads} threads, "
          f"{args.repeats} repeats (median)\n")  # fmt: skip
    print("| level | batch | tokens | piece | chunked tok/s | cpu tok/s | cpu / chunked |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        rates = f"{r['chunked_tokens_per_s']:,.0f} | {r['cpu_tokens_per_s']:,.0f} | {r['speedup']:.2f}×"
        print(f"| {r['level']} | {r['batch']} | {r['tokens']:,} | {r['piece']:,} | {rates} |")
    if "skipped" in peer:
        print(f"\npeer titans-pytorch skipped: {peer['skipped']}")
    else:
        print(f"\npeer titans-pytorch NeuralMemory (--mode memory, {peer['tokens']:,} tokens, one call): "
              f"{peer['tokens_per_s']:,.0f} tok/s")  # fmt: skip
    print(json.dumps({
        "bench": "kernels", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "config": CONFIG,
        "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "loadavg": os.getloadavg()},
        "results": rows, "peer": peer,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
