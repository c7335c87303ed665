"""Tiny generated DAVIS-layout sequences: a bright square moving right over a noisy background."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

H, W = 48, 64


def write_sequence(root: Path, name: str, frames: int, *, seed: int = 0) -> None:
    """`frames` JPEGs and PNG masks under ROOT/JPEGImages/480p/NAME and ROOT/Annotations/480p/NAME."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages/480p" / name).mkdir(parents=True, exist_ok=True)
    (root / "Annotations/480p" / name).mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        img = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
        mask = np.zeros((H, W), np.uint8)
        x0 = 4 + 2 * t % (W - 24)
        mask[12:32, x0 : x0 + 16] = 255
        img[mask > 0] = (220, 200, 40)  # RGB: a yellow square
        cv2.imwrite(str(root / "JPEGImages/480p" / name / f"{t:05d}.jpg"), img[:, :, ::-1])  # RGB -> BGR
        cv2.imwrite(str(root / "Annotations/480p" / name / f"{t:05d}.png"), mask)
