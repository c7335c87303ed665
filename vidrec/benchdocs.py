"""Benchmark tables written into `docs/benchmarks.md` by the benchmark scripts themselves.

Each benchmark owns one section of that page, between ``<!-- begin: NAME -->`` and ``<!-- end: NAME -->``.
`write_section` replaces the section's text (or appends the section when the page lacks it) and leaves every
other section as it was, so a table in the documentation is always what a script printed, never a copy made by
hand. The page is written to a temporary file beside it and renamed over it, so a killed run leaves the old
page whole. Scripts call it when given ``--write-docs``.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path

import torch

DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

_NAME = re.compile(r"[a-z0-9_]+")
_PAGE_HEAD = (
    "# Benchmarks\n\n"
    "Every table on this page is written by the benchmark script named in its section\n"
    "(`--write-docs`), on the machine the section names; none is copied by hand. `benchmarks/` holds\n"
    "the scripts; each ends with a `RESULT` line.\n"
)


def machine() -> str:
    """One line naming the machine a figure came from: CPU cores, the GPU if one is used, torch, the date."""
    cores = os.cpu_count() or 0
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    day = datetime.date.today().isoformat()
    python = platform.python_version()
    return f"{platform.machine()} {cores} CPU cores{gpu}, torch {torch.__version__}, Python {python}, {day}"


def command(argv: list[str] | None = None) -> str:
    """The command that ran this script, as a reader would type it, without ``--write-docs``.

    Args:
        argv: the script's arguments; `sys.argv[1:]` when None.
    """
    script = Path(sys.argv[0])
    shown = f"benchmarks/{script.name}" if script.parent.name == "benchmarks" else script.as_posix()
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-docs"]
    return shlex.join(["python", shown, *args])


def write_section(name: str, body: str, page: str | Path = DOCS_PAGE) -> Path:
    """Set section `name` of `page` to `body` (Markdown: a heading, the command, the table, the machine).

    Args:
        name: the section's key, lower case letters, digits and ``_`` (usually the RESULT name).
        body: the section's Markdown; trailing blank lines are dropped.
        page: the page to edit; created with its heading when missing.

    Returns:
        The page's path.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"section name {name!r}: use lower case letters, digits and _")
    page = Path(page)
    text = page.read_text(encoding="utf-8") if page.exists() else _PAGE_HEAD
    begin, end = f"<!-- begin: {name} -->", f"<!-- end: {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    if not text.endswith("\n"):
        text += "\n"
    tmp = page.with_name(f".{page.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, page)
    return page
