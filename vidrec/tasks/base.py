"""`Task`: what one kind of problem (classify, caption, landmarks, segment) gives the training engine.

`vidrec.engine.train` keeps the loop, devices, AMP, DDP, checkpoints, exact resume, progress bars,
TensorBoard and the NaN stop; it never asks which task it runs. A task is one object made from the run's
`TrainConfig` (``cfg.task`` names it, ``cfg.task_options`` holds its own settings, checked against its
`Options` dataclass) and answers, in the order the engine asks:

1. `check()` -- fail fast on missing files, before any model is built;
2. `build_model(weights=)` -- the model, through the registry; first reads what the model's shape
   depends on (class names, a vocabulary) into the task's state, unless `load_state` gave it;
3. `datasets(model, log)` -- (train, val or None), and `missing`: listed inputs that are absent;
4. per training batch, `training_step(model, batch, device)` -> `Step` (loss, items, summed metrics),
   called by the engine under autocast and DDP's ``no_sync``;
5. `train_metrics(sums)` -- the epoch's training metrics from the summed `Step.sums` (all ranks);
6. `validate(model, loader, ...)` -- a flat dict of floats named ``val_*`` plus ``val_skipped``;
   `best_metric` names the one that picks ``best.safetensors`` (`higher_is_better` says which way);
7. `state()` -- JSON-able data the model cannot be rebuilt without (class names, vocabulary), stored in
   every checkpoint beside the weights and given back by `load_state` for resume and inference;
8. `report(out_dir, history)` -- optional pictures at the end (the engine draws the loss curves).

`vidrec predict` asks a task whose `draws_predictions` is true (landmarks) to `draw_predictions` on a
video into ``--out``; the others keep the class printout (classify).

A task module reads top to bottom and registers its class with `register_task`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vidrec.engine.schema import ConfigError, TrainConfig, build_section, iter_fields

_TASKS: dict[str, type[Task]] = {}


@dataclass
class Step:
    """One training batch's result: the mean loss over its items and per-batch sums of the task's
    training metrics (e.g. ``{"correct": 3.0}``), which the engine adds up over the epoch and all ranks."""

    loss: torch.Tensor  # scalar, the mean over `items`, with grad
    items: int
    sums: dict[str, float] = field(default_factory=dict)


@dataclass
class NoOptions:
    """A task without options of its own."""


class Task:
    """Base class of the tasks; see the module docstring for the order in which the engine calls it."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    best_metric: ClassVar[str] = "val_loss"
    higher_is_better: ClassVar[bool] = False

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.options = parse_options(type(self), cfg.task_options)
        self.missing: list[str] = []  # listed inputs whose files are absent (logged every epoch)

    # -- data ---------------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise a one-line error when a file the run needs is missing (before any model is built)."""

    def datasets(
        self, model: nn.Module, log: Callable[[str], None] | None = None
    ) -> tuple[Dataset, Dataset | None]:
        """(training set, validation set or None) for `model`; sets `missing` (absent listed inputs)."""
        raise NotImplementedError

    def collate(self) -> Callable[[list[Any]], Any]:
        """How a list of items becomes a batch (default: `vidrec.data.collate_skip`, which drops and
        reports items that failed to load)."""
        from vidrec.data import collate_skip

        return collate_skip

    def is_empty(self, batch: dict) -> bool:
        """True when no item of `batch` could be read (`collate_skip` then gives only ``"skipped"``)."""
        return set(batch) <= {"skipped"}

    # -- model and state ----------------------------------------------------------------------------
    def build_model(self, *, weights: bool = True) -> nn.Module:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """JSON-able data the model cannot be rebuilt without; stored in every checkpoint."""
        return {}

    def load_state(self, state: dict[str, Any], *, class_names: list[str] = ()) -> None:
        """Take back what `state()` and `class_names()` returned (resume, inference)."""

    def class_names(self) -> list[str]:
        """Names of the output classes, when the task has classes (checkpoints store them apart)."""
        return []

    # -- training and validation --------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: dict, device: torch.device) -> Step:
        raise NotImplementedError

    def train_metrics(self, sums: dict[str, float], items: int) -> dict[str, float]:
        """Epoch training metrics (``train_*``) from `Step.sums` added up over the epoch and the ranks."""
        return {}

    def validate(
        self, model: nn.Module, loader: DataLoader, *, device: torch.device, amp: bool, progress: bool
    ) -> dict[str, Any]:
        """``val_*`` floats (one of them `best_metric`) and ``val_skipped`` (unreadable inputs)."""
        raise NotImplementedError

    def report(self, out_dir: Path, history: list[dict[str, Any]]) -> None:
        """Pictures of the finished run in `out_dir` (optional)."""

    # -- inference ----------------------------------------------------------------------------------
    draws_predictions: ClassVar[bool] = False  # True: `vidrec predict VIDEO --out OUT` calls the next

    def draw_predictions(
        self,
        model: nn.Module,
        video: Path,
        out: Path,
        *,
        device: torch.device,
        progress: bool,
        overwrite: bool,
        **options: Any,
    ) -> str:
        """Write `video` with the model's predictions drawn on it to `out` (any other file it writes is
        kept unless `overwrite`); a one-line summary back. `options`: the task's own `vidrec predict` flags
        (landmarks: ``detector``, ``face_box``, ``box_smoothing``)."""
        raise NotImplementedError(f"task {self.name} draws no predictions")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make `cls` available as ``task: <cls.name>`` in configs."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a `name`")
    _TASKS[cls.name] = cls
    return cls


def task_names() -> list[str]:
    _load_builtin()
    return sorted(_TASKS)


def get_task_class(name: str) -> type[Task]:
    _load_builtin()
    if name not in _TASKS:
        raise ConfigError(f"task: unknown task {name!r}; known tasks: {sorted(_TASKS)}")
    return _TASKS[name]


def make_task(cfg: TrainConfig) -> Task:
    """The task object of a run (``cfg.task`` with ``cfg.task_options``)."""
    return get_task_class(cfg.task)(cfg)


def parse_options(cls: type[Task], raw: dict[str, Any]) -> Any:
    """``cfg.task_options`` checked against ``cls.Options``; a bad key or value names the field."""
    return build_section(cls.Options, raw or {}, "task_options.")


def options_help(cls: type[Task]) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of a task's options, for ``vidrec train --help``."""
    return list(iter_fields(cls.Options, "task_options.")) if dataclasses.is_dataclass(cls.Options) else []


def _load_builtin() -> None:
    import importlib

    for module in ("classify", "caption", "landmarks", "segment", "detect"):
        try:
            importlib.import_module(f"vidrec.tasks.{module}")
        except ModuleNotFoundError as err:  # a task module not written yet
            if err.name != f"vidrec.tasks.{module}":
                raise
