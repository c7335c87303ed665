"""The engine runs any `vidrec.tasks.Task`: a toy regression task (not classification) trains through
`train`, picks its best checkpoint by a lower-is-better metric, stores its state beside the weights and
comes back from `load_task`; task names and task options are checked like every other field."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from vidrec.engine.checkpoint import load_checkpoint, load_task
from vidrec.engine.config import load_config
from vidrec.engine.schema import ConfigError
from vidrec.engine.train import train
from vidrec.tasks import Step, Task, register_task


class Points(Dataset):
    """y = x @ W for a fixed W; items are dicts like every vidrec dataset's."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


@dataclass
class RegressOptions:
    width: int = 4


@register_task
class ToyRegress(Task):
    name = "toy_regress"
    Options = RegressOptions
    best_metric = "val_mse"
    higher_is_better = False

    def datasets(self, model, log=None):
        return Points(64, 0), Points(16, 1)

    def collate(self):
        return torch.utils.data.default_collate

    def build_model(self, *, weights: bool = True) -> nn.Module:
        return nn.Linear(self.options.width, 1)

    def state(self):
        return {"width": self.options.width, "note": "stored"}

    def load_state(self, state, *, class_names=()):
        self.loaded = dict(state)

    def training_step(self, model, batch, device) -> Step:
        err = model(batch["x"].to(device)) - batch["y"].to(device)
        return Step(loss=err.pow(2).mean(), items=len(err), sums={"abs": float(err.detach().abs().sum())})

    def train_metrics(self, sums, items):
        return {"train_mae": sums["abs"] / items}

    @torch.no_grad()
    def validate(self, model, loader, *, device, amp, progress):
        errs = torch.cat([model(b["x"].to(device)) - b["y"].to(device) for b in loader])
        return {"val_mse": float(errs.pow(2).mean()), "val_skipped": []}


BASE = ["task=toy_regress", "data.plugin=unused:unused", "data.batch_size=8", "data.workers=0"]
QUIET = ["progress=false", "tensorboard=false", "plots=false", "optim.lr=0.05", "schedule.name=constant"]


def test_a_non_classification_task_trains_through_the_one_loop(tmp_path):
    cfg = load_config(None, [*BASE, *QUIET, f"out_dir={tmp_path}/run", "schedule.epochs=3"])
    result = train(cfg)
    mse = [h["val_mse"] for h in result.history]
    assert mse[-1] < 0.5 * mse[0]  # it learned
    assert result.best_top1 == min(mse) and result.best_metric == "val_mse"  # lower is better picked it
    assert all("train_mae" in h and "train_top1" not in h for h in result.history)
    best = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert best.task_state == {"width": 4, "note": "stored"} and best.best_metric == min(mse)
    model, task = load_task(tmp_path / "run" / "best.safetensors")
    assert isinstance(task, ToyRegress) and task.loaded == {"width": 4, "note": "stored"}
    assert torch.equal(model.weight, best.model["weight"])


def test_unknown_task_and_bad_task_options_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"task: unknown task 'segmnt'.*classify"):
        load_config(None, ["task=segmnt", "data.train_list=x.txt"])
    with pytest.raises(ConfigError, match=r"task_options\.widht: unknown key.*task_options\.width"):
        load_config(None, [*BASE, "task_options={widht: 3}"])
    with pytest.raises(ConfigError, match=r"task_options\.width"):
        load_config(None, [*BASE, "task_options={width: many}"])
    with pytest.raises(ConfigError, match=r"task_options\.x: unknown key"):  # classify has no options
        load_config(None, ["data.train_list=x.txt", "task_options={x: 1}"])


def test_train_help_lists_each_task_and_its_options():
    from vidrec.engine.config import config_help

    text = config_help()
    assert "[task_options with task=toy_regress]" in text and "task_options.width (int, default 4)" in text
    assert "[task_options with task=classify]" in text
