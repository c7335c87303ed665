"""What the training loop mutates, in one place: `Run` (model, optimiser, position, best metric,
history) and `EpochStats` (this rank's running sums of the epoch in progress, reduced over all ranks).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from vidrec.engine import distributed as D
from vidrec.engine.logging import RunLogger
from vidrec.engine.schema import TrainConfig
from vidrec.interrupt import StopRequest
from vidrec.tasks import Step, Task


@dataclass
class Run:
    """Everything the loop mutates, in one place."""

    cfg: TrainConfig
    model: nn.Module  # the plain module (weights, checkpoints, evaluation)
    train_model: nn.Module  # what the loop calls: model, DDP(model) and/or torch.compile(...)
    optimizer: torch.optim.Optimizer
    device: torch.device
    amp: bool
    info: D.DistInfo
    logger: RunLogger
    task: Task
    batches_per_epoch: int  # loader batches (micro-steps) per epoch on each rank
    global_step: int = 0
    best: float | None = None  # best value of task.best_metric so far
    last_good: Path | None = None
    position: tuple[int, int] = (0, 0)  # (epoch, its batches whose optimiser step is done): resume point
    stats: EpochStats | None = None  # running sums of the epoch in progress (this rank's)
    history: list[dict[str, Any]] = field(default_factory=list)
    flow: dict[str, Any] | None = None  # how the training flow was made, stored in checkpoints
    stop: StopRequest = field(default_factory=StopRequest)  # SIGTERM & co. (vidrec.interrupt)
    ema: AveragedModel | None = None  # the weight average of `optim.ema` (`weight_average`), or None

    @property
    def eval_model(self) -> nn.Module:
        """What validation runs and checkpoints hold as ``model``: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def ddp_module(self) -> DistributedDataParallel | None:
        """The DDP wrapper inside `train_model` (also under torch.compile), for `no_sync`."""
        inner = getattr(self.train_model, "_orig_mod", self.train_model)
        return inner if isinstance(inner, DistributedDataParallel) else None

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch."""
        return math.ceil(self.batches_per_epoch / self.cfg.optim.accum_steps)

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.out_dir)

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


@dataclass
class EpochStats:
    """Sums over this rank's batches (loss x items, items, the task's `Step.sums`); `reduced()` sums them
    over ranks."""

    loss_sum: float = 0.0
    clips: int = 0  # items (clips, images, sequences)
    sums: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, step: Step) -> None:
        self.loss_sum += float(step.loss.detach()) * step.items
        self.clips += step.items
        for key, value in step.sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def _all_sums(self, device: torch.device, extra: list[float]) -> tuple[float, int, dict, list[float]]:
        keys = sorted({k for part in D.all_gather_objects(sorted(self.sums)) for k in part})  # same on all
        values = [self.loss_sum, self.clips, *extra, *(self.sums.get(k, 0.0) for k in keys)]
        t = D.all_reduce_sum(torch.tensor(values, device=device, dtype=torch.float64)).tolist()
        n = 2 + len(extra)
        return t[0], int(t[1]), dict(zip(keys, t[n:], strict=True)), t[2:n]

    def summed(self, device: torch.device) -> dict[str, Any]:
        """The running sums over all ranks so far (a collective: every rank calls it), for checkpoints."""
        loss_sum, clips, sums, (seconds,) = self._all_sums(device, [self.seconds])
        skipped = sorted({s for part in D.all_gather_objects(self.skipped) for s in part})
        seconds /= max(D.all_reduce_sum(torch.ones(1, device=device)).item(), 1)  # wall time: the ranks' mean
        return {"loss_sum": loss_sum, "clips": clips, "sums": sums, "seconds": seconds, "skipped": skipped}

    @classmethod
    def from_sums(cls, sums: dict[str, Any]) -> EpochStats:
        """Stats that continue from `summed()` output stored in a checkpoint (on rank 0 only)."""
        task_sums = dict(sums.get("sums", {}))
        if "correct" in sums:  # a checkpoint written before tasks existed
            task_sums["correct"] = sums["correct"]
        return cls(sums["loss_sum"], sums["clips"], task_sums, list(sums["skipped"]), sums["seconds"])

    def reduced(self, device: torch.device, task: Task) -> dict[str, Any]:
        loss_sum, clips, sums, _ = self._all_sums(device, [])
        skipped = sorted({s for part in D.all_gather_objects(self.skipped) for s in part})
        return {
            "train_loss": loss_sum / max(clips, 1),
            **task.train_metrics(sums, clips),
            "clips_per_s": clips / max(self.seconds, 1e-9),
            "clips": clips,
            "skipped": skipped,
        }
