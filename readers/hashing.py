"""Content hashes of sources, taken over the raw (as-on-disk, still compressed) bytes while they stream."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from typing import BinaryIO

_CHUNK = 1 << 20


class HashingReader(io.RawIOBase):
    """Reads a raw byte stream, keeping its sha256, byte count and last bytes as they go by.

    `peek(n)` looks at the head (for magic bytes and format sniffing) without losing it: peeked bytes are
    hashed once and handed out again by the next reads.
    """

    TAIL = 32  # enough for the BGZF end-of-file block

    def __init__(self, stream: BinaryIO, observe: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self._stream = stream
        self._hash = hashlib.sha256()
        self._size = 0
        self._tail = b""
        self._pushback = b""
        self.observe = observe  # called with every chunk of raw bytes, in order

    @property
    def size(self) -> int:
        return self._size

    @property
    def tail(self) -> bytes:
        return self._tail

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def readable(self) -> bool:
        return True

    def _take(self, size: int) -> bytes:
        data = self._stream.read(size)
        if data:
            self._hash.update(data)
            self._size += len(data)
            self._tail = (self._tail + data[-self.TAIL :])[-self.TAIL :]
            if self.observe is not None:
                self.observe(data)
        return data

    def peek(self, size: int) -> bytes:
        while len(self._pushback) < size:
            data = self._take(size - len(self._pushback))
            if not data:
                break
            self._pushback += data
        return self._pushback[:size]

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = [self.read(_CHUNK)]
            while chunks[-1]:
                chunks.append(self.read(_CHUNK))
            return b"".join(chunks)
        if self._pushback:
            data, self._pushback = self._pushback[:size], self._pushback[size:]
            return data
        return self._take(size)

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and hash) whatever is left, so the hash covers the whole source."""
        self._pushback = b""
        while self._take(_CHUNK):
            pass

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()


def file_sha256(path: str | os.PathLike[str], size: int | None = None) -> str:
    """sha256 of a file's bytes as on disk, or of its first `size` bytes: verifies a source before a resume
    (a source read only partly is recorded with the size and hash of the prefix read)."""
    digest = hashlib.sha256()
    left = size
    with open(path, "rb") as handle:
        while left is None or left > 0:
            data = handle.read(_CHUNK if left is None else min(_CHUNK, left))
            if not data:
                break
            digest.update(data)
            if left is not None:
                left -= len(data)
    return digest.hexdigest()
