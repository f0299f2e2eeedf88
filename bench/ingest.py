"""`titans ingest` throughput, commit overhead and peak memory, beside titans-pytorch in the same run.

    python bench/ingest.py [--sizes-mb 0.25,1] [--no-peer]

Each size is ingested by a fresh `titans ingest` process (benchmark config of issue #2, random
weights: speed does not depend on them) with a commit every 60 s (the default); its peak RSS is read
from the kernel for that process alone. The model's own forward throughput over the same tokens is
measured in the same run, and the peer streams the same number of tokens through its NeuralMemory
layer-by-layer API in its own virtual environment (bench/peer_env.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from titans_cli.models import TitansConfig, TitansModel

sys.path.insert(0, str(Path(__file__).parent))
from model import BENCH_CONFIG, PEER_PYTHON


def make_text(path: Path, size: int) -> None:
    rng = random.Random(0)
    words = [bytes(rng.choice(b"etaoinshrdlu") for _ in range(rng.randint(2, 9))) for _ in range(5000)]
    with open(path, "wb") as f:
        written = 0
        while written < size:
            line = b" ".join(rng.choice(words) for _ in range(12)) + b"\n"
            line = line[: size - written]
            f.write(line)
            written += len(line)


def run_ingest(text: Path, model: Path, memory: Path) -> dict:
    """One ingest in a child process; returns its report and its own peak RSS."""
    code = (
        "import resource, sys; from titans_cli.cli import main; rc = main(sys.argv[1:]); "
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)"
    )
    cmd = [sys.executable, "-c", code, "ingest", str(text), "-m", str(memory), "--model", str(model), "-q", "--json"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    report = json.loads(out.stdout.strip().splitlines()[-1])
    rss_kb = int(next(line.split()[1] for line in out.stderr.splitlines() if line.startswith("RSS")))
    return {"report": report, "wall_s": wall, "peak_rss_mb": rss_kb / 1024}


def forward_tokens_per_s(tokens: int) -> float:
    torch.manual_seed(0)
    model = TitansModel(TitansConfig(**BENCH_CONFIG)).eval()
    ids = torch.randint(0, 256, (1, 4096))
    with torch.no_grad():
        model(ids[:, :512])
        state = model.init_state(1)
        start = time.perf_counter()
        done = 0
        while done < tokens:
            _, state = model(ids, state)
            done += ids.shape[1]
    return done / (time.perf_counter() - start)


def peer_stream(tokens: int) -> dict | None:
    if not PEER_PYTHON.exists():
        return None
    cmd = [str(PEER_PYTHON), str(Path(__file__).parent / "peer_titans_pytorch.py"), "--mode", "stream",
           "--tokens", str(tokens), "--repeats", "1", "--threads", "2"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", default="0.25,1")
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    sizes = [int(float(s) * 1_000_000) for s in args.sizes_mb.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        TitansModel(TitansConfig(**BENCH_CONFIG, name="bench")).save_pretrained(tmp / "model")
        for size in sizes:
            text = tmp / f"input-{size}.txt"
            make_text(text, size)
            result = run_ingest(text, tmp / "model", tmp / f"mem-{size}")
            report = result["report"]
            rows.append({
                "input_bytes": size,
                "tokens": report["tokens_added"],
                "wall_s": result["wall_s"],
                "ingest_s": report["seconds"],
                "bytes_per_s": size / report["seconds"],
                "tokens_per_s": report["tokens_added"] / report["seconds"],
                "commits": report["commits"],
                "commit_share": report["commit_seconds"] / report["seconds"],
                "peak_rss_mb": result["peak_rss_mb"],
            })  # fmt: skip
    forward = forward_tokens_per_s(min(sizes[0], 65536))
    peer = None if args.no_peer else peer_stream(min(sizes[0], 8192))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"max RSS of this driver {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")  # fmt: skip
    print("| input | tokens | ingest s | bytes/s | tokens/s | commits | commit share | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['input_bytes'] / 1e6:g} MB | {r['tokens']} | {r['ingest_s']:.1f} | {r['bytes_per_s']:.0f} | "
              f"{r['tokens_per_s']:.0f} | {r['commits']} | {r['commit_share']:.2%} | {r['peak_rss_mb']:.0f} |")
    print(f"model forward over the same config (streamed 4096-token calls): {forward:.0f} tokens/s")
    if peer:
        rate = peer.get("tokens_per_s", 0)
        print(f"titans-pytorch 0.5.5 streaming ({peer.get('tokens')} tokens): {rate:.0f} tokens/s")
    print(json.dumps({"rows": rows, "forward_tokens_per_s": forward, "peer": peer}))


if __name__ == "__main__":
    main()
