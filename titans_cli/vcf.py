"""A small VCF reader: the fixed columns of each data line, with errors that name the line.

Plain, gzip or bgzip (by magic bytes, like every input). Only CHROM, POS, ID, REF and ALT are used;
INFO and samples are ignored, so a VCF of any size streams in constant memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from titans_cli.errors import UserError
from titans_cli.readers.compression import MAGIC_BYTES_NEEDED, decompressing_reader, detect_compression
from titans_cli.readers.records import BlockStream

_BASES = frozenset("ACGTN")


@dataclass(frozen=True)
class VcfRecord:
    line: int
    chrom: str
    pos: int  # 1-based, as in the file
    id: str
    ref: str
    alts: tuple[str, ...]


def read_vcf(path: str | Path) -> Iterator[VcfRecord]:
    """Data lines of a VCF; a malformed line raises UserError naming the file and line number."""
    path = Path(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 (closed below, after the generator finishes)
    except OSError as err:
        raise UserError(f"{path}: cannot open the VCF ({err.strerror})") from err
    try:
        compression = detect_compression(raw.peek(MAGIC_BYTES_NEEDED)[:MAGIC_BYTES_NEEDED])
        source = decompressing_reader(raw, compression)
        decompressed = io.BufferedReader(BlockStream(iter(lambda: source.read(1 << 16), b"")))
        text = io.TextIOWrapper(decompressed, encoding="utf-8", errors="replace")  # INFO may be Latin-1
        number = 0
        try:
            for number, line in enumerate(text, 1):
                if line.startswith("#") or not line.strip():
                    continue
                yield _parse(path, number, line.rstrip("\r\n"))
        except (OSError, EOFError, UnicodeDecodeError, ValueError) as err:
            if isinstance(err, UserError):
                raise
            raise UserError(f"{path}: unreadable after line {number} ({err}); is the file complete?") from err
    finally:
        raw.close()


def _parse(path: Path, number: int, line: str) -> VcfRecord:
    where = f"{path}:{number}"
    fields = line.split("\t", 5)  # only the first five columns are used
    if len(fields) < 5:
        raise UserError(f"{where}: a VCF data line needs at least 5 tab-separated columns, found {len(fields)}")
    chrom, pos, vid, ref, alt = fields[:5]
    if not chrom:
        raise UserError(f"{where}: empty CHROM")
    try:
        position = int(pos)
    except ValueError:
        raise UserError(f"{where}: POS {pos!r} is not a whole number") from None
    if position < 1:
        raise UserError(f"{where}: POS must be ≥ 1, got {position}")
    ref = ref.upper()
    if not ref or set(ref) - _BASES:
        raise UserError(f"{where}: REF {fields[3]!r} must be bases (A, C, G, T, N)")
    if not alt:
        raise UserError(f"{where}: empty ALT (use . for none)")
    return VcfRecord(number, chrom, position, vid, ref, tuple(a.upper() for a in alt.split(",")))


def is_scorable(ref: str, alt: str, max_length: int) -> bool:
    """A plain-sequence ALT (not <DEL>, *, . or a breakend) of an SNV, MNV or indel of at most `max_length`
    bases: an indel's REF and ALT share an anchor base, so either may be one base longer than that."""
    if not alt or set(alt) - _BASES:
        return False
    if len(ref) == len(alt):
        return len(ref) <= max_length
    return abs(len(ref) - len(alt)) <= max_length and max(len(ref), len(alt)) <= max_length + 1
