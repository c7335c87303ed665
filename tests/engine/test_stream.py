"""Streaming predict: each window as soon as it is seen, constant memory, live sources, Ctrl-C."""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from vidrec.engine.checkpoint import Checkpoint, save_checkpoint
from vidrec.engine.config import config_from_dict
from vidrec.engine.predict import (
    Preprocess,
    StreamFrame,
    stream_timeline,
    stream_windows,
    timeline,
)
from vidrec.io import VideoDecodeError, write_video
from vidrec.io.live import LiveReader

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from proc_helpers import reaped  # noqa: E402
from tinyvid import tiny_lrcn  # noqa: E402

K = 3
PRE = Preprocess(resize=16, size=16)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _frames(n: int, pulled: list[int] | None = None, alive: list | None = None):
    """`n` random StreamFrames; counts how many were pulled and keeps weak references to them."""
    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        if pulled is not None:
            pulled[0] = i + 1
        f = StreamFrame(i, i / 10, time.perf_counter(), torch.rand(3, 16, 16, generator=gen), 0.1)
        if alive is not None:
            alive.append(weakref.ref(f.x))
        yield f


def _model():
    torch.manual_seed(0)
    return tiny_lrcn(K).eval()


@pytest.mark.parametrize("recurrent", [False, True])
def test_each_window_is_yielded_as_soon_as_its_last_frame_arrives(recurrent):
    pulled = [0]
    wins = stream_windows(_model(), _frames(40, pulled), window=8, stride=5, recurrent=recurrent)
    ends = []
    for w in wins:
        assert pulled[0] == w.end_frame, "the window waited for frames after its end"
        assert 0 <= w.latency_s < 5 and torch.isclose(w.probs.sum(), torch.tensor(1.0))
        ends.append(w.end_frame)
    assert ends == [8, 13, 18, 23, 28, 33, 38]


def test_stream_memory_is_constant_in_the_stream_length():
    alive: list = []
    count = 0
    for _ in stream_windows(_model(), _frames(400, alive=alive), window=16, stride=8):
        count += 1
        assert sum(r() is not None for r in alive) <= 16 + 2  # only the current window is held
    assert count == (400 - 16) // 8 + 1 and len(alive) == 400


def _ts(path: Path, n: int = 40, fps: int = 10) -> Path:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (n, 32, 48, 3), dtype=np.uint8)
    frames[:, :16] = np.linspace(0, 255, n, dtype=np.uint8)[:, None, None, None]  # some motion
    return write_video(path, frames, fps, codec="mpeg4", gop=5)


@pytest.fixture(scope="module")
def ts_video(tmp_path_factory) -> Path:
    return _ts(tmp_path_factory.mktemp("live") / "clip.ts")


def test_http_url_gives_the_frames_of_the_file(ts_video):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(ts_video.parent))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{ts_video.name}"
        with LiveReader(url, size=16, idle_timeout=5) as r:
            got = [f.rgb for f in r]
    finally:
        server.shutdown()
        server.server_close()
    with LiveReader(ts_video, size=16) as r:
        want = [f.rgb for f in r]
    assert len(got) == len(want) == 40
    np.testing.assert_array_equal(np.stack(got), np.stack(want))


def test_missing_camera_or_file_is_one_clear_error(tmp_path):
    with pytest.raises(VideoDecodeError, match="/dev/video97"):
        LiveReader("/dev/video97")
    with pytest.raises(VideoDecodeError, match="no such file"):
        LiveReader(tmp_path / "nope.ts")


# ----------------------------------------------------------------------------- the CLI, live


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    data = {"resize": 16, "size": 16, "frames": 4, "plugin": "tinyvid:color_data"}
    cfg = config_from_dict({"model": {"name": "tinyvid:tiny_lrcn"}, "data": data})
    from vidrec.engine.schema import config_to_dict

    model = _model()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return save_checkpoint(path, Checkpoint(model.state_dict(), config_to_dict(cfg), ["a", "b", "c"]))


def _predict(ckpt: Path, source: str, *extra: str, **popen) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "vidrec.cli", "predict", str(ckpt), source, "--topk", "1", *extra]
    cmd += ["--model-factory", "tinyvid:tiny_lrcn"]
    popen.setdefault("text", True)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def _windows_of(out: str) -> list[str]:
    return [line.rsplit("(", 1)[0].strip() for line in out.splitlines() if "frames" in line]


