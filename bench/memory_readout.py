"""Is a copy in the memory at initialisation, and can the layers after it read it out?

    python bench/memory_readout.py [--batch 16] [--probe-steps 300]

The window is `learns_to_copy.py`'s next-segment layout: 96 random bytes, a random 32-byte stretch A
ending the first 128-token segment, and A again starting the next. A freshly initialised one-layer LMM
(the text-tiny-mac preset's widths) reads it; nothing is trained but a probe.

1. Recall: at each position of the second copy, the memory's read M_t(q_t) is compared with every byte's
   value vector v (centred over the 256 bytes); recall is the share of positions whose nearest value is
   the byte that comes next, i.e. the memory returns the copy (chance 1/256). By memory_init, chunk size
   and θ ceiling (no step cap, inner-gradient clip 1), heads of width 32.
2. Readout: a linear probe (Adam, lr 1e-2) from the memory branch's output, the read normalised, gated
   by the layer input and projected (what the next layer sees), to the next byte, on fresh windows;
   bits per byte on the second copy after `--probe-steps` steps, by memory_gate, induction init.
One thread.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from titans_cli.kernels import memory_read
from titans_cli.models import TitansModel
from titans_cli.training.presets import preset

LEAD, STRETCH = 96, 32


def model_for(**changes) -> TitansModel:
    config = replace(preset("text-tiny-mac").model, variant="lmm", n_layers=1, max_chunk_step=0.0, **changes)
    return TitansModel(config).eval()


def windows(batch: int, generator: torch.Generator) -> torch.Tensor:
    lead, stretch = (torch.randint(0, 256, (batch, n), generator=generator) for n in (LEAD, STRETCH))
    return torch.cat([lead, stretch, stretch], 1)


@torch.no_grad()
def recall(model: TitansModel, window: torch.Tensor) -> float:
    block = model.blocks[0]
    memory = block.memory
    x = block.norm_mem(model.embed(window))
    state = memory.init_state(window.shape[0])
    q = memory.projections(x, state["mem.conv"])[0]
    first = LEAD + STRETCH  # the second copy starts the next segment: read it with the weights after the first
    weights = memory.weights(memory(x[:, :first], state)[1])
    read = memory_read(weights, q[:, :, first:])
    values = memory.projections(block.norm_mem(model.embed(torch.arange(256)[None])), state["mem.conv"][:1])[2][0]
    values = F.normalize(values - values.mean(1, keepdim=True), dim=-1)  # [H, 256, d]
    nearest = torch.einsum("bhtd,hvd->btv", read, values).argmax(-1)
    return (nearest[:, :-1] == window[:, first + 1 :]).float().mean().item()


def probe_bits(model: TitansModel, batch: int, steps: int, generator: torch.Generator) -> float:
    block = model.blocks[0]
    probe = torch.nn.Linear(model.config.d_model, 256)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
    first = LEAD + STRETCH
    tail = []
    for step in range(steps):
        window = windows(batch, generator)
        with torch.no_grad():
            x = block.norm_mem(model.embed(window[:, :-1]))
            out = block.memory(x, block.memory.init_state(batch))[0][:, first:]
        loss = F.cross_entropy(probe(out).flatten(0, 1), window[:, first + 1 :].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= steps - 50:
            tail.append(loss.item() / math.log(2))
    return sum(tail) / len(tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--probe-steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| memory_init | chunk | θ ceiling | recall of the next byte |")
    print("| --- | ---: | ---: | ---: |")
    for init in ("random", "induction"):
        for chunk, theta_max in ((64, 0.1), (16, 0.1), (16, 1.0)):
            torch.manual_seed(0)
            model = model_for(memory_init=init, chunk_size=chunk, theta_max=theta_max)
            score = recall(model, windows(args.batch, torch.Generator().manual_seed(1)))
            print(f"| {init} | {chunk} | {theta_max} | {score:.3f} |", flush=True)
    print()
    print(f"| memory_gate | probe bits per byte on the second copy (mean of its last 50 of {args.probe_steps} steps) |")
    print("| --- | ---: |")
    for gate in ("silu", "sigmoid"):
        torch.manual_seed(0)
        model = model_for(memory_init="induction", memory_gate=gate, chunk_size=16, theta_max=1.0)
        bits = probe_bits(model, args.batch, args.probe_steps, torch.Generator().manual_seed(2))
        print(f"| {gate} | {bits:.2f} |", flush=True)


if __name__ == "__main__":
    main()
