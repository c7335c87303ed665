"""The documentation site: every module is in the API reference, every page is in the navigation.

The strict MkDocs build itself (broken references, links and docstrings fail) runs in `make test`
(`make docs-check`); these checks are the fast part that needs no MkDocs.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("api_modules", DOCS / "_hooks" / "api_modules.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("api_modules", module)
    spec.loader.exec_module(module)
    return module


def _all_modules() -> set[str]:
    modules = pkgutil.walk_packages([str(REPO / "vidrec")], prefix="vidrec.")
    return {m.name for m in modules if not any(part.startswith("_") for part in m.name.split("."))}


def test_every_module_is_in_the_api_reference_once():
    hook = _hook()
    documented = hook.documented_packages(DOCS)
    covered = []
    for page in sorted(DOCS.rglob("*.md")):
        expanded = hook.expand(page.read_text(encoding="utf-8"), documented)
        for block in expanded.split("::: ")[1:]:
            package = block.split("\n", 1)[0].strip()
            members = block.split("members: [", 1)[1].split("]", 1)[0]
            covered += [f"{package}.{name.strip()}" for name in members.split(",") if name.strip()]
    covered += [p for p in documented if p != "vidrec"]  # a package with its own page counts as covered
    missing = sorted(_all_modules() - set(covered))
    assert not missing, f"modules missing from the API reference: {missing}"
    assert len(covered) == len(set(covered)), "a module is rendered twice"


def test_the_hook_lists_a_new_module_without_editing_the_docs(tmp_path, monkeypatch):
    hook = _hook()
    package = tmp_path / "vidrec" / "newpkg"
    package.mkdir(parents=True)
    for name in ("__init__.py", "alpha.py", "beta.py", "_private.py"):
        (package / name).write_text('"""A module."""\n')
    monkeypatch.setattr(hook, "ROOT", tmp_path)
    out = hook.expand("# x\n\n<!-- api: vidrec.newpkg -->\n", set())
    assert "::: vidrec.newpkg\n    options:\n      members: [alpha, beta]" in out


def test_every_page_is_in_the_navigation():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())

    def pages(nav) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, dict):
            return [p for v in nav.values() for p in pages(v)]
        return [p for item in nav for p in pages(item)]

    in_nav = set(pages(config["nav"]))
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "_hooks" not in p.parts}
    assert on_disk == in_nav
    assert config["strict"] is True
