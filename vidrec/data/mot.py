"""Boxes in MOTChallenge format beside a video, and the frames + boxes datasets of the detect task.

A MOT ground-truth file (``gt.txt``) has one box per line, ``frame,id,left,top,width,height,conf[,...]``:
``frame`` is 1-based (frame f is decoded frame f - 1), the box is its top-left corner and size in pixels
of the video, and ``conf`` 0 marks an *ignore region* (a detection on it is neither a hit nor a false
positive; MOTChallenge's convention). Columns after ``conf`` (world coordinates, class, visibility) are
read past. `read_mot` checks every line:

- a line that is not 7+ numbers, a frame below 1 or a width / height that is not positive is an error
  naming the file and the line;
- a frame past the end of the video is an error naming the file and the line;
- a box reaching outside the frame is clipped to it and counted (`MotBoxes.clipped`); one wholly outside
  is dropped and counted (`MotBoxes.dropped`);
- a frame without lines, inside the frames a split uses, is a valid negative: no objects on it.

Frames are split in contiguous ranges (``"1-350"``, 1-based, inclusive: `parse_frames`), never at random:
neighbouring frames are nearly the same image.

`DetectFrames` / `DetectPairs` hold the frames of the ranges in memory at the working size (uint8) and
give items ``{"image" (3, H, W) uint8, "boxes" (N, 4) float32 x1 y1 x2 y2 in working pixels, "ignore"
(M, 4), "index" (0-based frame)}``; pairs add ``"key_image"`` and ``"offset"`` (current - key).
`collate_detect` stacks the images and keeps the boxes as lists.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "DetectFrames",
    "DetectPairs",
    "MotBoxes",
    "MotFormatError",
    "collate_detect",
    "find_gt",
    "load_frames",
    "parse_frames",
    "read_mot",
]

GT_NAMES = ("gt.txt", "gt/gt.txt")  # beside the video, or MOTChallenge's layout


class MotFormatError(ValueError):
    """A MOT ground-truth line that cannot be used; the message names the file and the line."""


@dataclass
class MotBoxes:
    """The boxes of a MOT file by 0-based frame: ``x1 y1 x2 y2`` float32 in pixels of the video.

    Attributes:
        path: the file read.
        size: (height, width) of the video the boxes were clipped to.
        boxes: frame -> `(N, 4)` boxes to detect (conf != 0).
        ignore: frame -> `(M, 4)` ignore regions (conf 0).
        clipped: boxes that reached outside the frame and were clipped to it.
        dropped: boxes wholly outside the frame (not kept).
        last_frame: the largest 0-based frame with a line (-1 for an empty file).
    """

    path: Path
    size: tuple[int, int]
    boxes: dict[int, np.ndarray] = field(default_factory=dict)
    ignore: dict[int, np.ndarray] = field(default_factory=dict)
    clipped: int = 0
    dropped: int = 0
    last_frame: int = -1

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(boxes `(N, 4)`, ignore regions `(M, 4)`) of 0-based frame `index`; empty arrays if none."""
        empty = np.zeros((0, 4), np.float32)
        return self.boxes.get(index, empty), self.ignore.get(index, empty)

    def count(self) -> int:
        return sum(len(b) for b in self.boxes.values())


