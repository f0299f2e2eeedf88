"""How much of the whole model's GPU time is launch overhead? One MAC segment step eager vs as a CUDA graph.

    python bench/segment_graph.py [--batch 1 64] [--segments 64]

The benchmark config (bench/model.py) streams one 128-token segment per step through four MAC layers;
each step issues about a thousand small operations (torch.profiler on CPU counts ~940 outside the
memory recurrence), so a single stream on a GPU is bound by Python and kernel launches, not by the
kernels. This captures one aligned segment step of `TitansModel.stream` (including the copy of the new
state over the old) as a CUDA graph and replays it, against the same step run eagerly.

What it measures is an upper bound, not a product path: the graph bakes in the positions of the captured
segment (the rotary angles), so every replay recomputes that segment's positions. The timed work is the
same as a real step's. The first replay is checked against the eager step from the same state.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from model import BENCH_CONFIG

from titans_cli.kernels import kernel_choice
from titans_cli.models import TitansConfig, TitansModel
from titans_cli.models.state import TitansState


def _flat(state: TitansState) -> list[torch.Tensor]:
    return [t for layer in state.layers for _, t in sorted(layer.items())]


def measure(batch: int, segments: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = TitansModel(TitansConfig(**BENCH_CONFIG)).to(device).eval()
    seg = BENCH_CONFIG["segment_len"]
    ids = torch.randint(0, 256, (batch, seg * (segments + 2)), device=device)
    with torch.no_grad():
        state = model.stream(ids[:, :seg]).state  # compiles the kernels, fills the memory
        torch.cuda.synchronize()

        def eager_steps() -> float:
            s = state
            torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(segments):
                s = model.stream(ids[:, seg * (i + 1) : seg * (i + 2)], s).state
            torch.cuda.synchronize()
            return time.perf_counter() - start

        eager_steps()  # warm-up
        eager = statistics.median(eager_steps() for _ in range(3))

        # Static inputs: the segment's ids and a private copy of the state, rewritten in place by the graph.
        static_ids = ids[:, seg : 2 * seg].clone()
        static_state = TitansState(state.position, [{k: v.clone() for k, v in d.items()} for d in state.layers])
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                model.stream(static_ids, static_state)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = model.stream(static_ids, static_state)
            for old, new in zip(_flat(static_state), _flat(out.state)):
                old.copy_(new)
        want = model.stream(static_ids, state)
        graph.replay()
        diff = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                   for a, b in zip(_flat(static_state), _flat(want.state)) if b.numel())  # fmt: skip
        diff = max(diff, ((out.logits - want.logits).abs().max() / want.logits.abs().max()).item())

        def graph_steps() -> float:
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(segments):
                graph.replay()
            torch.cuda.synchronize()
            return time.perf_counter() - start

        graph_steps()
        graphed = statistics.median(graph_steps() for _ in range(3))
    tokens = batch * seg * segments
    return {"batch": batch, "segments": segments, "eager_ms_per_segment": 1e3 * eager / segments,
            "graph_ms_per_segment": 1e3 * graphed / segments, "eager_tok_s": tokens / eager,
            "graph_tok_s": tokens / graphed, "speedup": eager / graphed, "max_rel_diff": diff}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--segments", type=int, default=64)
    args = parser.parse_args()
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}, {json.dumps(BENCH_CONFIG)}, TITANS_KERNEL={kernel_choice()}")
    print("| batch | eager ms / segment | graph ms / segment | eager tok/s | graph tok/s | graph / eager | max diff |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in args.batch:
        r = measure(batch, args.segments, device)
        ms = f"{r['eager_ms_per_segment']:.2f} | {r['graph_ms_per_segment']:.2f}"
        rates = f"{r['eager_tok_s']:,.0f} | {r['graph_tok_s']:,.0f} | {r['speedup']:.1f}×"
        print(f"| {batch} | {ms} | {rates} | {r['max_rel_diff']:.1e} |", flush=True)
        print(json.dumps({"bench": "segment_graph", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), **r}), flush=True)


if __name__ == "__main__":
    main()
