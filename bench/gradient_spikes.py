"""Which parameters carry a training run's gradient spikes: re-run its next batches from the latest checkpoint.

    python bench/gradient_spikes.py runs/dna-tiny-mag [--batches 8]

For each batch after the checkpoint (rank 0's first micro-batch: the run's own batches when it had one rank
and no accumulation), prints one JSON line: the outer loss per weighted token, the total gradient norm
before clipping, and the parameters with the largest gradient norms. Nothing is written; the optimiser is
not stepped, so every batch sees the checkpoint's weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from titans_cli.models import TitansModel
from titans_cli.training.checkpoint import latest_checkpoint, load_checkpoint
from titans_cli.training.config import TrainConfig
from titans_cli.training.data import BatchMaker
from titans_cli.training.optimizer import build_optimizer
from titans_cli.training.trainer import PieceLoss, sequence_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `titans train --out` directory with checkpoints")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    config = TrainConfig.from_json((args.run / "train_config.json").read_text())
    model = TitansModel(config.model).train()
    checkpoint = latest_checkpoint(args.run)
    state = load_checkpoint(checkpoint, model, build_optimizer(model, config.optim), torch.device("cpu"))
    batches, step_fn = BatchMaker(config), PieceLoss(model)
    print(json.dumps({"checkpoint": str(checkpoint), "step": state.step}))
    for step in range(state.step, state.step + args.batches):
        batch = batches.train_batch(step, 0)
        loss = sequence_loss(step_fn, model, batch, config.tbptt_len, 1.0, True, torch.device("cpu"))
        norms = {name: p.grad.norm().item() for name, p in model.named_parameters() if p.grad is not None}
        total = sum(n * n for n in norms.values()) ** 0.5
        top = sorted(norms.items(), key=lambda item: -item[1])[: args.top]
        row = {"batch_of_step": step + 1, "loss": round(loss / batch.weights.sum().item(), 4),
               "grad_norm": round(total, 3), "largest": [[n, round(g, 3)] for n, g in top]}  # fmt: skip
        print(json.dumps(row), flush=True)
        model.zero_grad(set_to_none=True)


if __name__ == "__main__":
    main()
