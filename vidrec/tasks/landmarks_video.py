"""Landmarks on any video: what `vidrec predict` does with a task=landmarks checkpoint.

The video is read in windows of the training clip length (``data.frames``). For each window a face
detector (`vidrec.data.face_detect`) searches every frame; the window's frames are all cropped with one
box in the training data's convention (a square around the points' bounding box, side ``margin`` x its
longer side), tracked from window to window (median of the window's detections, smoothed with the
previous box; a window without a face keeps the previous box). The crops go through the model as one clip
(a fresh state per window) and the points are mapped back to frame pixels through the box.

Frames where the detector found no face are reported: one summary line, and per frame in the points file
(``face``: true or false, ``no_face``: their numbers). Before the first face is found the box is the first
annotated frame's of ``<stem>.landmarks.json`` beside the video when there is one, else the centred square
of the frame's short side. Without a detector (``--detector none``) every window after the first is cropped
around the previous window's last predicted points instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidrec.data.face_detect import BoxTracker, crop_box, frame_ranges
from vidrec.data.landmarks import Box, CropSettings, crop_face, landmarks_file, read_track


@dataclass
class WindowPoints:
    """One window's prediction: its first frame's number, its frames `(t, H, W, 3)`, the points `(t, 68, 2)`
    in frame pixels, the crop box of all its frames, and per frame the detector's rectangle ``[left, top,
    right, bottom]`` or None for no face (`rects` is None without a detector)."""

    start: int
    frames: np.ndarray
    points: np.ndarray
    box: Box
    rects: list[np.ndarray | None] | None


def first_box(video: Path, margin: float, height: int, width: int, convention: str = "points") -> Box:
    """The box before any face is found: the first annotated frame's points of ``<stem>.landmarks.json``
    when it exists, else the centred square of the frame's short side (a face-centred video)."""
    if landmarks_file(video).is_file():
        points = read_track(video).points
        ok = np.flatnonzero(~np.isnan(points).any(axis=(1, 2)))
        if len(ok):
            return crop_box(points[ok[0]], margin=margin, convention=convention)
    side = float(min(height, width))
    return Box((width - side) / 2, (height - side) / 2, side)


def windows(video: Path, frames: int) -> Iterator[np.ndarray]:
    """`frames`-frame windows `(t, H, W, 3)` of `video`, decoded once in order (the last may be shorter)."""
    from vidrec.io import VideoReader

    window: list[np.ndarray] = []
    with VideoReader(video) as reader:
        for rgb in reader:
            window.append(rgb)
            if len(window) == frames:
                yield np.stack(window)
                window = []
    if window:
        yield np.stack(window)


PointsOf = Callable[[torch.Tensor], torch.Tensor]  # uint8 crops (1, t, 3, S, S) -> (1, t, 68, 2) centred


