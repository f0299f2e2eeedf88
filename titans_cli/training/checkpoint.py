"""Training checkpoints without pickle, written atomically.

`RUN/checkpoints/step-000001200/` holds:

* `model.safetensors`: the weights;
* `optimizer.safetensors`: every tensor of the optimiser state, named `<parameter index>.<name>`;
* `optimizer.json`: the parameter groups and any non-tensor state;
* `trainer.json`: the step reached, tokens seen, elapsed time, seed and world size. Data needs nothing
  more: batches are regenerated from (seed, step).

Each checkpoint is written into a temporary directory and renamed into place, so a process killed at any
instant leaves only complete checkpoints under their final names; the newest is the one to resume.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn
from torch.optim import Optimizer

from titans_cli.durable import fsync_path

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainerState:
    step: int = 0  # optimiser steps completed
    tokens: int = 0  # training tokens seen, all ranks together
    seconds: float = 0.0  # training wall time over all sessions
    seed: int = 0
    world_size: int = 1
    version: int = FORMAT_VERSION


def checkpoint_dir(run: Path) -> Path:
    return run / "checkpoints"


def checkpoint_path(run: Path, step: int) -> Path:
    return checkpoint_dir(run) / f"step-{step:09d}"


def latest_checkpoint(run: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    found = [(int(m[1]), p) for p in checkpoint_dir(run).glob("step-*") if (m := _STEP_DIR.match(p.name))]
    return max(found)[1] if found else None


def save_checkpoint(run: Path, model: nn.Module, optimizer: Optimizer, state: TrainerState, keep: int) -> Path:
    """Write a checkpoint for `state.step` (atomic), then drop all but the newest `keep`."""
    root = checkpoint_dir(run)
    final = checkpoint_path(run, state.step)
    if final.exists():  # the same step again (a resume stopped at once): it is already on disk
        return final
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    tensors, meta = _split_optimizer_state(optimizer.state_dict())
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "trainer.json").write_text(json.dumps(asdict(state), indent=2))
    for f in tmp.iterdir():
        fsync_path(f)
    os.rename(tmp, final)
    fsync_path(root)
    found = sorted(p for p in root.glob("step-*") if _STEP_DIR.match(p.name))
    for old in found[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: nn.Module, optimizer: Optimizer, device: torch.device) -> TrainerState:
    """Restore weights and optimiser state in place; returns where the run stood."""
    state = TrainerState(**json.loads((path / "trainer.json").read_text()))
    if state.version > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {state.version} is newer than this titans reads")
    load_model(model, str(path / "model.safetensors"), device=str(device))
    meta = json.loads((path / "optimizer.json").read_text())
    # On the CPU: load_state_dict moves moments to their parameters' device but leaves `step` where it is.
    tensors = load_file(str(path / "optimizer.safetensors"), device="cpu")
    optimizer.load_state_dict(_join_optimizer_state(tensors, meta))
    return state


def remove_stale_temporaries(run: Path) -> None:
    """Half-written checkpoints of a killed process."""
    for tmp in checkpoint_dir(run).glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, per_param in state_dict["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(values) for i, values in meta["scalars"].items()}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}
