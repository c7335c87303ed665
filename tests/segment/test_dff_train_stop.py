"""`vidrec dff train` stopped by SIGTERM (issue 20): a resumable checkpoint, one line, exit 143, its
DataLoader workers and the run folder's lock gone with it, no partial files (real process, real signal)."""

from __future__ import annotations

import csv
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from proc_helpers import alive, children, reaped, start

from vidrec.engine.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _steps_logged(run: Path) -> int:
    try:
        return len(list(csv.DictReader((run / "steps.csv").read_text().splitlines())))
    except OSError:
        return 0


@pytest.mark.slow
def test_sigterm_stops_dff_train_with_its_workers_and_a_resumable_checkpoint(tiny_davis, tmp_path):
    run = tmp_path / "dff"
    options = (
        "task_options={size: [32, 48], pairs: true, max_offset: 3, val_stride: 2, "
        "train_sequences: [seq-a, seq-b], val_sequences: [seq-c]}"
    )
    cmd = [sys.executable, "-m", "vidrec.cli", "dff", "train", f"data.root={tiny_davis}", options]
    cmd += ["model.kwargs={pretrained: false, flow: learned}", "data.batch_size=2", "data.workers=2"]
    cmd += ["schedule.epochs=50", "log_every_steps=1", f"out_dir={run}", "progress=false"]
    cmd += ["tensorboard=false", "plots=false", "runtime.device=cpu"]
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    proc = start(cmd, env)
    with reaped(proc):
        deadline = time.monotonic() + 180
        while _steps_logged(run) < 2:  # training: its loader workers are up
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        workers = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("vidrec dff:")]
    assert len(lines) == 1 and "stopped by SIGTERM at epoch" in lines[0], err[-3000:]
    assert f"{run / 'last.safetensors'} holds it; continue with the same command plus --resume" in lines[0]
    assert len(workers) == 2 and not [pid for pid in workers if alive(pid)]
    assert not (run / ".vidrec.lock").exists() and not list(run.glob(".*tmp*"))
    step = int(re.search(r"\(step (\d+)\)", lines[0])[1])
    ckpt = load_checkpoint(run / "last.safetensors")
    assert ckpt.global_step == step >= 2 and ckpt.optimizer is not None
