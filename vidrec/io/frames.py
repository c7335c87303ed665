"""Frame folders as written by extraction tools (mmaction2 / denseflow layouts).

RGB frames are `img_00001.jpg, img_00002.jpg, ...` (1-based file numbers); optical flow is stored as
pairs of 8-bit grey images, `x_00001.jpg`/`y_00001.jpg` ("xy") or `flow_x_00001.jpg`/`flow_y_00001.jpg`
("flow_xy"), flow clipped to a bound and mapped to 0..255. Indices passed here are 0-based.
JPEGs are decoded with OpenCV (libjpeg-turbo).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vidrec.io.errors import VideoDecodeError

__all__ = ["FLOW_LAYOUTS", "count_frames", "read_flow_folder", "read_rgb_folder"]

# layout -> (x template, y template)
FLOW_LAYOUTS = {
    "xy": ("x_{:05d}.jpg", "y_{:05d}.jpg"),
    "flow_xy": ("flow_x_{:05d}.jpg", "flow_y_{:05d}.jpg"),
}


def read_rgb_folder(
    folder: str | os.PathLike, indices: Sequence[int], *, tmpl: str = "img_{:05d}.jpg"
) -> np.ndarray:
    """Read frames `indices` (0-based; file `i` is `tmpl.format(i + 1)`) as uint8 RGB `(N, H, W, 3)`."""
    frames = [_read_image(Path(folder), tmpl, i, cv2.IMREAD_COLOR_RGB) for i in _as_list(indices)]
    return _stack(frames, folder, channels=3)


def read_flow_folder(folder: str | os.PathLike, indices: Sequence[int], *, layout: str = "xy") -> np.ndarray:
    """Read flow frames `indices` (0-based) as quantised uint8 `(N, H, W, 2)`, x then y.

    Args:
        folder: a folder of flow JPEGs.
        indices: 0-based flow frame indices (flow `i` is from frame `i` to `i + 1`).
        layout: "xy" (`x_00001.jpg`) or "flow_xy" (`flow_x_00001.jpg`).
    """
    if layout not in FLOW_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(FLOW_LAYOUTS)}, got {layout!r}")
    tmpl_x, tmpl_y = FLOW_LAYOUTS[layout]
    folder = Path(folder)
    frames = [
        np.stack(
            [
                _read_image(folder, tmpl_x, i, cv2.IMREAD_GRAYSCALE),
                _read_image(folder, tmpl_y, i, cv2.IMREAD_GRAYSCALE),
            ],
            axis=-1,
        )
        for i in _as_list(indices)
    ]
    return _stack(frames, folder, channels=2)


def count_frames(folder: str | os.PathLike, tmpl: str = "img_{:05d}.jpg") -> int:
    """Number of files in `folder` named like `tmpl` (a prefix, a `{...}` number field, a suffix)."""
    prefix, rest = tmpl.split("{", 1)
    suffix = rest.split("}", 1)[1]
    try:
        names = os.listdir(folder)
    except OSError as e:
        raise VideoDecodeError(folder, f"cannot list the frame folder ({e.strerror})") from e
    return sum(
        1
        for n in names
        if n.startswith(prefix) and n.endswith(suffix) and n[len(prefix) : len(n) - len(suffix)].isdigit()
    )


def _as_list(indices: Sequence[int]) -> list[int]:
    out = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
    if any(i < 0 for i in out):
        raise IndexError(f"frame indices must be >= 0 (0-based), got {[i for i in out if i < 0][:5]}")
    return out


def _read_image(folder: Path, tmpl: str, index: int, flags: int) -> np.ndarray:
    path = folder / tmpl.format(index + 1)
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    if data is None:
        n = count_frames(folder, tmpl) if folder.is_dir() else 0
        raise VideoDecodeError(path, f"missing frame {index} (0-based); the folder has {n} files like {tmpl}")
    image = cv2.imdecode(data, flags)
    if image is None:
        raise VideoDecodeError(path, "not a readable image (corrupt or truncated JPEG/PNG)")
    return image


def _stack(frames: list[np.ndarray], folder, *, channels: int) -> np.ndarray:
    if not frames:
        return np.zeros((0, 0, 0, channels), np.uint8)
    if len({f.shape for f in frames}) > 1:
        raise VideoDecodeError(folder, f"frames differ in size: {sorted({f.shape for f in frames})}")
    return np.stack(frames)
