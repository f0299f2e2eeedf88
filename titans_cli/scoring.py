"""`score`: the log-likelihood of every base (or byte) of the input under a model, through the streaming state.

The log-likelihood of token t is log P(x_t | x_<t) from the logits at t − 1. A record's first token has
no prediction and is not scored, nor is any N. Whole records are read ahead, up to `batch_records ×
piece_tokens` tokens, and scored side by side in batches of similar length, each padded at its end (the
model is causal, so padding after a record cannot change its scores); a longer record, a chromosome, is
read in pieces through the model alone, in constant memory.

What a caller gets is a stream of `ScoredPiece`s: per-token log-likelihoods (NaN where unscored) in
record order. Aggregations (per-record totals, per-line totals for text, window tracks) consume them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from titans_cli.evaluation.generate import expand_state
from titans_cli.models import TitansModel, TitansState, tokenizer_for
from titans_cli.models.graphed_stream import GraphedStream, inference_stream
from titans_cli.readers import Piece
from titans_cli.readers.nucleotides import reverse_complement

LN2 = math.log(2)
# A further row in a batch costs 0.48–0.62 of scoring its stream alone (bundled dna-tiny on 2 cores,
# bench/batch_rows.py), so a record shares a batch when it is at least this fraction of the batch's longest.
_JOIN = 0.6


@dataclass
class ScoreOptions:
    piece_tokens: int = 4096  # tokens per model call while reading a long record
    batch_records: int = 32  # records scored side by side; records are read ahead up to batch_records × piece_tokens
    carry: bool = False  # keep the memory learning across records instead of a fresh one per record
    rc_average: bool = False  # DNA: average each base's score over the forward and reverse-complement strands


@dataclass
class ScoredPiece:
    source: str
    record: str  # the sequence id (DNA) or the source path (text)
    offset: int  # position of data[0] in its record
    data: bytes
    loglik: np.ndarray  # float64 natural-log P per token, NaN where unscored
    record_end: bool


class _Stream:
    """B parallel token streams fed in pieces; returns log P(token | everything before it)."""

    def __init__(self, model: TitansModel | GraphedStream, state: TitansState):
        self.model, self.state = model, state
        self.last: torch.Tensor | None = None  # log-probabilities at each stream's last position [B, V]

    @torch.no_grad()
    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        streamed = self.model.stream(ids, self.state)
        logits, self.state = streamed.logits, streamed.state
        logp = torch.log_softmax(logits.float(), dim=-1)
        out = torch.full(ids.shape, float("nan"), dtype=torch.float64)
        if self.last is not None:
            out[:, 0] = self.last.gather(1, ids[:, :1])[:, 0].double().cpu()
        out[:, 1:] = logp[:, :-1].gather(2, ids[:, 1:, None])[..., 0].double().cpu()
        self.last = logp[:, -1]
        return out


class Scorer:
    """Scores records from a reader; `start_state` (batch 1) is where every record's stream begins."""

    def __init__(self, model: TitansModel, start_state: TitansState | None = None, options: ScoreOptions | None = None):
        self.model = model
        self.options = options or ScoreOptions()
        if self.options.carry and self.options.rc_average:
            raise ValueError("carry and rc_average do not go together: the reverse strand is read from a fresh memory")
        self.tokenizer = tokenizer_for(model.config.tokenizer)
        self.device = next(model.parameters()).device
        self.start = start_state if start_state is not None else model.init_state(1)
        self.dna = model.config.tokenizer == "dna"
        self.streamer = inference_stream(model)  # one for every record: its CUDA graphs are captured once

    def _fresh(self, batch: int) -> _Stream:
        return _Stream(self.streamer, expand_state(self.start, batch))

    def _ids(self, data: bytes) -> torch.Tensor:
        return self.tokenizer.encode(data).to(self.device)

    def score(self, pieces: Iterable[Piece]) -> Iterator[ScoredPiece]:
        """Scored pieces in input order.

        Unless memory is carried, whole records are read ahead until they hold `batch_records ×
        piece_tokens` tokens and are scored side by side (`_score_group`): a batch of streams costs less
        per token than one stream (each chunk step is a few small matmuls either way). A record longer
        than that streams alone, in constant memory.
        """
        if self.options.carry:
            yield from self._score_carried(pieces)
            return
        budget = self.options.batch_records * self.options.piece_tokens
        pieces = iter(pieces)
        group: list[list[Piece]] = []
        group_tokens, record, record_tokens = 0, [], 0
        for piece in pieces:
            record.append(piece)
            record_tokens += len(piece.data)
            if record_tokens > budget:
                yield from self._score_group(group)
                group, group_tokens = [], 0
                yield from self._score_alone(_rest_of_record(record, pieces))
                record, record_tokens = [], 0
            elif piece.record_end:
                record_tokens = max(record_tokens, 1)  # empty records count too: the read-ahead stays bounded
                if group_tokens + record_tokens > budget:
                    yield from self._score_group(group)
                    group, group_tokens = [], 0
                group.append(record)
                group_tokens += record_tokens
                record, record_tokens = [], 0
        yield from self._score_group(group)

    def _score_carried(self, pieces: Iterable[Piece]) -> Iterator[ScoredPiece]:
        """One stream through every record: the memory keeps learning across them."""
        stream = self._fresh(1)
        for piece in pieces:
            if piece.record_start:
                stream.last = None  # a record's first token is never scored, carried memory or not
            yield self._fed(stream, piece)

    def _score_alone(self, pieces: Iterable[Piece]) -> Iterator[ScoredPiece]:
        """One record streamed piece by piece from a fresh memory (with rc_average: held, both strands)."""
        if self.options.rc_average:
            yield from self._score_both_strands(list(pieces))
            return
        stream = self._fresh(1)
        for piece in pieces:
            yield self._fed(stream, piece)

    def _fed(self, stream: _Stream, piece: Piece) -> ScoredPiece:
        values = stream.feed(self._ids(piece.data)[None])[0].numpy() if piece.data else np.zeros(0)
        return self._scored(piece, values)

    def score_sequences(self, sequences: list[bytes]) -> list[np.ndarray]:
        """Per-token log-likelihoods of whole sequences, scored as one batch padded at the end, each from the
        start state (with rc_average: each base's mean over both strands). NaN where unscored."""
        return [self._without_n(s, values) for s, values in zip(sequences, self._batch_logliks(sequences))]

    def _batch_logliks(self, sequences: list[bytes]) -> list[np.ndarray]:
        """`score_sequences` before N positions are masked (`_scored` masks each piece)."""
        strands = sequences + ([reverse_complement(s) for s in sequences] if self.options.rc_average else [])
        width = max(len(s) for s in strands)
        ids = torch.full((len(strands), width), self.tokenizer.pad, dtype=torch.int64, device=self.device)
        for row, s in enumerate(strands):
            ids[row, : len(s)] = self._ids(s)
        stream = self._fresh(len(strands))
        logliks = [stream.feed(ids[:, start : start + self.options.piece_tokens])
                   for start in range(0, width, self.options.piece_tokens)]  # fmt: skip
        values = torch.cat(logliks, dim=1).numpy() if logliks else np.zeros((len(strands), 0))
        out = []
        for row, s in enumerate(sequences):
            forward = values[row, : len(s)].copy()
            forward[:1] = np.nan
            if self.options.rc_average:
                backward = values[len(sequences) + row, : len(s)][::-1].copy()
                backward[-1:] = np.nan  # the reverse strand's first token is the forward's last
                forward = _mean_of_scored(forward, backward)
            out.append(forward)
        return out

    def _score_group(self, group: list[list[Piece]]) -> Iterator[ScoredPiece]:
        """Whole records read ahead: scored in batches of similar length, yielded in input order piece by piece."""
        sequences = [b"".join(p.data for p in record) for record in group]
        values: list[np.ndarray] = [np.zeros(0)] * len(group)
        for rows in length_batches([len(s) for s in sequences], self.options.batch_records):
            for row, scores in zip(rows, self._batch_logliks([sequences[r] for r in rows])):
                values[row] = scores
        for record, scores in zip(group, values):
            offset = 0
            for piece in record:
                yield self._scored(piece, scores[offset : offset + len(piece.data)])
                offset += len(piece.data)

    def _score_both_strands(self, pieces: list[Piece]) -> Iterator[ScoredPiece]:
        """A long record, its two strands side by side as two streams (forward, reverse complement), then
        each base's mean over them, piece by piece.

        Holds the record (1 byte per base) and both strands' scores (float32, 8 bytes per base) until its
        end; the model reads the strands in pieces, so its own memory stays constant.
        """
        sequence = b"".join(p.data for p in pieces)
        spans = [(p._replace(data=b""), p.offset - pieces[0].offset, len(p.data)) for p in pieces]
        pieces.clear()  # the caller's list: its bytes now live only in `sequence`
        n, step = len(sequence), self.options.piece_tokens
        scores = np.empty((2, n), dtype=np.float32)  # the reverse strand's in its own order
        stream = self._fresh(2)
        for start in range(0, n, step):
            end = min(n, start + step)
            strands = [sequence[start:end], reverse_complement(sequence[n - end : n - start])]
            scores[:, start:end] = stream.feed(torch.stack([self._ids(s) for s in strands])).numpy()
        forward, backward = scores[0], scores[1, ::-1]  # backward[i]: the reverse strand's score of base i
        for piece, lo, size in spans:
            piece = piece._replace(data=sequence[lo : lo + size])
            both = (strand[lo : lo + size].astype(np.float64) for strand in (forward, backward))
            yield self._scored(piece, _mean_of_scored(*both))

    def _without_n(self, data: bytes, values: np.ndarray) -> np.ndarray:
        """N positions (DNA) are read but never scored."""
        if self.dna:
            values[np.frombuffer(data, dtype=np.uint8) == ord("N")] = np.nan
        return values

    def _scored(self, piece: Piece, values: np.ndarray) -> ScoredPiece:
        values = self._without_n(piece.data, values.copy())
        record = piece.record if piece.record is not None else piece.source
        return ScoredPiece(piece.source, record, piece.offset, piece.data, values, piece.record_end)


