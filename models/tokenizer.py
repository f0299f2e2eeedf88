"""Tokenizers (SPEC 5): raw bytes for text, nucleotides for DNA; both with the same four specials.

No vocabulary file and nothing to download: any byte stream is valid text input.
"""

from __future__ import annotations

import numpy as np
import torch

SPECIALS = ("<BOS>", "<EOS>", "<SEP>", "<PAD>")


class Tokenizer:
    """Maps bytes to ids through a 256-entry lookup table; ids ≥ `n_symbols` are the specials."""

    def __init__(self, symbols: bytes, table: np.ndarray):
        self.symbols = symbols
        self._table = table  # byte value → id, or -1 where the byte is not allowed
        self.n_symbols = len(symbols)
        self.bos, self.eos, self.sep, self.pad = range(self.n_symbols, self.n_symbols + 4)

    @property
    def vocab_size(self) -> int:
        return self.n_symbols + len(SPECIALS)

    def encode(self, data: bytes) -> torch.Tensor:
        """Token ids of `data` as a 1-D int64 tensor; raises ValueError on a byte the alphabet lacks."""
        ids = self._table[np.frombuffer(data, dtype=np.uint8)]
        if ids.size and ids.min() < 0:
            at = int(np.argmax(ids < 0))
            raise ValueError(f"byte {data[at:at + 1]!r} at offset {at} is not in this tokenizer's alphabet")
        return torch.from_numpy(ids.astype(np.int64))

    def encode_text(self, text: str) -> torch.Tensor:
        """Encode a string that may contain the special markers, e.g. "<SEP>" (used by prompt templates)."""
        pieces: list[torch.Tensor] = []
        rest = text
        while rest:
            at, special = min(((rest.find(s), s) for s in SPECIALS if s in rest), default=(-1, ""))
            if at < 0:
                pieces.append(self.encode(rest.encode()))
                break
            pieces.append(self.encode(rest[:at].encode()))
            pieces.append(torch.tensor([self.n_symbols + SPECIALS.index(special)]))
            rest = rest[at + len(special) :]
        return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.int64)

    def decode(self, ids: torch.Tensor | list[int]) -> bytes:
        """Bytes for the symbol ids; specials are rendered by name."""
        out = bytearray()
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            out += self.symbols[i : i + 1] if i < self.n_symbols else SPECIALS[i - self.n_symbols].encode()
        return bytes(out)


def byte_tokenizer() -> Tokenizer:
    return Tokenizer(bytes(range(256)), np.arange(256, dtype=np.int64))


def dna_tokenizer() -> Tokenizer:
    """A C G T N. Lowercase (soft-masking) folds to upper case; IUPAC ambiguity codes become N."""
    table = np.full(256, -1, dtype=np.int64)
    for i, base in enumerate(b"ACGTN"):
        table[base] = table[base + 32] = i
    for code in b"RYSWKMBDHV":
        table[code] = table[code + 32] = 4
    table[ord("U")] = table[ord("u")] = 3  # RNA uracil reads as thymine
    return Tokenizer(b"ACGTN", table)


def tokenizer_for(kind: str) -> Tokenizer:
    if kind == "bytes":
        return byte_tokenizer()
    if kind == "dna":
        return dna_tokenizer()
    raise ValueError(f"unknown tokenizer {kind!r}")
