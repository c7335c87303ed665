"""Fixtures of the vidrec.flow tests: tiny panning videos (64x48, 12 frames), made once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from flow_helpers import make_video

# name -> (seed, dx, dy) of the content's motion per frame
GOOD_VIDEOS = {"a.mp4": (1, 1, 0), "b.mp4": (2, -1, 0), "sub/c.mp4": (3, 0, 1)}
NUM_FRAMES = 12


@pytest.fixture(autouse=True)
def _restore_thread_counts():
    """`vidrec flow` run in-process sets OpenCV (and, for RAFT, torch) to one thread: undo that for the
    tests that run after these."""
    cv2_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    yield
    cv2.setNumThreads(cv2_threads)
    torch.set_num_threads(torch_threads)


@pytest.fixture(scope="session")
def good_videos(tmp_path_factory) -> Path:
    """A folder holding the three GOOD_VIDEOS (one in a subfolder)."""
    root = tmp_path_factory.mktemp("flow_videos")
    for name, (seed, dx, dy) in GOOD_VIDEOS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        make_video(root / name, NUM_FRAMES, seed=seed, dx=dx, dy=dy)
    return root


@pytest.fixture
def video_folder(good_videos, tmp_path) -> Path:
    """A fresh copy of the good videos plus `bad.mp4` (random bytes) and `empty.mp4` (0 bytes)."""
    folder = tmp_path / "videos"
    shutil.copytree(good_videos, folder)
    (folder / "bad.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    (folder / "empty.mp4").write_bytes(b"")
    return folder
