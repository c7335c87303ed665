"""Generated faces-like videos with known 68-point landmarks (iBUG order), for the landmarks tests.

A template face in unit coordinates (jaw U-curve, brows, nose, eyes as ellipses, mouth) is moved and
scaled per frame; each frame draws the face as a filled disc with its parts as dark strokes, so the
points are visible in the pixels. `write_face_video` writes ``<name>.mp4`` and ``<name>.landmarks.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from vidrec.io import write_video


def _ellipse(cx: float, cy: float, w: float, h: float, angles_deg: list[float]) -> list[tuple[float, float]]:
    return [(cx + w * np.cos(np.radians(a)), cy - h * np.sin(np.radians(a))) for a in angles_deg]


def template() -> np.ndarray:
    """(68, 2) points in the unit square; outer eye corners 36 / 45 are 0.52 apart, eye centres 0.36."""
    jaw = [
        (0.5 + 0.4 * np.cos(np.pi - k * np.pi / 16), 0.4 + 0.45 * np.sin(np.pi - k * np.pi / 16))
        for k in range(17)
    ]
    brows = [(0.18 + 0.06 * k, 0.3 - 0.02 * np.sin(np.pi * k / 4)) for k in range(5)]
    brows += [(0.58 + 0.06 * k, 0.3 - 0.02 * np.sin(np.pi * k / 4)) for k in range(5)]
    nose = [(0.5, 0.35 + 0.05 * k) for k in range(4)] + [(0.42 + 0.04 * k, 0.6) for k in range(5)]
    eye = [180, 120, 60, 0, -60, -120]  # outer/inner corner, two top, other corner, two bottom
    eyes = _ellipse(0.32, 0.4, 0.08, 0.03, eye) + _ellipse(0.68, 0.4, 0.08, 0.03, eye)
    mouth = _ellipse(0.5, 0.72, 0.15, 0.06, [180 - 30 * k for k in range(12)])
    mouth += _ellipse(0.5, 0.72, 0.1, 0.03, [180 - 45 * k for k in range(8)])
    points = np.array(jaw + brows + nose + eyes + mouth, dtype=np.float64)
    assert points.shape == (68, 2)
    return points


PARTS = [range(0, 17), range(17, 22), range(22, 27), range(27, 31), range(31, 36), range(36, 42),
         range(42, 48), range(48, 60), range(60, 68)]  # fmt: skip


def face_points(n: int, *, size: int, seed: int) -> np.ndarray:
    """(n, 68, 2) image points: the template scaled to ~60% of the frame, drifting and nodding slowly."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    scale = size * (0.55 + 0.05 * np.sin(t / 5 + rng.uniform(0, 6)))
    cx = size * (0.5 + 0.08 * np.sin(t / 4 + rng.uniform(0, 6)))
    cy = size * (0.5 + 0.06 * np.cos(t / 6 + rng.uniform(0, 6)))
    unit = template() - 0.5
    return (unit[None] * scale[:, None, None] + np.stack([cx, cy], -1)[:, None]).astype(np.float32)


def draw_face(points: np.ndarray, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 RGB frame with the face of `points` (68, 2) drawn on a grey background."""
    img = np.full((size, size, 3), 90, dtype=np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(img, hull, (230, 190, 160))
    for part in PARTS:
        pts = np.round(points[list(part)]).astype(np.int32)
        closed = part.start in (36, 42, 48, 60)
        cv2.polylines(img, [pts], closed, (40, 20, 20), max(1, size // 64))
    return img


def write_face_video(folder: Path, name: str, *, frames: int = 24, size: int = 64, seed: int = 0) -> Path:
    """``folder/name.mp4`` with ``name.landmarks.json`` (the generated points, one entry per frame, and a
    face rectangle per frame in ``boxes``: the points' bounding box, as a detector would draw it)."""
    points = face_points(frames, size=size, seed=seed)
    video = write_video(folder / f"{name}.mp4", np.stack([draw_face(p, size) for p in points]), 25, crf=12)
    rects = np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1)  # (F, 4) left top right bottom
    meta = {"width": size, "height": size, "fps": 25.0, "n_frames": frames, "landmarks": points.tolist(),
            "boxes": np.round(rects, 2).tolist()}  # fmt: skip
    (folder / f"{name}.landmarks.json").write_text(json.dumps(meta))
    return video
