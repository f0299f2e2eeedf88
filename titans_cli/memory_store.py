"""`MemoryStore`: the memory file (MEM), a directory of Parquet files with atomic commits.

Layout (format "titans-memory", version 1; FORMAT.md documents it for readers using plain pyarrow):

    MEM/CURRENT                        JSON pointer: {"format", "version", "commit", "manifest_sha256"}
    MEM/commits/000007/manifest.json   model identity, counters, sources, file checksums, state digest
    MEM/commits/000007/state.parquet   one row per state tensor: name, dtype, shape, data (raw bytes)
    MEM/commits/000007/sources.parquet one row per input source
    MEM/surprise/000007.parquet        surprise rows added by commit 7 (parts are immutable)

A commit writes a new commit directory and surprise part, fsyncs them, then replaces CURRENT by an
atomic rename; older data is removed only after that switch, and the previous commit is kept, so a
crash at any instant leaves a committed state readable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from titans_cli.durable import fsync_path, write_bytes_durably
from titans_cli.errors import UserError

FORMAT_NAME = "titans-memory"
FORMAT_VERSION = 1

PENDING = "stream.pending_tokens"  # state.parquet row of token ids read after the last full block

SURPRISE_SCHEMA = pa.schema(
    [("start", pa.int64()), ("end", pa.int64()), ("mean_surprise", pa.float32()), ("source", pa.int32())]
)


@dataclass
class SourceRecord:
    """One input a memory has read (or is reading)."""

    path: str
    size: int  # bytes on disk, -1 for stdin
    tokens: int = 0
    complete: bool = False
    sha256: str = ""  # of the bytes on disk; known once the source was read to its end
    resume_record: int = 0  # where the next unread token is, as a reader position
    resume_offset: int = 0
    consumed_sha256: str = ""  # of the decoded data consumed so far: verifies a partial source on resume
    batch: int = 0  # which ingest command added it


@dataclass
class MemorySnapshot:
    """Everything one commit holds."""

    model_name: str
    model_hash: str
    model_source: str  # what resolves it again: a bundled name or a directory path
    config: dict[str, Any]
    kind: str
    state: dict[str, torch.Tensor]
    block_tokens: int
    pending: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))  # read, not yet fed
    sources: list[SourceRecord] = field(default_factory=list)
    created: str = ""
    updated: str = ""
    commit: int = 0
    surprise_parts: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        """Tokens consumed: those the memory has learned plus the pending tail of the last block."""
        return int(self.state["position"].reshape(-1)[0]) + len(self.pending)

    def stored_tensors(self) -> dict[str, torch.Tensor]:
        return {**self.state, PENDING: self.pending}


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors in name order (name, dtype, shape, bytes): equal digests, equal memories."""
    h = hashlib.sha256()
    for name in sorted(state):
        dtype, shape, data = _tensor_bytes(state[name])
        h.update(f"{name}|{dtype}|{shape}|".encode())
        h.update(data)
    return h.hexdigest()


