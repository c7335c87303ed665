"""`vidrec flow` killed with SIGKILL mid-run: nothing half-written counts as done, and a rerun finishes
the job with outputs identical to one uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from flow_helpers import make_video, start_in_session

from vidrec.cli import main
from vidrec.flow import flow_meta, is_complete, load_flow

COUNT, FRAMES, HEIGHT, WIDTH = 8, 60, 120, 160  # ~0.15 s of DIS per video on one core


@pytest.fixture(scope="module")
def resume_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_videos")
    for i in range(COUNT):
        make_video(
            root / f"v{i}.mp4", FRAMES, height=HEIGHT, width=WIDTH, seed=10 + i, dx=1 + i % 2, dy=i % 3 - 1
        )
    return root


def _ids() -> list[str]:
    return [f"v{i}" for i in range(COUNT)]


def _start(videos, out) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vidrec.cli", "flow", str(videos), "--out", str(out)]
    cmd += ["--short-side", "0", "--workers", "1", "--method", "dis"]
    return start_in_session(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_after_first_output(proc: subprocess.Popen, out, deadline_s: float = 60.0) -> None:
    start = time.monotonic()
    try:
        while not (out.is_dir() and any(out.glob("*.flow.json"))):
            assert proc.poll() is None, "the run ended before the first output was seen"
            assert time.monotonic() - start < deadline_s, "no output appeared"
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_killed_run_resumes_to_the_same_outputs(resume_videos, tmp_path, capsys):
    out = tmp_path / "flow"
    proc = _start(resume_videos, out)
    _kill_after_first_output(proc, out)
    assert proc.returncode == -signal.SIGKILL

    # what the killed run left: complete outputs load whole; anything else is not complete
    complete = [i for i in _ids() if is_complete(out, i, bound=20.0, method="dis")]
    assert 1 <= len(complete) < COUNT, f"kill came too late to interrupt anything: {complete}"
    for video_id in complete:
        assert load_flow(out / video_id).shape == (FRAMES - 1, HEIGHT, WIDTH, 2)
        assert flow_meta(out / video_id)["num_frames"] == FRAMES
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # allowed, but never complete
    assert not [name for name in leftovers if name.split(".", 1)[0] in complete]

    # the rerun skips exactly those, finishes the rest and sweeps the temps
    assert main(["flow", str(resume_videos), "--out", str(out), "--short-side", "0", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert f"{len(complete)} already complete, {COUNT - len(complete)} to do" in text
    assert f"done: {COUNT - len(complete)} extracted, {len(complete)} skipped, 0 failed" in text
    assert all(is_complete(out, i, bound=20.0, method="dis") for i in _ids())
    assert not list(out.glob("*.tmp"))

    # identical to one uninterrupted run (DIS on one thread is bit-deterministic)
    fresh = tmp_path / "fresh"
    assert main(["flow", str(resume_videos), "--out", str(fresh), "--short-side", "0", "--workers", "1"]) == 0
    for video_id in _ids():
        np.testing.assert_array_equal(
            load_flow(out / video_id), load_flow(fresh / video_id), err_msg=video_id
        )
        resumed, clean = flow_meta(out / video_id), flow_meta(fresh / video_id)
        assert resumed == clean
