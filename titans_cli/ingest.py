"""`ingest`: stream inputs through a model so its memory learns them, committing to a MemoryStore.

The stream is cut into fixed blocks at absolute token positions and commits happen only between
blocks, so an ingest interrupted at any instant and resumed computes exactly the blocks an
uninterrupted one does: the memories are bit-identical.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from titans_cli.errors import UserError
from titans_cli.memory_store import SURPRISE_SCHEMA, MemorySnapshot, MemoryStore, SourceRecord
from titans_cli.model_registry import ModelRef, default_model, resolve_model
from titans_cli.models import TitansModel, TitansState, tokenizer_for
from titans_cli.models.graphed_stream import inference_stream
from titans_cli.readers import Piece, ReadPosition, file_sha256, open_input
from titans_cli.saved_memory import memory_model

BLOCK_TOKENS = 4096  # rounded up to a multiple of the model's chunk and segment lengths


@dataclass
class IngestRequest:
    inputs: list[str]
    memory: Path
    model: str | None = None  # default: the memory's own model, else the bundled one for the input's kind
    kind: str = "auto"
    resume: bool = False
    force: bool = False
    checkpoint_tokens: int | None = None  # commit after this many tokens (default: by time)
    checkpoint_seconds: float = 60.0
    block_tokens: int | None = None  # for a new memory; default BLOCK_TOKENS rounded to the model
    device: str = "cpu"
    should_stop: Callable[[], bool] = lambda: False  # polled between blocks (Ctrl-C)
    on_progress: Callable[[IngestProgress], None] = lambda progress: None


@dataclass
class IngestProgress:
    bytes_done: int
    bytes_total: int | None
    tokens: int  # added by this run
    tokens_per_s: float
    surprise: float  # mean over the last block


@dataclass
class IngestReport:
    memory: Path
    model: str
    tokens_added: int
    total_tokens: int
    seconds: float
    commits: int
    commit_seconds: float  # of `seconds`, spent writing commits
    interrupted: bool
    sources: list[SourceRecord] = field(default_factory=list)


def block_tokens(model: TitansModel, requested: int | None = None) -> int:
    """Block length: a multiple of the model's chunk and segment, so blocks end on their boundaries."""
    cfg = model.config
    step = math.lcm(cfg.chunk_size, cfg.segment_len)
    return step * max(1, math.ceil((requested or BLOCK_TOKENS) / step))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def ingest(request: IngestRequest) -> IngestReport:
    store = MemoryStore(request.memory)
    existing = store.load() if store.exists() else None
    detected = request.kind
    if detected == "auto":  # sniffs the inputs' heads: sequence files are DNA, anything else text
        probe = open_input(request.inputs, kind="auto")
        probe.close()
        detected = probe.kind
    ref = _model_for(request, existing, detected)
    model = ref.load(request.device)
    kind = _input_kind(request, model, detected)

    reader = open_input(request.inputs, kind=kind)
    if existing is not None and existing.kind != kind:
        raise UserError(f"{request.memory}: this memory holds {existing.kind} input, not {kind}")
    # Absolute paths: `ask --evidence` and `--resume` find the sources again from any directory.
    paths = [p if p == "-" else os.path.abspath(p) for p in reader.source_paths]
    snapshot, first, skip_tokens = _plan(request, existing, ref, model, kind, paths)
    if first.local:  # resuming: restart at the partial source's beginning and re-verify what was consumed
        reader.close()
        reader = open_input(request.inputs, kind=kind, start=ReadPosition(first.local, 0, 0))

    stream = _Stream(model, snapshot, first.base, reader, tokenizer_for(model.config.tokenizer))
    stream.drop(skip_tokens, first.local)
    return stream.run(store, request)


@dataclass
class _Start:
    base: int  # index in snapshot.sources of this batch's first source
    local: int  # index (within the batch) of the first source still to read


def _model_for(request: IngestRequest, existing: MemorySnapshot | None, detected: str) -> ModelRef:
    if existing is not None:
        return memory_model(existing, request.memory, request.model)
    return resolve_model(request.model or default_model(detected))


def _input_kind(request: IngestRequest, model: TitansModel, detected: str) -> str:
    model_kind = "dna" if model.config.tokenizer == "dna" else "text"
    if request.kind == "auto":
        if detected != model_kind and model_kind == "text":
            raise UserError(
                f"{', '.join(request.inputs)}: looks like sequence data, but the model reads text; "
                "pass --kind text to read the files as raw bytes, or use a DNA model"
            )
        return model_kind
    if request.kind == "dna" and model_kind == "text":
        raise UserError("--kind dna needs a DNA model; this model reads text")
    if request.kind == "text" and model_kind == "dna":
        raise UserError("this model reads DNA: give FASTA/FASTQ/GenBank/EMBL input (or --kind dna)")
    return request.kind


