"""Dense optical flow between two frames: OpenCV Dual TV-L1, DIS, Farneback, and torchvision RAFT.

`FlowEstimator(method, **opts)` builds the (stateful, not thread-safe) backend once, so a worker
reuses it for every frame pair; `compute_flow` is the one-shot convenience. Frames are uint8 RGB
`(H, W, 3)` (or already grey `(H, W)`); flow is float32 `(H, W, 2)` in px, x then y, from `prev` to `next`
(`prev(y, x) ~ next(y + v, x + u)`).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import cv2
import numpy as np

__all__ = [
    "DIS_TUNED",
    "METHODS",
    "FlowEstimator",
    "compute_flow",
]

METHODS = ("dis", "tvl1", "farneback", "raft")

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# DIS (Kroeger et al., ECCV 2016) settings chosen with benchmarks/flow.py (FlyingChairs pairs + real frames
# warped by known fields) to beat TV-L1's end-point error at >= 200x its speed per core.
DIS_TUNED = {
    "preset": "medium",
    "finest_scale": 1,
    "patch_size": 8,
    "patch_stride": 4,
    "gd_iterations": 25,
    "var_iterations": 5,
    "var_alpha": 20.0,
    "var_delta": 5.0,
    "var_gamma": 10.0,
    "mean_normalization": True,
    "spatial_propagation": True,
}


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"frames must be (H, W, 3) RGB or (H, W) grey, got shape {frame.shape}")


def _make_dis(preset: str = "medium", **opts):
    if preset not in _DIS_PRESETS:
        raise ValueError(f"DIS preset must be one of {sorted(_DIS_PRESETS)}, got {preset!r}")
    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    setters = {
        "finest_scale": dis.setFinestScale,
        "patch_size": dis.setPatchSize,
        "patch_stride": dis.setPatchStride,
        "gd_iterations": dis.setGradientDescentIterations,
        "var_iterations": dis.setVariationalRefinementIterations,
        "var_alpha": dis.setVariationalRefinementAlpha,
        "var_delta": dis.setVariationalRefinementDelta,
        "var_gamma": dis.setVariationalRefinementGamma,
        "mean_normalization": dis.setUseMeanNormalization,
        "spatial_propagation": dis.setUseSpatialPropagation,
    }
    for key, value in opts.items():
        if key not in setters:
            raise ValueError(f"unknown DIS option {key!r}; allowed: preset, {', '.join(setters)}")
        setters[key](value)
    return dis


def _make_tvl1(**opts):
    if not hasattr(cv2, "optflow"):
        raise RuntimeError("method 'tvl1' needs OpenCV contrib (pip install opencv-contrib-python-headless)")
    return cv2.optflow.DualTVL1OpticalFlow_create(**opts)


_FARNEBACK = dict(pyr_scale=0.5, levels=5, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


class FlowEstimator:
    """Reusable flow backend for one method; call it with `(prev, next)` uint8 frames.

    Args:
        method: "dis" (default; tuned DIS, `DIS_TUNED`), "tvl1" (OpenCV contrib Dual TV-L1, the two-stream
            papers' flow), "farneback", or "raft" (torchvision RAFT).
        **opts: backend options. dis: `preset` ("ultrafast" | "fast" | "medium") and the keys of `DIS_TUNED`
            (given options override the tuned ones; `preset=` alone gives the plain OpenCV preset);
            tvl1: `cv2.optflow.DualTVL1OpticalFlow_create` keyword arguments; farneback:
            `cv2.calcOpticalFlowFarneback` keyword arguments; raft: see `vidrec.flow.raft.RaftFlow`.
    """

    def __init__(self, method: str = "dis", **opts: Any) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        self.opts = dict(opts)
        # OpenCV's DIS and TV-L1 objects keep per-call state: one per thread that calls (`_backend`)
        self._local = threading.local()
        if method == "dis":
            dis_opts = opts if "preset" in opts else {**DIS_TUNED, **opts}
            self._make = functools.partial(_make_dis, **dis_opts)
        elif method == "tvl1":
            self._make = functools.partial(_make_tvl1, **opts)
        if method in ("dis", "tvl1"):
            self._local.impl = self._make()  # built now: a bad option fails here, not at the first frame
        elif method == "farneback":
            self._farneback = {**_FARNEBACK, **opts}
        else:
            from vidrec.flow.raft import RaftFlow

            self._impl = RaftFlow(**opts)

    def __call__(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:  # noqa: A002 - mirrors the papers
        """Flow from `prev` to `next`, float32 `(H, W, 2)`."""
        if np.shape(prev)[:2] != np.shape(next)[:2]:
            raise ValueError(f"frame sizes differ: {np.shape(prev)} vs {np.shape(next)}")
        if self.method == "raft":
            return self._impl(prev, next)
        a, b = _grey(prev), _grey(next)
        if self.method == "farneback":
            flow = cv2.calcOpticalFlowFarneback(a, b, None, **self._farneback)
        else:
            flow = self._backend().calc(a, b, None)
        return np.ascontiguousarray(flow, dtype=np.float32)

    def _backend(self):
        """This thread's OpenCV flow object (made on its first call)."""
        impl = getattr(self._local, "impl", None)
        if impl is None:
            impl = self._local.impl = self._make()
        return impl


def compute_flow(prev: np.ndarray, next: np.ndarray, method: str = "dis", **opts) -> np.ndarray:  # noqa: A002
    """One-shot flow from `prev` to `next` (uint8 RGB `(H, W, 3)`): float32 `(H, W, 2)` px."""
    return FlowEstimator(method, **opts)(prev, next)
