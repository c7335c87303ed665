"""docs/models.md's property table: every testable property of methods.md has a row, and every test a row
names exists in its file (found by parsing the file, nothing is imported), so the table cannot rot."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "models.md"
HEADING = "## Testable properties and their tests"
# methods.md, the project's specification of the five papers, lives beside the repository
# (../shared/design); its "Testable properties" lists, by section, and how many items each has.
METHODS_MD = REPO.parent / "shared" / "design" / "methods.md"
PROPERTY_SECTIONS = {"1.6": 6, "2.4": 4, "3.5": 5, "4.7": 7, "5.4": 5}
NODE = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")


def table_rows(text: str) -> list[tuple[str, list[str]]]:
    """``(methods.md section, [test node ids])`` per row of the table under `HEADING`."""
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| methods.md ", "|---")):
            continue
        ref = line.split("|")[1].strip()
        rows.append((ref, [f"{path}::{name}" for path, name in NODE.findall(line)]))
    return rows


def defined_tests(path: Path) -> set[str]:
    """Node ids of the test functions pytest collects from `path`: module level and in Test classes."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names |= {
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test")
            }
    return names


def spec_properties(counts: dict[str, int]) -> set[str]:
    return {f"{section}.{i}" for section, n in counts.items() for i in range(1, n + 1)}


def test_every_testable_property_has_a_row_with_a_test():
    rows = table_rows(PAGE.read_text(encoding="utf-8"))
    numbered = {ref for ref, _ in rows if ref.rsplit(".", 1)[0] in PROPERTY_SECTIONS}
    assert numbered == spec_properties(PROPERTY_SECTIONS)  # none missing, none that methods.md lacks
    assert all(tests for _, tests in rows), [ref for ref, tests in rows if not tests]


def test_every_test_the_table_names_exists():
    rows = table_rows(PAGE.read_text(encoding="utf-8"))
    missing = []
    for _, tests in rows:
        for node_id in tests:
            path, name = node_id.split("::", 1)
            file = REPO / path
            if not (file.name.startswith("test_") and file.is_file() and name in defined_tests(file)):
                missing.append(node_id)
    assert not missing, missing


def test_the_parsers_see_what_they_should(tmp_path):
    """The checks above would pass vacuously if the parsers found nothing: a small page proves they don't."""
    page = f"# x\n\n{HEADING}\n\n| methods.md | property | tests |\n|---|---|---|\n"
    page += "| 1.6.1 | causal | `tests/a/test_b.py::test_c`, `tests/a/test_b.py::TestD::test_e` |\n"
    page += "| 1.2 | other | none |\n\n## Next\n\n| 9.9.9 | not this table | `tests/x.py::test_y` |\n"
    assert table_rows(page) == [
        ("1.6.1", ["tests/a/test_b.py::test_c", "tests/a/test_b.py::TestD::test_e"]),
        ("1.2", []),
    ]
    module = tmp_path / "test_m.py"
    module.write_text("def test_a(): pass\ndef helper(): pass\nclass TestK:\n    def test_b(self): pass\n")
    assert defined_tests(module) == {"test_a", "TestK::test_b"}
    assert len(table_rows(PAGE.read_text(encoding="utf-8"))) >= sum(PROPERTY_SECTIONS.values())


@pytest.mark.skipif(not METHODS_MD.is_file(), reason="methods.md is not beside this checkout")
def test_the_section_counts_are_methods_md_s():
    """When methods.md is at hand, its numbered "Testable properties" lists are the ones counted above."""
    counts, section = {}, None
    for line in METHODS_MD.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#+ (\d+\.\d+) Testable properties", line)
        if heading:
            section = heading[1]
            counts[section] = 0
        elif line.startswith("#"):
            section = None
        elif section and re.match(r"\d+\. ", line):
            counts[section] += 1
    assert counts == PROPERTY_SECTIONS
