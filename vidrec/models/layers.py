"""Small shared pieces: telling time-aware layers the clip length while time is folded into batch, and
mirror-averaged features (test-time flips)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
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


def mirror_averaged(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(net(x) + mirror(net(mirror(x)))) / 2`` for a dense network `(B, C, H, W) -> (B, C', h, w)`, mirror =
    the horizontal flip: test-time flip augmentation on the feature grid. Every channel of `x` is flipped
    (a frame with its neighbours stacked stays stacked); the net runs once on a batch of 2B."""
    both = net(torch.cat([x, x.flip(-1)]))
    direct, mirrored = both.chunk(2)
    return (direct + mirrored.flip(-1)) / 2
