"""Runs that survive (issue 20): replaying a run's config never replaces the run; SIGTERM saves a resumable
checkpoint (one process and two gloo ranks, resumed weights bit-identical), ends the DataLoader workers and
releases the lock; a dead run's lock never blocks, a live one always does (real processes, real signals)."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from proc_helpers import alive, children, finish, kill, launch_train
from tinyvid import subprocess_env

from vidrec.cli import main
from vidrec.engine import runfolder
from vidrec.engine.checkpoint import load_checkpoint
from vidrec.engine.config import load_config
from vidrec.engine.train import train

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the test-local plug-in module `tinyvid`, also in this process
    sys.path.insert(0, str(HERE))

COMMON = [
    "data.plugin=tinyvid:color_data",
    "model.name=tinyvid:tiny_net",
    "data.frames=4",
    "data.size=8",
    "data.batch_size=2",
    "data.workers=0",
    "schedule.epochs=2",
    "optim.lr=0.05",
    "progress=false",
    "tensorboard=false",
    "plots=false",
    "runtime.device=cpu",
]
BN_DROPOUT = "dropout: 0.3, batchnorm: true"


def _rows(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))


def _launch(world: int, *args: str) -> list[subprocess.Popen]:
    """`python -m vidrec.cli train ARGS` as `world` ranks of one gloo group (one process when 1)."""
    return launch_train(world, lambda rank: list(args), subprocess_env())


def _wait_for(paths: list[Path], procs: list[subprocess.Popen], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            errs = [p.communicate()[1][-2000:] if p.poll() is not None else "(running)" for p in procs]
            kill(procs)
            pytest.fail(f"the run never reached the pause: {errs}")
        time.sleep(0.02)


def _signal_handled(pid: int, timeout: float = 30) -> None:
    """Wait until `pid` has taken its pending signals (then its Python handler runs within milliseconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        pending = [
            int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("SigPnd", "ShdPnd"))
        ]
        if not any(pending):
            break
        time.sleep(0.01)
    time.sleep(0.3)


# ----------------------------------------------------------------------------- replaying a config


