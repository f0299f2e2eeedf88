import pytest
import torch

from titans_cli.models import TitansConfig, TitansModel

VARIANTS = ["mac", "mac-segment", "mag", "mal", "lmm"]


def tiny_config(variant: str = "mac", **overrides) -> TitansConfig:
    """A model small enough for unit tests that still spans several chunks, segments and windows.

    "mac-segment" is MAC with mac_memory_input="segment".
    """
    variant, _, mac_input = variant.partition("-")
    fields = dict(variant=variant, mac_memory_input=mac_input or "attention", vocab_size=260, d_model=32,
                  n_layers=2, n_heads=2, memory_depth=2,
                  chunk_size=8, segment_len=16, window=12, n_persistent=3)  # fmt: skip
    fields.update(overrides)
    return TitansConfig(**fields)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    torch.set_num_threads(2)


def tiny_model(variant: str = "mac", **overrides) -> TitansModel:
    return TitansModel(tiny_config(variant, **overrides)).eval()
