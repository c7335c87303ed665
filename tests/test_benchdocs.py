"""docs/benchmarks.md sections written by benchmark scripts: one section replaced, the others kept."""

from __future__ import annotations

import pytest

from vidrec.benchdocs import command, machine, write_section


def test_a_section_is_replaced_and_the_others_kept(tmp_path):
    page = tmp_path / "benchmarks.md"
    write_section("dff", "## DFF\n\n| a |\n|---|\n| 1 |\n", page)
    write_section("flow", "## Flow\n\nold\n", page)
    write_section("dff", "## DFF\n\n| a |\n|---|\n| 2 |\n", page)
    text = page.read_text()
    assert text.startswith("# Benchmarks")
    assert "| 2 |" in text and "| 1 |" not in text
    assert "## Flow\n\nold" in text
    assert text.count("<!-- begin: dff -->") == 1 and text.index("begin: dff") < text.index("begin: flow")
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_bad_section_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="section name"):
        write_section("DFF table", "x", tmp_path / "b.md")


def test_the_machine_line_names_cores_and_torch():
    line = machine()
    assert "CPU cores" in line and "torch " in line


def test_the_command_names_the_script_and_drops_write_docs(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/x/benchmarks/flow.py", "--data", "../shared data", "--write-docs"])
    assert command() == "python benchmarks/flow.py --data '../shared data'"
