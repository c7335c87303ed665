"""A generated annotated video: bright rectangles moving over a textured background, with its MOT gt.txt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (id, left, top, width, height, dx, dy) at frame 1; each box moves dx, dy pixels a frame
OBJECTS = ((1, 10, 12, 14, 30, 2, 0), (2, 80, 40, 12, 28, -1, 1))


def boxes_at(frame: int) -> list[tuple[int, float, float, float, float]]:
    """(id, left, top, width, height) of each object on 1-based `frame`."""
    return [(i, x + dx * (frame - 1), y + dy * (frame - 1), w, h) for i, x, y, w, h, dx, dy in OBJECTS]


def render(frame: int, height: int = 96, width: int = 128) -> np.ndarray:
    """uint8 RGB `(H, W, 3)`: a fixed noise texture with the objects of `frame` drawn in."""
    rng = np.random.default_rng(0)
    img = (rng.integers(40, 90, (height, width, 3))).astype(np.uint8)
    for _i, x, y, w, h in boxes_at(frame):
        img[int(y) : int(y + h), int(x) : int(x + w)] = (230, 200, 60)
    return img


def write_video_with_gt(folder: Path, frames: int = 24, *, height: int = 96, width: int = 128) -> Path:
    """`folder/clip.mp4` (`frames` frames) and `folder/gt.txt` with the boxes of every frame; the video."""
    from vidrec.io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    video = write_video(
        folder / "clip.mp4", np.stack([render(f, height, width) for f in range(1, frames + 1)]), 10.0, crf=0
    )
    lines = [
        f"{f},{i},{x:g},{y:g},{w:g},{h:g},1,-1,-1,-1"
        for f in range(1, frames + 1)
        for i, x, y, w, h in boxes_at(f)
    ]
    (folder / "gt.txt").write_text("\n".join(lines) + "\n")
    return video