@torch.no_grad()
def predict_window(points_of: PointsOf, frames: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Points `(t, 68, 2)` in frame pixels of frames `(t, H, W, 3)`, all cropped with `box` to `size`;
    `points_of` is the model on uint8 crops, giving centred crop units (``points / size - 0.5``)."""
    crops = np.stack([crop_face(f, box, size) for f in frames])  # (t, S, S, 3)
    rgb = torch.from_numpy(crops).permute(0, 3, 1, 2)[None]  # (1, t, 3, S, S)
    pred = points_of(rgb)[0].float().cpu().numpy()  # (t, 68, 2) centred crop units
    return (pred + 0.5) * box.side + np.array([box.x0, box.y0], dtype=np.float32)


def track_windows(
    points_of: PointsOf,
    video: Path,
    crop: CropSettings,
    *,
    tracker: BoxTracker | None,
    progress: bool = False,
) -> Iterator[WindowPoints]:
    """Every window of `video` with its predicted points, in order (module docstring)."""
    from vidrec.io import probe
    from vidrec.progress import progress as bar

    meta = probe(video)
    fallback = box = first_box(video, crop.margin, meta.height, meta.width, crop.box)
    total = math.ceil(meta.num_frames / crop.frames)
    start = 0
    for frames in bar(windows(video, crop.frames), total=total, desc="landmarks", disable=not progress):
        rects = None
        if tracker is not None:
            found = tracker.window(frames)
            box, rects = found.box or fallback, found.rects
        points = predict_window(points_of, frames, box, crop.size)
        yield WindowPoints(start, frames, points, box, rects)
        start += len(frames)
        if tracker is None:  # no detector: follow the face by the points just predicted
            box = crop_box(points[-1], margin=crop.margin, convention=crop.box)


def landmarks_on_video(
    points_of: PointsOf,
    video: Path,
    crop: CropSettings,
    *,
    points_file: Path,
    overlay: Path | None,
    tracker: BoxTracker | None,
    detector: str,
    progress: bool = False,
) -> str:
    """Track the face through `video`, write the points to `points_file` (JSON, atomically) and, when
    `overlay` is given, the video with the points and the crop box drawn (green: a face was found in that
    frame, red: none was); returns the summary line. `points_of`: the model (`predict_window`)."""
    from vidrec.io import VideoWriter, probe

    points, rects, boxes = [], [], []
    writer = VideoWriter(overlay, probe(video).fps or 25.0) if overlay is not None else nullcontext()
    with writer:
        for w in track_windows(points_of, video, crop, tracker=tracker, progress=progress):
            window_rects = w.rects if w.rects is not None else [None] * len(w.frames)
            for frame, p, rect in zip(w.frames, w.points, window_rects, strict=True):
                if overlay is not None:
                    box = None if tracker is None else (w.box, rect is not None)
                    writer.write(_even(draw_points(frame, p, box=box)))
            points.append(w.points)
            rects += window_rects
            boxes += [w.box.array()] * len(w.frames)
    points = np.concatenate(points)
    data = {
        "video": str(video),
        "points": "68 [x, y] frame pixels per frame (predicted by vidrec)",
        "detector": detector,
        "landmarks": np.round(points, 2).tolist(),
        "crop_boxes": np.round(np.stack(boxes), 2).tolist(),  # [x0, y0, side] each frame was cropped with
    }
    no_face = [i for i, r in enumerate(rects) if r is None] if tracker is not None else []
    if tracker is not None:
        data["face"] = [r is not None for r in rects]
        data["no_face"] = no_face
        data["face_rects"] = [None if r is None else np.round(r, 1).tolist() for r in rects]
    tmp = points_file.with_name(points_file.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(points_file)
    drawn = f"drew {len(points)} frames of 68 points -> {overlay} (points: {points_file})"
    line = drawn if overlay is not None else f"{len(points)} frames of 68 points -> {points_file}"
    return f"{line}; {no_face_line(no_face, len(points), detector)}"


def _even(frame: np.ndarray) -> np.ndarray:
    """`frame` padded with a black row / column to even sides (H.264 in 4:2:0 needs them)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0))) if h % 2 or w % 2 else frame


def no_face_line(no_face: list[int], frames: int, detector: str) -> str:
    """The summary of the frames without a face: how many, which, and what their points come from."""
    if detector == "none":
        return "no face detector: each window cropped around the previous window's points"
    if not no_face:
        return f"a face in every frame ({detector})"
    return (
        f"no face ({detector}) in {len(no_face)} of {frames} frames: {frame_ranges(no_face)} (their points "
        "come from the last box found, or the starting box before the first face)"
    )


def draw_points(
    frame: np.ndarray,
    points: np.ndarray,
    *,
    color: tuple[int, int, int] = (0, 255, 0),
    box: tuple[Box, bool] | None = None,
) -> np.ndarray:
    """A copy of `frame` `(H, W, 3)` uint8 RGB with each of `points` `(68, 2)` drawn as a dot, and `box`
    (the crop box, whether a face was found in this frame) as a green or red square."""
    import cv2

    out = np.ascontiguousarray(frame).copy()
    radius = max(1, round(min(frame.shape[:2]) / 160))
    if box is not None:
        b, found = box
        corners = (round(b.x0), round(b.y0)), (round(b.x0 + b.side), round(b.y0 + b.side))
        cv2.rectangle(out, *corners, (0, 200, 0) if found else (230, 0, 0), max(1, radius // 2))
    for x, y in points:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(out, (round(float(x)), round(float(y))), radius, color, -1, lineType=cv2.LINE_AA)
    return out
