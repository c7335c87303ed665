"""2-process DDP on CPU (gloo) launched by torchrun equals 1 process with the same global batch, for a model
without BatchNorm and dropout (TinyNet's defaults). With them the runs differ by design (per-rank BatchNorm
statistics and dropout masks): see test_ddp_resume.py and docs/guides/training.md, "Many GPUs and
machines"."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tinyvid import subprocess_env

from vidrec.engine.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMMON = [
    "data.plugin=tinyvid:color_data",
    "model.name=tinyvid:tiny_net",
    "data.frames=4",
    "data.size=8",
    "data.workers=0",
    "schedule.epochs=2",
    "optim.lr=0.05",
    "optim.clip_grad_norm=1.0",
    "progress=false",
    "tensorboard=false",
    "plots=false",
    "runtime.device=cpu",
]


def _run(prefix: list[str], out: Path, *extra: str, timeout: float = 300) -> None:
    env = subprocess_env()
    cmd = [sys.executable, *prefix, "-m", "vidrec.cli", "train", *COMMON, f"out_dir={out}", *extra]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-4000:]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run(torchrun, tmp_path / "ddp", "data.batch_size=2")
    _run([], tmp_path / "single", "data.batch_size=4")
    one, two = (load_checkpoint(tmp_path / d / "last.safetensors") for d in ("single", "ddp"))
    assert one.global_step == two.global_step == 12
    for key, value in one.model.items():
        torch.testing.assert_close(two.model[key], value, rtol=1e-5, atol=1e-6, msg=key)
    rows = [
        list(csv.DictReader((tmp_path / d / "metrics.csv").read_text().splitlines()))
        for d in ("single", "ddp")
    ]
    for a, b in zip(*rows, strict=True):  # epoch metrics are reduced over ranks, not rank 0's share
        for key in ("train_loss", "train_top1", "val_top1", "val_loss"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4), key
    assert not any((tmp_path / "ddp").glob(".*tmp*")), "a temporary checkpoint file was left behind"


@pytest.mark.slow
def test_a_batch_skipped_on_one_rank_only_does_not_hang_ddp(tmp_path):
    """Rank 1 cannot read half its clips, so some of its batches are wholly skipped while rank 0's are not:
    every rank must skip such a batch together (else rank 0 waits in DDP's all-reduce for ever)."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    out = tmp_path / "ddp"
    _run(torchrun, out, "data.batch_size=2", "data.plugin=tinyvid:rank_unreadable_data", timeout=120)
    ckpt = load_checkpoint(out / "last.safetensors")
    assert 0 < ckpt.global_step < 12  # some steps were skipped by both ranks, the others trained
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 2 and all(float(r["val_top1"]) >= 0 for r in rows)
