"""The outer gradient of a freshly initialised model, by memory init, chunk size, θ ceiling and norm floor.

    python bench/outer_gradient.py [--length 512] [--batch 8]

One text batch of the `text-tiny-mac` preset's data mixture (step 5 of its training stream), read by a
two-layer MAG model at its widths with 2 heads of 64, conv kernel 13 and the sigmoid memory gate.
Prints the global gradient norm of the weighted training loss (what the trainer clips to 1), and, for the
induction init, the share of the next-byte copy the untrained memory recalls on `memory_readout.py`'s
window (a one-layer LMM of the same widths). One thread. Runs of the presets with random init log norms of 1–5.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
import torch.nn.functional as F
from memory_readout import recall, windows

import titans_cli.models.neural_memory as neural_memory
from titans_cli.models import TitansConfig, TitansModel
from titans_cli.training.data import BatchMaker
from titans_cli.training.presets import preset

CASES = [  # memory_init, induction_span, chunk, θ_max, norm floor
    ("random", 1, 16, 1.0, 1e-12),
    ("induction", 12, 16, 0.125, 1e-12),
    ("induction", 12, 16, 0.125, 1e-3),
    ("induction", 12, 16, 1.0, 1e-3),
    ("induction", 12, 8, 0.5, 1e-3),
    ("induction", 12, 8, 0.25, 1e-3),
    ("induction", 12, 4, 0.5, 1e-3),
]


def grad_norm(config: TitansConfig, tokens, targets, weights) -> float:
    torch.manual_seed(0)
    model = TitansModel(config)
    logits, _ = model(tokens, model.init_state(tokens.shape[0]))
    loss = (F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none") * weights).sum()
    loss.backward()
    return torch.sqrt(sum(p.grad.norm() ** 2 for p in model.parameters() if p.grad is not None)).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = preset("text-tiny-mac")
    train = replace(train, batch_size=args.batch, data=replace(train.data, curriculum=[(0, args.length)]))
    batch = BatchMaker(train).train_batch(5, 0)
    print("| init | span | chunk | θ_max | norm floor | outer gradient norm | untrained recall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for init, span, chunk, theta_max, floor in CASES:
        neural_memory.NORM_FLOOR = floor  # read by unit() at each call; this script is its only user
        config = replace(train.model, variant="mag", n_layers=2, n_heads=2, conv_kernel=13, memory_init=init,
                         induction_span=span, chunk_size=chunk, theta_max=theta_max, max_chunk_step=0.0,
                         memory_gate="sigmoid")  # fmt: skip
        norm = grad_norm(config, batch.tokens, batch.targets, batch.weights)
        shown = ""
        if init == "induction":
            torch.manual_seed(0)
            one = TitansModel(replace(config, variant="lmm", n_layers=1)).eval()
            shown = f"{recall(one, windows(16, torch.Generator().manual_seed(1))):.3f}"
        print(f"| {init} | {span} | {chunk} | {theta_max} | {floor:g} | {norm:.3g} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
