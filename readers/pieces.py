"""What readers hand out: pieces of data with their provenance, positions to restart from, and sources.

Pieces of one record are cut on a fixed grid (offsets that are multiples of the piece size), so reading a
record in one go or restarting it at a piece boundary gives the very same pieces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

DEFAULT_PIECE_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class ReadPosition:
    """Where reading stands: the source (index into the expanded input list), the record inside it and
    the offset inside that record (for text, record is always 0 and offset counts bytes of the stream)."""

    source_index: int = 0
    record_index: int = 0
    offset: int = 0

    def __post_init__(self) -> None:
        if min(self.source_index, self.record_index, self.offset) < 0:
            raise ValueError(f"a read position cannot be negative: {self}")


class Piece(NamedTuple):
    """A piece of at most `piece_size` bytes of one record (DNA) or one text source.

    `data` is raw bytes for text and upper-case A/C/G/T/N for DNA. `offset` is the position of `data[0]`
    inside its record (DNA) or text stream. `record` is the sequence id (None for text).
    (A NamedTuple rather than a dataclass: short reads make one piece each, and tuples are cheap to make.)
    """

    data: bytes
    source: str
    source_index: int
    record: str | None
    record_index: int
    offset: int
    record_start: bool
    record_end: bool
    source_end: bool = False

    @property
    def position(self) -> ReadPosition:
        """Where this piece starts."""
        return ReadPosition(self.source_index, self.record_index, self.offset)

    @property
    def next_position(self) -> ReadPosition:
        """Where reading continues after this piece; pass it as `start=` to resume right after it."""
        if self.source_end:
            return ReadPosition(self.source_index + 1, 0, 0)
        if self.record_end:
            return ReadPosition(self.source_index, self.record_index + 1, 0)
        return ReadPosition(self.source_index, self.record_index, self.offset + len(self.data))


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """One input source as read from disk: `size` and `sha256` cover the raw (still compressed) bytes read
    so far; they describe the whole file once `complete` is true."""

    path: str
    source_index: int
    size: int
    sha256: str
    complete: bool
    compression: str
    format: str


class PieceCutter:
    """Collects the sequence bytes of one record and cuts them into pieces on the piece-size grid.

    Incoming chunks are kept as views until a piece is full, so each byte is copied once (by the join that
    makes the piece), or not at all when a chunk is exactly one piece.
    """

    __slots__ = (
        "_offset",
        "_pending",
        "_pending_length",
        "_record",
        "_record_index",
        "_source",
        "_source_index",
        "piece_size",
    )

    def __init__(self, source: str, source_index: int, piece_size: int) -> None:
        self.piece_size = piece_size
        self._source = source
        self._source_index = source_index
        self._pending: list[bytes | memoryview] = []
        self._pending_length = 0
        self._record: str | None = None
        self._record_index = -1
        self._offset = 0  # record offset of the first pending byte

    @property
    def records_started(self) -> int:
        return self._record_index + 1

    def start_record(self, record: str | None, index: int | None = None) -> None:
        """Begin the next record (or record `index`, when a caller made pieces of the ones between)."""
        self._record = record
        self._record_index = self._record_index + 1 if index is None else index
        self._offset = 0
        self._pending.clear()
        self._pending_length = 0

    @property
    def record_length(self) -> int:
        """Bases (or bytes) of the current record seen so far."""
        return self._offset + self._pending_length

    def add(self, data: bytes) -> Iterator[Piece]:
        """Append `data` to the current record; yield every piece that is now full."""
        size = self.piece_size
        position, length = 0, len(data)
        view: memoryview | None = None
        # A piece leaves only when a byte follows it: the record may end right after, and then the piece
        # must carry `record_end`.
        while True:
            cut = size - self._offset % size  # piece length up to the next grid line
            need = cut - self._pending_length
            if length - position <= need:
                break
            if self._pending:
                view = view or memoryview(data)
                piece = b"".join([*self._pending, view[position : position + need]])
                self._pending.clear()
                self._pending_length = 0
            else:
                piece = data[position : position + need]
            made = self._piece(piece, end=False)
            position += need
            self._offset += cut
            yield made
        if position < length:
            self._pending.append((view or memoryview(data))[position:] if position else data)
            self._pending_length += length - position

    def whole_record(self, data: bytes) -> Piece:
        """The single piece of a record given whole (at most piece_size, nothing added before): the fast
        path for short reads."""
        self._offset = len(data)
        return Piece(
            data=data,
            source=self._source,
            source_index=self._source_index,
            record=self._record,
            record_index=self._record_index,
            offset=0,
            record_start=True,
            record_end=True,
        )

    def finish_record(self) -> Iterator[Piece]:
        """Yield the record's last piece, flagged `record_end`."""
        pending = self._pending
        piece = pending[0] if len(pending) == 1 and isinstance(pending[0], bytes) else b"".join(pending)
        yield self._piece(piece, end=True)
        self._offset += self._pending_length
        pending.clear()
        self._pending_length = 0

    def _piece(self, data: bytes, end: bool) -> Piece:
        return Piece(
            data=data,
            source=self._source,
            source_index=self._source_index,
            record=self._record,
            record_index=self._record_index,
            offset=self._offset,
            record_start=self._offset == 0,
            record_end=end,
        )
