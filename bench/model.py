"""Forward throughput of the whole Titans model on CPU, beside titans-pytorch in the same run.

    python bench/model.py [--tokens 8192] [--repeats 3] [--no-peer]

The configuration is the benchmark config of issue #2 (d_model 256, 4 layers, 4 heads, memory depth 2,
chunk 64, MAC segment 128). The peer runs in its own virtual environment (bench/peer_env.sh) with
matched dimensions; this script never imports it.
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


def measure_peer(tokens: int, repeats: int) -> dict | None:
    """The peer needs minutes per 8192-token forward here: one warm-up and `repeats` timed runs."""
    if not PEER_PYTHON.exists():
        print(f"peer skipped: {PEER_PYTHON} missing (run bench/peer_env.sh)", file=sys.stderr)
        return None
    cmd = [str(PEER_PYTHON), str(Path(__file__).parent / "peer_titans_pytorch.py"), "--mode", "model",
           "--tokens", str(tokens), "--warmup", "1", "--repeats", str(repeats), "--threads", "2"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(impl="titans-pytorch 0.5.5", tokens=result["tokens_per_run"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = [measure_ours(args.tokens, args.repeats)]
    if not args.no_peer and (peer := measure_peer(args.tokens, args.peer_repeats)):
        rows.append(peer)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| implementation | tokens | tokens/s (median) |")
    print("| --- | --- | --- |")
    for row in rows:
        print(f"| {row['impl']} | {row['tokens']} | {row['tokens_per_s']:.0f} |")
    if len(rows) == 2:
        print(f"ratio: {rows[0]['tokens_per_s'] / rows[1]['tokens_per_s']:.1f}x")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
