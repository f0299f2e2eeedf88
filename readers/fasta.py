"""FASTA, streamed: fixed-size binary blocks, never a whole line or record in memory.

A 1 GB sequence on a single line reads like any other: the parser only looks for '>' at line starts and
folds everything between headers with one bytes.translate per block.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .errors import InputError, describe_byte, where
from .nucleotides import INVALID_BYTE, first_invalid, fold, invalid_hint
from .pieces import Piece, PieceCutter

HEADER_KEPT = 1 << 16  # bytes of a header line kept (the id is its first word); the rest is skipped
_NOT_BLANK = re.compile(rb"\S")

_BEFORE_FIRST, _HEADER, _SEQUENCE = range(3)


def record_id(header: bytes) -> str:
    """The id of a '>' or '@' header line: its first word. Bytes that are not UTF-8 become U+FFFD: the id
    labels output and messages, and a damaged label is better than refusing a valid sequence."""
    words = header.split(None, 1)
    return words[0].decode("utf-8", errors="replace") if words else ""


def invalid_character(source: str, record: str | None, first_line: int, raw: bytes) -> InputError:
    """The error for the first forbidden byte of `raw`, sequence text that starts on line `first_line`."""
    index = first_invalid(raw)
    byte = raw[index]
    line = first_line + raw.count(b"\n", 0, index)
    return InputError(
        f"{where(source, record, line)}: invalid character {describe_byte(byte)} in the sequence; {invalid_hint(byte)}"
    )


def read_fasta(blocks: Iterable[bytes], source: str, source_index: int, piece_size: int) -> Iterator[Piece]:
    """Pieces of every record of a FASTA stream given as blocks of bytes."""
    cutter = PieceCutter(source, source_index, piece_size)
    state = _BEFORE_FIRST
    line = 1  # line number at `position`
    at_line_start = True  # whether the byte before `position` (maybe in the previous block) was '\n'
    header = bytearray()
    header_line = 0
    record: str | None = None

    def finish() -> Iterator[Piece]:
        if cutter.record_length == 0:
            raise InputError(
                f"{where(source, record, header_line)}: the record has no sequence; "
                "remove the empty record or add its sequence"
            )
        yield from cutter.finish_record()

    for block in blocks:
        position, end = 0, len(block)
        while position < end:
            if state == _SEQUENCE:
                # the next '>' that starts a line ends the record; a '>' elsewhere is an invalid byte
                stop = block.find(b">", position)
                while stop >= 0 and not (block[stop - 1] == 10 if stop else at_line_start):
                    stop = block.find(b">", stop + 1)
                boundary = stop >= 0
                if not boundary:
                    stop = end
                if stop > position:
                    raw = block if position == 0 and stop == end else block[position:stop]
                    bases, newlines = fold(raw)
                    if INVALID_BYTE in bases:
                        raise invalid_character(source, record, line, raw)
                    line += newlines
                    if bases:
                        yield from cutter.add(bases)
                    at_line_start = block[stop - 1] == 10
                position = stop
                if boundary:
                    yield from finish()
                    state, header_line, position = _HEADER, line, stop + 1
                    header.clear()
            elif state == _HEADER:
                newline = block.find(b"\n", position)
                stop = end if newline < 0 else newline
                room = HEADER_KEPT - len(header)
                if room > 0:
                    header += block[position : min(stop, position + room)]
                if newline < 0:
                    position = end
                    continue
                record = record_id(header)
                cutter.start_record(record)
                state, line, position, at_line_start = _SEQUENCE, line + 1, newline + 1, True
            else:  # blank lines may come first; then the first record's '>'
                match = _NOT_BLANK.search(block, position)
                stop = end if match is None else match.start()
                line += block.count(b"\n", position, stop)
                if match is None:
                    position = end
                    continue
                if block[stop] != ord(">"):
                    preview = block[stop : stop + 40].split(b"\n", 1)[0].decode("utf-8", errors="replace")
                    raise InputError(
                        f"{where(source, line=line)}: FASTA needs a '>' header line before the sequence, "
                        f"found '{preview.rstrip()}'; add a header such as '>seq1'"
                    )
                state, header_line, position = _HEADER, line, stop + 1
    if state == _BEFORE_FIRST:
        raise InputError(f"{source}: no FASTA record found (the input is blank)")
    if state == _HEADER:  # the input ends inside the last header line
        record = record_id(header)
        cutter.start_record(record)
    yield from finish()
