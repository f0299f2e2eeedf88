"""Text: any bytes at all (the text model reads raw bytes), cut into pieces of the stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .errors import InputError
from .pieces import Piece, PieceCutter


def read_text(blocks: Iterable[bytes], source: str, source_index: int, piece_size: int) -> Iterator[Piece]:
    """Pieces of a byte stream: one record (index 0, no id) per source."""
    cutter = PieceCutter(source, source_index, piece_size)
    cutter.start_record(None)
    for block in blocks:
        yield from cutter.add(block)
    if cutter.record_length == 0:
        raise InputError(f"{source}: the input is empty; give a file with content")
    yield from cutter.finish_record()
