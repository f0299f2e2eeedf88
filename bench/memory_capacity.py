"""How many associations can one memory head hold after a single pass? (the limit behind the model cards)

Writes N random (key, value) pairs into a freshly initialised memory head with the real recurrence
(chunked, momentum η, clipped inner gradients, no forgetting), then reads every key back with the final
weights and reports recall@1 (is the read nearest, by cosine, to its own value among the N?) and the mean
cosine. Keys are random unit vectors, values random Gaussian: the best case for an associative memory,
since trained keys of real inputs are correlated. θ is swept and the best is kept.

    python bench/memory_capacity.py [--widths 32,64,128] [--depths 1,2] [--seeds 3] [--thetas 0.01,0.03,0.1]
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
from torch.nn import functional as F

from titans_cli.kernels import memory_read, memory_recurrence
from titans_cli.kernels.memory_mlp import layer_shapes

CHUNK, ETA, CLIP, EXPANSION = 64, 0.75, 1.0, 2


def recall(width: int, depth: int, n_items: int, theta: float, seed: int) -> tuple[float, float]:
    """(recall@1, mean cosine) of n_items associations written once into one head."""
    gen = torch.Generator().manual_seed(seed)
    keys = F.normalize(torch.randn(1, 1, n_items, width, generator=gen, dtype=torch.float64), dim=-1)
    values = torch.randn(1, 1, n_items, width, generator=gen, dtype=torch.float64)
    weights = [torch.randn(1, 1, d_out, d_in, generator=gen, dtype=torch.float64) / math.sqrt(d_in)
               for d_out, d_in in layer_shapes(width, depth, EXPANSION)]  # fmt: skip
    gate = torch.ones(1, 1, n_items, dtype=torch.float64)
    result = memory_recurrence(keys, keys, values, theta * gate, math.log(ETA) * gate, 0 * gate,
                               weights, [torch.zeros_like(w) for w in weights], CHUNK, CLIP)  # fmt: skip
    read = F.normalize(memory_read(result.weights, keys)[0, 0], dim=-1)
    target = F.normalize(values[0, 0], dim=-1)
    hit = (read @ target.T).argmax(-1) == torch.arange(n_items)
    return hit.double().mean().item(), (read * target).sum(-1).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="32,64,128")
    parser.add_argument("--depths", default="1,2")
    parser.add_argument("--items", default="64,128,256,1024,4096", help="associations stored (whole chunks)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--thetas", default="0.01,0.03,0.1,0.3,1", help="θ values tried (the best is kept)")
    args = parser.parse_args()
    thetas = [float(t) for t in args.thetas.split(",")]
    if any(int(n) % CHUNK for n in args.items.split(",")):
        parser.error(f"--items must be multiples of the chunk size {CHUNK}: only whole chunks are committed")
    print(f"chunk {CHUNK}, momentum η {ETA}, clip τ {CLIP}, expansion {EXPANSION}, no forgetting; "
          f"best θ of {thetas}; median over {args.seeds} seeds")  # fmt: skip
    print("| head width | depth | items | recall@1 | mean cosine | best θ |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for width in map(int, args.widths.split(",")):
        for depth in map(int, args.depths.split(",")):
            for n_items in map(int, args.items.split(",")):
                rows = []
                for theta in thetas:
                    runs = [recall(width, depth, n_items, theta, seed) for seed in range(args.seeds)]
                    rows.append((statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), theta))
                best = max(rows)
                print(f"| {width} | {depth} | {n_items} | {best[0]:.2f} | {best[1]:.2f} | {best[2]} |")


if __name__ == "__main__":
    main()
