"""``optim.ema``: an exponential moving average of the weights validates and goes into the checkpoints,
the weights the optimiser steps go into last.safetensors for resuming, and a stopped run resumes to the
same average as an uninterrupted one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import vidrec.engine.train as engine_train
from vidrec.engine.checkpoint import load_checkpoint
from vidrec.engine.config import load_config
from vidrec.engine.optim import ema_decay, weight_average
from vidrec.engine.schema import ConfigError
from vidrec.engine.train import train

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the test-local plug-in module `tinyvid`
    sys.path.insert(0, str(HERE))

from tinyvid import TINY  # noqa: E402


def _cfg(out: Path, *extra: str):
    return load_config(None, [*TINY, "optim.lr=0.05", "schedule.epochs=2", f"out_dir={out}", *extra])


def test_decay_warms_up_then_holds():
    assert ema_decay(0.99, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.99, 20) == pytest.approx(21 / 30)
    assert ema_decay(0.99, 10_000) == 0.99
    assert weight_average(nn.Linear(2, 2), 0.0) is None


def test_average_follows_the_formula_and_copies_integer_buffers():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    avg = weight_average(net, 0.5)
    values = [1.0, 3.0, -2.0]
    expected = None
    for n, v in enumerate(values):
        with torch.no_grad():
            net[0].weight.fill_(v)
        net[1].num_batches_tracked.fill_(7 + n)
        avg.update_parameters(net)
        if expected is None:  # the first update copies
            expected = v
        else:
            d = ema_decay(0.5, n)  # update number n (n_averaged before it)
            expected = d * expected + (1 - d) * v
        assert torch.allclose(avg.module[0].weight, torch.full((2, 3), expected))
        assert int(avg.module[1].num_batches_tracked) == 7 + n
    assert net[0].weight.data_ptr() != avg.module[0].weight.data_ptr()  # a copy, not the same tensors


def test_out_of_range_ema_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="optim.ema"):
        train(_cfg(tmp_path / "run", "optim.ema=1.0"))


def test_validation_and_checkpoints_use_the_average(tmp_path, monkeypatch):
    seen: list[dict[str, torch.Tensor]] = []
    original = engine_train._validate

    def recording(run, loader):
        validate = run.task.validate

        def spy(model, *args, **kwargs):
            seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return validate(model, *args, **kwargs)

        spy.installed = True
        if not getattr(validate, "installed", False):
            run.task.validate = spy
        return original(run, loader)

    monkeypatch.setattr(engine_train, "_validate", recording)
    train(_cfg(tmp_path / "run", "optim.ema=0.9"))
    last, best = (load_checkpoint(tmp_path / "run" / n) for n in ("last.safetensors", "best.safetensors"))
    assert len(seen) == 2 and best.trained is None and last.trained is not None
    assert last.trained.keys() == last.model.keys()
    floats = [k for k, v in last.model.items() if v.is_floating_point()]
    assert any(not torch.equal(last.model[k], last.trained[k]) for k in floats)  # an average, not a copy
    for key, value in last.model.items():  # the last validation ran the weights stored as `model`
        assert torch.equal(seen[-1][key], value), key

    train(_cfg(tmp_path / "plain"))
    assert load_checkpoint(tmp_path / "plain" / "last.safetensors").trained is None


def test_stopped_run_resumes_to_the_same_average(tmp_path, monkeypatch):
    train(_cfg(tmp_path / "ref", "optim.ema=0.9"))

    original = engine_train._optimizer_step

    def stop_at_step_8(run):  # epoch 2, batch 3 of 6: a mid-epoch stop before step 8 happens
        if run.global_step == 8:
            raise KeyboardInterrupt
        return original(run)

    monkeypatch.setattr(engine_train, "_optimizer_step", stop_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path / "run", "optim.ema=0.9"))
    mid = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert (mid.global_step, mid.step_in_epoch) == (8, 2) and mid.trained is not None
    monkeypatch.setattr(engine_train, "_optimizer_step", original)

    train(_cfg(tmp_path / "run", "optim.ema=0.9", "resume=auto"))
    ref, got = (load_checkpoint(tmp_path / d / "last.safetensors") for d in ("ref", "run"))
    assert got.global_step == ref.global_step == 12
    for part in ("model", "trained"):
        for key, value in getattr(ref, part).items():
            assert torch.equal(getattr(got, part)[key], value), (part, key)