def _plan(request, existing, ref, model, kind, paths) -> tuple[MemorySnapshot, _Start, int]:
    """The snapshot to continue from, where this run starts reading, and how many tokens to re-read."""
    if existing is None:
        if request.resume:
            raise UserError(f"{request.memory}: nothing to resume (no memory there yet)")
        stamp = now()
        state = model.init_state(1).tensors()
        existing = MemorySnapshot(
            model_name=ref.name,
            model_hash=ref.content_hash,
            model_source=ref.source,
            config=model.config.to_dict(),
            kind=kind,
            state={k: v.detach().cpu() for k, v in state.items()},
            block_tokens=block_tokens(model, request.block_tokens),
            created=stamp,
            updated=stamp,
        )
    unfinished = [i for i, s in enumerate(existing.sources) if not s.complete]
    if request.resume:
        if not unfinished:
            raise UserError(f"{request.memory}: its last ingest finished; nothing to resume")
        batch = existing.sources[unfinished[0]].batch
        base = next(i for i, s in enumerate(existing.sources) if s.batch == batch)
        recorded = [s.path for s in existing.sources[base:]]
        if recorded != paths:
            raise UserError(
                f"--resume needs the same inputs as the interrupted ingest: {' '.join(recorded)}"
            )
        for record in existing.sources[base:]:
            _verify_unchanged(record)
        local = unfinished[0] - base
        return existing, _Start(base, local), existing.sources[unfinished[0]].tokens
    if unfinished:
        names = ", ".join(existing.sources[i].path for i in unfinished)
        raise UserError(
            f"{request.memory} has an interrupted ingest of {names}: continue it with --resume"
        )
    seen = {s.path for s in existing.sources}
    again = [p for p in paths if p in seen and p != "-"]
    if again and not request.force:
        raise UserError(f"{', '.join(again)} already in {request.memory}; pass --force to read it again")
    batch = max((s.batch for s in existing.sources), default=0) + 1
    sizes = [Path(p).stat().st_size if p != "-" else -1 for p in paths]
    new = [SourceRecord(path=p, size=size, batch=batch) for p, size in zip(paths, sizes)]
    base = len(existing.sources)
    return replace(existing, sources=existing.sources + new), _Start(base, 0), 0


def _verify_unchanged(record: SourceRecord) -> None:
    path = Path(record.path)
    if record.path == "-":
        raise UserError("an ingest from stdin cannot be resumed: stdin cannot be read again")
    if not path.exists():
        raise UserError(f"{record.path}: input of the interrupted ingest is gone; it cannot be resumed")
    if path.stat().st_size != record.size:
        raise UserError(f"{record.path}: changed since it was ingested (size differs); it cannot be resumed")
    if record.complete and file_sha256(path) != record.sha256:
        raise UserError(f"{record.path}: changed since it was ingested (sha256 differs); it cannot be resumed")