def read_mot(path: str | Path, *, num_frames: int, height: int, width: int) -> MotBoxes:
    """Read a MOT ground-truth file for a video of `num_frames` frames of `height` x `width` pixels.

    Raises:
        MotFormatError: a bad line or a frame past the video, naming ``path:line``.
    """
    path = Path(path)
    out = MotBoxes(path, (height, width))
    keep: dict[int, list] = {}
    skip: dict[int, list] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                values = [float(v) for v in line.strip().split(",")]
            except ValueError:
                raise MotFormatError(
                    f"{where}: not comma-separated numbers ({line.strip()[:60]!r}); a MOT line is "
                    "frame,id,left,top,width,height,conf[,...]"
                ) from None
            if len(values) < 7:
                raise MotFormatError(
                    f"{where}: {len(values)} fields, a MOT line has at least 7 "
                    "(frame,id,left,top,width,height,conf)"
                )
            frame, _, left, top, w, h, conf = values[:7]
            if frame != int(frame) or frame < 1:
                raise MotFormatError(f"{where}: frame {values[0]:g} is not a 1-based frame number")
            if frame > num_frames:
                raise MotFormatError(
                    f"{where}: frame {int(frame)} is past the end of the video ({num_frames} frames); "
                    "is this the ground truth of another video?"
                )
            if not (w > 0 and h > 0):
                raise MotFormatError(f"{where}: box width and height must be positive, got {w:g} x {h:g}")
            x1, y1, x2, y2 = left, top, left + w, top + h
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
            if cx2 <= cx1 or cy2 <= cy1:
                out.dropped += 1
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                out.clipped += 1
            index = int(frame) - 1
            (keep if conf != 0 else skip).setdefault(index, []).append((cx1, cy1, cx2, cy2))
            out.last_frame = max(out.last_frame, index)
    out.boxes = {k: np.asarray(v, np.float32) for k, v in keep.items()}
    out.ignore = {k: np.asarray(v, np.float32) for k, v in skip.items()}
    return out


def find_gt(video: str | Path) -> Path | None:
    """The ground-truth file beside a video or frame folder: ``gt.txt`` or ``gt/gt.txt`` in its folder
    (a frame folder's own folder first)."""
    video = Path(video)
    folders = [video, video.parent] if video.is_dir() else [video.parent]
    for folder in folders:
        for name in GT_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def parse_frames(spec: str, *, num_frames: int, what: str = "frames") -> range:
    """``"A-B"`` (1-based, inclusive) -> the 0-based `range(A - 1, B)`; an error names `what`."""
    try:
        a, b = (int(v) for v in str(spec).split("-"))
    except ValueError:
        raise ValueError(f"{what}: expected a frame range A-B (1-based, inclusive), got {spec!r}") from None
    if not 1 <= a <= b:
        raise ValueError(f"{what}: {spec!r} must satisfy 1 <= A <= B")
    if b > num_frames:
        raise ValueError(f"{what}: {spec!r} reaches past the end of the video ({num_frames} frames)")
    return range(a - 1, b)


