"""Middlebury `.flo` optical-flow files (the ground-truth format of FlyingChairs, Sintel, Middlebury).

Layout: the float32 tag 202021.25 ("PIEH"), int32 width, int32 height, then float32 `(H, W, 2)` row-major,
little-endian.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["read_flo", "write_flo"]

FLO_TAG = 202021.25


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury `.flo` file as float32 `(H, W, 2)` (x then y, px)."""
    data = Path(path).read_bytes()
    if len(data) < 12:
        raise ValueError(f"{path}: too short for a .flo header ({len(data)} bytes)")
    tag = np.frombuffer(data, "<f4", 1)[0]
    if tag != np.float32(FLO_TAG):
        raise ValueError(f"{path}: not a Middlebury .flo file (tag {tag!r}, expected {FLO_TAG})")
    width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, offset=4))
    expected = 12 + width * height * 8
    if width <= 0 or height <= 0 or len(data) != expected:
        raise ValueError(f"{path}: {width}x{height} flow needs {expected} bytes, file has {len(data)}")
    return (
        np.frombuffer(data, "<f4", width * height * 2, offset=12).reshape(height, width, 2).astype(np.float32)
    )


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write float flow `(H, W, 2)` as a Middlebury `.flo` file."""
    flow = np.asarray(flow, dtype="<f4")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    header = np.array([FLO_TAG], "<f4").tobytes() + np.array([flow.shape[1], flow.shape[0]], "<i4").tobytes()
    Path(path).write_bytes(header + flow.tobytes())
