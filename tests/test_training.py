"""Outer training through the inner memory updates learns what attention alone cannot."""

import pytest
import torch

from titans_cli.models import TitansModel

from conftest import tiny_config

N_KEYS, N_PAIRS, GAP = 16, 6, 40


def recall_batch(size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """k₁ v₁ … k₆ v₆, a gap of filler longer than the attention span, then each key again → its value."""
    keys = torch.stack([torch.randperm(N_KEYS, generator=g)[:N_PAIRS] for _ in range(size)])
    values = torch.randint(N_KEYS, 2 * N_KEYS, (size, N_PAIRS), generator=g)
    order = torch.stack([torch.randperm(N_PAIRS, generator=g) for _ in range(size)])
    context = torch.stack([keys, values], 2).reshape(size, -1)
    queries = torch.stack([keys.gather(1, order), values.gather(1, order)], 2).reshape(size, -1)
    filler = torch.full((size, GAP), 2 * N_KEYS)
    tokens = torch.cat([context, filler, queries], 1)
    targets = torch.full_like(tokens, -100)
    start = context.shape[1] + GAP
    targets[:, start:-1:2] = tokens[:, start + 1 :: 2]  # only the recalled values are scored
    return tokens, targets


def train_recall(memory_learning: bool, steps: int = 400, lr: float = 3e-3) -> float:
    torch.manual_seed(0)
    cfg = tiny_config("lmm", vocab_size=2 * N_KEYS + 1, d_model=64, memory_depth=1, chunk_size=4,
                      segment_len=8, window=8)  # fmt: skip
    model = TitansModel(cfg).train()
    model.memory_learning = memory_learning
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        tokens, targets = recall_batch(32, g)
        logits, _ = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return sum(losses[-20:]) / 20


@pytest.mark.slow
def test_memory_learns_recall_beyond_attention():
    with_memory = train_recall(True)
    without = train_recall(False)
    chance = torch.log(torch.tensor(float(N_KEYS))).item()
    assert without > 0.9 * chance  # the gap is out of reach without the memory
    assert with_memory < 0.5 * without


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = TitansModel(tiny_config("mac")).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    tokens = torch.randint(0, 256, (2, 40))
    losses = []
    for _ in range(5):
        logits, _ = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
