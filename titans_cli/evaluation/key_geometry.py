"""How many directions a model's first-layer memory keys take: the participation ratio of their covariance.

A memory keyed on few directions cannot keep many associations apart (BENCHMARKS.md, "Keys for DNA").
"""

from __future__ import annotations

import torch

from titans_cli.models import TitansModel
from titans_cli.models.kmer_embedding import TAIL_KEY


@torch.no_grad()
def first_layer_keys(model: TitansModel, tokens: torch.Tensor) -> torch.Tensor:
    """[T, d]: the first layer's first-head memory keys for tokens [1, T] read from a fresh stream."""
    memory = model.blocks[0].memory
    state = model.init_state(1).layers[0]
    key_input, _ = model.key_input(tokens, state.get(TAIL_KEY))
    x = model.blocks[0].norm_mem(model.embed(tokens))
    return memory.projections(x, state["mem.conv"], key_input)[1][0, 0]


def key_dimension(model: TitansModel, tokens: torch.Tensor, skip: int) -> float:
    """Participation ratio (Σλ)²/Σλ² of the centred first-layer keys over tokens [1, T], leaving out the
    first `skip` keys, which still read the stream's empty start."""
    keys = first_layer_keys(model, tokens)[skip:]
    eigen = torch.linalg.eigvalsh(torch.cov(keys.T.double()))
    return (eigen.sum() ** 2 / (eigen**2).sum()).item()
