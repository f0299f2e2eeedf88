"""Forward throughput of the whole Titans model on CPU, beside titans-pytorch in the same run.

    python bench/model.py [--tokens 8192] [--repeats 3] [--peer-mem-batch-size 0 64] [--no-peer]

The configuration is the benchmark config of issue #2 (d_model 256, 4 layers, 4 heads, memory depth 2,
chunk 64, MAC segment 128). The peer runs in its own virtual environment (bench/peer_env.sh) with
matched dimensions, memory heads included (width 64, expansion 2; titans-pytorch's own default is heads as
wide as the model with expansion 4); this script never imports it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from titans_cli.models import TitansConfig, TitansModel

BENCH_CONFIG = dict(variant="mac", vocab_size=260, d_model=256, n_layers=4, n_heads=4, memory_depth=2,
                    chunk_size=64, segment_len=128, n_persistent=4)  # fmt: skip
PEER_PYTHON = Path(__file__).parent / ".peer-venv" / "bin" / "python"


def measure_ours(tokens: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = TitansModel(TitansConfig(**BENCH_CONFIG)).eval()
    ids = torch.randint(0, 256, (1, tokens))
    times = []
    with torch.no_grad():
        model(ids[:, :1024])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - start)
    return {"impl": "titans (this repo)", "tokens": tokens, "seconds": times,
            "tokens_per_s": tokens / statistics.median(times)}  # fmt: skip


def measure_peer(tokens: int, repeats: int, batch_size: int | None) -> dict | None:
    """One warm-up and `repeats` timed runs. `batch_size`: titans-pytorch's neural_memory_batch_size (None,
    its default, takes every chunk's gradient at the call's initial memory weights; 64 refreshes them
    every 64 tokens, as our chunked form does)."""
    if not PEER_PYTHON.exists():
        print(f"peer skipped: {PEER_PYTHON} missing (run bench/peer_env.sh)", file=sys.stderr)
        return None
    cmd = [str(PEER_PYTHON), str(Path(__file__).parent / "peer_titans_pytorch.py"), "--mode", "model",
           "--tokens", str(tokens), "--warmup", "1", "--repeats", str(repeats), "--threads", "2"]  # fmt: skip
    if batch_size is not None:
        cmd += ["--mem-batch-size", str(batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(impl="titans-pytorch 0.5.5", tokens=result["tokens_per_run"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument(
        "--peer-mem-batch-size",
        type=int,
        nargs="+",
        default=[0],
        help="the peer's neural_memory_batch_size, one peer run each; 0 = its default (None)",
    )
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = [measure_ours(args.tokens, args.repeats)]
    for batch_size in [] if args.no_peer else args.peer_mem_batch_size:
        if peer := measure_peer(args.tokens, args.peer_repeats, batch_size or None):
            peer["impl"] += f", neural_memory_batch_size {batch_size or None}"
            rows.append(peer)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| implementation | tokens | tokens/s (median) |")
    print("| --- | --- | --- |")
    for row in rows:
        print(f"| {row['impl']} | {row['tokens']} | {row['tokens_per_s']:.0f} |")
    for peer in rows[1:]:
        print(f"ratio vs {peer['impl']}: {rows[0]['tokens_per_s'] / peer['tokens_per_s']:.2f}x")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
