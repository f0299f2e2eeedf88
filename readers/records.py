"""GenBank and EMBL, through Biopython: one record at a time.

These formats carry annotation around the sequence; their records are parsed whole by Bio.SeqIO (the
biggest are single chromosomes), but records are streamed one by one and the sequence is handed out in
pieces without further copies of the whole record.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Iterator

from .errors import InputError, describe_byte, where
from .formats import Format
from .nucleotides import INVALID_BYTE, first_invalid, fold, invalid_hint
from .pieces import Piece, PieceCutter

# GenBank ORIGIN and EMBL SQ sections hold 60 bases per line: how a base offset maps back to a line.
_BASES_PER_LINE = 60


class BlockStream(io.RawIOBase):
    """A binary stream over an iterator of byte blocks."""

    def __init__(self, blocks: Iterable[bytes]) -> None:
        super().__init__()
        self._blocks = iter(blocks)
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        while not self._current:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._current = memoryview(block)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size


class _LineCountingText:
    """The text handle Biopython reads, counting lines so errors can name one."""

    def __init__(self, blocks: Iterable[bytes]) -> None:
        buffered = io.BufferedReader(BlockStream(blocks), buffer_size=1 << 16)
        # Annotations may hold any bytes; the sequence itself is checked separately.
        self._text = io.TextIOWrapper(buffered, encoding="utf-8", errors="replace")
        self.line = 0
        self.sequence_line = 0  # the ORIGIN / SQ line of the record being read

    def read(self, size: int = -1) -> str:
        if size:
            raise io.UnsupportedOperation("read line by line")
        return ""

    def readline(self, size: int = -1) -> str:
        text = self._text.readline(size)
        if text:
            self.line += 1
            if text.startswith(("ORIGIN", "SQ ")):
                self.sequence_line = self.line
        return text

    def __iter__(self) -> Iterator[str]:
        return iter(self.readline, "")


def read_records(
    blocks: Iterable[bytes], fmt: Format, source: str, source_index: int, piece_size: int
) -> Iterator[Piece]:
    """Pieces of every record of a GenBank or EMBL stream."""
    from Bio import BiopythonParserWarning, SeqIO  # imported here: FASTA and text runs never pay for it
    from Bio.Seq import UndefinedSequenceError

    handle = _LineCountingText(blocks)
    records = SeqIO.parse(handle, "genbank" if fmt is Format.GENBANK else "embl")
    cutter = PieceCutter(source, source_index, piece_size)
    name = "GenBank" if fmt is Format.GENBANK else "EMBL"
    count = 0
    while True:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", BiopythonParserWarning)
                parsed = next(records, None)
        except InputError:
            raise
        except Exception as err:  # Biopython reports malformed files with assorted exception types
            raise InputError(
                f"{where(source, line=handle.line)}: not valid {name} ({' '.join(str(err).split())}); check the file"
            ) from err
        for warning in caught:
            if "premature end of file" in str(warning.message).lower():
                # Biopython only warns, and would hand out a shortened record
                raise InputError(
                    f"{where(source, parsed.id if parsed else None, handle.line)}: the input ends inside a "
                    f"record (no closing '//' line); the file is truncated, fetch it again"
                )
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        if parsed is None:
            break
        count += 1
        record = parsed.id
        try:
            text = str(parsed.seq)
        except UndefinedSequenceError as err:
            raise InputError(
                f"{where(source, record, handle.line)}: the record has no sequence (only a CONTIG or "
                "annotation); download the full record with its sequence"
            ) from err
        raw = text.encode("ascii", errors="replace")
        del text
        bases, _ = fold(raw)
        if INVALID_BYTE in bases:
            index = first_invalid(raw)
            line = handle.sequence_line + 1 + index // _BASES_PER_LINE
            raise InputError(
                f"{where(source, record, line)}: invalid character {describe_byte(raw[index])} in the "
                f"sequence; {invalid_hint(raw[index])}"
            )
        del raw
        if not bases:
            raise InputError(f"{where(source, record, handle.line)}: the record has no sequence; remove it or add one")
        cutter.start_record(record)
        with memoryview(bases) as view:
            for start in range(0, len(bases), piece_size):
                yield from cutter.add(bytes(view[start : start + piece_size]))
        del bases
        yield from cutter.finish_record()
    if count == 0:
        raise InputError(f"{source}: no {name} record found; check the file")
