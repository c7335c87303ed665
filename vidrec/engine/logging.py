"""Run logging: console lines, CSV files and TensorBoard scalars, written by rank 0 only.

Files in the run folder:
- ``metrics.csv``: one row per epoch (train loss / top-1, val loss / top-1 / top-5, lr, clips/s, skipped);
- ``steps.csv``: one row every `log_every_steps` optimiser steps (loss, lr, clips/s);
- ``tb/``: TensorBoard event files: per step ``train/loss``, ``train/lr``, ``train/clips_per_s``; per epoch
  ``epoch/train_loss``, ``epoch/train_top1``, ``epoch/clips_per_s``, ``val/top1``, ``val/loss``...

A resumed run appends to the existing CSV files; rows are keyed by epoch / step so a reader can drop
the duplicates a kill between a row and the next checkpoint leaves (the last row of a key wins).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm


class CsvLog:
    """Append rows of scalars to a CSV file; the header is the first row's keys (plus later new keys)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] = []
        if path.is_file() and path.stat().st_size:
            with open(path, newline="") as fh:
                self.fields = next(csv.reader(fh), [])

    def write(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.fields]
        if new:
            self._rewrite_with(self.fields + new)
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.fields).writerow({k: _fmt(row.get(k, "")) for k in self.fields})

    def _rewrite_with(self, fields: list[str]) -> None:
        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as fh:
                rows = list(csv.DictReader(fh))
        self.fields = fields
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fields)
            writer.writeheader()
            writer.writerows(rows)


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) and math.isfinite(value) else value


class RunLogger:
    """Console + CSV + TensorBoard sink; every method is a no-op on ranks other than 0."""

    def __init__(self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.epochs = CsvLog(self.out_dir / "metrics.csv") if enabled else None
        self.steps = CsvLog(self.out_dir / "steps.csv") if enabled else None
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out_dir / "tb"))

    def info(self, message: str) -> None:
        if self.enabled:
            tqdm.write(message)

    def step(self, global_step: int, scalars: dict[str, float]) -> None:
        """A `steps.csv` row and TensorBoard ``train/<name>`` scalars at `global_step`."""
        if not self.enabled:
            return
        self.steps.write({"step": global_step, **scalars})
        if self.tb is not None:
            for name, value in scalars.items():
                self.tb.add_scalar(f"train/{name}", value, global_step)

    def epoch(self, epoch: int, row: dict[str, Any], global_step: int) -> None:
        """A `metrics.csv` row; numbers also go to TensorBoard as ``val/<x>`` or ``epoch/<name>``."""
        if not self.enabled:
            return
        self.epochs.write({"epoch": epoch, **row})
        if self.tb is not None:
            for name, value in row.items():
                if isinstance(value, int | float):
                    split, _, key = name.partition("_")
                    tag = f"val/{key}" if split == "val" else f"epoch/{name}"  # train/* holds step values
                    self.tb.add_scalar(tag, value, global_step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
