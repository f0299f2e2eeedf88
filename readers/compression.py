"""Compression, detected from magic bytes (never from the file name), and streaming decompression.

Every decompressor here returns at most the number of bytes asked for per read, so a highly compressible
input (a 30 Mb run of N packs into a few KB) can never balloon memory.
"""

from __future__ import annotations

import bz2
import enum
import lzma
import struct
import zlib
from typing import BinaryIO, Protocol

import zstandard


class Compression(str, enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    BGZF = "bgzf"  # blocked gzip (bgzip/samtools): multi-member gzip, read by the gzip module
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"


MAGIC_BYTES_NEEDED = 18  # enough to tell BGZF (its 'BC' extra field) from plain gzip

_GZIP_MAGIC = b"\x1f\x8b\x08"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# The empty block every BGZF file ends with (SAM/BAM specification, section 4.1.2); its absence means the
# file was cut at a block boundary, which plain gzip decoding cannot notice.
BGZF_EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def detect_compression(head: bytes) -> Compression:
    """The compression of a stream, from its first MAGIC_BYTES_NEEDED bytes."""
    if head.startswith(_GZIP_MAGIC):
        has_extra = len(head) > 3 and head[3] & 0x04
        if has_extra and len(head) >= 16 and head[12:14] == b"BC" and head[14:16] == b"\x02\x00":
            return Compression.BGZF
        return Compression.GZIP
    if head.startswith(_BZIP2_MAGIC) and len(head) >= 4 and head[3:4] in b"123456789":
        return Compression.BZIP2
    if head.startswith(_XZ_MAGIC):
        return Compression.XZ
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.NONE


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def decompressing_reader(raw: BinaryIO, compression: Compression) -> Readable:
    """A reader of the decompressed bytes of `raw`. Truncated or corrupt data raises EOFError/OSError/
    ValueError subclasses while reading (the caller turns them into InputError)."""
    if compression in (Compression.GZIP, Compression.BGZF):
        return GzipMembersReader(raw)
    if compression is Compression.BZIP2:
        return bz2.BZ2File(raw, mode="rb")
    if compression is Compression.XZ:
        return lzma.LZMAFile(raw, mode="rb")
    if compression is Compression.ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
    return raw


class GzipMembersReader:
    """gzip (and BGZF, which is many small gzip members) through zlib directly.

    Leaner than gzip.GzipFile (large input reads, no per-8 KiB Python loop); zlib checks each member's
    CRC and length, and input that stops inside a member is reported as truncated (EOFError).
    """

    _INPUT = 256 << 10

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._member = zlib.decompressobj(31)
        self._fed = False  # the current member has been given input
        self._input = b""

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise ValueError("read in bounded pieces")
        while True:
            if not self._input:
                self._input = self._raw.read(self._INPUT)
                if not self._input:
                    if self._fed:
                        raise EOFError("gzip stream ends inside a member")
                    return b""
            if self._member.eof:
                self._member = zlib.decompressobj(31)
                self._fed = False
            data = self._member.decompress(self._input, size)
            self._fed = True
            if self._member.eof:
                self._input = self._member.unused_data
                self._fed = False
            else:
                self._input = self._member.unconsumed_tail
            if data:
                return data


class ZstdFrameChecker:
    """Follows the frame and block headers of a zstd stream as its raw bytes pass by.

    zstandard's streaming reader stops quietly at a truncated frame; this tells whether the stream ended
    exactly at a frame boundary. It reads a handful of header bytes per 128 KiB block and skips the rest.
    """

    def __init__(self) -> None:
        self._pending = bytearray()  # header bytes being gathered
        self._skip = 0  # payload bytes to pass over before the next header
        self._state = "magic"
        self._frame_checksum = False

    @property
    def at_frame_boundary(self) -> bool:
        return self._state == "magic" and not self._pending and self._skip == 0

    def feed(self, data: bytes) -> None:
        position, end = 0, len(data)
        while position < end:
            if self._skip:
                step = min(self._skip, end - position)
                self._skip -= step
                position += step
                continue
            need = self._header_size()
            take = min(need - len(self._pending), end - position)
            self._pending += data[position : position + take]
            position += take
            if len(self._pending) == need:
                self._advance(bytes(self._pending))

    def _header_size(self) -> int:
        if self._state in ("magic", "checksum"):
            return 4
        if self._state == "frame_header":
            if not self._pending:
                return 1
            descriptor = self._pending[0]
            single_segment = descriptor >> 5 & 1
            size_field = (0, 2, 4, 8)[descriptor >> 6] or single_segment
            return 1 + (not single_segment) + (0, 1, 2, 4)[descriptor & 3] + size_field
        if self._state == "skippable_size":
            return 4
        return 3  # block header

    def _advance(self, header: bytes) -> None:
        state = self._state
        if state == "magic":
            magic = struct.unpack("<I", header)[0]
            if magic == 0xFD2FB528:
                self._state = "frame_header"
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state = "skippable_size"
            else:
                raise ValueError("not a zstd frame")
        elif state == "frame_header":
            if len(header) == 1 and self._header_size() > 1:
                return  # only the descriptor so far; it tells how many header bytes follow
            self._frame_checksum = bool(header[0] >> 2 & 1)
            self._state = "block"
        elif state == "skippable_size":
            self._skip = struct.unpack("<I", header)[0]
            self._state = "magic"
        elif state == "block":
            value = int.from_bytes(header, "little")
            last, block_type, size = value & 1, value >> 1 & 3, value >> 3
            self._skip = 1 if block_type == 1 else size  # an RLE block stores one byte
            if last:
                self._state = "checksum" if self._frame_checksum else "magic"
        elif state == "checksum":
            self._state = "magic"
        self._pending.clear()