def test_stdin_pipe_streams_the_same_windows_as_the_file(ckpt, ts_video):
    args = ["--stream", "--window", "8", "--stride", "8"]
    proc = _predict(ckpt, "-", *args, "--input-format", "mpegts", stdin=subprocess.PIPE, text=False)
    piped, err = (b.decode() for b in proc.communicate(ts_video.read_bytes(), timeout=120))
    assert proc.returncode == 0, err[-2000:]
    wins = stream_timeline(_model(), ts_video, preprocess=PRE, window=8, stride=8)  # the file, in-process
    want = [
        f"frames {w.start_frame:5d}-{w.end_frame:5d}  {'abc'[int(w.probs.argmax())]} {w.probs.max():.3f}"
        for w in wins
    ]
    assert len(want) == 5 and [line.split("s  ", 1)[1] for line in _windows_of(piped)] == want
    assert "end of stream: 5 windows, latency median" in err


def test_growing_file_streams_before_it_is_complete_and_ctrl_c_is_clean(ckpt, ts_video, tmp_path):
    data, live = ts_video.read_bytes(), tmp_path / "recording.ts"
    live.write_bytes(data[: len(data) // 2])  # the recorder has written half so far
    proc = _predict(
        ckpt, str(live), "--timeline", "--window", "4", "--stride", "4", "--follow", start_new_session=True
    )
    with reaped(proc):
        first = proc.stdout.readline()  # blocks until the first window is printed
        assert "frames     0-    4" in first and "ms)" in first, first
        with open(live, "ab") as fh:  # the recording goes on while predict runs
            fh.write(data[len(data) // 2 :])
        lines = [first]
        while len(lines) < 8:
            lines.append(proc.stdout.readline())
        assert "frames    28-   32" in lines[-1], lines
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "stopped by Ctrl-C" in err


def test_ctrl_c_stops_a_followed_stream_at_once(ckpt, ts_video, tmp_path):
    # cut inside a packet: at that end FFmpeg asks for more bytes again after the read Ctrl-C ended, and
    # each of those reads of a followed file used to wait --idle-timeout (Ctrl-C took twice the timeout)
    live = tmp_path / "recording.ts"
    live.write_bytes(ts_video.read_bytes()[:20000])
    args = ["--stream", "--window", "4", "--stride", "4", "--follow", "--idle-timeout", "30"]
    proc = _predict(ckpt, str(live), *args, start_new_session=True)
    with reaped(proc):
        assert "frames     0-    4" in proc.stdout.readline()
        time.sleep(0.5)  # waiting for the recorder's next bytes
        proc.send_signal(signal.SIGINT)
        tic = time.monotonic()
        _, err = proc.communicate(timeout=90)
        seconds = time.monotonic() - tic
    assert proc.returncode == 130 and "stopped by Ctrl-C" in err and "Traceback" not in err, err[-2000:]
    assert seconds < 15, f"Ctrl-C took {seconds:.1f} s with --idle-timeout 30"


def test_ctrl_c_while_a_followed_file_is_probed_is_an_interrupt_not_a_broken_video(ts_video, tmp_path):
    live = tmp_path / "starting.ts"
    live.write_bytes(ts_video.read_bytes()[:500])  # the recorder has barely begun: FFmpeg is still probing
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    tic = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):  # was VideoDecodeError "FFmpeg cannot open it as a video"
            LiveReader(live, follow=True, idle_timeout=5)
    finally:
        timer.cancel()
    assert time.monotonic() - tic < 4


def test_timeline_of_a_file_equals_windows_run_afresh(ts_video):
    model = _model()
    wins = timeline(model, ts_video, preprocess=PRE, window=8, stride=8)
    with LiveReader(ts_video, size=16) as r:
        x = PRE.normalize(PRE(np.stack([f.rgb for f in r])), "cpu")  # (40, 3, 16, 16) float
    with torch.no_grad():
        want = model(x[None, 8:16]).softmax(-1).mean(1)[0]
    torch.testing.assert_close(wins[1].probs, want, atol=1e-5, rtol=1e-5)
