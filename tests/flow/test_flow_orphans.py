"""SIGKILL of the `vidrec flow` main process: its forkserver and workers die with it (issue 8, point 6)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from flow_helpers import make_video, start_in_session
from proc_helpers import session


def test_workers_die_with_a_killed_parent(tmp_path):
    videos = tmp_path / "videos"
    for i in range(6):
        make_video(videos / f"v{i}.mp4", 40, height=96, width=128, seed=i)
    cmd = [sys.executable, "-m", "vidrec.cli", "flow", str(videos), "--out", str(tmp_path / "flow")]
    proc = start_in_session(
        [*cmd, "--workers", "2", "--method", "tvl1", "--short-side", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(session(proc.pid)) < 4:  # main + forkserver + 2 workers
            assert proc.poll() is None and time.monotonic() < deadline, "the pool never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # only the main process, as the OOM killer would
        proc.wait()
        deadline = time.monotonic() + 15
        while session(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session(proc.pid) == [], "forkserver / workers outlived their parent"
    finally:
        for pid in session(proc.pid):
            os.kill(pid, signal.SIGKILL)
