"""Kill a training run mid-epoch with SIGKILL, resume it, and finish with weights equal to an
uninterrupted run (same seed, CPU): data order, per-item randomness, dropout, LR and optimiser state."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from tinyvid import subprocess_env

from vidrec.engine.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMMON = [
    "data.plugin=tinyvid:color_data",
    "data.frames=4",
    "data.size=8",
    "data.batch_size=4",
    "data.workers=2",
    "schedule.epochs=3",
    "schedule.warmup_iters=3",
    "ckpt_every_steps=3",
    "optim.lr=0.05",
    "progress=false",
    "tensorboard=false",
    "plots=false",
]


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vidrec.cli", "train", *COMMON, f"out_dir={out}", *extra]


def _run(out: Path, *extra: str) -> None:
    proc = subprocess.run(
        _cmd(out, *extra), env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _run_and_kill(out: Path, marker: Path, *extra: str) -> None:
    proc = subprocess.Popen(
        _cmd(out, *extra),
        env=subprocess_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"the run never reached the kill point: {proc.poll()=}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its DataLoader workers
        proc.wait()


def test_kill_mid_epoch_and_resume_gives_identical_weights(tmp_path):
    model = "model.name=tinyvid:tiny_net"
    _run(tmp_path / "ref", model, "model.kwargs={dropout: 0.3}")

    marker = tmp_path / "hung"
    hang = f"model.kwargs={{dropout: 0.3, hang_after: 10, marker: '{marker}'}}"  # hangs in epoch 2, batch 5
    _run_and_kill(tmp_path / "run", marker, model, hang)
    mid = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert (mid.epoch, mid.step_in_epoch, mid.global_step) == (1, 3, 9)  # written mid-epoch, before the kill

    _run(tmp_path / "run", model, "model.kwargs={dropout: 0.3}", "--resume")
    ref, got = (load_checkpoint(tmp_path / d / "last.safetensors") for d in ("ref", "run"))
    assert got.global_step == ref.global_step == 18
    assert ref.model.keys() == got.model.keys()
    for key, value in ref.model.items():
        assert torch.equal(got.model[key], value), key
    for idx, state in ref.optimizer["state"].items():
        for key, value in state.items():
            assert torch.equal(got.optimizer["state"][idx][key], value), (idx, key)
    # the interrupted epoch's metrics.csv row covers its whole epoch (running sums kept in the checkpoint)
    rows = [
        list(csv.DictReader((tmp_path / d / "metrics.csv").read_text().splitlines())) for d in ("ref", "run")
    ]
    assert [r["epoch"] for r in rows[1]] == ["1", "2", "3"]
    for a, b in zip(*rows, strict=True):
        for key in ("train_loss", "train_top1", "val_loss", "val_top1"):
            assert a[key] == b[key], (a["epoch"], key)
