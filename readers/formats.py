"""Which format a source is in: sequence formats by name or by their first non-blank bytes, and binary
data by NUL bytes in its first 8 KiB (after decompression)."""

from __future__ import annotations

import enum
import re

SNIFF_BYTES = 8192


class Format(str, enum.Enum):
    TEXT = "text"
    FASTA = "fasta"
    FASTQ = "fastq"
    GENBANK = "genbank"
    EMBL = "embl"


SEQUENCE_FORMATS = frozenset({Format.FASTA, Format.FASTQ, Format.GENBANK, Format.EMBL})

_COMPRESSION_SUFFIXES = (".gz", ".bgz", ".bgzf", ".bz2", ".xz", ".zst", ".zstd")
_SEQUENCE_SUFFIXES = {
    **dict.fromkeys((".fa", ".fasta", ".fna", ".fas", ".ffn", ".frn", ".fsa", ".mfa", ".faa"), Format.FASTA),
    **dict.fromkeys((".fq", ".fastq"), Format.FASTQ),
    **dict.fromkeys((".gb", ".gbk", ".gbff", ".genbank"), Format.GENBANK),
    **dict.fromkeys((".embl",), Format.EMBL),
}

# A line of nucleotide text: letters of the fold table plus layout, used to confirm a '>' header.
_SEQUENCE_LINE = re.compile(rb"[ACGTURYSWKMBDHVNacgturyswkmbdhvn \t\r]*")


def format_from_name(name: str) -> Format | None:
    """The sequence format a file name claims (compression suffixes ignored), or None."""
    lower = name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
            break
    dot = lower.rfind(".")
    return _SEQUENCE_SUFFIXES.get(lower[dot:]) if dot >= 0 else None


def is_binary(head: bytes) -> bool:
    return b"\x00" in head[:SNIFF_BYTES]


def sniff_format(head: bytes, strict: bool) -> Format | None:
    """The sequence format that `head` (the first decompressed bytes) starts with, or None.

    Lenient: the first non-blank bytes decide ('>' FASTA, '@' FASTQ, 'LOCUS' GenBank, 'ID ' EMBL); used
    when the name or the caller already says the input is a sequence. Strict (guessing from content
    alone): also checks the next lines, so a Markdown quote ('> ...') or a BibTeX file ('@article{')
    stays text.
    """
    body = head.lstrip()
    if body.startswith(b"LOCUS "):
        return Format.GENBANK
    if body.startswith(b"ID   "):
        return Format.EMBL
    lines = body.split(b"\n", 4)
    complete = lines[:-1]  # the last piece may be cut by the end of `head`
    if body.startswith(b">"):
        if not strict:
            return Format.FASTA
        following = [line for line in lines[1:] if line.strip()]
        if not following:
            return Format.FASTA if not complete else None  # a header longer than the sniffed bytes
        first = following[0]
        return Format.FASTA if first.startswith(b">") or _SEQUENCE_LINE.fullmatch(first) else None
    if body.startswith(b"@"):
        if not strict:
            return Format.FASTQ
        if len(lines) >= 3:
            return Format.FASTQ if lines[2].startswith(b"+") else None
        return None
    return None
