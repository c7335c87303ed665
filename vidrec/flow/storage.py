"""Per-video flow files (`<id>.flow.npy` + `<id>.flow.json`), denseflow JPEG folders, and `flow_video`.

A `.flow.npy` holds uint8 `(N-1, H, W, 2)` (flow from frame i to i+1, x then y, `quantize`d with `bound`).
Writes are atomic: data goes to a temp file that `os.replace` renames, and the JSON is written last, so
an output is complete exactly when its JSON exists and describes the data beside it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from vidrec.flow.estimators import FlowEstimator
from vidrec.flow.quantize import DEFAULT_BOUND, quantize

__all__ = [
    "FORMAT_VERSION",
    "flow_meta",
    "flow_paths",
    "flow_video",
    "is_complete",
    "load_flow",
    "remove_stale_temps",
    "save_flow",
    "save_flow_denseflow",
]

FORMAT_VERSION = 1


def flow_paths(out: str | os.PathLike, video_id: str) -> tuple[Path, Path]:
    """`(<out>/<video_id>.flow.npy, <out>/<video_id>.flow.json)`."""
    base = Path(out) / video_id
    return base.with_name(base.name + ".flow.npy"), base.with_name(base.name + ".flow.json")


def _base(path: str | os.PathLike) -> Path:
    """Accept `<id>.flow.npy`, `<id>.flow.json` or `<id>` and return `<id>`."""
    path = Path(path)
    for suffix in (".flow.npy", ".flow.json"):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def _tmp(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def _atomic_json(path: Path, meta: dict) -> None:
    tmp = _tmp(path)
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _meta(q: np.ndarray, *, bound: float, method: str, fps: float, fmt: str) -> dict:
    n, h, w = q.shape[:3]
    return {"bound": float(bound), "method": method, "height": h, "width": w, "num_frames": n + 1,
            "fps": float(fps), "version": FORMAT_VERSION, "format": fmt}  # fmt: skip


def save_flow(
    out: str | os.PathLike, video_id: str, q: np.ndarray, *, bound: float, method: str, fps: float
) -> Path:
    """Atomically write quantised flow `q` uint8 `(N-1, H, W, 2)` and its JSON; returns the `.npy` path."""
    if q.dtype != np.uint8 or q.ndim != 4 or q.shape[-1] != 2:
        raise ValueError(f"flow for {video_id!r} must be uint8 (N-1, H, W, 2), got {q.dtype} {q.shape}")
    npy, js = flow_paths(out, video_id)
    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(npy)
    with open(tmp, "wb") as f:
        np.save(f, q)
    os.replace(tmp, npy)
    _atomic_json(js, _meta(q, bound=bound, method=method, fps=fps, fmt="npy"))
    return npy


def save_flow_denseflow(
    out: str | os.PathLike, video_id: str, q: np.ndarray, *, bound: float, method: str, fps: float
) -> Path:
    """Write `q` as denseflow's `<out>/<video_id>/x_00001.jpg`, `y_00001.jpg`, ... (then the JSON beside it).

    The folder is filled under a temp name and renamed into place. JPEG is lossy: read back codes differ
    from `q` by a few levels, exactly as with denseflow's own output.
    """
    folder = Path(out) / video_id
    tmp = _tmp(folder)
    tmp.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(q, start=1):
        for axis, name in enumerate(("x", "y")):
            path = tmp / f"{name}_{i:05d}.jpg"
            if not cv2.imwrite(str(path), np.ascontiguousarray(frame[..., axis])):
                raise OSError(f"could not write {path} (disk full or not writable?)")
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)
    _atomic_json(flow_paths(out, video_id)[1], _meta(q, bound=bound, method=method, fps=fps, fmt="denseflow"))
    return folder


def flow_meta(path: str | os.PathLike) -> dict:
    """The JSON beside a flow file (`path` is `<id>.flow.npy`, `<id>.flow.json` or `<id>`)."""
    js = _base(path).with_name(_base(path).name + ".flow.json")
    try:
        return json.loads(js.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{js}: no flow metadata; extract the flow with `vidrec flow`") from e


def load_flow(path: str | os.PathLike, indices: Sequence[int] | slice | None = None) -> np.ndarray:
    """Read flow frames `indices` (0-based, any order) as uint8 `(len(indices), H, W, 2)`, memory-mapped."""
    base = _base(path)
    npy = base.with_name(base.name + ".flow.npy")
    try:
        data = np.load(npy, mmap_mode="r")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{npy}: no flow file; extract it with `vidrec flow`") from e
    if indices is None:
        return np.asarray(data)
    if not isinstance(indices, slice):
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < -len(data) or indices.max() >= len(data)):
            raise IndexError(f"{npy}: flow indices must be in [0, {len(data)}), got {indices.tolist()}")
    return np.ascontiguousarray(data[indices])


def is_complete(
    out: str | os.PathLike, video_id: str, *, bound: float | None = None, method: str | None = None
) -> bool:
    """True when the JSON exists, matches `bound`/`method` if given, and describes the data beside it."""
    npy, js = flow_paths(out, video_id)
    try:
        meta = json.loads(js.read_text())
        if (bound is not None and meta["bound"] != float(bound)) or (
            method is not None and meta["method"] != method
        ):
            return False
        n, h, w = meta["num_frames"] - 1, meta["height"], meta["width"]
        if meta.get("format", "npy") == "denseflow":
            return (Path(out) / video_id / f"y_{n:05d}.jpg").is_file()
        return np.load(npy, mmap_mode="r").shape == (n, h, w, 2)
    except (OSError, ValueError, KeyError, TypeError, EOFError):  # EOFError: a 0-byte .npy
        return False


def remove_stale_temps(out: str | os.PathLike, video_id: str) -> None:
    """Delete temp files a killed run left for `video_id` (call only for videos this process owns)."""
    base = Path(out) / video_id
    # exactly this video's temps (`_tmp` names): not those of another video whose id starts the same
    own = re.compile(re.escape(base.name) + r"(\.flow\.npy|\.flow\.json)?\.\d+\.tmp")
    if base.parent.is_dir():
        for tmp in base.parent.iterdir():
            if not own.fullmatch(tmp.name):
                continue
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def flow_video(
    path: str | os.PathLike,
    method: str = "dis",
    *,
    short_side: int | None = 256,
    bound: float = DEFAULT_BOUND,
    estimator: FlowEstimator | None = None,
    on_frame: Callable[[], None] | None = None,
) -> np.ndarray:
    """Flow between consecutive frames of a video, quantised: uint8 `(N-1, H, W, 2)`.

    Args:
        path: video file (decoded with `vidrec.io.VideoReader`).
        method: flow method (ignored when `estimator` is given).
        short_side: resize frames to this short side before the flow (None or 0: native size).
        bound: quantisation bound in px.
        estimator: a reusable `FlowEstimator` (one per worker).
        on_frame: called after each flow frame (progress bars).

    Raises:
        VideoDecodeError: unreadable video, or fewer than 2 frames.
    """
    from vidrec.io import VideoDecodeError, VideoReader

    est = estimator or FlowEstimator(method)
    out, prev = [], None
    with VideoReader(path, size=short_side or None, threads=1) as reader:
        for frame in reader:
            if prev is not None:
                out.append(quantize(est(prev, frame), bound))
                if on_frame:
                    on_frame()
            prev = frame
    if not out:
        raise VideoDecodeError(path, "flow needs at least 2 frames")
    return np.stack(out)  # (N-1, H, W, 2)
