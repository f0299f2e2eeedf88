"""Resolving a model: a bundled name (`text-tiny`, `dna-tiny`) or a directory, and its identity.

The one place that turns what a user typed after `--model` into weights. A model's identity is its
name plus a content hash over `config.json` and `model.safetensors`, so a memory can refuse a model
that is not the one it was made with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from titans_cli.errors import UserError
from titans_cli.models import TitansConfig, TitansModel

BUNDLED_DIR = Path(__file__).parent / "bundled"
MODEL_FILES = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class ModelRef:
    name: str
    path: Path
    content_hash: str
    source: str  # resolves to this model again: the bundled name, or the absolute directory

    def load(self, device: str | torch.device = "cpu") -> TitansModel:
        return TitansModel.from_pretrained(self.path, device=device)

    @property
    def config(self) -> TitansConfig:
        return TitansConfig.load(self.path / "config.json")


DEFAULT_MODELS = {"text": "text-tiny", "dna": "dna-tiny"}  # what reads an input when no model is named


def default_model(kind: str) -> str:
    """The bundled model for an input kind ("text" or "dna")."""
    return DEFAULT_MODELS[kind]


def bundled_models() -> list[str]:
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if all((p / f).exists() for f in MODEL_FILES))


def content_hash(directory: Path) -> str:
    h = hashlib.sha256()
    for name in MODEL_FILES:
        h.update(name.encode() + b"\0")
        with open(directory / name, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return "sha256:" + h.hexdigest()


def resolve_model(spec: str) -> ModelRef:
    """A bundled model by name, or a model directory by path."""
    bundled = BUNDLED_DIR / spec
    if "/" not in spec and spec in bundled_models():
        return ModelRef(spec, bundled, content_hash(bundled), spec)
    path = Path(spec)
    if path.is_dir():
        missing = [f for f in MODEL_FILES if not (path / f).exists()]
        if missing:
            raise UserError(f"{path}: not a titans model directory (missing {', '.join(missing)})")
        try:
            name = TitansConfig.load(path / "config.json").name or path.resolve().name
        except ValueError as err:
            raise UserError(f"{path / 'config.json'}: {err}") from err
        return ModelRef(name, path, content_hash(path), str(path.resolve()))
    names = ", ".join(bundled_models()) or "none installed"
    raise UserError(f"unknown model {spec!r}: give a bundled name ({names}) or a model directory")


def pick_device(device: str) -> str:
    """"auto" is CUDA when there is a GPU, else the CPU; "cpu", "cuda", "cuda:N" and "mps" are checked here,
    so a machine without that device gets a one-line error rather than a failure deep inside torch."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: not a device; use cpu, cuda, cuda:N, mps or auto") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {device}: this machine has no CUDA GPU; use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise UserError(f"--device {device}: this machine has {count} CUDA GPU(s), numbered from 0")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available here; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {device}: unsupported device type; use cpu, cuda, cuda:N, mps or auto")
    return device
