"""FASTQ, streamed over fixed-size blocks.

Ordinary 4-line records that lie whole inside a block take a fast path (one regex match each). Anything
else — a record split across blocks, multi-line sequence or quality, long reads, CRLF, or an error — goes
through a line-by-line state machine in which a line may span blocks, so a long read never has to fit in
memory. Multi-line records are read by length: quality lines are taken until they cover the sequence,
since a quality line may itself start with '@' or '+'.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .errors import InputError, describe_byte, where
from .fasta import HEADER_KEPT, invalid_character, record_id
from .nucleotides import FOLD, INVALID_BYTE, fold
from .pieces import Piece, PieceCutter

_QUALITY_BYTES = bytes(range(33, 127))  # Phred+33 (and the old +64): printable ASCII without space
# '@' header, sequence letters (no layout, so nothing to delete), '+' line, quality: one complete record
_PLAIN_RECORD = re.compile(rb"@([^\n]*)\n([A-Za-z]+)\n\+[^\n]*\n([!-~]+)\n")
_HEADER, _SEQUENCE, _PLUS, _QUALITY = range(4)


def read_fastq(blocks: Iterable[bytes], source: str, source_index: int, piece_size: int) -> Iterator[Piece]:
    """Pieces of the sequence of every FASTQ record (qualities are checked, then dropped)."""
    cutter = PieceCutter(source, source_index, piece_size)
    state = _HEADER
    line = 1  # number of the line at `position`
    at_line_start = True
    header = bytearray()
    in_header = False  # inside a header line that has not ended yet
    record: str | None = None
    record_line = 0
    records = 0
    # A short read's bases are kept as a list and become one piece; a long one goes through the cutter.
    parts: list[bytes] = []
    parts_length = 0
    length = 0  # bases of the current record
    quality = 0  # quality characters of the current record so far
    first_quality: tuple[int, int] | None = None  # (line, characters) of its first quality line

    def length_mismatch() -> InputError:
        quality_line, characters = first_quality or (line, quality)
        return InputError(
            f"{where(source, record, quality_line)}: the quality line has {characters} characters but the "
            f"sequence has {length} bases; each base needs one quality character "
            "(is the file truncated or damaged?)"
        )

    def finish() -> Iterator[Piece]:
        if parts_length == length:  # nothing went through the cutter
            yield cutter.whole_record(parts[0] if len(parts) == 1 else b"".join(parts))
        else:
            yield from cutter.add(b"".join(parts))
            yield from cutter.finish_record()

    for block in blocks:
        position, end = 0, len(block)
        while position < end:
            if state == _HEADER and at_line_start:
                # fast path: whole plain records; the first one that does not fit falls through
                index = cutter.records_started
                match = _PLAIN_RECORD.match(block, position)
                while match is not None:
                    start, stop = match.span(2)
                    if stop - start != match.end(3) - match.start(3) or stop - start > piece_size:
                        break
                    bases = match.group(2).translate(FOLD)
                    identifier = record_id(match.group(1))
                    if INVALID_BYTE in bases:
                        raise invalid_character(source, identifier, line + 1, match.group(2))
                    line += 4
                    position = match.end()
                    yield Piece(bases, source, source_index, identifier, index, 0, True, True)
                    index += 1
                    match = _PLAIN_RECORD.match(block, position)
                if index != cutter.records_started:
                    records += index - cutter.records_started
                    cutter.start_record(None, index - 1)
                if position == end:
                    break
            newline = block.find(b"\n", position)
            complete = newline >= 0
            stop = newline if complete else end
            fragment = block[position:stop]
            if state == _SEQUENCE:
                if at_line_start and fragment[:1] == b"+":
                    if not length:
                        raise InputError(
                            f"{where(source, record, record_line)}: the record has no sequence; remove the empty record"
                        )
                    state = _PLUS
                elif at_line_start and fragment[:1] == b"@" and length:
                    raise InputError(
                        f"{where(source, record, line)}: a new '@' record starts before this record's '+' "
                        "line; every FASTQ record needs '+' and quality lines"
                    )
                elif fragment:
                    bases, _ = fold(fragment)
                    if INVALID_BYTE in bases:
                        raise invalid_character(source, record, line, fragment)
                    parts.append(bases)
                    parts_length += len(bases)
                    length += len(bases)
                    if parts_length > piece_size:
                        yield from cutter.add(b"".join(parts))
                        parts.clear()
                        parts_length = 0
            elif state == _QUALITY:
                characters = len(fragment)
                odd = fragment.translate(None, _QUALITY_BYTES)
                if odd:
                    if odd.replace(b"\r", b""):
                        bad = next(byte for byte in fragment if byte not in _QUALITY_BYTES and byte != 13)
                        raise InputError(
                            f"{where(source, record, line)}: invalid quality character {describe_byte(bad)}; "
                            "qualities are printable ASCII characters ('!' to '~')"
                        )
                    characters -= len(odd)  # carriage returns
                quality += characters
                if quality > length:
                    raise length_mismatch()
                if complete:
                    if first_quality is None:
                        first_quality = (line, quality)
                    if quality == length:
                        yield from finish()
                        state = _HEADER
            elif state == _HEADER:
                # judged once the line is complete: a blank line may be split across blocks too
                if at_line_start:
                    header[:] = fragment[:HEADER_KEPT]
                elif len(header) < HEADER_KEPT:
                    header += fragment[: HEADER_KEPT - len(header)]
                in_header = not complete
                if complete and header.strip():  # blank lines between records are skipped
                    if header[:1] != b"@":
                        preview = header[:40].decode("utf-8", errors="replace").rstrip()
                        raise InputError(
                            f"{where(source, line=line)}: expected a FASTQ record header starting with '@', "
                            f"found '{preview}'; check that the file is FASTQ and not damaged"
                        )
                    record = record_id(header[1:])
                    cutter.start_record(record)
                    records += 1
                    record_line, state = line, _SEQUENCE
                    parts.clear()
                    parts_length = length = 0
            # in _PLUS the optional repeat of the id is skipped
            if complete:
                if state == _PLUS:
                    state, quality, first_quality = _QUALITY, 0, None
                line += 1
                at_line_start = True
                position = newline + 1
            else:
                at_line_start = False
                position = end
    if state == _QUALITY and quality == length:  # no newline after the last line
        yield from finish()
        state = _HEADER
    if state == _SEQUENCE:
        raise InputError(
            f"{where(source, record, line)}: the input ends inside the record, before its '+' line; "
            "the file may be truncated"
        )
    if state in (_PLUS, _QUALITY):
        raise InputError(
            f"{where(source, record, line)}: the input ends with {quality} of {length} quality "
            "characters; the file may be truncated"
        )
    if in_header and header.strip():
        raise InputError(f"{where(source, line=line)}: the input ends inside a record header; truncated?")
    if records == 0:
        raise InputError(f"{source}: no FASTQ record found (the input is blank)")
