"""The memory's causal depthwise conv + SiLU: conv1d on the transposed view, the torch taps form, the C path.

    python bench/causal_conv.py [--repeats 15] [--threads 2]

Shapes [streams, tokens, channels, taps]: the benchmark config's one 16k piece (q, k, v of 4 heads × 64,
kernel 4) and the bundled models' (a tied query: 2 × 128 channels, kernel 13), for one stream and for 8,
and a short call. "conv1d" is what `NeuralMemory.projections` ran until session 25: conv1d on
proj.transpose(1, 2), transposed back, then SiLU (its output strided by T); "taps" is
`causal_conv_silu_reference` (TITANS_KERNEL=torch), "C" `causal_conv_silu_native` (the default on CPU).
Medians of --repeats calls after one warm-up, the forms alternating; the last column is the largest
absolute difference of C from conv1d.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from titans_cli.kernels.causal_conv import causal_conv_silu_native, causal_conv_silu_reference

SHAPES = [(1, 16384, 768, 4), (1, 16384, 256, 13), (8, 4096, 256, 13), (1, 512, 256, 13)]


def conv1d_silu(x, weight):
    return F.silu(F.conv1d(x.transpose(1, 2), weight, groups=x.shape[-1]).transpose(1, 2))


FORMS = {"conv1d": conv1d_silu, "taps": causal_conv_silu_reference, "C": causal_conv_silu_native}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        "| streams | tokens | channels | taps | conv1d, ms | taps, ms | C, ms | conv1d / C | taps / C | max abs. diff |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for streams, tokens, channels, taps in SHAPES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(streams, tokens + taps - 1, channels, generator=gen)
        weight = torch.randn(channels, 1, taps, generator=gen)
        times = {name: [] for name in FORMS}
        with torch.no_grad():
            outputs = {name: form(x, weight) for name, form in FORMS.items()}  # warm-up
            for _ in range(args.repeats):
                for name, form in FORMS.items():
                    start = time.perf_counter()
                    form(x, weight)
                    times[name].append(time.perf_counter() - start)
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        diff = (outputs["C"] - outputs["conv1d"]).abs().max().item()
        print(
            f"| {streams} | {tokens} | {channels} | {taps} | {ms['conv1d']:.2f} | {ms['taps']:.2f} | {ms['C']:.2f} "
            f"| {ms['conv1d'] / ms['C']:.2f} | {ms['taps'] / ms['C']:.2f} | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