def _tensor_bytes(t: torch.Tensor) -> tuple[str, tuple[int, ...], bytes]:
    """(dtype name, shape, little-endian C-order bytes); bfloat16, which numpy lacks, goes as its bits."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return "bfloat16", tuple(t.shape), t.view(torch.int16).numpy().astype("<i2").tobytes()
    array = t.numpy()
    return array.dtype.str.lstrip("<|=>"), tuple(t.shape), array.astype(array.dtype.newbyteorder("<")).tobytes()


def _tensor_from_bytes(dtype: str, shape: list[int], data: bytes) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.from_numpy(np.frombuffer(data, dtype="<i2").reshape(shape).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.frombuffer(data, dtype=np.dtype("<" + dtype)).reshape(shape).copy())


class MemoryStore:
    """Reads and atomically commits a memory directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def pointer(self) -> Path:
        return self.path / "CURRENT"

    def exists(self) -> bool:
        """True once anything was committed (debris of a crashed first commit does not count)."""
        return self.pointer.exists() or bool(self.commits())

    def commits(self) -> list[int]:
        folder = self.path / "commits"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())

    # ---- reading -------------------------------------------------------------------------------

    def load(self, commit: int | None = None) -> MemorySnapshot:
        """The current commit (or a given one), verified against its checksums."""
        if commit is None:
            commit = self._current_commit()
        try:
            return self._load_commit(commit)
        except UserError as err:
            older = [c for c in self.commits() if c < commit and self._intact(c)]
            if older:
                raise UserError(
                    f"{err}; the previous commit {older[-1]} is intact: `titans rollback {self.path}` "
                    f"makes it current"
                ) from err
            raise

    def _current_commit(self) -> int:
        if not self.pointer.exists():
            if self.commits():
                raise UserError(
                    f"{self.path}: the pointer file CURRENT is missing, so no commit can be trusted; "
                    f"`titans rollback {self.path}` restores the newest intact commit"
                )
            raise UserError(f"{self.path}: not a titans memory (no CURRENT file); create one with `titans ingest`")
        try:
            pointer = json.loads(self.pointer.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{self.pointer}: unreadable pointer file ({err})") from err
        if pointer.get("format") != FORMAT_NAME:
            raise UserError(f"{self.path}: not a titans memory (format {pointer.get('format')!r})")
        if int(pointer.get("version", 0)) > FORMAT_VERSION:
            raise UserError(
                f"{self.path}: memory format version {pointer['version']} is newer than this titans "
                f"reads ({FORMAT_VERSION}); upgrade titans"
            )
        commit = int(pointer["commit"])
        manifest = self._commit_dir(commit) / "manifest.json"
        if not manifest.exists() or _sha256_file(manifest) != pointer.get("manifest_sha256"):
            raise UserError(f"{self.path}: commit {commit} is corrupt (manifest missing or checksum mismatch)")
        return commit

    def _commit_dir(self, commit: int) -> Path:
        return self.path / "commits" / f"{commit:06d}"

    def _intact(self, commit: int) -> bool:
        try:
            self._load_commit(commit)
        except UserError:
            return False
        return True

    def _load_commit(self, commit: int) -> MemorySnapshot:
        folder = self._commit_dir(commit)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{self.path}: commit {commit} is corrupt (manifest unreadable: {err})") from err
        if int(manifest.get("version", 0)) > FORMAT_VERSION:
            raise UserError(
                f"{self.path}: memory format version {manifest['version']} is newer than this titans "
                f"reads ({FORMAT_VERSION}); upgrade titans"
            )
        for rel, digest in manifest["files"].items():
            file = self.path / rel
            if not file.exists():
                raise UserError(f"{self.path}: commit {commit} is corrupt ({rel} is missing)")
            if _sha256_file(file) != digest:
                raise UserError(f"{self.path}: commit {commit} is corrupt ({rel} fails its checksum)")
        state = read_state_table(folder / "state.parquet")
        if state_digest(state) != manifest["state_digest"]:
            raise UserError(f"{self.path}: commit {commit} is corrupt (state digest mismatch)")
        pending = state.pop(PENDING)
        sources = [SourceRecord(**row) for row in pq.read_table(folder / "sources.parquet").to_pylist()]
        return MemorySnapshot(
            model_name=manifest["model"]["name"],
            model_hash=manifest["model"]["hash"],
            model_source=manifest["model"]["source"],
            config=manifest["model"]["config"],
            kind=manifest["kind"],
            state=state,
            block_tokens=manifest["block_tokens"],
            pending=pending,
            sources=sources,
            created=manifest["created"],
            updated=manifest["updated"],
            commit=commit,
            surprise_parts=manifest["surprise_parts"],
        )

    def manifest(self, commit: int | None = None) -> dict[str, Any]:
        commit = self._current_commit() if commit is None else commit
        return json.loads((self._commit_dir(commit) / "manifest.json").read_text())

    def surprise(self, snapshot: MemorySnapshot) -> pa.Table:
        """All surprise rows of a snapshot, in stream order."""
        parts = [pq.read_table(self.path / p) for p in snapshot.surprise_parts]
        return pa.concat_tables(parts) if parts else SURPRISE_SCHEMA.empty_table()

    def size_on_disk(self, snapshot: MemorySnapshot) -> int:
        folder = self._commit_dir(snapshot.commit)
        files = [*folder.iterdir(), *(self.path / p for p in snapshot.surprise_parts)]
        return sum(f.stat().st_size for f in files)

    # ---- writing -------------------------------------------------------------------------------

    def commit(self, snapshot: MemorySnapshot, new_surprise: pa.Table | None = None) -> MemorySnapshot:
        """Write `snapshot` as the next commit and switch CURRENT to it atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        existing = self.commits()
        number = (existing[-1] if existing else 0) + 1
        self._remove_debris(number)
        parts = list(snapshot.surprise_parts)
        files: dict[str, str] = {}
        if new_surprise is not None and new_surprise.num_rows:
            rel = f"surprise/{number:06d}.parquet"
            (self.path / "surprise").mkdir(exist_ok=True)
            _write_parquet_durably(new_surprise.cast(SURPRISE_SCHEMA), self.path / rel)
            parts.append(rel)
        for rel in parts:
            files[rel] = _sha256_file(self.path / rel)

        staging = self.path / "commits" / f"{number:06d}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _write_parquet_durably(state_table(snapshot.stored_tensors()), staging / "state.parquet")
        _write_parquet_durably(
            pa.Table.from_pylist([dataclasses.asdict(s) for s in snapshot.sources], schema=_SOURCES_SCHEMA),
            staging / "sources.parquet",
        )
        final_rel = f"commits/{number:06d}"
        for name in ("state.parquet", "sources.parquet"):
            files[f"{final_rel}/{name}"] = _sha256_file(staging / name)
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "commit": number,
            "model": {
                "name": snapshot.model_name,
                "hash": snapshot.model_hash,
                "source": snapshot.model_source,
                "config": snapshot.config,
            },
            "kind": snapshot.kind,
            "block_tokens": snapshot.block_tokens,
            "created": snapshot.created,
            "updated": snapshot.updated,
            "tokens": snapshot.tokens,
            "state_digest": state_digest(snapshot.stored_tensors()),
            "surprise_parts": parts,
            "files": files,
        }
        write_bytes_durably(staging / "manifest.json", json.dumps(manifest, indent=2).encode())
        os.replace(staging, self.path / final_rel)
        fsync_path(self.path / "commits")

        pointer = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "commit": number,
            "manifest_sha256": _sha256_file(self.path / final_rel / "manifest.json"),
        }
        tmp = self.path / "CURRENT.tmp"
        write_bytes_durably(tmp, json.dumps(pointer).encode())
        os.replace(tmp, self.pointer)  # the commit point
        fsync_path(self.path)

        self._prune(keep={number, existing[-1]} if existing else {number}, parts=parts)
        return dataclasses.replace(snapshot, commit=number, surprise_parts=parts)

    def rollback(self) -> int:
        """Point CURRENT at the newest intact commit (after corruption); returns its number."""
        for number in reversed(self.commits()):
            if self._intact(number):
                manifest = self._commit_dir(number) / "manifest.json"
                pointer = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "commit": number,
                           "manifest_sha256": _sha256_file(manifest)}  # fmt: skip
                tmp = self.path / "CURRENT.tmp"
                write_bytes_durably(tmp, json.dumps(pointer).encode())
                os.replace(tmp, self.pointer)
                fsync_path(self.path)
                return number
        raise UserError(f"{self.path}: no intact commit to roll back to")

    def _remove_debris(self, next_number: int) -> None:
        """Leftovers of a commit that crashed before its switch: never referenced, safe to drop."""
        for p in (self.path / "commits").glob("*.partial"):
            shutil.rmtree(p, ignore_errors=True)
        stale = self.path / "surprise" / f"{next_number:06d}.parquet"
        stale.unlink(missing_ok=True)

    def _prune(self, keep: set[int], parts: list[str]) -> None:
        for number in self.commits():
            if number not in keep:
                shutil.rmtree(self._commit_dir(number), ignore_errors=True)
        referenced = set(parts)
        for older in keep:
            manifest = self._commit_dir(older) / "manifest.json"
            if manifest.exists():
                referenced.update(json.loads(manifest.read_text())["surprise_parts"])
        for part in (self.path / "surprise").glob("*.parquet"):
            if f"surprise/{part.name}" not in referenced:
                part.unlink()


_SOURCES_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("tokens", pa.int64()),
        ("complete", pa.bool_()),
        ("sha256", pa.string()),
        ("resume_record", pa.int64()),
        ("resume_offset", pa.int64()),
        ("consumed_sha256", pa.string()),
        ("batch", pa.int64()),
    ]
)


def state_table(state: dict[str, torch.Tensor]) -> pa.Table:
    """One row per tensor: name, dtype (numpy name, or bfloat16), shape, raw little-endian C-order bytes."""
    names, dtypes, shapes, data = [], [], [], []
    for name in sorted(state):
        dtype, shape, raw = _tensor_bytes(state[name])
        names.append(name)
        dtypes.append(dtype)
        shapes.append(list(shape))
        data.append(raw)
    return pa.table(
        {
            "name": pa.array(names, pa.string()),
            "dtype": pa.array(dtypes, pa.string()),
            "shape": pa.array(shapes, pa.list_(pa.int64())),
            "data": pa.array(data, pa.large_binary()),
        }
    )


def read_state_table(path: Path) -> dict[str, torch.Tensor]:
    table = pq.read_table(path)
    return {row["name"]: _tensor_from_bytes(row["dtype"], row["shape"], row["data"]) for row in table.to_pylist()}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _write_parquet_durably(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
