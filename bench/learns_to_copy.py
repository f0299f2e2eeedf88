"""Can a Titans architecture learn to copy, by attention and by its memory? Trained from scratch.

    python bench/learns_to_copy.py LAYOUT [--steps 1500] [--seed 0] [--device cuda]
        [--variant mac] [--memory-init random|induction] [--memory-gate silu|sigmoid]
        [--chunk 64] [--theta-max 0.1] [--max-chunk-step 2] [--window 128]

Every training window is random bytes in which a stretch A repeats; the loss on the second copy (its
first token excluded: nothing predicts it) falls below 8 bits per token only if the model copies.
"Only the memory" below holds for MAC (its 128-token segments) and for MAG with `--window 8` (four
stacked 8-token windows reach 28 tokens back; the pair A[i], A[i+1] lies 31 or more back); not for MAG
or MAL at the preset's window of 128, nor for MAL at 8 (its memory conv adds 3 tokens per layer).

    near           [A(64) A(64)]                 both copies inside one 128-token MAC segment: attention can copy
    far            [A(128) A(128)]               the copies in consecutive segments: only the memory carries A
    far-gap        [A(32) R(192) A(32)]          32 tokens, 224 apart, across the segment boundary
    next-segment   [R(96) A(32) A(32)]           A ends segment 0 and starts segment 1: only the memory carries
                                                 it, and A's 32 associations are the last a memory wrote

The model is the text-tiny-mac preset's (`titans train --preset text-tiny-mac`) with the options above replaced,
freshly initialised, trained by a plain AdamW loop (lr 2e-3, betas 0.9/0.95, gradient norm clipped to 1,
batch 16), not by `titans train`: the question is whether the architecture can learn the skill at all,
on data that is nothing but the skill. Prints bits per token on the first and second copy every 50
steps. One thread.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from titans_cli.models import TitansModel
from titans_cli.models.config import MEMORY_GATES, MEMORY_INITS, VARIANTS
from titans_cli.training.presets import preset

# (random tokens before A, stretch length, random tokens between the copies)
LAYOUTS = {"near": (0, 64, 0), "far": (0, 128, 0), "far-gap": (0, 32, 192), "next-segment": (96, 32, 0)}
BATCH = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layout", choices=LAYOUTS)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--memory-init", choices=MEMORY_INITS)
    parser.add_argument("--memory-gate", choices=MEMORY_GATES)
    parser.add_argument("--chunk", type=int, dest="chunk_size")
    parser.add_argument("--theta-max", type=float)
    parser.add_argument("--max-chunk-step", type=float)
    parser.add_argument("--window", type=int, help="MAG/MAL attention span")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    options = ("variant", "memory_init", "memory_gate", "chunk_size", "theta_max", "max_chunk_step", "window")
    changes = {k: getattr(args, k) for k in options if getattr(args, k) is not None}
    config = replace(preset("text-tiny-mac").model, **changes)
    model = TitansModel(config).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0, betas=(0.9, 0.95))
    lead, length, gap = LAYOUTS[args.layout]
    generator = torch.Generator().manual_seed(1000 + args.seed)

    start = time.time()
    for step in range(args.steps + 1):
        before, stretch, between = (torch.randint(0, 256, (BATCH, n), generator=generator) for n in (lead, length, gap))
        window = torch.cat([before, stretch, between, stretch], 1).to(args.device)
        logits, _ = model(window[:, :-1])
        losses = F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten(), reduction="none").view(BATCH, -1)
        if step % 50 == 0:
            first = losses[:, lead : lead + length - 1].mean().item() / math.log(2)
            second = losses[:, lead + length + gap :].mean().item() / math.log(2)  # the copy's tokens 2..L
            print(f"step {step} first {first:.2f} second {second:.2f} bits/token  {time.time() - start:.0f} s",
                  flush=True)  # fmt: skip
        if step == args.steps:
            break
        optimizer.zero_grad()
        losses.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


if __name__ == "__main__":
    main()
