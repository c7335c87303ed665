"""Progress bars that suit where the output goes.

On a terminal, `progress(...)` is a plain `tqdm` bar. Off a terminal (a log file, a pipe, CI), a
redrawn bar would leave thousands of carriage-return frames in the file, so `progress` returns a
`LineProgress` instead: the same tqdm object (postfix, `update`, `write` all work) that prints one
complete line every `step` percent (a transient ``leave=False`` bar: only its final line), every
`interval` seconds without a total, and at the end.
Set ``VIDREC_PROGRESS=bar`` or ``=lines`` to force either kind.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tqdm import tqdm


class LineProgress(tqdm):
    """A tqdm that writes whole lines (no carriage returns) every `step` percent and at close."""

    def __init__(self, *args: Any, step: float = 10.0, interval: float = 60.0, **kwargs: Any) -> None:
        self._step, self._interval = step, interval
        self._next_pct, self._last_time, self._last_n = step, time.monotonic(), 0
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self.n == self._last_n and msg is None:
            return True
        pct = 100.0 * self.n / self.total if self.total else None
        closing = self.total is not None and self.n >= self.total
        due = (
            pct >= self._next_pct if pct is not None else time.monotonic() - self._last_time >= self._interval
        )
        if not (due or closing or msg is not None):
            return True
        if pct is not None:
            self._next_pct = (pct // self._step + 1) * self._step
        self._last_time, self._last_n = time.monotonic(), self.n
        self.fp.write((msg if msg is not None else self.__str__()) + "\n")
        self.fp.flush()
        return True

    def clear(self, nolock: bool = False) -> None:  # nothing drawn to clear: lines are final
        pass

    def close(self) -> None:
        if self.disable:
            return
        if self.n != self._last_n:  # the final count, once
            self._next_pct = 0.0
            self.display()
        self.disable = True  # tqdm's own close would redraw or erase the bar with control characters
        self._decr_instances(self)


def _on_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(iterable: Any = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on a terminal, a `LineProgress` elsewhere; takes tqdm's arguments."""
    mode = os.environ.get("VIDREC_PROGRESS", "auto")
    stream = kwargs.get("file") or sys.stderr
    lines = mode == "lines" or (mode != "bar" and not _on_terminal(stream))
    if lines:
        kwargs.pop("dynamic_ncols", None)
        if not kwargs.get("leave", True):  # a transient bar (eval inside an epoch): its final line only
            kwargs.setdefault("step", 100.0)
        return LineProgress(iterable, **kwargs)
    return tqdm(iterable, **kwargs)
