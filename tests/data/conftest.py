"""Tiny synthetic videos and flow folders for the data tests, made once per session."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vidrec.data.synthetic import make_synthetic_dataset

FRAMES, SIZE = 12, 32


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """`make_synthetic_dataset` output: 6 classes x 2 videos of 12 frames, 32x32."""
    root = tmp_path_factory.mktemp("synth")
    return make_synthetic_dataset(root, per_class=2, frames=FRAMES, size=SIZE, seed=3, progress=False)


def write_denseflow(folder: Path, q: np.ndarray, *, layout: str = "xy") -> Path:
    """Write quantised flow `(N, H, W, 2)` uint8 as denseflow JPEG pairs `x_00001.jpg` / `y_00001.jpg`."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "flow_" if layout == "flow_xy" else ""
    for i, pair in enumerate(q, start=1):
        cv2.imwrite(str(folder / f"{prefix}x_{i:05d}.jpg"), pair[..., 0], [cv2.IMWRITE_JPEG_QUALITY, 100])
        cv2.imwrite(str(folder / f"{prefix}y_{i:05d}.jpg"), pair[..., 1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    return folder


def constant_flow_codes(num_flows: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """`(N, H, W, 2)` uint8, flow i constant: x code 100 + i, y code 200 - i (JPEG keeps these exact)."""
    q = np.empty((num_flows, height, width, 2), np.uint8)
    for i in range(num_flows):
        q[i, ..., 0], q[i, ..., 1] = 100 + i, 200 - i
    return q


@pytest.fixture(scope="session")
def flow_root(synth_root, tmp_path_factory) -> Path:
    """Denseflow folders (`x_`/`y_` layout) for every synthetic video: FRAMES - 1 constant flows each."""
    root = tmp_path_factory.mktemp("flow")
    for line in (synth_root / "train.txt").read_text().splitlines() + (
        synth_root / "test.txt"
    ).read_text().splitlines():
        video_id = line.split()[0].rsplit(".", 1)[0]
        write_denseflow(root / video_id, constant_flow_codes(FRAMES - 1))
    return root
