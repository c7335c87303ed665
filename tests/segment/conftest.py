"""The `tiny_davis` fixture: a generated DAVIS-layout folder (`davis_helpers.write_sequence`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the test-local helper module, whatever pytest's import mode
    sys.path.insert(0, str(HERE))

from davis_helpers import write_sequence  # noqa: E402


@pytest.fixture
def tiny_davis(tmp_path: Path) -> Path:
    """Three sequences (seq-a: 12 frames, seq-b: 10, seq-c: 8)."""
    root = tmp_path / "davis"
    for i, (name, n) in enumerate((("seq-a", 12), ("seq-b", 10), ("seq-c", 8))):
        write_sequence(root, name, n, seed=i)
    return root
