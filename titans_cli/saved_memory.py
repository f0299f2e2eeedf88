"""A committed memory made ready to answer or score against: its model, and the stream state after every
token it has read.

`ask` and `score --memory` start from here. The memory directory is only read: nothing they do is
committed back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from titans_cli.errors import UserError
from titans_cli.memory_store import MemorySnapshot, MemoryStore
from titans_cli.model_registry import ModelRef, pick_device, resolve_model
from titans_cli.models import TitansModel, TitansState


@dataclass
class LoadedMemory:
    path: Path
    snapshot: MemorySnapshot
    model_ref: ModelRef
    model: TitansModel
    state: TitansState  # batch 1, after the pending tail too: the stream has read every consumed token


def memory_model(snapshot: MemorySnapshot, memory: Path, spec: str | None = None) -> ModelRef:
    """The model that made `snapshot` (or `spec`, which must be the same model by content hash)."""
    try:
        ref = resolve_model(spec or snapshot.model_source)
    except UserError:
        if spec is not None:
            raise
        raise UserError(f"{memory} was made by model {snapshot.model_name} at {snapshot.model_source}, which is "
                        "no longer there; pass --model DIR naming that model where it is now") from None  # fmt: skip
    if ref.content_hash != snapshot.model_hash:
        raise UserError(
            f"{memory} was made by model {snapshot.model_name} ({snapshot.model_hash[:19]}…), "
            f"not {ref.name} ({ref.content_hash[:19]}…); use the memory's model or another memory"
        )
    return ref


@torch.no_grad()
def load_memory(path: str | Path, device: str = "auto", model: str | None = None) -> LoadedMemory:
    """Load MEM's current commit and its model, and read the pending tail so the state is up to date.

    `model` names the model when the one MEM recorded has moved; it must be the same model (content hash).
    """
    path = Path(path)
    snapshot = MemoryStore(path).load()
    ref = memory_model(snapshot, path, model)
    model = ref.load(pick_device(device)).eval()
    device_ = next(model.parameters()).device
    state = TitansState.from_tensors(snapshot.state).to(device_)
    if len(snapshot.pending):
        _, state = model(snapshot.pending[None].to(device_), state)
    return LoadedMemory(path, snapshot, ref, model, state)
