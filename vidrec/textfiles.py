"""Reading the text files a user hands vidrec (YAML configs, list files, CSVs) in one way.

Every such file is UTF-8: a leading byte-order mark (what Excel and Notepad write) is dropped, and any
other encoding is refused with one line naming the file and the line, rather than a traceback or a
first path that silently starts with an invisible character. A CSV field longer than Python's limit
(131072 characters, nearly always a quote that was never closed) is refused the same way.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from vidrec.cli import UsageError

R = TypeVar("R")


class TextFileError(UsageError, ValueError):
    """A text input that is not UTF-8, or a CSV that cannot be parsed; the message names file and line."""


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of `path` without a leading byte-order mark; TextFileError naming the line of the
    first byte that is not UTF-8."""
    data = Path(path).read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise TextFileError(
            f"{what} {path}: line {line} is not UTF-8 text (byte 0x{data[err.start]:02x}); save the file "
            "as UTF-8"
        ) from None


def text_stream(path: str | Path, what: str = "file") -> io.StringIO:
    """`read_text` as a file object for `csv` (newlines kept as they are, as `csv` wants)."""
    return io.StringIO(read_text(path, what), newline="")


@contextlib.contextmanager
def csv_errors(reader: R, path: str | Path, what: str = "CSV file") -> Iterator[R]:
    """`reader` (a `csv.reader` / `csv.DictReader` over `path`) in a block where a CSV error (an
    over-long field, a NUL byte) becomes TextFileError naming the file and the line."""
    try:
        yield reader
    except csv.Error as err:
        line = getattr(reader, "reader", reader).line_num  # a DictReader's own count lags on errors
        raise TextFileError(f"{what} {path}: line {line}: {err} (an unclosed quote?); fix the file") from None