class _Stream:
    """Tokens from a reader, fed to the model in blocks at absolute positions, with per-source accounting.

    Tokens read but not yet fed wait in `queue` (as reader pieces) or in `carry` (as ids: the pending
    tail a previous ingest left in the memory). Only whole blocks are fed; the tail of the input stays
    pending in the memory, so appending more input later feeds exactly the blocks a single ingest would.
    """

    def __init__(self, model: TitansModel, snapshot: MemorySnapshot, base: int, reader, tokenizer):
        self.snapshot, self.base, self.reader = snapshot, base, reader
        self.model = inference_stream(model)
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.state = TitansState.from_tensors(snapshot.state).to(self.device)
        self.block = snapshot.block_tokens
        self.carry = snapshot.pending
        self.queue: deque[list] = deque()  # [piece, tokens of it already taken]
        self.queued = 0
        self.pieces = iter(reader)
        self.hashes: dict[int, Any] = {}  # source (within the batch) → sha256 of the data consumed so far
        self.resume_at: ReadPosition | None = None
        self.surprise_rows: list[tuple[int, int, float, int]] = []
        self.last_surprise = float("nan")
        self.commit_seconds = 0.0

    def drop(self, tokens: int, local: int) -> None:
        """Re-read the first `tokens` tokens of a partial source and check them against the record."""
        if not tokens:
            return
        while self.queued < tokens and (piece := next(self.pieces, None)) is not None:
            self._push(piece)
        self._take(min(tokens, self.queued), count=False)
        record = self.snapshot.sources[self.base + local]
        if self._hash(local).hexdigest() != record.consumed_sha256:
            raise UserError(f"{record.path}: changed since it was ingested; it cannot be resumed")

    def run(self, store: MemoryStore, request: IngestRequest) -> IngestReport:
        self.started = self.last_commit = time.monotonic()
        self.fed = self.since_commit = self.commits = 0
        # Tokens re-read while resuming may already fill a block: feed them before reading on.
        interrupted = self._feed_whole_blocks(store, request)
        if not interrupted:
            for piece in self.pieces:
                self._push(piece)
                if interrupted := self._feed_whole_blocks(store, request):
                    break
        if not interrupted:  # the tail of the input waits in the memory for the rest of its block
            self.carry = torch.cat([self.carry, self._ids(self._take(self.queued))])
        self._commit(store, finished=not interrupted)
        batch = self.snapshot.sources[self.base :]
        added = sum(s.tokens for s in batch)
        return IngestReport(store.path, self.snapshot.model_name, added, self.snapshot.tokens,
                            time.monotonic() - self.started, self.commits + 1, self.commit_seconds, interrupted,
                            batch)  # fmt: skip

    def _feed_whole_blocks(self, store: MemoryStore, request: IngestRequest) -> bool:
        """Feed every whole block that is ready, committing when due; True if asked to stop."""
        while len(self.carry) + self.queued >= (need := self.block - self.state.position % self.block):
            self._feed(need)
            self.fed += need
            self.since_commit += need
            elapsed = time.monotonic() - self.started
            request.on_progress(IngestProgress(self.reader.bytes_read, self.reader.total_bytes, self.fed,
                                               self.fed / max(elapsed, 1e-9), self.last_surprise))  # fmt: skip
            if request.should_stop():
                return True
            due = (self.since_commit >= request.checkpoint_tokens if request.checkpoint_tokens
                   else time.monotonic() - self.last_commit >= request.checkpoint_seconds)  # fmt: skip
            if due:
                self._commit(store, finished=False)
                self.commits += 1
                self.last_commit, self.since_commit = time.monotonic(), 0
        return False

    def _push(self, piece: Piece) -> None:
        self.queue.append([piece, 0])
        self.queued += len(piece.data)

    def _hash(self, local: int) -> Any:
        return self.hashes.setdefault(local, hashlib.sha256())

    def _take(self, n: int, count: bool = True) -> list[tuple[Piece, int, int]]:
        """Pop n queued tokens as (piece, start, end) slices, hashing them per source."""
        out = []
        while n:
            item = self.queue[0]
            piece, start = item
            end = min(len(piece.data), start + n)
            out.append((piece, start, end))
            self._hash(piece.source_index).update(piece.data[start:end])
            if count:
                self.snapshot.sources[self.base + piece.source_index].tokens += end - start
            n -= end - start
            self.queued -= end - start
            if end == len(piece.data):
                self.queue.popleft()
                self.resume_at = piece.next_position
            else:
                item[1] = end
                self.resume_at = ReadPosition(piece.source_index, piece.record_index, piece.offset + end)
        return out

    def _ids(self, taken: list[tuple[Piece, int, int]]) -> torch.Tensor:
        pieces = [self.tokenizer.encode(p.data[a:b]) for p, a, b in taken]
        return torch.cat([torch.zeros(0, dtype=torch.int64), *pieces])

    def _feed(self, n: int) -> None:
        """Feed the next n tokens (the carried ones first) through the model."""
        from_queue = n - len(self.carry)
        taken = self._take(from_queue)
        ids = torch.cat([self.carry, self._ids(taken)]).to(self.device)
        self.carry = self.carry[:0]
        start = self.state.position
        with torch.no_grad():
            out = self.model.stream(ids[None], self.state)
        self.state = out.state
        self.last_surprise = float(out.surprise.mean())
        source = self.base + taken[0][0].source_index if taken else -1
        self.surprise_rows.append((start, start + n, self.last_surprise, source))

    def _commit(self, store: MemoryStore, finished: bool) -> None:
        """Record how far each source of this batch was consumed, then commit state and surprise."""
        started = time.monotonic()
        batch = self.snapshot.sources[self.base :]
        read_to_end = {info.source_index: info for info in self.reader.sources if info.complete}
        at = self.resume_at
        consumed_before = len(batch) if finished else (at.source_index if at else 0)
        for local, record in enumerate(batch):
            info = read_to_end.get(local)
            if local < consumed_before and info is not None:  # every token of it went into the memory
                record.complete, record.sha256 = True, info.sha256
                record.size = info.size if record.size < 0 else record.size
                record.resume_record, record.resume_offset = 0, 0
            elif at is not None and local == at.source_index:
                record.resume_record, record.resume_offset = at.record_index, at.offset
        for local, h in self.hashes.items():
            batch[local].consumed_sha256 = h.copy().hexdigest()
        state = {k: v.detach().cpu() for k, v in self.state.tensors().items()}
        rows = None
        if self.surprise_rows:
            rows = pa.Table.from_arrays([pa.array(c) for c in zip(*self.surprise_rows)], schema=SURPRISE_SCHEMA)
        snapshot = replace(self.snapshot, state=state, pending=self.carry.cpu(), updated=now())
        self.snapshot = store.commit(snapshot, rows)
        self.surprise_rows = []
        self.commit_seconds += time.monotonic() - started
