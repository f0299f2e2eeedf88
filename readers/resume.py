"""Restarting a source at a ReadPosition: the prefix is read again (and hashed) but not kept."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .errors import InputError
from .pieces import Piece, ReadPosition


def skip_to(pieces: Iterable[Piece], start: ReadPosition, source: str) -> Iterator[Piece]:
    """The pieces of one source from `start` on; the piece that straddles it is trimmed.

    A position at the very end of a record or of the source is valid (nothing of it is left); one beyond
    means the input is not what was read before.
    """
    records = 0  # records seen so far
    for piece in pieces:
        records = piece.record_index + 1
        if piece.record_index < start.record_index:
            continue
        if piece.record_index == start.record_index:
            end = piece.offset + len(piece.data)
            if end < start.offset and piece.record_end:
                raise InputError(
                    f"{source}: cannot resume at offset {start.offset} of record {start.record_index + 1}: "
                    f"it has only {end}; the input changed since it was read, start over"
                )
            if end <= start.offset:
                continue
            if piece.offset < start.offset:
                cut = start.offset - piece.offset
                piece = piece._replace(data=piece.data[cut:], offset=start.offset, record_start=False)
        yield piece
    if start.record_index > records or (start.record_index == records and start.offset):
        raise InputError(
            f"{source}: cannot resume at record {start.record_index + 1}: the input has only {records} "
            "record(s); the input changed since it was read, start over"
        )
