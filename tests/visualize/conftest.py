from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors: every test here on one torch thread (`one_thread` of tests/conftest.py)."""
