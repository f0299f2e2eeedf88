"""Can a model copy? Bits per token on the second copy of a random stretch, by distance between the copies.

    python bench/copy_distance.py --model dna-tiny [--distances 50,100,300,2000,50000] [--n 4]

A stretch of `--stretch` random tokens (bases for DNA models, lower-case letters and spaces for text
models, so nothing in the background or in the weights predicts it) is planted twice in held-out
background (a synthetic genome / haystack text), the second copy starting `distance` tokens after the
first. A model that copies codes the second copy far below the first and below an unrelated random
stretch planted in its place (the control, which has read the same background); one that does not codes
all three alike, at about log2(alphabet) bits (2 for DNA, 4.75 for 27 letters) or worse. The first 10
tokens of each copy are left out (a copy has to be recognised before it can be followed). Copies within
the attention span test attention; beyond it, the long-term memory. MAC attends within segments only:
with the first copy at token 300 and segments of 128, distance 50 keeps most of both copies in one
segment, and from 100 on the copy has to come from the memory.
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch

from titans_cli.evaluation.dna_eval import model_bits
from titans_cli.evaluation.seeds import eval_seed
from titans_cli.model_registry import resolve_model
from titans_cli.tasks import Haystack, make_genome

LEAD = 300  # background tokens before the first copy
SKIP = 10  # tokens of each copy left out of its mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundled model name or model directory")
    parser.add_argument("--distances", default="50,100,300,2000,50000")
    parser.add_argument("--stretch", type=int, default=40, help="tokens per copy")
    parser.add_argument("--n", type=int, default=4, help="examples per distance")
    args = parser.parse_args()
    distances = [int(d) for d in args.distances.split(",")]
    if min(distances) < args.stretch:
        parser.error(f"every distance must be ≥ the stretch ({args.stretch}), or the copies would overlap")
    model = resolve_model(args.model).load().eval()
    dna = model.config.tokenizer == "dna"
    alphabet = b"ACGT" if dna else b"abcdefghijklmnopqrstuvwxyz "
    rng = random.Random(0)
    unit = "base" if dna else "byte"
    print(f"{args.model}: bits per {unit} on each copy of a random {args.stretch}-{unit} stretch, n = {args.n}")
    print("| distance | first copy | second copy | unrelated stretch in the second copy's place |")
    print("| ---: | ---: | ---: | ---: |")
    for distance in distances:
        length = LEAD + distance + args.stretch + 50
        first, second, control = [], [], []
        for i in range(args.n):
            if dna:
                background = bytearray(make_genome(length, eval_seed(0, "copy", distance, i)).sequence)
            else:
                background = bytearray(Haystack("eval").text(length, rng).encode())
            stretch, other = (bytes(rng.choice(alphabet) for _ in range(args.stretch)) for _ in range(2))
            second_at = LEAD + distance
            background[LEAD : LEAD + args.stretch] = stretch
            for planted, scores in ((stretch, second), (other, control)):
                background[second_at : second_at + args.stretch] = planted
                bits = model_bits(model, bytes(background))  # bits[t] codes token t + 1
                scores.append(bits[second_at + SKIP - 1 : second_at + args.stretch - 1].mean())
            first.append(bits[LEAD + SKIP - 1 : LEAD + args.stretch - 1].mean())
        print(f"| {distance:,} | {np.mean(first):.3f} | {np.mean(second):.3f} | {np.mean(control):.3f} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
