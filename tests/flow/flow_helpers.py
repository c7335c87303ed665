"""Helpers of the vidrec.flow tests: smooth textures, frame pairs with a known shift, tiny panning videos."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from vidrec.io import write_video

REPO = Path(__file__).resolve().parents[2]
H, W = 48, 64  # every generated frame/video is this small unless a test says otherwise


def smooth_texture(height: int, width: int, *, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    """uint8 RGB `(height, width, 3)`: blurred noise stretched to 0..255 (textured, yet smooth)."""
    noise = np.random.default_rng(seed).normal(size=(height, width)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), sigma)
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 255.0
    return np.repeat(np.rint(tex).astype(np.uint8)[..., None], 3, axis=2)


def shifted_pair(
    dx: int, dy: int, *, height: int = H, width: int = W, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`(prev, next)` crops of one texture where the content moves by `(dx, dy)` px (right/down positive).

    So `prev(y, x) == next(y + dy, x + dx)`: the true flow from prev to next is `(u, v) = (dx, dy)`.
    """
    pad = 8
    big = smooth_texture(height + 2 * pad, width + 2 * pad, seed=seed)
    prev = big[pad : pad + height, pad : pad + width]
    nxt = big[pad - dy : pad - dy + height, pad - dx : pad - dx + width]
    return np.ascontiguousarray(prev), np.ascontiguousarray(nxt)


def panning_frames(
    n: int, *, height: int = H, width: int = W, seed: int = 0, dx: int = 1, dy: int = 0
) -> np.ndarray:
    """`(n, H, W, 3)` uint8: a smooth texture whose content moves `(dx, dy)` px per frame."""
    pad = max(abs(dx), abs(dy)) * n + 4
    big = smooth_texture(height + 2 * pad, width + 2 * pad, seed=seed)
    frames = [
        big[pad - t * dy : pad - t * dy + height, pad - t * dx : pad - t * dx + width] for t in range(n)
    ]
    return np.stack(frames)


def make_video(
    path: Path, n: int = 12, *, height: int = H, width: int = W, seed: int = 0, dx: int = 1, dy: int = 0
) -> Path:
    """A tiny near-lossless H.264 mp4 of `panning_frames` (25 fps)."""
    frames = panning_frames(n, height=height, width=width, seed=seed, dx=dx, dy=dy)
    return write_video(path, frames, 25, codec="libx264", crf=12)


def interior(flow: np.ndarray, margin: int = 8) -> np.ndarray:
    """Flow vectors `(K, 2)` away from the borders (where a shifted crop has no match)."""
    return flow[margin:-margin, margin:-margin].reshape(-1, 2)


def subprocess_env() -> dict[str, str]:
    """The environment with the repository first on PYTHONPATH (the subprocess imports this checkout)."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def start_in_session(cmd: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start `cmd` from the repo root with vidrec importable, in its own session (so that
    `os.killpg(proc.pid, ...)` reaches its workers too)."""
    return subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), start_new_session=True, **popen_kwargs)


def run_in_session(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run `cmd` in its own session; on timeout kill its whole process group (workers included)."""
    proc = start_in_session(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_cli(*args, timeout: float) -> subprocess.CompletedProcess:
    """`python -m vidrec.cli flow ARGS` in a fresh process."""
    return run_in_session([sys.executable, "-m", "vidrec.cli", "flow", *map(str, args)], timeout)
