"""Two gloo processes on 127.0.0.1: exact DDP resume, unshared run folders, DDP vs one process.

The processes are started by hand (RANK / WORLD_SIZE / MASTER_ADDR as torchrun sets them), so each
rank can be given its own run folder: that is how two machines without a shared disk look.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from proc_helpers import finish, kill, launch_train
from tinyvid import subprocess_env

from vidrec.engine.checkpoint import load_checkpoint
from vidrec.engine.config import load_config
from vidrec.engine.distributed import with_sync_bn
from vidrec.engine.schema import ConfigError
from vidrec.engine.train import train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMMON = [
    "data.plugin=tinyvid:color_data",
    "model.name=tinyvid:tiny_net",
    "data.frames=4",
    "data.size=8",
    "data.workers=0",
    "data.batch_size=2",
    "schedule.epochs=3",
    "schedule.warmup_iters=3",
    "ckpt_every_steps=3",
    "optim.lr=0.05",
    "progress=false",
    "tensorboard=false",
    "plots=false",
    "runtime.device=cpu",
]
BN_DROPOUT = "model.kwargs={dropout: 0.3, batchnorm: true}"


def _launch(out_dirs: list[Path], *extra: str) -> list[subprocess.Popen]:
    """One training process per run folder, joined into one gloo group (rank i uses out_dirs[i])."""
    argv = [[*COMMON, f"out_dir={out}", *extra] for out in out_dirs]
    return launch_train(len(out_dirs), argv.__getitem__, subprocess_env())


def _ok(procs: list[subprocess.Popen]) -> None:
    for rc, err in finish(procs):
        assert rc == 0, err[-3000:]


def _rows(folder: Path) -> list[dict]:
    return list(csv.DictReader((folder / "metrics.csv").read_text().splitlines()))


@pytest.mark.slow
def test_unshared_run_folders_stop_every_rank_with_one_line(tmp_path):
    sys.path.insert(0, str(HERE))
    node0, node1 = tmp_path / "node0" / "run", tmp_path / "node1" / "run"
    cfg = load_config(overrides=[*COMMON, "schedule.epochs=1", f"out_dir={node0}"])
    train(cfg)  # node 0 holds last.safetensors; node 1's disk has no run folder at all
    assert (node0 / "last.safetensors").is_file()
    started = time.monotonic()
    results = finish(_launch([node0, node1], "--resume"), timeout=180)
    assert time.monotonic() - started < 170
    for rank, (rc, err) in enumerate(results):
        assert rc == 2, (rank, err[-3000:])
        lines = [line for line in err.splitlines() if "do not see the same" in line]
        assert len(lines) == 1 and "rank 1: no file" in lines[0] and "shared" in lines[0], err[-3000:]
        assert "Traceback" not in err


@pytest.mark.slow
def test_ddp_kill_and_resume_is_bit_identical_with_batchnorm_and_dropout(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    _ok(_launch([ref, ref], BN_DROPOUT))

    marker = tmp_path / "hung"
    hang = f"model.kwargs={{dropout: 0.3, batchnorm: true, hang_after: 10, marker: '{marker}'}}"
    procs = _launch([run, run], hang)  # both ranks hang in epoch 2, batch 5
    deadline = time.monotonic() + 240
    while not marker.exists() and all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill(procs)  # SIGKILL: no chance to save anything more
    assert marker.exists(), "the run never reached the kill point"
    mid = load_checkpoint(run / "last.safetensors")
    assert (mid.epoch, mid.step_in_epoch, mid.global_step) == (1, 3, 9)
    assert len(mid.rank_rngs) == 1 and not torch.equal(mid.rank_rngs[0]["torch"], mid.rng["torch"])
    assert mid.epoch_sums["clips"] == 3 * 2 * 2  # 3 batches of 2 on each of 2 ranks

    _ok(_launch([run, run], BN_DROPOUT, "--resume"))
    want, got = (load_checkpoint(d / "last.safetensors") for d in (ref, run))
    assert got.global_step == want.global_step == 18
    for key, value in want.model.items():  # weights and BatchNorm running statistics
        assert torch.equal(got.model[key], value), key
    # the interrupted epoch's row covers the whole epoch, as in the uninterrupted run
    for a, b in zip(_rows(ref), _rows(run), strict=True):
        for key in ("epoch", "train_loss", "train_top1", "val_loss", "val_top1"):
            assert a[key] == b[key], (a["epoch"], key)

    # one process with the same global batch is NOT the same run: each DDP rank normalises with its
    # own half-batch and draws its own dropout masks (docs/guides/training.md, "Many GPUs and machines")
    sys.path.insert(0, str(HERE))
    single = train(
        load_config(overrides=[*COMMON, BN_DROPOUT, "data.batch_size=4", f"out_dir={tmp_path / 's'}"])
    )
    one = load_checkpoint(single.last_checkpoint)
    assert one.global_step == want.global_step
    assert not torch.allclose(one.model["bn.running_var"], want.model["bn.running_var"], atol=1e-3)


def test_sync_bn_converts_batchnorm_on_cuda_and_is_refused_on_cpu():
    sys.path.insert(0, str(HERE))
    from tinyvid import tiny_net

    model = tiny_net(3, batchnorm=True)
    converted = with_sync_bn(model, enabled=True, device=torch.device("cuda"))  # conversion needs no GPU
    assert isinstance(converted.bn, torch.nn.SyncBatchNorm)
    assert converted.state_dict().keys() == tiny_net(3, batchnorm=True).state_dict().keys()
    with pytest.raises(ConfigError, match="runtime.sync_bn.*CUDA"):
        with_sync_bn(tiny_net(3, batchnorm=True), enabled=True, device=torch.device("cpu"))
    assert with_sync_bn(model, enabled=False, device=torch.device("cpu")) is model
    cfg = load_config(overrides=["data.plugin=tinyvid:color_data", "runtime.sync_bn=true"])
    assert cfg.runtime.sync_bn is True
