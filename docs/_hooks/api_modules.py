"""MkDocs hook: expand `<!-- api: vidrec.X -->` into a mkdocstrings block listing every module of vidrec.X.

So the API reference always covers every module (one found on disk, with no import), and a module added
later appears without editing the docs. A package with its own API page is left out of its parent's
list, so nothing is rendered twice.
"""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: docs/_hooks/ -> docs/ -> root
MARKER = re.compile(r"^<!-- api: ([\w.]+) -->$", re.M)


def documented_packages(docs_dir: Path) -> set[str]:
    """Packages named by a marker in any page under `docs_dir`."""
    found = set()
    for page in docs_dir.rglob("*.md"):
        found.update(MARKER.findall(page.read_text(encoding="utf-8")))
    return found


def modules_of(package: str, skip: set[str]) -> list[str]:
    """Sorted names of `package`'s public modules and sub-packages, without those in `skip` (dotted)."""
    folder = ROOT.joinpath(*package.split("."))
    names = [m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_")]
    return sorted(n for n in names if f"{package}.{n}" not in skip)


def expand(markdown: str, documented: set[str]) -> str:
    """Replace each marker with `::: package` and its `members` (the modules, then nothing else)."""

    def block(match: re.Match) -> str:
        package = match.group(1)
        members = ", ".join(modules_of(package, documented))
        return f"::: {package}\n    options:\n      members: [{members}]\n"

    return MARKER.sub(block, markdown)


def on_page_markdown(markdown: str, *, page, config, files) -> str:  # noqa: ARG001 - MkDocs' signature
    return expand(markdown, documented_packages(Path(config["docs_dir"])))
