"""Whole model on a GPU: the eager stream against `GraphedStream` (CUDA graphs over aligned blocks).

    python bench/graphed_stream.py [--batch 1 64] [--tokens 65536] [--piece 4096] [--repeats 3]

The benchmark config (bench/model.py) streams one 128-token segment at a time through four MAC layers;
each segment issues about a thousand small operations, so a single stream on a GPU is bound by launches.
Both paths stream `--tokens` tokens per stream in `--piece`-token calls from a fresh state, as ingest
does; the first pass of each is a warm-up (Triton compiles, the graph is captured). Prints tokens/s,
milliseconds per segment, and the largest difference between the two paths' logits and end states.
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
from titans_cli.models.graphed_stream import GraphedStream


def stream(run, model: TitansModel, ids: torch.Tensor, piece: int):
    state, logits = model.init_state(ids.shape[0]), None
    torch.cuda.synchronize()
    start = time.perf_counter()
    for at in range(0, ids.shape[1], piece):
        out = run(ids[:, at : at + piece], state)
        state, logits = out.state, out.logits
    torch.cuda.synchronize()
    return time.perf_counter() - start, logits, state


def measure(batch: int, tokens: int, piece: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = TitansModel(TitansConfig(**BENCH_CONFIG)).cuda().eval()
    graphed = GraphedStream(model)
    ids = torch.randint(0, 256, (batch, tokens), device="cuda")
    times: dict[str, list[float]] = {"eager": [], "graphed": []}
    with torch.no_grad():
        for rep in range(repeats + 1):  # pass 0 warms up
            for name, run in (("eager", model.stream), ("graphed", graphed.stream)):
                seconds, logits, state = stream(run, model, ids, piece)
                if rep:
                    times[name].append(seconds)
                if name == "eager":
                    want = (logits, state)
        pairs = [(logits, want[0])] + [(a, b) for la, lb in zip(state.layers, want[1].layers)
                                       for k in la for a, b in [(la[k], lb[k])] if b.numel()]  # fmt: skip
        diff = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in pairs)
    eager, graph = (statistics.median(times[n]) for n in ("eager", "graphed"))
    segments = tokens / BENCH_CONFIG["segment_len"]
    return {"batch": batch, "tokens_per_stream": tokens, "piece": piece, "eager_tok_s": batch * tokens / eager,
            "graphed_tok_s": batch * tokens / graph, "eager_ms_per_segment": 1e3 * eager / segments,
            "graphed_ms_per_segment": 1e3 * graph / segments, "speedup": eager / graph,
            "max_rel_diff": diff, "times_s": times}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--tokens", type=int, default=65536, help="tokens per stream")
    parser.add_argument("--piece", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()}, {json.dumps(BENCH_CONFIG)}, TITANS_KERNEL={kernel_choice()}")
    print("| streams | tokens per stream | eager tok/s | graphed tok/s | graphed / eager | eager ms / segment "
          "| graphed ms / segment | max rel diff |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in args.batch:
        r = measure(batch, args.tokens, args.piece, args.repeats)
        rates = f"{r['eager_tok_s']:,.0f} | {r['graphed_tok_s']:,.0f} | {r['speedup']:.2f}×"
        ms = f"{r['eager_ms_per_segment']:.2f} | {r['graphed_ms_per_segment']:.2f}"
        print(f"| {batch} | {args.tokens:,} | {rates} | {ms} | {r['max_rel_diff']:.1e} |", flush=True)
        print(json.dumps({"bench": "graphed_stream", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), **r}), flush=True)


if __name__ == "__main__":
    main()
