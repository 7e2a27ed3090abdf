"""Where a text file stops being UTF-8, for one-line errors that point at the bad line.

Python's UnicodeDecodeError gives a byte offset inside whichever buffer was being decoded, which
tells a user nothing about their file; this re-reads it line by line to name the line instead.
"""

from __future__ import annotations

from pathlib import Path


def not_utf8(path: Path) -> str:
    """'<path> line N is not UTF-8 (byte 0xXX at column C)' for the first undecodable line."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return f"{path} line {number} is not UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1})"
    return f"{path} is not UTF-8 text"
