"""Periodic held-out evaluation during training: loss, answer accuracy and bits per token per component.

Answer accuracy is teacher-forced: an example counts when the argmax at every answer position, EOS
included, is the expected token, which is exactly when greedy decoding would produce the answer. For a
quoting model that is the whole needle sentence, key included: stricter than `titans eval`, which asks
only for the quoted values (`evaluation/answers.py`).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch.nn import functional as F

from titans_cli.models import TitansModel
from titans_cli.training.data import BatchMaker


@torch.no_grad()
def validate(model: TitansModel, batches: BatchMaker, n_batches: int, piece_tokens: int) -> dict:
    was_training = model.training
    model.eval()
    loss = 0.0
    correct: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # component → [right, asked]
    nats: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # component → [nats, tokens]
    for index in range(n_batches):
        batch = batches.held_out_batch(index)
        device = next(model.parameters()).device
        tokens, targets = batch.tokens.to(device), batch.targets.to(device)
        state = model.init_state(tokens.shape[0])
        ce, hits = [], []
        for start in range(0, tokens.shape[1], piece_tokens):
            logits, state = model(tokens[:, start : start + piece_tokens], state)
            piece_targets = targets[:, start : start + piece_tokens]
            ce.append(F.cross_entropy(logits.float().transpose(1, 2), piece_targets, reduction="none"))
            hits.append(logits.argmax(-1) == piece_targets)
        ce_all, hit_all = torch.cat(ce, 1).cpu(), torch.cat(hits, 1).cpu()
        loss += float((ce_all * batch.weights).sum())
        for row, component in enumerate(batch.components):
            answer = batch.answer[row]
            if answer.any():
                correct[component][0] += bool(hit_all[row][answer].all())
                correct[component][1] += 1
            else:
                nats[component][0] += float(ce_all[row].sum())
                nats[component][1] += ce_all.shape[1]
    model.train(was_training)
    return {
        "loss": loss / n_batches,
        "accuracy": {c: right / asked for c, (right, asked) in sorted(correct.items())},
        "bits_per_token": {c: total / count / math.log(2) for c, (total, count) in sorted(nats.items())},
    }
