"""`open_input`: one iterable of pieces over any mix of files, directories and stdin."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from types import TracebackType

from .errors import InputError
from .fasta import read_fasta
from .fastq import read_fastq
from .formats import Format
from .pieces import DEFAULT_PIECE_SIZE, Piece, ReadPosition, SourceInfo
from .records import read_records
from .resume import skip_to
from .sources import Kind, OpenedSource, SkippedFile, SourcePlan, plan_sources
from .text import read_text

PathLike = str | os.PathLike[str]


class InputReader:
    """The pieces of an input, in order, with what has been read so far.

    Iterate it (once) for `Piece`s. While or after iterating:
    `position` is where to resume after the last piece handed out; `sources` gives size and sha256 of each
    source read (complete ones, then the one in progress); `bytes_read` / `total_bytes` drive a progress bar.
    """

    def __init__(
        self,
        plans: list[SourcePlan],
        kind: str,
        piece_size: int,
        start: ReadPosition,
        skipped: list[SkippedFile],
    ) -> None:
        self.kind = kind
        self.piece_size = piece_size
        self.start = start
        self.skipped = skipped
        self.source_paths = [plan.display for plan in plans]
        self._plans = plans
        self._position = start  # valid while _last is None
        self._last: Piece | None = None  # the piece handed out last; the position follows from it
        self._finished: list[SourceInfo] = []
        self._current: tuple[int, SourcePlan, OpenedSource] | None = None
        self._pieces = self._generate()

    @property
    def position(self) -> ReadPosition:
        """Where to resume: right after the last piece handed out (or the start, before any)."""
        return self._position if self._last is None else self._last.next_position

    @property
    def sources(self) -> list[SourceInfo]:
        sources = list(self._finished)
        if self._current is not None:
            index, plan, opened = self._current
            sources.append(opened.info(index, plan.format, complete=False))
        return sources

    @property
    def bytes_read(self) -> int:
        """Raw (on-disk) bytes read so far, over all sources."""
        done = sum(source.size for source in self._finished)
        return done + (self._current[2].raw.size if self._current is not None else 0)

    @property
    def total_bytes(self) -> int | None:
        """On-disk size of all sources from the start source on; None when one is stdin or a pipe."""
        sizes = [plan.size for plan in self._plans[self.start.source_index :]]
        return None if any(size is None for size in sizes) else sum(sizes)  # type: ignore[misc]

    def __iter__(self) -> Iterator[Piece]:
        return self._pieces

    def __next__(self) -> Piece:
        return next(self._pieces)

    def close(self) -> None:
        """Stop reading and close every open source."""
        self._pieces.close()
        for plan in self._plans:
            if plan.opened is not None:
                plan.opened.close()
                plan.opened = None

    def __enter__(self) -> InputReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _generate(self) -> Iterator[Piece]:
        start = self.start
        if start.source_index > len(self._plans):
            raise InputError(
                f"cannot resume at source {start.source_index + 1}: the input has only {len(self._plans)} "
                "source(s); give the same inputs as before"
            )
        for index in range(start.source_index, len(self._plans)):
            plan = self._plans[index]
            opened = plan.open()
            self._current = (index, plan, opened)
            try:
                pieces = _parse(opened, plan.format, index, self.piece_size)
                if index == start.source_index and (start.record_index or start.offset):
                    pieces = skip_to(pieces, start, plan.display)
                # One piece is held back: the last one of a source is flagged `source_end`, and is handed
                # out only once the whole source was read and checked.
                previous: Piece | None = None
                for piece in pieces:
                    if previous is not None:
                        self._last = previous
                        yield previous
                    previous = piece
                opened.finish()
                self._finished.append(opened.info(index, plan.format, complete=True))
                self._current = None
                if previous is None:
                    self._last, self._position = None, ReadPosition(index + 1, 0, 0)
                else:
                    self._last = previous._replace(source_end=True)
                    yield self._last
            finally:
                self._current = None
                opened.close()


def _parse(opened: OpenedSource, fmt: Format, index: int, piece_size: int) -> Iterator[Piece]:
    blocks = opened.blocks()
    if fmt is Format.TEXT:
        return read_text(blocks, opened.display, index, piece_size)
    if fmt is Format.FASTA:
        return read_fasta(blocks, opened.display, index, piece_size)
    if fmt is Format.FASTQ:
        return read_fastq(blocks, opened.display, index, piece_size)
    return read_records(blocks, fmt, opened.display, index, piece_size)


def open_input(
    paths: PathLike | Sequence[PathLike],
    kind: Kind = "auto",
    piece_size: int = DEFAULT_PIECE_SIZE,
    start: ReadPosition | None = None,
) -> InputReader:
    """Open files, directories (read recursively in sorted order, hidden names skipped) and '-' (stdin)
    as one stream of pieces.

    kind: "text" reads raw bytes; "dna" reads FASTA, FASTQ, GenBank or EMBL (possibly compressed) as
    A/C/G/T/N; "auto" picks "dna" when every source is a sequence file and "text" when none is.
    piece_size: the most bytes in one piece. start: resume there (a `Piece.next_position` or
    `InputReader.position` from an earlier read of the same inputs).

    Problems with the paths themselves (missing, unreadable, empty, wrong format) raise InputError here;
    problems deeper in the data raise InputError while iterating.
    """
    if isinstance(piece_size, bool) or not isinstance(piece_size, int) or piece_size < 1:
        raise InputError(f"the piece size must be a positive number of bytes, got {piece_size!r}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    names = [os.fspath(path) for path in paths]
    plans, settled, skipped = plan_sources(names, kind)
    return InputReader(plans, settled, piece_size, start or ReadPosition(), skipped)
