"""Can outer training teach the memory to retrieve? Multi-query associative recall (MQAR), learned from scratch.

Each sequence lists `--pairs` random (key, value) token pairs, then `--gap` copies of one filler token, then
the same keys in a new order, each followed by its value; loss and accuracy are on those values only. With the
defaults the pairs fill one chunk, so the queries read weights the pairs were written into. With the default
LMM (memory layers and MLPs, no attention) any accuracy above chance (1 %) can only come from the memory
writing the pairs and reading them back; with `--variant mac` and a gap that puts the queries in a later
segment, attention cannot see the pairs either. `--theta-init` starts the inner learning rate θ_t at a
given value (through the gate bias) instead of the model's own initialisation.

    python bench/memory_learns_recall.py [--variant lmm] [--gap 0] [--minutes 7] [--seed 0]
    python bench/memory_learns_recall.py --variant mac --gap 48 --minutes 8 [--mac-memory-input segment]
                                         [--max-chunk-step 2]

Prints one JSON line per 250 steps (loss, accuracy over those steps).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch.nn import functional as F

from titans_cli.models import TitansConfig, TitansModel
from titans_cli.models.config import MAC_MEMORY_INPUTS, VARIANTS
from titans_cli.models.neural_memory import NeuralMemory

N_KEYS, N_VALUES, FILLER = 100, 100, 200  # token ids: keys 0–99, values 100–199, filler 200


def recall_batch(batch: int, pairs: int, gap: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [batch, 4·pairs + gap] and a mask of the positions whose next token is a queried value."""
    keys = torch.stack([torch.randperm(N_KEYS, generator=gen)[:pairs] for _ in range(batch)])
    values = torch.randint(N_KEYS, N_KEYS + N_VALUES, (batch, pairs), generator=gen)
    order = torch.stack([torch.randperm(pairs, generator=gen) for _ in range(batch)])
    context = torch.stack([keys, values], -1).flatten(1)
    queries = torch.stack([keys.gather(1, order), values.gather(1, order)], -1).flatten(1)
    ids = torch.cat([context, torch.full((batch, gap), FILLER), queries], 1)
    predicts_value = torch.zeros(batch, ids.shape[1] - 1, dtype=torch.bool)
    predicts_value[:, context.shape[1] + gap :: 2] = True  # at each queried key, the next token is its value
    return ids, predicts_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="lmm", choices=VARIANTS)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--gap", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--segment", type=int, default=64, help="MAC segment, MAG/MAL window (a multiple of --chunk)")
    parser.add_argument("--mac-memory-input", default="attention", choices=MAC_MEMORY_INPUTS,
                        help="what MAC's memory learns from (TitansConfig.mac_memory_input)")  # fmt: skip
    parser.add_argument("--theta-max", type=float, default=1.0)
    parser.add_argument("--max-chunk-step", type=float, default=0.0,
                        help="cap on C·θ/(1 − η) (TitansConfig.max_chunk_step; 0 = none)")
    parser.add_argument("--theta-init", type=float, default=None, help="θ at initialisation (default: the model's)")
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.theta_init is not None and args.max_chunk_step:
        parser.error("--theta-init sets θ as a fraction of θ_max, which a chunk-step cap would change")

    torch.manual_seed(args.seed)
    config = TitansConfig(variant=args.variant, vocab_size=256, tokenizer="bytes", d_model=64, n_layers=2, n_heads=2,
                          memory_depth=2, memory_expansion=2, chunk_size=args.chunk, segment_len=args.segment,
                          window=args.segment, n_persistent=4, theta_max=args.theta_max,
                          mac_memory_input=args.mac_memory_input, max_chunk_step=args.max_chunk_step,
                          memory_grad_clip=1.0)  # fmt: skip
    model = TitansModel(config)
    memories = [m for m in model.modules() if isinstance(m, NeuralMemory)]
    if args.theta_init is not None:
        fraction = args.theta_init / args.theta_max
        with torch.no_grad():
            for memory in memories:
                memory.gates.bias.view(3, -1)[0].fill_(math.log(fraction / (1 - fraction)))
    with torch.no_grad():
        theta = memories[0].gate_values(torch.zeros(1, 1, config.d_model))[0].mean().item()  # gates at their bias
    print(json.dumps({"config": vars(args), "theta_at_init": round(theta, 4), "threads": torch.get_num_threads()}))

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 1)
    start, step, recent = time.perf_counter(), 0, []
    while time.perf_counter() - start < args.minutes * 60:
        ids, predicts_value = recall_batch(args.batch, args.pairs, args.gap, gen)
        logits, _ = model(ids[:, :-1])
        targets = ids[:, 1:][predicts_value]
        loss = F.cross_entropy(logits[predicts_value], targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        recent.append((logits[predicts_value].argmax(-1) == targets).float().mean().item())
        if step % 250 == 0:
            seconds = round(time.perf_counter() - start)
            print(json.dumps({"step": step, "seconds": seconds, "loss": round(loss.item(), 3),
                              "accuracy_last_250": round(sum(recent) / len(recent), 3)}), flush=True)  # fmt: skip
            recent = []
    print(json.dumps({"steps": step, "chance": round(1 / N_VALUES, 3)}))


if __name__ == "__main__":
    main()
