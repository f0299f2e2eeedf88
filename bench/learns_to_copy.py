"""Can the text-tiny architecture learn to copy, by attention and by its memory? Trained from scratch.

    python bench/learns_to_copy.py near|far|far-gap [--steps 1500] [--seed 0] [--device cuda]

Every training window is random bytes in which a stretch A repeats; the loss on the second copy (its
first token excluded: nothing predicts it) falls below 8 bits per token only if the model copies.

    near      [A(64) A(64)]                 both copies inside one 128-token MAC segment: attention can copy
    far       [A(128) A(128)]               the copies in consecutive segments: only the memory carries A
    far-gap   [A(32) R(192) A(32)]          32 tokens, 224 apart, across the segment boundary

The model is the text-tiny preset's (`titans train --preset text-tiny`), freshly initialised, trained by a
plain AdamW loop (lr 2e-3, betas 0.9/0.95, gradient norm clipped to 1, batch 16), not by `titans train`:
the question is whether the architecture can learn the skill at all, on data that is nothing but the
skill. Prints bits per token on the first and second copy every 50 steps. One thread.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from titans_cli.models import TitansModel
from titans_cli.training.presets import preset

LAYOUTS = {"near": (64, 0), "far": (128, 0), "far-gap": (32, 192)}  # (stretch length, random tokens between)
BATCH = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layout", choices=LAYOUTS)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    model = TitansModel(preset("text-tiny").model).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0, betas=(0.9, 0.95))
    length, gap = LAYOUTS[args.layout]
    generator = torch.Generator().manual_seed(1000 + args.seed)

    start = time.time()
    for step in range(args.steps + 1):
        stretch = torch.randint(0, 256, (BATCH, length), generator=generator)
        between = torch.randint(0, 256, (BATCH, gap), generator=generator)
        window = torch.cat([stretch, between, stretch], 1).to(args.device)
        logits, _ = model(window[:, :-1])
        losses = F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten(), reduction="none").view(BATCH, -1)
        if step % 50 == 0:
            first = losses[:, : length - 1].mean().item() / math.log(2)
            second = losses[:, length + gap :].mean().item() / math.log(2)  # the copy's tokens 2..L
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
