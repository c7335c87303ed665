"""Key-frame schedules for Deep Feature Flow inference: which frames run the expensive feature network.

A schedule answers one question per frame, in order: `decide(index, signal) -> bool` (True: a key frame).
`index` counts the frames of one video from 0 (frame 0 is always a key frame); `signal` is a cheap
measure of how far the current frame has drifted from the last key frame (see `vidrec.dff.model.SIGNALS`),
or None when the schedule does not ask for one (`needs_signal` False) or on frame 0. `reset()` starts a
new video.

- `FixedInterval(l)`: frames 0, l, 2l, ... (the paper's causal, fixed schedule; l = 1 is per-frame).
- `Bidirectional(l)`: ours, for a video read to its end (a file, not a live stream): the key frames of
  `FixedInterval(l)`, but each frame between two key frames blends the features propagated from both,
  weighted by nearness (`vidrec.dff.model.walk`); frames after the last key frame take it alone. Same key
  frames, two flows per propagated frame, outputs up to l - 1 frames late.
- `Adaptive(budget, window, threshold, signal)`: ours. A new key frame when the signal exceeds `threshold`
  (propagation is about to fail) -- but never more than `budget` key frames in any `window` consecutive
  frames, so its cost is bounded like ``FixedInterval(window // budget)``'s.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Adaptive", "Bidirectional", "FixedInterval", "Schedule"]


@runtime_checkable
class Schedule(Protocol):
    """What `vidrec.dff.model.DFF.run` asks of a schedule."""

    needs_signal: bool

    def decide(self, index: int, signal: float | None) -> bool:
        """True when frame `index` (0-based, in order) is a key frame."""
        ...

    def reset(self) -> None:
        """Forget the previous video."""
        ...


@dataclass
class FixedInterval:
    """Key frames 0, l, 2l, ...; `interval` = l >= 1."""

    interval: int = 10
    needs_signal: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if int(self.interval) != self.interval or self.interval < 1:
            raise ValueError(f"key-frame interval must be an integer >= 1, got {self.interval!r}")

    def __str__(self) -> str:
        return f"fixed interval {self.interval}"

    def decide(self, index: int, signal: float | None = None) -> bool:
        return index % self.interval == 0

    def reset(self) -> None:
        pass


@dataclass
class Bidirectional(FixedInterval):
    """Key frames 0, l, 2l, ... as `FixedInterval`; `DFF.run` propagates each frame between two key frames
    from both and blends them (weights (next - i) / l and (i - prev) / l, each times exp(-warp error / tau)
    per pixel: `vidrec.dff.model.nearness_weights`), so it holds a frame's output back until the next key
    frame has run (at most l - 1 frames).

    Args:
        interval: l >= 1.
        tau: the warp error (mean absolute difference of the frames as the model takes them, ImageNet-
            normalised for vidrec's segmenters) at which a side's weight falls by e; 0 = nearness alone.
            0.1 was picked on DAVIS training sequences (docs/dff.md).
    """

    tau: float = 0.1
    bidirectional: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tau >= 0:
            raise ValueError(f"tau must be >= 0 (0: weights by nearness alone), got {self.tau}")

    def __str__(self) -> str:
        return f"bidirectional interval {self.interval}"


@dataclass
class Adaptive:
    """Key frame when `signal > threshold`, at most `budget` key frames in any `window` consecutive frames.

    Args:
        budget: most key frames in any run of `window` frames (>= 1; frame 0 uses one).
        window: the frames the budget covers; ``budget / window`` is the key-frame rate at most, so
            ``Adaptive(budget=2, window=20)`` never costs more than ``FixedInterval(10)``.
        threshold: the signal above which propagation is expected to fail (units of `signal`: feature
            pixels for "flow", mean absolute error of 0..1 pixels for "warp").
        signal: which cheap measure `DFF.run` computes, "flow" or "warp" (see `vidrec.dff.model.SIGNALS`).
        max_gap: optional: a key frame after this many frames without one, budget allowing.
    """

    budget: int = 1
    window: int = 10
    threshold: float = 0.5
    signal: str = "flow"
    max_gap: int | None = None
    needs_signal: bool = field(default=True, init=False)
    _keys: deque = field(default_factory=deque, init=False, repr=False)  # key indices inside the window
    _last: int | None = field(default=None, init=False, repr=False)  # the last key frame's index

    def __post_init__(self) -> None:
        if self.budget < 1 or self.window < 1 or self.budget > self.window:
            raise ValueError(
                f"adaptive schedule needs 1 <= budget <= window, got {self.budget} / {self.window}"
            )
        if self.signal not in ("flow", "warp"):
            raise ValueError(f"adaptive signal must be 'flow' or 'warp', got {self.signal!r}")
        if self.max_gap is not None and self.max_gap < 1:
            raise ValueError(f"max_gap must be >= 1, got {self.max_gap}")

    def __str__(self) -> str:
        gap = f", max gap {self.max_gap}" if self.max_gap else ""
        return f"adaptive: {self.budget} per {self.window} frames, {self.signal} > {self.threshold:g}{gap}"

    def reset(self) -> None:
        self._keys.clear()
        self._last = None

    def decide(self, index: int, signal: float | None) -> bool:
        if index == 0:
            self.reset()
        while self._keys and self._keys[0] <= index - self.window:  # keys older than the window
            self._keys.popleft()
        if len(self._keys) >= self.budget:
            return False  # budget spent: propagate whatever the signal says
        due = (
            self._last is None  # the video's first frame
            or (signal is not None and signal > self.threshold)
            or (self.max_gap is not None and index - self._last >= self.max_gap)
        )
        if due:
            self._keys.append(index)
            self._last = index
        return due
