"""Tokens/s of the memory recurrence: each fast path against the plain chunked torch path, same run.

    python bench/kernels.py [--device cpu|cuda] [--tokens 1048576] [--piece 16384] [--batch 1 8]
                            [--levels recurrence layer model] [--repeats 3] [--threads 2]
                            [--peer-tokens 8192] [--peer-python PATH] [--no-peer] [--bundled NAME]

Configuration: the benchmark config of issue #2 (d_model 256, 4 heads of width 64, memory depth 2,
expansion 2, chunk 64; the model has 4 MAC layers, segment 128), float32 weights and state, no autograd.
`--bundled dna-tiny` (or text-tiny) times the first memory layer of that bundled model instead, with its
trained weights and gates (the forgetting gate closed, as below), chunk of 8 and gradient clip
(recurrence and layer levels). On CPU
the fast path is `memory_recurrence_cpu`, on CUDA the Triton kernel (chunks of 8 are forced with
TITANS_KERNEL=triton, as the dispatcher does not yet pick them). Each stream gets
`--tokens // batch` tokens, fed in pieces of `--piece` tokens that carry the state from piece to piece as
ingest does. Three levels:

  recurrence  `memory_recurrence_*` alone, on one piece of the layer's real projections fed again and
              again (the arithmetic does not depend on the values);
  layer       `NeuralMemory.forward` (projections, conv, gates, recurrence, read-out) on random inputs;
  model       `TitansModel.forward` over random byte tokens (attention, MAC's segment reads, head).

Layer and model pick their path through `TITANS_KERNEL`, so MAC's read follows the recurrence's path.
The paths alternate within every repeat, so both see the same machine load; figures are medians of
wall-clock time (CUDA synchronised). On CUDA the script also measures the bf16 matmul ceiling
(8192³ on random data), counts the recurrence's matmul FLOPs to report achieved TFLOP/s, and
checks that the two paths agree. The peer is titans-pytorch's NeuralMemory layer and MAC model
(`bench/peer_titans_pytorch.py`, one call over `--peer-tokens` tokens, same memory widths and chunk: 4
heads of 64, depth 2, expansion 2, or the bundled layer's; with --bundled its layer only, untrained and
unclipped, as it has no such options) in its own environment (bench/peer_env.sh); skipped if missing.

Prints a Markdown table, then one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from titans_cli.kernels import memory_recurrence_chunked
from titans_cli.kernels.memory_cpu import memory_recurrence_cpu
from titans_cli.model_registry import bundled_models, resolve_model
from titans_cli.models import TitansConfig, TitansModel, neural_memory
from titans_cli.models.neural_memory import NeuralMemory

sys.path.insert(0, str(Path(__file__).parent))
from model import BENCH_CONFIG

HERE = Path(__file__).parent
PEER_PYTHON = HERE / ".peer-venv" / "bin" / "python"
LAYER_CONFIG = {k: BENCH_CONFIG[k] for k in ("d_model", "n_heads", "memory_depth", "chunk_size")}


def paths_for(device: torch.device) -> dict[str, tuple]:
    """name → (recurrence function, TITANS_KERNEL value) of the two paths compared on this device."""
    if device.type == "cuda":
        from titans_cli.kernels.memory_triton import memory_recurrence_triton

        return {"chunked": (memory_recurrence_chunked, "torch"), "triton": (memory_recurrence_triton, "triton")}
    return {"chunked": (memory_recurrence_chunked, "torch"), "cpu": (memory_recurrence_cpu, "cpu")}


def recurrence_stream(layer: NeuralMemory, batch: int, length: int, piece: int, device: torch.device):
    """A function that streams `length` tokens per stream through the recurrence alone.

    Its inputs are the layer's own projections and gates of one random piece, captured from a call of
    the layer: random q, k and gates let the inner loop diverge, which real projections do not.
    """
    captured = []

    def capture(*args):
        captured.append(args[:6])
        return memory_recurrence_chunked(*args)

    dispatcher = neural_memory.memory_recurrence
    neural_memory.memory_recurrence = capture  # the name the layer calls
    x = torch.randn(batch, piece, layer.qkv.in_features, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        layer(x, layer.init_state(batch))
    finally:
        neural_memory.memory_recurrence = dispatcher
    inputs = captured[0]

    def run(path):
        recurrence, _ = path
        state = layer.init_state(batch)
        weights = layer.weights(state)
        momentum = [state[f"mem.s{i}"] for i in range(len(weights))]
        for _ in range(length // piece):
            out = recurrence(*inputs, weights, momentum, layer.chunk_size, layer.grad_clip)
            weights, momentum = out.weights, out.momentum
        return out.y

    return run


def layer_stream(layer: NeuralMemory, batch: int, length: int, piece: int, device: torch.device):
    """A function that streams `length` tokens per stream through the whole memory layer."""
    x = torch.randn(batch, piece, layer.qkv.in_features, generator=torch.Generator().manual_seed(0)).to(device)

    def run(path):
        os.environ["TITANS_KERNEL"] = path[1]
        state = layer.init_state(batch)
        for _ in range(length // piece):
            out, state, _ = layer(x, state)
        return out

    return run


def model_stream(model: TitansModel, batch: int, length: int, piece: int, device: torch.device):
    """A function that streams `length` tokens per stream through the whole model."""
    ids = torch.randint(0, 256, (batch, piece), generator=torch.Generator().manual_seed(0)).to(device)

    def run(path):
        os.environ["TITANS_KERNEL"] = path[1]
        state = None
        for _ in range(length // piece):
            logits, state = model(ids, state)
        return logits

    return run


def close_forgetting_gate(memory: NeuralMemory) -> None:
    """α_t ≈ 0. On random inputs values are unrelated to keys, so the best memory is near zero, and with
    the initial forgetting (α ≈ 0.0025) a random layer's weights decay to exactly zero within tens
    of thousands of tokens (measured on CPU, one stream: max |y| exactly 0 after 65,536 tokens): the paths
    would then be timed, and compared, on zeros. With the gate closed, max |y| was 0.58 there."""
    with torch.no_grad():
        memory.gates.bias.view(3, -1)[2].fill_(-30.0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(run, paths: dict, repeats: int, device: torch.device) -> tuple[dict[str, list[float]], float]:
    """Wall seconds per repeat for each path, the paths alternating, after one untimed warm-up each.

    Also returns the largest difference between the paths' warm-up outputs relative to the largest
    output: a fast path that disagrees (over 1e-3), or a memory that diverges or has decayed to zero, is
    not a benchmark.
    """
    times: dict[str, list[float]] = {name: [] for name in paths}
    outputs = {}
    for repeat in range(repeats + 1):
        for name, path in paths.items():
            synchronize(device)
            start = time.perf_counter()
            out = run(path)
            synchronize(device)
            if repeat:
                times[name].append(time.perf_counter() - start)
            else:
                if not torch.isfinite(out).all():
                    raise SystemExit(f"{name}: outputs are not finite")
                outputs[name] = out.double()
    reference, *others = outputs.values()
    scale = reference.abs().max()
    if scale == 0:
        raise SystemExit("the outputs are all zero: nothing would be compared")
    difference = max(((o - reference).abs().max() / scale).item() for o in others)
    if difference > 1e-3:
        raise SystemExit(f"the paths disagree: largest difference {difference:.1e} of the largest output")
    return times, difference


def recurrence_flops_per_token(head_dim: int, hidden: int, depth: int, chunk: int) -> int:
    """Multiply-adds ×2 of one head's chunk step per token, as the kernel (and `_chunk`) compute it.

    Per layer of shape out×in: forward on the keys (out·in), its backward δ (out·in, not for the first
    layer), the dual-form read (W₀r, S₀r: 2·out·in; aᵀr: C·in; δ(c⊙·): out·C), and the commit of W and S
    (2·out·in); plus the gate matrix c = E·B (C² per token).
    """
    widths = [head_dim] + [hidden] * (depth - 1) + [head_dim]
    macs = chunk * chunk
    for layer in range(depth):
        fan_in, fan_out = widths[layer], widths[layer + 1]
        macs += fan_out * fan_in * (1 + (layer > 0) + 2 + 2) + chunk * (fan_in + fan_out)
    return 2 * macs


def matmul_ceiling_tflops(device: torch.device, n: int = 8192, repeats: int = 10) -> float:
    """bf16 n×n×n matmul on random data: mean TFLOP/s of `repeats` products after three warm-ups."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def measure_peer(python: Path, mode: str, tokens: int, batch: int, threads: int, device: str,
                 widths: list[str]) -> dict:  # fmt: skip
    script = HERE / "peer_titans_pytorch.py"
    if not Path(python).exists() and not shutil.which(str(python)):
        return {"skipped": f"{python} missing (bash bench/peer_env.sh makes the venv)"}
    cmd = [str(python), str(script), "--mode", mode, "--tokens", str(tokens), "--batch", str(batch),
           "--warmup", "1", "--repeats", "3", "--threads", str(threads), "--device", device, *widths]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"skipped": f"peer failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"mode": mode, "batch": batch, "tokens": tokens * batch, "tokens_per_s": result["tokens_per_s"],
            "times_s": result["times_s"], "command": " ".join(cmd[1:])}  # fmt: skip


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tokens", type=int, default=1 << 20, help="tokens per run, over all streams")
    parser.add_argument("--piece", type=int, default=16384, help="tokens per call and stream (× chunk)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    levels = ["recurrence", "layer", "model"]
    parser.add_argument("--levels", nargs="+", choices=levels, default=levels[:2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer-tokens", type=int, default=8192, help="tokens per stream of the peer's call")
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--bundled", choices=bundled_models(), help="time this bundled model's first memory layer")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.bundled:
        if "model" in args.levels:
            parser.error("--bundled times the recurrence and layer levels only")
        bundled = resolve_model(args.bundled).load(device).eval()
        layer = next(m for m in bundled.modules() if isinstance(m, NeuralMemory))
        close_forgetting_gate(layer)  # text-tiny's trained gate forgets random inputs to exact zeros
        config, peer_modes = {"bundled": args.bundled, **bundled.config.to_dict()}, ["memory"]
    else:
        layer = NeuralMemory(TitansConfig(**LAYER_CONFIG)).to(device).eval()
        model = TitansModel(TitansConfig(**BENCH_CONFIG)).to(device).eval()
        for memory in [layer, *(m for m in model.modules() if isinstance(m, NeuralMemory))]:
            close_forgetting_gate(memory)
        config, peer_modes = BENCH_CONFIG, ["memory", "model"]
    if args.piece % layer.chunk_size:
        parser.error(f"--piece must be a multiple of the chunk size {layer.chunk_size}")
    paths = paths_for(device)
    fast = list(paths)[1]
    depth = len(layer.initial)
    hidden = layer.initial[0].shape[-2] if depth > 1 else layer.head_dim
    flops = recurrence_flops_per_token(layer.head_dim, hidden, depth, layer.chunk_size) * layer.n_heads
    started = datetime.datetime.now().isoformat(timespec="seconds")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} threads"
    print(f"{name}: {args.bundled or 'benchmark config'}, d_model {layer.qkv.in_features}, {layer.n_heads} heads "
          f"of {layer.head_dim}, memory depth {depth}, chunk {layer.chunk_size}, clip {layer.grad_clip}, float32; "
          f"{args.repeats} repeats (median); recurrence matmul FLOPs {flops:,} per token and layer\n")  # fmt: skip
    print(f"| level | batch | tokens | piece | chunked tok/s | {fast} tok/s | {fast} / chunked | "
          f"{fast} TFLOP/s | max rel diff |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    rows = []
    with torch.no_grad():
        for level in args.levels:
            for batch in args.batch:
                length = args.tokens // batch
                piece = min(args.piece, length)
                length = length // piece * piece
                if level == "recurrence":
                    run = recurrence_stream(layer, batch, length, piece, device)
                elif level == "layer":
                    run = layer_stream(layer, batch, length, piece, device)
                else:
                    run = model_stream(model, batch, length, piece, device)
                times, difference = measure(run, paths, args.repeats, device)
                tokens = batch * length
                rate = {name: tokens / statistics.median(t) for name, t in times.items()}
                layers = 1 if level != "model" else BENCH_CONFIG["n_layers"]
                tflops = {name: r * flops * layers / 1e12 for name, r in rate.items()}
                rows.append({"level": level, "batch": batch, "tokens": tokens, "piece": piece,
                             "tokens_per_s": rate, "speedup": rate[fast] / rate["chunked"],
                             "recurrence_tflops": tflops, "relative_difference": difference,
                             "times_s": times})  # fmt: skip
                cells = [level, batch, f"{tokens:,}", f"{piece:,}", f"{rate['chunked']:,.0f}",
                         f"{rate[fast]:,.0f}", f"{rate[fast] / rate['chunked']:.2f}×", f"{tflops[fast]:.3f}",
                         f"{difference:.1e}"]  # fmt: skip
                print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    os.environ.pop("TITANS_KERNEL", None)
    ceiling = matmul_ceiling_tflops(device) if device.type == "cuda" else None
    if ceiling:
        print(f"\nbf16 matmul ceiling (8192³, random): {ceiling:.0f} TFLOP/s (the kernel's products are "
              "float32 as TF32×3)")  # fmt: skip
    peers = []
    # The peer's memory at this layer's widths (its script's defaults are the benchmark config's).
    widths = ["--dim", layer.qkv.in_features, "--mem-heads", layer.n_heads, "--mem-dim-head", layer.head_dim,
              "--mem-depth", depth, "--mem-expansion", hidden // layer.head_dim, "--chunk-size", layer.chunk_size]
    widths = [str(w) for w in widths]
    for mode in [] if args.no_peer else peer_modes:
        for batch in args.batch if device.type == "cuda" else [1]:
            peer = measure_peer(args.peer_python, mode, args.peer_tokens, batch, args.threads, args.device,
                                widths if mode == "memory" else [])  # fmt: skip
            peers.append(peer)
            if "skipped" in peer:
                print(f"peer titans-pytorch {mode}, batch {batch} skipped: {peer['skipped']}", flush=True)
            else:
                print(f"peer titans-pytorch {mode}, batch {batch}, {peer['tokens']:,} tokens in one call: "
                      f"{peer['tokens_per_s']:,.0f} tok/s", flush=True)  # fmt: skip
    print(json.dumps({
        "bench": "kernels", "date": started,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "config": config,
        "device": name, "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "loadavg": os.getloadavg()},
        "flops_per_token_and_layer": flops, "matmul_ceiling_tflops": ceiling, "results": rows, "peers": peers,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
