"""Fixtures of the DFF tests: one thread for tiny tensors, a short moving-texture clip."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors: every test here on one torch thread (`one_thread` of tests/conftest.py)."""


@pytest.fixture
def frames() -> list[torch.Tensor]:
    """7 frames `(1, 3, 48, 64)` of a texture moving right by 3 px a frame."""
    torch.manual_seed(5)
    big = torch.randn(1, 3, 48, 64 + 3 * 7)
    return [big[..., 3 * t : 3 * t + 64].clone() for t in range(7)]
