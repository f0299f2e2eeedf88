"""The error and warning types of readers/."""

from __future__ import annotations

from titans_cli.errors import UserError


class InputError(UserError):
    """A problem with an input file; the one-line message names the file, record and line, and the fix."""


class SkippedFilesWarning(UserWarning):
    """Files inside an input directory were left out (binary, empty, unreadable, not a sequence file)."""


def where(source: str, record: str | None = None, line: int | None = None) -> str:
    """`file: record 'id', line N` — the prefix of every message about a place in an input."""
    parts = [source]
    if record is not None:
        parts.append(f"record '{record}'")
    if line is not None:
        parts.append(f"line {line}")
    return ", ".join(parts)


def describe_byte(byte: int) -> str:
    """A byte as a user can spot it in an editor: 'X' for printable ASCII, 0xNN otherwise."""
    if 0x21 <= byte < 0x7F:
        return f"'{chr(byte)}'"
    names = {0x20: "space", 0x09: "tab", 0x0D: "carriage return", 0x00: "NUL"}
    return f"{names[byte]} (0x{byte:02X})" if byte in names else f"byte 0x{byte:02X}"
