"""`TitansState`: everything a stream carries between calls (SPEC 4)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class TitansState:
    """The absolute position plus one flat dict of tensors per layer.

    A layer's dict holds its memory weights and momentum at the current chunk start, the conv tails,
    the pending part of the current chunk and its attention cache; blocks own the key names. The first
    layer's dict also carries the input's state where there is one (`kmer.tail`, `kmer_embedding`). Forward
    passes never modify a state in place: they return a new one.
    """

    position: int
    layers: list[dict[str, Tensor]] = field(default_factory=list)

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor under a stable name; `from_tensors` inverts it (this is what a memory file stores)."""
        out = {"position": torch.tensor([self.position], dtype=torch.int64)}
        for i, layer in enumerate(self.layers):
            for name, value in layer.items():
                out[f"layers.{i}.{name}"] = value
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> TitansState:
        if "position" not in tensors:
            raise ValueError("state tensors lack 'position'")
        layers: dict[int, dict[str, Tensor]] = {}
        for key, value in tensors.items():
            if key == "position":
                continue
            prefix, index, name = key.split(".", 2)
            if prefix != "layers":
                raise ValueError(f"unexpected state tensor {key!r}")
            layers.setdefault(int(index), {})[name] = value
        if sorted(layers) != list(range(len(layers))):
            raise ValueError("state tensors skip a layer index")
        return cls(int(tensors["position"].reshape(-1)[0]), [layers[i] for i in range(len(layers))])

    def detach(self) -> TitansState:
        """Cut the autograd graph (truncated backpropagation through a long stream)."""
        return TitansState(self.position, [{k: v.detach() for k, v in d.items()} for d in self.layers])

    def to(self, device: torch.device | str) -> TitansState:
        return TitansState(self.position, [{k: v.to(device) for k, v in d.items()} for d in self.layers])