def test_replaying_a_runs_config_never_replaces_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *COMMON, f"out_dir={run}", "schedule.epochs=1", "overwrite=true"]) == 0
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert not {"overwrite", "resume"} & set(stored)  # actions are never stored
    assert not {"overwrite", "resume"} & set(load_checkpoint(run / "last.safetensors").config)
    before = (run / "last.safetensors").read_bytes()
    capsys.readouterr()

    replay = tmp_path / "replay.yaml"  # the usual way to reproduce a run (its own file is not an input)
    replay.write_text((run / "config.yaml").read_text())
    assert main(["train", str(replay), "schedule.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and len(err.strip().splitlines()) == 1
    assert main(["train", str(run / "config.yaml"), "schedule.epochs=1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    old = tmp_path / "old.yaml"  # a config.yaml stored before actions were left out
    old.write_text(yaml.safe_dump({**stored, "resume": "", "overwrite": True}))
    assert main(["train", str(old), "schedule.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "overwrite: True" in err and "command line" in err and len(err.strip().splitlines()) == 1
    assert (run / "last.safetensors").read_bytes() == before and len(_rows(run)) == 1

    assert main(["train", str(replay), "schedule.epochs=2", "--resume"]) == 0  # asked for: it acts
    assert [r["epoch"] for r in _rows(run)] == ["1", "2"]
    assert main(["train", str(run / "config.yaml"), "schedule.epochs=3", "--resume"]) == 0  # in place too
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3"]


# ----------------------------------------------------------------------------- SIGTERM


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")  # the in-process runs compute as the one-thread subprocesses do
@pytest.mark.parametrize("world", [1, 2])
def test_sigterm_saves_a_resumable_checkpoint(tmp_path, world):
    """One process (with DataLoader workers) or two gloo ranks, of which only the last gets SIGTERM; both
    stop after the same step, rank 0 writes, the run resumed from the line's command is bit-identical."""
    workers = 2 if world == 1 else 0
    steps = 24 // (2 * world)  # optimiser steps per epoch
    pause = steps + 3  # the run pauses in epoch 2, batch 4
    common = [*COMMON, f"data.workers={workers}"]
    ref, run, marker = tmp_path / "ref", tmp_path / "run", tmp_path / "paused"
    if world == 1:
        train(load_config(overrides=[*common, f"model.kwargs={{{BN_DROPOUT}}}", f"out_dir={ref}"]))
    else:
        assert all(
            rc == 0
            for rc, _ in finish(_launch(world, *common, f"out_dir={ref}", f"model.kwargs={{{BN_DROPOUT}}}"))
        )

    kwargs = f"model.kwargs={{{BN_DROPOUT}, pause_after: {pause}, marker: '{marker}'}}"
    procs = _launch(world, *common, f"out_dir={run}", kwargs)
    _wait_for([Path(f"{marker}.{r}") for r in range(world)], procs)
    loader_workers = children(procs[0].pid)
    assert len(loader_workers) == workers
    assert (run / runfolder.LOCK_NAME).read_text().strip() == str(procs[0].pid)
    procs[-1].send_signal(signal.SIGTERM)  # the scheduler's signal, to the last rank only
    _signal_handled(procs[-1].pid)
    Path(f"{marker}.go").touch()
    results = finish(procs, timeout=120)

    for rank, (rc, err) in enumerate(results):
        assert rc == 143, (rank, err[-3000:])
        assert "Traceback" not in err, err[-3000:]
    lines = [line for line in results[0][1].splitlines() if line.startswith("vidrec train:")]
    assert len(lines) == 1, results[0][1]
    assert f"stopped by SIGTERM at epoch 2, batch 4 (step {steps + 4})" in lines[0]
    assert str(run / "last.safetensors") in lines[0]
    assert all("vidrec train:" not in err for _, err in results[1:])  # one line, from rank 0
    assert not [pid for pid in loader_workers if alive(pid)], "DataLoader workers outlived the trainer"
    assert not (run / runfolder.LOCK_NAME).exists()
    assert not list(run.glob(".*.tmp-*"))
    mid = load_checkpoint(run / "last.safetensors")
    assert (mid.epoch, mid.step_in_epoch, mid.global_step) == (1, 4, steps + 4)

    assert lines[0].endswith("continue with the same command plus --resume")
    again = [*common, f"out_dir={run}", kwargs, "--resume"]  # (the pause lies beyond what is left)
    if world == 1:
        assert main(["train", *again]) == 0
    else:
        assert all(rc == 0 for rc, _ in finish(_launch(world, *again)))
    want, got = (load_checkpoint(d / "last.safetensors") for d in (ref, run))
    assert got.global_step == want.global_step == 2 * steps
    for key, value in want.model.items():  # weights and BatchNorm statistics
        assert torch.equal(got.model[key], value), key
    for a, b in zip(_rows(ref), _rows(run), strict=True):
        for key in ("epoch", "train_loss", "train_top1", "val_loss", "val_top1"):
            assert a[key] == b[key], (a["epoch"], key)


# ----------------------------------------------------------------------------- the run folder's lock


def test_a_live_runs_lock_blocks_and_a_dead_runs_lock_does_not(tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "paused"
    kwargs = f"model.kwargs={{pause_after: 1, marker: '{marker}'}}"
    (holder,) = _launch(1, *COMMON, "data.workers=2", f"out_dir={run}", kwargs)
    try:
        _wait_for([Path(f"{marker}.0")], [holder])
        assert len(children(holder.pid)) == 2  # its DataLoader workers, forked while it held the lock
        rc = main(["train", *COMMON, f"out_dir={run}", "schedule.epochs=1", "--resume"])
        err = capsys.readouterr().err
        assert rc == 2 and f"in use by another vidrec train (pid {holder.pid})" in err
        holder.send_signal(signal.SIGKILL)  # the OOM killer: no clean-up at all
        holder.wait()
    finally:
        kill([holder])
    lock = run / runfolder.LOCK_NAME
    assert lock.read_text().strip() == str(holder.pid)  # the dead run's lock file stays...
    # ...and blocks nothing, also while its orphaned DataLoader workers are still winding down
    assert main(["train", *COMMON, f"out_dir={run}", "schedule.epochs=1", "--resume"]) == 0
    assert not lock.exists()  # a run that ends releases its lock and deletes the file
