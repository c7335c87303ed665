"""Small shared pieces: telling time-aware layers the clip length while time is folded into batch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn as nn


class TimeAware(nn.Module):
    """A layer that receives `(B*T, ...)` tensors and needs T; set it with `num_steps(model, T)`."""

    steps: int | None = None

    def unfold_size(self, n: int) -> tuple[int, int]:
        """(B, T) for a folded batch of `n` items; a clear error outside `num_steps`."""
        if self.steps is None or n % self.steps:
            raise RuntimeError(
                f"{type(self).__name__} needs the clip length: call it inside `num_steps(model, T)` "
                f"(got a folded batch of {n}, steps={self.steps})"
            )
        return n // self.steps, self.steps


@contextmanager
def num_steps(model: nn.Module, steps: int) -> Iterator[None]:
    """Set the clip length on every `TimeAware` layer of `model` for the duration of the block."""
    layers = [m for m in model.modules() if isinstance(m, TimeAware)]
    for m in layers:
        m.steps = steps
    try:
        yield
    finally:
        for m in layers:
            m.steps = None
