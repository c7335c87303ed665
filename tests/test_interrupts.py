"""Interrupts (issue 20): stop signals end `vidrec` commands cleanly, at once and with one line; `prepare` and
`flow` end their workers and leave no partial files. Real processes, real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from proc_helpers import session

from vidrec.interrupt import Interrupted, StopRequest
from vidrec.io import write_video

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _videos(folder: Path, n: int, frames: int = 60, height: int = 96, width: int = 128) -> Path:
    """`n` copies of one small textured video: cheap to make, some work to process."""
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8), frames, axis=0)
    frames = np.stack([np.roll(f, 2 * i, axis=1) for i, f in enumerate(frames)])
    first = write_video(folder / "v00.mp4", frames, 25, codec="libx264", crf=12)
    for i in range(1, n):
        shutil.copy(first, folder / f"v{i:02d}.mp4")
    return folder


def _stop_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the command ended or never got going: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)


def _gone(sid: int, timeout: float = 10) -> bool:
    """Whether every process of session `sid` is gone within `timeout` (the forkserver exits with its
    parent, after it)."""
    deadline = time.monotonic() + timeout
    while session(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not session(sid)


# ----------------------------------------------------------------------------- the signal machinery


def test_stop_request_records_one_signal_and_the_second_stops_at_once():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        stop.check()  # nothing yet
        os.kill(os.getpid(), signal.SIGUSR1)  # SLURM's warning before the time limit
        time.sleep(0.05)
        with pytest.raises(Interrupted) as caught:
            stop.check()
        assert caught.value.signum == signal.SIGUSR1 and caught.value.agreed and caught.value.exit_code == 143
        with pytest.raises(Interrupted) as caught:  # asked twice: no waiting for the next step
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert caught.value.signum == signal.SIGTERM and not caught.value.agreed
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_during_start_up_is_one_line(signum):
    # the signal lands while `vidrec train` imports its module (torch...), before the command runs
    code = (
        "import importlib.abc, os, sys\n"
        "class Hook(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'vidrec.engine.cli_train':\n"
        f"            os.kill(os.getpid(), {int(signum)})\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hook())\n"
        "from vidrec.cli import main\n"
        "sys.exit(main(['train', 'optim.lr=0.1']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120
    )
    want = "interrupted" if signum == signal.SIGINT else "stopped by SIGTERM"
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), proc.stderr[-2000:]
    assert proc.stderr == f"vidrec train: {want}\n"


# ----------------------------------------------------------------------------- worker pools


def test_ctrl_c_stops_prepare_at_once_and_it_still_writes_its_manifest(tmp_path):
    videos, out = _videos(tmp_path / "videos", 24), tmp_path / "prepared"
    cmd = [sys.executable, "-m", "vidrec.cli", "prepare", str(videos), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(
        cmd, env=_env(), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _stop_when(proc, lambda: any(out.glob("*.prepared.json")))  # the first video is done
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
    tic = time.monotonic()
    _, err = proc.communicate(timeout=120)
    seconds = time.monotonic() - tic
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "vidrec prepare: interrupted after" in err, err[-2000:]
    done = len(list(out.glob("*.prepared.json")))
    print(f"{done} of 24 videos done; ended {seconds:.1f} s after Ctrl-C")
    assert done < 24 and seconds < 20, (done, seconds)  # not the whole queue first
    manifest = json.loads((out / "vidrec_prepared.json").read_text())
    assert not manifest["complete"] and manifest["pending"] == 24 - done
    assert not list(out.rglob("*.part")), "a partial file was left behind"
    assert _gone(proc.pid), "workers outlived the command"


def test_sigterm_stops_flow_and_its_workers_leaving_no_partial_files(tmp_path):
    from vidrec.flow.storage import is_complete

    videos, out = _videos(tmp_path / "videos", 12, frames=16, height=48, width=64), tmp_path / "flow"
    cmd = [sys.executable, "-m", "vidrec.cli", "flow", str(videos), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(
        [*cmd, "--method", "tvl1", "--format", "npy"],
        env=_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _stop_when(proc, lambda: any(out.glob("*.flow.json")))
    proc.send_signal(signal.SIGTERM)  # to the command only, as a scheduler does
    tic = time.monotonic()
    _, err = proc.communicate(timeout=120)
    seconds = time.monotonic() - tic
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "vidrec flow: stopped by SIGTERM after" in err, err[-2000:]
    assert _gone(proc.pid), "forkserver / workers outlived the command"
    done = [p.name[: -len(".flow.json")] for p in out.glob("*.flow.json")]
    print(f"{len(done)} of 12 videos done; ended {seconds:.1f} s after SIGTERM")
    assert len(done) < 12 and seconds < 20, (done, seconds)
    assert all(is_complete(out, vid, bound=20.0, method="tvl1") for vid in done)
    assert not list(out.rglob("*.tmp")), "a partial file was left behind"
