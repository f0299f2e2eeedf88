"""Streaming input: text and sequence files of any size, read in constant memory.

from titans_cli.readers import open_input
with open_input(["genome.fa.gz", "reads/"], kind="dna") as reader:
    for piece in reader:            # piece.data: A/C/G/T/N bytes of one record, at most piece_size
        ...                         # piece.record, piece.offset, piece.record_start / record_end
    reader.sources                  # SourceInfo(path, size, sha256, complete, ...) per source
"""

from .errors import InputError, SkippedFilesWarning
from .formats import Format
from .hashing import file_sha256
from .pieces import DEFAULT_PIECE_SIZE, Piece, ReadPosition, SourceInfo
from .reader import InputReader, open_input
from .sources import SkippedFile

__all__ = [
    "DEFAULT_PIECE_SIZE",
    "Format",
    "InputError",
    "InputReader",
    "Piece",
    "ReadPosition",
    "SkippedFile",
    "SkippedFilesWarning",
    "SourceInfo",
    "file_sha256",
    "open_input",
]