def load_frames(video: str | Path, frames: range, size: tuple[int, int]) -> np.ndarray:
    """Frames `frames` (0-based, contiguous) of a video or a frame folder (images sorted by name), resized to
    `size` = (H, W): `(T, H, W, 3)` uint8.

    A video is decoded from the start up to the last frame wanted, keeping only the frames asked for.
    """
    from vidrec.io import VideoReader

    h, w = size
    out = np.empty((len(frames), h, w, 3), np.uint8)
    got = 0
    if Path(video).is_dir():  # a frame folder, sorted by name
        files = sorted(p for p in Path(video).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for index in frames[: max(len(files) - frames.start, 0)]:
            frame = cv2.cvtColor(cv2.imread(str(files[index]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            out[index - frames.start] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            got += 1
    else:
        with VideoReader(video) as reader:
            for index, frame in enumerate(reader):
                if index >= frames.stop:
                    break
                if index >= frames.start:
                    out[index - frames.start] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
                    got += 1
    if got != len(frames):
        raise ValueError(f"video {video}: decoded {got} of the {len(frames)} frames asked for")
    return out


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))  # (3, H, W) uint8


class DetectFrames(Dataset):
    """The frames of `frames` (0-based range) with their boxes, at the working size of `images`.

    Args:
        images: `(T, H, W, 3)` uint8, frame `frames[i]` at row i (`load_frames`).
        frames: the 0-based frame range the images hold.
        gt: the boxes, in pixels of the video (scaled to the images here).
        flip: random horizontal flips (training).
        jitter: random zoom in ``[1 - jitter, 1 + jitter]`` about a random point, same size out (training).
    """

    def __init__(
        self, images: np.ndarray, frames: range, gt: MotBoxes, *, flip: bool = False, jitter: float = 0.0
    ) -> None:
        if len(images) != len(frames):
            raise ValueError(f"{len(images)} images for {len(frames)} frames")
        self.images, self.frames, self.gt = images, frames, gt
        self.flip, self.jitter = flip, jitter
        h, w = images.shape[1:3]
        self.scale = np.array([w / gt.size[1], h / gt.size[0]] * 2, np.float32)  # video px -> working px

    def __len__(self) -> int:
        return len(self.frames)

    def boxes(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(boxes, ignore) of 0-based frame `index` in working pixels."""
        boxes, ignore = self.gt.frame(index)
        return boxes * self.scale, ignore * self.scale

    def _augment(self, images: list[np.ndarray], boxes: list[np.ndarray], rng: random.Random):
        """The same flip / zoom applied to every image of an item (a pair moves together)."""
        h, w = images[0].shape[:2]
        if self.flip and rng.random() < 0.5:
            images = [im[:, ::-1] for im in images]
            boxes = [np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1) for b in boxes]
        if self.jitter > 0:
            s = rng.uniform(1 - self.jitter, 1 + self.jitter)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            m = np.array([[s, 0, cx * (1 - s)], [0, s, cy * (1 - s)]], np.float32)  # zoom about (cx, cy)
            images = [
                cv2.warpAffine(np.ascontiguousarray(im), m, (w, h), borderMode=cv2.BORDER_REFLECT)
                for im in images
            ]
            boxes = [_zoom_boxes(b, s, cx, cy, w, h) for b in boxes]
        return images, boxes

    def item(self, index: int, key_index: int | None = None, rng: random.Random | None = None) -> dict:
        rng = rng or random
        frame = self.frames[index]
        boxes, ignore = self.boxes(frame)
        images = [self.images[index]]
        if key_index is not None:
            images.append(self.images[key_index])
        images, (boxes, ignore) = self._augment(images, [boxes, ignore], rng)
        out = {
            "image": _chw(images[0]),
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)).reshape(-1, 4),
            "ignore": torch.from_numpy(np.ascontiguousarray(ignore, np.float32)).reshape(-1, 4),
            "index": frame,
        }
        if key_index is not None:
            out["key_image"] = _chw(images[1])
            out["offset"] = index - key_index
        return out

    def __getitem__(self, index: int) -> dict:
        return self.item(index)


class DetectPairs(DetectFrames):
    """(key, current) pairs: the current frame i and a key frame i - U{0..max_offset} inside the range.

    With `seed` the draws are fixed (validation: the same pairs every epoch), else random per item.
    """

    def __init__(self, *args, max_offset: int = 9, seed: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_offset, self.seed = max_offset, seed

    def __getitem__(self, index: int) -> dict:
        rng = random.Random(self.seed * 100003 + index) if self.seed is not None else random
        key = max(index - rng.randint(0, self.max_offset), 0)
        return self.item(index, key, rng)


def _zoom_boxes(b: np.ndarray, s: float, cx: float, cy: float, w: int, h: int) -> np.ndarray:
    """Boxes zoomed by `s` about (cx, cy), clipped to the image; boxes left with under half their
    area inside are dropped (the zoom pushed them out)."""
    if len(b) == 0:
        return b
    z = b.copy()
    z[:, [0, 2]] = b[:, [0, 2]] * s + cx * (1 - s)
    z[:, [1, 3]] = b[:, [1, 3]] * s + cy * (1 - s)
    c = z.copy()
    c[:, [0, 2]] = c[:, [0, 2]].clip(0, w)
    c[:, [1, 3]] = c[:, [1, 3]].clip(0, h)
    area = lambda x: (x[:, 2] - x[:, 0]).clip(0) * (x[:, 3] - x[:, 1]).clip(0)  # noqa: E731
    return c[area(c) >= 0.5 * area(z)]


def collate_detect(batch: list[dict]) -> dict:
    """Images (and key images, offsets) stacked; boxes, ignore regions and frame numbers as lists."""
    out = {
        "image": torch.stack([b["image"] for b in batch]),
        "boxes": [b["boxes"] for b in batch],
        "ignore": [b["ignore"] for b in batch],
        "index": [int(b["index"]) for b in batch],
        "skipped": [],
    }
    if batch and "key_image" in batch[0]:
        out["key_image"] = torch.stack([b["key_image"] for b in batch])
        out["offset"] = torch.tensor([int(b["offset"]) for b in batch])
    return out
