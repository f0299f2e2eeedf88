"""Input sources: expanding paths and directories into an ordered list of files, deciding each one's
compression and format up front, and opening a source as a stream of decompressed blocks."""

from __future__ import annotations

import lzma
import os
import queue
import stat
import sys
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal

import zstandard

from .compression import (
    BGZF_EOF_BLOCK,
    MAGIC_BYTES_NEEDED,
    Compression,
    ZstdFrameChecker,
    decompressing_reader,
    detect_compression,
)
from .errors import InputError, SkippedFilesWarning
from .formats import SEQUENCE_FORMATS, SNIFF_BYTES, Format, format_from_name, is_binary, sniff_format
from .hashing import HashingReader
from .pieces import SourceInfo

Kind = Literal["auto", "text", "dna"]
KINDS: tuple[str, ...] = ("auto", "text", "dna")
STDIN = "-"
BLOCK_SIZE = 256 << 10  # decompressed bytes handed to a parser at a time (measured: fewer page faults than 1 MiB)
READ_AHEAD = 2  # blocks read in advance by the helper thread

_DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError, ValueError)


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file inside an input directory that was left out, and why."""

    path: str
    reason: str


class OpenedSource:
    """One source opened for reading: raw bytes are hashed as they stream, then decompressed."""

    def __init__(self, display: str, stream: BinaryIO, close_stream: bool = True) -> None:
        self.display = display
        self._close_stream = close_stream
        self._stream = stream
        self.raw = HashingReader(stream)
        self.compression = detect_compression_of(self.raw, display)
        self._zstd_frames: ZstdFrameChecker | None = None
        if self.compression is Compression.ZSTD:
            self._zstd_frames = ZstdFrameChecker()
            # the magic bytes were peeked already: show them to the checker first
            self._zstd_frames.feed(self.raw.peek(MAGIC_BYTES_NEEDED))
            self.raw.observe = self._zstd_frames.feed
        self._reader = decompressing_reader(self.raw, self.compression)  # type: ignore[arg-type]
        self.decompressed = 0
        self.head = self._read_at_least(SNIFF_BYTES)  # the first decompressed bytes, kept for blocks()
        self._head_pending = True

    def _read(self, size: int) -> bytes:
        try:
            data = self._reader.read(size)
        except InputError:
            raise
        except EOFError as err:
            raise InputError(
                f"{self.display}: the {self.compression.value} data ends early (truncated after "
                f"{self.decompressed} decompressed bytes); the file is incomplete, fetch or compress it again"
            ) from err
        except _DECOMPRESSION_ERRORS as err:
            if self.compression is Compression.NONE:
                raise InputError(
                    f"{self.display}: reading failed after {self.decompressed} bytes ({err}); check the file"
                ) from err
            raise InputError(
                f"{self.display}: the {self.compression.value} data is corrupt after {self.decompressed} "
                f"decompressed bytes ({err}); check the file"
            ) from err
        self.decompressed += len(data)
        return data

    def _read_at_least(self, size: int) -> bytes:
        chunks = []
        got = 0
        while got < size:
            data = self._read(size - got)
            if not data:
                break
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)

    def blocks(self, block_size: int | None = None) -> Iterator[bytes]:
        """The decompressed bytes, in blocks of at most `block_size` (the first block is the sniffed head)."""
        block_size = block_size or BLOCK_SIZE
        if self._head_pending:
            self._head_pending = False
            head, self.head = self.head, b""
            for start in range(0, len(head), block_size):
                yield head[start : start + block_size]
        yield from _read_ahead(self._read, block_size)

    def finish(self) -> None:
        """Hash the rest of the raw bytes and check that a compressed stream ended where it should."""
        try:
            self.raw.drain()
        except (OSError, ValueError) as err:
            raise InputError(f"{self.display}: reading failed ({err}); check the file") from err
        if self._zstd_frames is not None and not self._zstd_frames.at_frame_boundary:
            raise InputError(
                f"{self.display}: the zstd data ends in the middle of a frame (truncated after "
                f"{self.decompressed} decompressed bytes); the file is incomplete, fetch or compress it again"
            )
        if self.compression is Compression.BGZF and not self.raw.tail.endswith(BGZF_EOF_BLOCK):
            raise InputError(
                f"{self.display}: the BGZF file lacks its end-of-file block, so it was cut short (after "
                f"{self.decompressed} decompressed bytes); fetch it again or recompress it with bgzip"
            )

    def info(self, source_index: int, fmt: Format, complete: bool) -> SourceInfo:
        return SourceInfo(
            path=self.display,
            source_index=source_index,
            size=self.raw.size,
            sha256=self.raw.sha256(),
            complete=complete,
            compression=self.compression.value,
            format=fmt.value,
        )

    def close(self) -> None:
        if self._close_stream:
            self._stream.close()


def _read_ahead(read: Callable[[int], bytes], block_size: int) -> Iterator[bytes]:
    """Blocks from `read`, fetched by a helper thread while the caller parses the previous ones.

    Reading, hashing and decompressing release the GIL, so on two cores they overlap with parsing.
    At most READ_AHEAD blocks wait in the queue, which keeps memory constant.
    """
    blocks: queue.Queue[bytes | BaseException] = queue.Queue(READ_AHEAD)
    stop = threading.Event()
    done = threading.Event()

    def put(item: bytes | BaseException) -> None:
        while not stop.is_set():
            try:
                blocks.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            while not stop.is_set():
                data = read(block_size)
                put(data)
                if not data:
                    break
        except BaseException as err:  # handed to the consumer, which raises it in its own thread
            put(err)
        finally:
            done.set()

    worker = threading.Thread(target=produce, name="titans-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = blocks.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                break
            yield item
    finally:
        stop.set()
        # A worker blocked reading a pipe cannot be woken; it is a daemon and is left behind after a short
        # wait. One that finished (or is between reads of a file) is joined.
        worker.join(None if done.is_set() else 1.0)


def detect_compression_of(raw: HashingReader, display: str) -> Compression:
    try:
        return detect_compression(raw.peek(MAGIC_BYTES_NEEDED))
    except OSError as err:
        raise InputError(f"{display}: cannot be read ({err.strerror or err}); check the file") from err


@dataclass(slots=True)
class SourcePlan:
    """A source chosen for reading, with what was learnt from its first bytes."""

    display: str
    path: str | None  # None for stdin
    compression: Compression
    format: Format
    size: int | None  # on-disk size of a regular file; None for stdin and pipes
    opened: OpenedSource | None = None  # kept open when the source cannot be opened twice (stdin, pipes)

    def open(self) -> OpenedSource:
        if self.opened is not None:
            opened, self.opened = self.opened, None
            return opened
        assert self.path is not None
        stream = _open_file(self.path, self.display)
        try:
            return OpenedSource(self.display, stream)
        except BaseException:
            stream.close()
            raise


def _open_file(path: str, display: str) -> BinaryIO:
    try:
        return open(path, "rb", buffering=0)  # closed by OpenedSource.close
    except FileNotFoundError as err:
        raise InputError(f"{display}: no such file or directory; check the path") from err
    except PermissionError as err:
        raise InputError(f"{display}: permission denied; make the file readable (chmod +r)") from err
    except IsADirectoryError as err:
        raise InputError(f"{display}: is a directory") from err
    except OSError as err:
        raise InputError(f"{display}: cannot be opened ({err.strerror or err})") from err


def _first_line_preview(head: bytes) -> tuple[int, str]:
    """Line number and a short printable preview of the first non-blank line of `head`."""
    stripped = head.lstrip()
    line = head[: len(head) - len(stripped)].count(b"\n") + 1
    text = stripped.split(b"\n", 1)[0][:40].decode("utf-8", errors="replace").rstrip()
    return line, text


def _decide_format(opened: OpenedSource, name: str, kind: Kind, explicit: bool) -> Format | str:
    """The format to read a source as, or the reason (a string) to skip it (directory members only)."""
    head = opened.head
    display = opened.display
    if not head:
        if explicit:
            raise InputError(f"{display}: the input is empty; give a file with content")
        return "empty"
    if kind == "text":
        if not explicit and is_binary(head):
            return "binary"
        return Format.TEXT
    claimed = format_from_name(name)
    sniffed = sniff_format(head, strict=claimed is None and kind == "auto")
    if sniffed is not None:
        return sniffed
    if claimed is not None:
        if is_binary(head):
            raise InputError(
                f"{display}: named like a {claimed.value.upper()} file but it holds binary data; "
                "check that this is the right file"
            )
        line, preview = _first_line_preview(head)
        if not head.strip():
            raise InputError(f"{display}: the file holds only blank lines; no sequence to read")
        if claimed is Format.FASTA:
            raise InputError(
                f"{display}, line {line}: FASTA needs a '>' header line before the sequence, found "
                f"'{preview}'; add a header such as '>seq1'"
            )
        raise InputError(
            f"{display}, line {line}: named like a {claimed.value} file but it does not start like one "
            f"(found '{preview}'); check the file or its name"
        )
    if kind == "dna":
        if not explicit:
            return "not a sequence file"
        what = "binary data" if is_binary(head) else f"'{_first_line_preview(head)[1]}'"
        raise InputError(
            f"{display}: not a FASTA, FASTQ, GenBank or EMBL file (it starts with {what}); "
            "give a sequence file, or read it as text"
        )
    if not explicit and is_binary(head):
        return "binary"
    return Format.TEXT


def _walk(directory: str, skipped: list[SkippedFile]) -> Iterator[str]:
    """Files under `directory`, recursively, in sorted order; hidden names (a leading '.') are left out."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as err:
        skipped.append(SkippedFile(directory, f"directory cannot be listed ({err.strerror or err})"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = os.path.join(directory, entry.name)
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(path, skipped)
            elif entry.is_dir():
                skipped.append(SkippedFile(path, "symbolic link to a directory (not followed)"))
            elif entry.is_file():
                yield path
            else:
                skipped.append(SkippedFile(path, "not a regular file"))
        except OSError as err:
            skipped.append(SkippedFile(path, f"cannot be examined ({err.strerror or err})"))


def _plan_member(path: str, kind: Kind, skipped: list[SkippedFile]) -> SourcePlan | None:
    """Plan a file found inside a directory; unreadable, empty or binary ones are skipped, not fatal."""
    try:
        stream = open(path, "rb", buffering=0)  # noqa: SIM115 — closed below
    except OSError as err:
        skipped.append(SkippedFile(path, f"cannot be opened ({err.strerror or err})"))
        return None
    try:
        opened = OpenedSource(path, stream)
        decided = _decide_format(opened, os.path.basename(path), kind, explicit=False)
    finally:
        stream.close()
    if not isinstance(decided, Format):
        skipped.append(SkippedFile(path, decided))
        return None
    return SourcePlan(path, path, opened.compression, decided, os.stat(path).st_size)


def _plan_explicit(path: str, kind: Kind) -> SourcePlan:
    """Plan a file (or stdin, or a pipe) named by the user: every problem with it is an error."""
    if path == STDIN:
        stream = getattr(sys.stdin, "buffer", sys.stdin)
        opened = OpenedSource("-", stream, close_stream=False)
        decided = _decide_format(opened, "", kind, explicit=True)
        assert isinstance(decided, Format)
        return SourcePlan(STDIN, None, opened.compression, decided, None, opened)
    stream = _open_file(path, path)
    try:
        status = os.fstat(stream.fileno())
        opened = OpenedSource(path, stream)
        decided = _decide_format(opened, os.path.basename(path), kind, explicit=True)
    except BaseException:
        stream.close()
        raise
    assert isinstance(decided, Format)
    if stat.S_ISREG(status.st_mode):
        stream.close()  # reopened when its turn comes, so that only one file is open at a time
        return SourcePlan(path, path, opened.compression, decided, status.st_size)
    # a pipe or device (e.g. `<(zcat x.gz)`) cannot be opened a second time: keep it open
    return SourcePlan(path, path, opened.compression, decided, None, opened)


def plan_sources(
    paths: Sequence[str], kind: Kind
) -> tuple[list[SourcePlan], Literal["text", "dna"], list[SkippedFile]]:
    """Expand `paths` into the sources to read, in order, and settle the kind of the whole input."""
    if kind not in KINDS:
        raise InputError(f"unknown input kind '{kind}'; use one of: {', '.join(KINDS)}")
    if not paths:
        raise InputError("no input given; name files, directories or '-' for stdin")
    if list(paths).count(STDIN) > 1:
        raise InputError("stdin ('-') is named more than once; it can be read only once")
    plans: list[SourcePlan] = []
    skipped: list[SkippedFile] = []
    for path in paths:
        if path != STDIN and os.path.isdir(path):
            found: list[SkippedFile] = []
            members = [plan for member in _walk(path, found) if (plan := _plan_member(member, kind, found))]
            skipped += found
            if found:
                _warn_skipped(path, found)
            if not members:
                what = "sequence files" if kind == "dna" else "files"
                because = f" ({len(found)} skipped: {_summary(found)})" if found else ""
                raise InputError(f"{path}: the directory has no readable {what}{because}; give files to read")
            plans += members
        elif path != STDIN and not os.path.exists(path) and not os.path.islink(path):
            raise InputError(f"{path}: no such file or directory; check the path")
        else:
            plans.append(_plan_explicit(path, kind))
    return plans, _settle_kind(plans, kind), skipped


def _settle_kind(plans: list[SourcePlan], kind: Kind) -> Literal["text", "dna"]:
    if kind != "auto":
        return kind  # type: ignore[return-value]
    sequences = [plan for plan in plans if plan.format in SEQUENCE_FORMATS]
    if not sequences:
        return "text"
    if len(sequences) == len(plans):
        return "dna"
    text = next(plan for plan in plans if plan.format not in SEQUENCE_FORMATS)
    raise InputError(
        f"the inputs mix sequence files ({sequences[0].display}) and other files ({text.display}); "
        "choose the kind explicitly: --kind dna for sequences (other files inside directories are then "
        "skipped) or --kind text to read every file as bytes"
    )


def _summary(skipped: list[SkippedFile], limit: int = 10) -> str:
    shown = "; ".join(f"{item.path} ({item.reason})" for item in skipped[:limit])
    return shown + (f"; and {len(skipped) - limit} more" if len(skipped) > limit else "")


def _warn_skipped(directory: str, skipped: list[SkippedFile]) -> None:
    warnings.warn(
        f"{directory}: skipped {len(skipped)} file(s): {_summary(skipped)}", SkippedFilesWarning, stacklevel=4
    )