def _rest_of_record(head: list[Piece], pieces: Iterator[Piece]) -> Iterator[Piece]:
    """The pieces of a record already read, then the rest of it from `pieces`."""
    yield from head
    if head[-1].record_end:
        return
    for piece in pieces:
        yield piece
        if piece.record_end:
            return


def length_batches(lengths: list[int], most: int) -> list[list[int]]:
    """Indices of records to score side by side, longest first.

    A batch runs at its longest record's length; the next longest joins while the batch has fewer than
    `most` rows and it is at least `_JOIN` of that length, so its padding costs less than it saves.
    """
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches and len(batches[-1]) < most and lengths[i] >= _JOIN * lengths[batches[-1][0]]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _mean_of_scored(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise mean over the strands that scored a base (NaN where neither did)."""
    stacked = np.stack([a, b])
    count = np.sum(~np.isnan(stacked), axis=0)
    total = np.nansum(stacked, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass
class Totals:
    """Log-likelihood totals of one stretch of input (a record, a line, a window)."""

    name: str
    source: str
    length: int = 0
    scored: int = 0
    loglik: float = 0.0
    digest: Any = field(default_factory=hashlib.sha256)  # None: totals that need no sha256 (input-wide sums)

    def add(self, data: bytes, values: np.ndarray) -> None:
        scored = ~np.isnan(values)
        self.length += len(data)
        self.scored += int(scored.sum())
        self.loglik += float(values[scored].sum())
        if self.digest is not None:
            self.digest.update(data)

    @property
    def bits(self) -> float:
        """Mean bits per scored token (NaN when nothing was scored)."""
        return -self.loglik / LN2 / self.scored if self.scored else float("nan")

    def row(self, unit: str) -> dict:
        mean = self.loglik / self.scored if self.scored else float("nan")
        return {
            "id": self.name, "source": self.source, "length": self.length, f"scored_{unit}s": self.scored,
            "total_loglik": self.loglik, "mean_loglik": mean, f"bits_per_{unit}": self.bits,
            "perplexity": math.exp(-mean) if self.scored else float("nan"), "sha256": self.digest.hexdigest(),
        }  # fmt: skip


class RecordRows:
    """DNA: one `Totals` per record, complete at the record's last piece."""

    def __init__(self) -> None:
        self.current: Totals | None = None

    def add(self, piece: ScoredPiece) -> list[Totals]:
        if self.current is None or piece.offset == 0:
            self.current = Totals(piece.record, piece.source)
        self.current.add(piece.data, piece.loglik)
        return [self.current] if piece.record_end else []


class LineRows:
    """Text: one `Totals` per line (the newline belongs to its line), named "path:line"."""

    def __init__(self) -> None:
        self.current: Totals | None = None
        self.number = 0

    def add(self, piece: ScoredPiece) -> list[Totals]:
        if piece.offset == 0:
            self.current, self.number = None, 0
        done = []
        data, start = piece.data, 0
        while start < len(data):
            if self.current is None:
                self.number += 1
                self.current = Totals(f"{piece.record}:{self.number}", piece.source)
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            self.current.add(data[start:end], piece.loglik[start:end])
            if data[end - 1 : end] == b"\n":
                done.append(self.current)
                self.current = None
            start = end
        if piece.record_end and self.current is not None:  # a last line without a newline
            done.append(self.current)
            self.current = None
        return done


class WindowTrack:
    """Mean bits per scored token per fixed window of each record: (record, start, end, value), 0-based half-open."""

    def __init__(self, window: int):
        self.window = window
        self.record: str | None = None
        self.start = 0
        self.sum = 0.0
        self.count = 0
        self.end = 0

    def add(self, piece: ScoredPiece) -> Iterator[tuple[str, int, int, float]]:
        if piece.offset == 0:
            yield from self._flush()
            self.record, self.start, self.end = piece.record, 0, 0
        values = piece.loglik
        position = piece.offset
        while position < piece.offset + len(values):
            stop = min(self.start + self.window, piece.offset + len(values))
            part = values[position - piece.offset : stop - piece.offset]
            scored = part[~np.isnan(part)]
            self.sum += float(scored.sum())
            self.count += len(scored)
            self.end = stop
            position = stop
            if stop == self.start + self.window:
                yield from self._flush()
                self.start = stop
        if piece.record_end:
            yield from self._flush()
            self.record = None

    def _flush(self) -> Iterator[tuple[str, int, int, float]]:
        if self.record is not None and self.end > self.start:
            if self.count:
                yield self.record, self.start, self.end, -self.sum / LN2 / self.count
            self.sum, self.count = 0.0, 0
            self.start = self.end
