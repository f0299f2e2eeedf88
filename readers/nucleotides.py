"""The DNA alphabet: how sequence letters fold to A, C, G, T and N (spec section 5).

- Lower case (soft-masking) folds to upper case.
- IUPAC ambiguity codes R Y S W K M B D H V (and N) become N.
- U (uracil, RNA) becomes T: an RNA sequence reads as the DNA it was transcribed from, instead of
  turning every U into an unscored N.
- Gaps ('-', '.') and anything else (digits, '*', protein-only letters) are errors: silently dropping
  or masking them would shift or shorten the sequence.
- Spaces, tabs and carriage returns inside sequence lines are layout and are removed (as Biopython does).
"""

from __future__ import annotations

import re

INVALID = 0  # what the fold table maps a forbidden byte to; never a valid output letter
LAYOUT = b" \t\r"  # removed from sequence lines; newlines are removed while counting lines
_LAYOUT_MARK = 1  # what the fold table maps layout bytes to: one memchr finds them all

_AMBIGUOUS = b"RYSWKMBDHVN"
# Letters that occur in protein sequences but are not nucleotide codes: a hint for a common mistake.
PROTEIN_ONLY = frozenset(b"EFILPQXZJOefilpqxzjo*")


def _fold_table() -> bytes:
    table = bytearray([INVALID]) * 256
    for letter in b"ACGT":
        table[letter] = table[letter + 32] = letter
    for letter in _AMBIGUOUS:
        table[letter] = table[letter + 32] = ord("N")
    table[ord("U")] = table[ord("u")] = ord("T")
    for byte in LAYOUT:
        table[byte] = _LAYOUT_MARK  # deleted afterwards, only when present (rare), by a second pass
    return bytes(table)


FOLD = _fold_table()
"""bytes.translate table: sequence byte -> A/C/G/T/N, layout bytes -> a mark, anything else -> INVALID."""

INVALID_BYTE = bytes([INVALID])
_LAYOUT_BYTE = bytes([_LAYOUT_MARK])

_ACCEPTED = re.escape(bytes(b for b in range(256) if FOLD[b] != INVALID) + b"\n")
_FIRST_INVALID = re.compile(b"[^" + _ACCEPTED + b"]")


_COMPLEMENT = bytes.maketrans(b"ACGTNacgtn", b"TGCANtgcan")


def reverse_complement(sequence: bytes) -> bytes:
    """The other strand of A/C/G/T/N sequence, read 5' to 3'; case is kept (soft-masking survives)."""
    return sequence.translate(_COMPLEMENT)[::-1]


def fold(raw: bytes) -> tuple[bytes, int]:
    """Fold sequence text (any line layout) to A/C/G/T/N.

    Returns (folded bases, number of newlines removed). The folded bytes contain INVALID where the input
    had a forbidden byte: check with `INVALID_BYTE in folded` and locate it with `first_invalid(raw)`.
    """
    folded = raw.translate(FOLD, b"\n")
    newlines = len(raw) - len(folded)
    if _LAYOUT_BYTE in folded:
        folded = folded.translate(None, _LAYOUT_BYTE)
    return folded, newlines


def first_invalid(raw: bytes) -> int:
    """Index of the first forbidden byte in `raw` (slow path, only used to write an error message)."""
    match = _FIRST_INVALID.search(raw)
    if match is None:
        raise ValueError("no invalid byte")
    return match.start()


def invalid_hint(byte: int) -> str:
    """The fix to suggest for a forbidden byte."""
    if byte in b"-.":
        return "alignment gaps are not sequence; remove them (e.g. `seqkit seq -g`)"
    if byte in PROTEIN_ONLY:
        return "this looks like a protein sequence; only nucleotide sequences can be read"
    if byte == ord(">"):
        return "a '>' header must start its own line"
    return "only A C G T U, IUPAC codes R Y S W K M B D H V N (any case) and line breaks may appear"
