"""Face landmarks: 300VW `.pts` files, videos with per-frame points, face crops and clips of T frames.

Formats
- 300VW / iBUG `.pts`: ``version: 1``, ``n_points: 68``, ``{``, one ``x y`` line per point, ``}``;
  `read_pts` / `write_pts` round-trip the values exactly (shortest repr of each float).
- A video with ``<video stem>.landmarks.json`` beside it: ``landmarks`` holds one entry per decoded frame
  (PyAV decode order): null, or 68 ``[x, y]`` pairs in 0-based pixels; ``boxes`` (optional) one
  ``[left, top, right, bottom]`` per frame. Frames are decoded with `vidrec.io`. `load_tracks` leaves out
  (with a line naming both counts) a video whose list is longer or shorter than its frames; a frame with a
  NaN coordinate counts as a frame without points.

Crops: a square box around a frame's points (their bounding box's centre, side = ``margin`` x its longer
side) or, with ``box="detector"``, around the face detector's rectangle stored in the json (``boxes``: a
box that does not move with the mouth or the jaw, as a detector's box at test time), jittered in training
by one scale and shift drawn per clip, cut and resized to ``size`` pixels with OpenCV. The crop's points
are the image points mapped by the same box (`Box.to_crop`), so points and pixels always agree;
`Box.to_image` maps predictions back to image pixels.

Split (`split_tracks`): by video when there are two or more (the last ``val_fraction`` of them in sorted
name order are validation); one video -- or every video, with ``by="blocks"`` -- is cut into a leading
training block and a trailing validation block with a gap of one clip length between them, so no training
clip overlaps a validation frame.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vidrec.cli import UsageError

NUM_POINTS = 68


class LandmarksError(UsageError, ValueError):
    """A landmark file that does not fit its video, or videos that give no clip; the message names them."""


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


# ----------------------------------------------------------------------------- .pts files


def read_pts(path: str | Path) -> np.ndarray:
    """Points `(N, 2)` float64 of a 300VW / iBUG ``.pts`` file; a malformed file raises ValueError."""
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    try:
        n = int(next(ln for ln in lines if ln.startswith("n_points")).split(":")[1])
        start = lines.index("{") + 1
        rows = [[float(v) for v in ln.split()] for ln in lines[start : lines.index("}")]]
    except (StopIteration, ValueError, IndexError) as err:
        raise ValueError(
            f"{path}: not a .pts landmark file ({err}); expected n_points: N and {{ x y ... }}"
        ) from err
    points = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    if len(points) != n:
        raise ValueError(f"{path}: n_points says {n} but the file holds {len(points)} points")
    return points


def _number(v: float) -> str:
    """Shortest text that reads back as exactly `v` (``778`` for 778.0, as 300VW writes integers)."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def write_pts(path: str | Path, points: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write points `(N, 2)` as a ``.pts`` file, atomically; an existing file is kept unless `overwrite`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    body = "\n".join(f"{_number(x)} {_number(y)}" for x, y in pts)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n")
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- videos with landmarks


@dataclass
class FaceTrack:
    """One video's landmarks: `points` `(F, 68, 2)` float32 image pixels (NaN where a frame has none),
    `boxes` `(F, 4)` or None, and the frames `[first, end)` of the video this track covers."""

    video: Path
    points: np.ndarray
    boxes: np.ndarray | None = None
    fps: float = 25.0
    first: int = 0
    nan_frames: int = 0  # frames whose entry held NaN coordinates (kept as frames without points)

    def __len__(self) -> int:
        return len(self.points)


def landmarks_file(video: str | Path) -> Path:
    """``<stem>.landmarks.json`` beside `video`."""
    video = Path(video)
    return video.with_name(video.stem + ".landmarks.json")


def read_track(video: str | Path, *, num_frames: int | None = None) -> FaceTrack:
    """The `FaceTrack` of `video` from its ``.landmarks.json`` (which must exist).

    A frame with any NaN coordinate becomes a frame without points (all NaN), counted in `nan_frames`.
    With `num_frames` (the video's frame count), a list of another length raises `LandmarksError`.
    """
    video, path = Path(video), landmarks_file(video)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: every video needs its <stem>.landmarks.json beside it")
    data = json.loads(path.read_text())
    if "landmarks" not in data:
        raise ValueError(f"{path}: no 'landmarks' list (one entry per frame: null or 68 [x, y] pairs)")
    entries = data["landmarks"]
    if num_frames is not None and len(entries) != num_frames:
        raise LandmarksError(
            f"{path}: {len(entries)} landmark entries for the {num_frames} frames of {video.name}; it needs "
            "one entry (null or 68 [x, y] pairs) per frame"
        )
    nan = np.full((NUM_POINTS, 2), np.nan, dtype=np.float32)
    try:
        frames = [
            nan if p is None else np.asarray(p, dtype=np.float32).reshape(NUM_POINTS, 2) for p in entries
        ]
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: an entry is neither null nor 68 [x, y] pairs ({err})") from None
    points = np.stack(frames) if frames else np.zeros((0, NUM_POINTS, 2), np.float32)
    had_nan = np.isnan(points).any(axis=(1, 2))
    partly = had_nan & ~np.array([p is None for p in entries], dtype=bool)
    points[had_nan] = np.nan  # a frame with a NaN point has no usable points
    boxes = np.asarray(data["boxes"], dtype=np.float32) if data.get("boxes") else None
    return FaceTrack(video, points, boxes, float(data.get("fps", 25.0)), nan_frames=int(partly.sum()))


def load_tracks(videos: list[Path], *, log: Callable[[str], None] | None = None) -> list[FaceTrack]:
    """The tracks of `videos`, each list checked against its video's frame count (`vidrec.io.probe`).

    A video that does not decode, or whose list is shorter or longer than its frames, is left out with a
    line naming it and the counts; a track with NaN coordinates gets a line saying how many frames that
    leaves out. `log` prints the lines (default: `RuntimeWarning`s). Raises `LandmarksError` when no
    video is left.
    """
    from vidrec.io import VideoDecodeError, probe

    say = log or (lambda m: warnings.warn(m, RuntimeWarning, stacklevel=3))
    tracks = []
    for video in videos:
        try:
            track = read_track(video, num_frames=probe(video).num_frames)
        except (LandmarksError, VideoDecodeError) as err:
            say(f"landmarks: skipping {video}: {err}")
            continue
        if track.nan_frames:
            say(f"landmarks: {landmarks_file(video)}: {track.nan_frames} of {len(track)} frames have NaN "
                "coordinates; they are left out of clips, like frames without points")  # fmt: skip
        tracks.append(track)
    if not tracks:
        raise LandmarksError(
            f"no usable video among {len(videos)} (each skipped above); fix the landmark files"
        )
    return tracks


def find_videos(root: str | Path) -> list[Path]:
    """Videos directly in `root` that have a ``.landmarks.json`` beside them, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of videos with <stem>.landmarks.json files")
    videos = sorted(
        p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and landmarks_file(p).is_file()
    )
    if not videos:
        raise FileNotFoundError(f"{root} holds no video with a <stem>.landmarks.json beside it")
    return videos


def split_tracks(
    tracks: list[FaceTrack], *, val_fraction: float, gap: int, by: str = "video"
) -> tuple[list[FaceTrack], list[FaceTrack]]:
    """(training, validation) tracks (module docstring).

    ``by="video"``: the last `val_fraction` of the videos in name order validate (one video: blocks);
    ``by="blocks"``: every video gives its leading frames to training and its last `val_fraction` of frames
    to validation, with `gap` frames left out between them so that no clip overlaps both.
    """
    if by not in ("video", "blocks"):
        raise ValueError(f"split by {by!r}: 'video' or 'blocks'")
    tracks = sorted(tracks, key=lambda t: t.video.name)
    if by == "video" and len(tracks) >= 2:
        n_val = min(len(tracks) - 1, max(1, round(len(tracks) * val_fraction)))
        return tracks[:-n_val], tracks[-n_val:]
    pairs = [_blocks(t, val_fraction=val_fraction, gap=gap) for t in tracks]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _blocks(track: FaceTrack, *, val_fraction: float, gap: int) -> tuple[FaceTrack, FaceTrack]:
    """A leading training block and a trailing validation block of one track, `gap` frames apart."""
    cut = len(track) - max(1, round(len(track) * val_fraction))
    end = cut - gap
    if end < 1:
        raise ValueError(
            f"{track.video}: {len(track)} frames are too few to split into blocks with a {gap}-frame gap"
        )

    def part(lo: int, hi: int) -> FaceTrack:
        boxes = None if track.boxes is None else track.boxes[lo:hi]
        return replace(track, points=track.points[lo:hi], boxes=boxes, first=track.first + lo)

    return part(0, end), part(cut, len(track))


# ----------------------------------------------------------------------------- face boxes and crops


@dataclass(frozen=True)
class Box:
    """A square face box: top-left corner `(x0, y0)` and `side`, in image pixels."""

    x0: float
    y0: float
    side: float

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Image pixels `(..., 2)` -> pixels of the `size` x `size` crop of this box."""
        return (points - np.array([self.x0, self.y0], dtype=np.float32)) * (size / self.side)

    def to_image(self, points: np.ndarray, size: int) -> np.ndarray:
        """Crop pixels `(..., 2)` -> image pixels (the inverse of `to_crop`)."""
        return points * (self.side / size) + np.array([self.x0, self.y0], dtype=np.float32)

    def moved(self, factor: float, dx: float, dy: float) -> Box:
        """This box scaled by `factor` about its centre and shifted by (dx, dy) x its side."""
        side = self.side * factor
        cx, cy = self.x0 + self.side * (0.5 + dx), self.y0 + self.side * (0.5 + dy)
        return Box(cx - side / 2, cy - side / 2, side)

    def array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.side], dtype=np.float32)


def box_from_points(points: np.ndarray, *, margin: float = 1.3) -> Box:
    """The square box centred on the bounding box of `points` `(N, 2)` (NaN ignored), side `margin` x its
    longer side."""
    lo, hi = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
    side = float(max(hi - lo)) * margin
    cx, cy = (lo + hi) / 2
    return Box(float(cx) - side / 2, float(cy) - side / 2, max(side, 1.0))


def box_from_rect(rect: np.ndarray, *, margin: float = 1.3) -> Box:
    """The square box centred on a detector rectangle ``[left, top, right, bottom]``, side `margin` x its
    longer side."""
    left, top, right, bottom = (float(v) for v in rect)
    side = max(right - left, bottom - top) * margin
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return Box(cx - side / 2, cy - side / 2, max(side, 1.0))


def face_boxes(
    track: FaceTrack, *, margin: float, source: str = "points", frames: range | None = None
) -> list[Box]:
    """One box per frame of `track` (or of its `frames`, track-relative): around its true points
    (``source="points"``) or around the detector rectangle stored with them (``"detector"``: the json's
    ``boxes``, independent of the points)."""
    frames = range(len(track)) if frames is None else frames
    if source == "detector":
        if track.boxes is None:
            raise ValueError(f"{landmarks_file(track.video)} has no 'boxes'; use the points' boxes instead")
        return [box_from_rect(track.boxes[k], margin=margin) for k in frames]
    return [box_from_points(track.points[k], margin=margin) for k in frames]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def draw_jitter(rng: np.random.Generator, *, scale: float, shift: float) -> tuple[float, float, float]:
    """(factor, dx, dy): a scale factor in ``[1 - scale, 1 + scale]`` and a shift in ``[-shift, shift]``
    box sides in x and y, uniform draws from `rng` (arguments of `Box.moved`)."""
    factor = 1.0 + float(rng.uniform(-scale, scale))
    dx, dy = (float(v) for v in rng.uniform(-shift, shift, size=2))
    return factor, dx, dy


def jitter_box(box: Box, *, scale: float, shift: float, rng: np.random.Generator) -> Box:
    """`box` with a random scale and shift (`draw_jitter`) about its centre."""
    return box.moved(*draw_jitter(rng, scale=scale, shift=shift))


def crop_face(frame: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The `box` of `frame` `(H, W, 3)` uint8 resized to `(size, size, 3)`; outside the image is black."""
    k = size / box.side
    affine = np.array([[k, 0, -box.x0 * k], [0, k, -box.y0 * k]], dtype=np.float64)  # image -> crop pixels
    return cv2.warpAffine(frame, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


# ----------------------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class CropSettings:
    """How clips are cut: `frames` per clip, crop `size`, box `margin`, training jitter (scale, shift)."""

    frames: int = 16
    size: int = 128
    margin: float = 1.3
    jitter_scale: float = 0.1
    jitter_shift: float = 0.05
    box: str = "points"  # "points": around the points' bounding box; "detector": the json's face rectangles
    versions: int = 0  # training: 0 = a fresh jitter per clip and epoch; N = N fixed jitters per track
    stride: int = 4  # training with `versions`: a clip starts every `stride` frames


class LandmarkClips(Dataset):
    """Clips of `settings.frames` consecutive frames with their face crops and points.

    Training (``train=True``): ``len = sum(frames // T)`` random clips per epoch (start and box jitter from
    an RNG seeded by (seed, epoch, index)); or, with ``settings.versions = N``, the same items every epoch:
    every clip starting each ``settings.stride`` frames, in N crop versions per track, version v with one
    fixed jitter drawn from (seed, track, v) -- deterministic items, so `vidrec.engine.feature_cache`
    computes a frozen trunk's features once for them (`input_key`, `item_meta`). Validation: every
    non-overlapping clip from frame 0, no jitter. Frames without points are never part of a clip.

    An item: ``rgb`` uint8 `(T, 3, S, S)`; ``points`` float32 `(T, 68, 2)` crop pixels; ``truth`` float32
    `(T, 68, 2)` image pixels; ``box`` float32 `(T, 3)` = (x0, y0, side) per frame; ``video`` the path;
    ``start`` the first frame's index in the video.
    """

    def __init__(
        self, tracks: list[FaceTrack], settings: CropSettings, *, train: bool, seed: int = 0
    ) -> None:
        self.tracks, self.settings, self.train, self.seed, self.epoch = tracks, settings, train, seed, 0
        if settings.box not in ("points", "detector"):
            raise ValueError(f"box={settings.box!r}: 'points' or 'detector'")
        if settings.box == "detector":
            for track in tracks:
                if track.boxes is None or len(track.boxes) != len(track):
                    raise LandmarksError(
                        f"{landmarks_file(track.video)} has no 'boxes' (one face rectangle per frame) for "
                        "task_options.box=detector; add them or use box=points"
                    )
        t = settings.frames
        self.starts = [self._starts(track, t) for track in tracks]
        # (track, start, version): start None = drawn per item; version None = no jitter, -1 = drawn per item
        if train and settings.versions > 0:
            stride = max(settings.stride, 1)
            self.index = [(i, s, v) for i, starts in enumerate(self.starts) for v in range(settings.versions)
                          for s in _disjoint(starts, stride)]  # fmt: skip
        elif train:
            per_track = [max(len(starts) // t, 1) if starts else 0 for starts in self.starts]
            self.index = [(i, None, -1) for i, n in enumerate(per_track) for _ in range(n)]
        else:
            self.index = [(i, s, None) for i, starts in enumerate(self.starts) for s in _disjoint(starts, t)]
        self.deterministic = not train or settings.versions > 0  # the same frames for an index every epoch
        self._digests: dict[Path, str] = {}

    @staticmethod
    def _starts(track: FaceTrack, t: int) -> list[int]:
        """Clip starts (track-relative) whose T frames all have points."""
        ok = ~np.isnan(track.points).any(axis=(1, 2))
        run = np.convolve(ok.astype(int), np.ones(t, dtype=int), mode="valid") if len(ok) >= t else []
        return [int(s) for s in np.flatnonzero(np.asarray(run) == t)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any] | Any:
        """The item (class docstring), or a `SkippedItem` naming the video when it cannot be decoded."""
        from vidrec.data.dataset import SkippedItem
        from vidrec.io import VideoDecodeError

        try:
            return self._item(index)
        except (VideoDecodeError, OSError) as err:
            path = str(self.tracks[self.index[index][0]].video)
            warnings.warn(f"skipping video {path}: {err}", RuntimeWarning, stacklevel=2)
            return SkippedItem(path, f"{type(err).__name__}: {err}")

    def _layout(self, index: int) -> tuple[FaceTrack, int, list[Box], tuple[float, float, float]]:
        """(track, track-relative start, the T crop boxes, the jitter) of item `index`, without decoding."""
        i, start, version = self.index[index]
        track, s = self.tracks[i], self.settings
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if start is None:
            start = int(rng.choice(self.starts[i]))
        jitter = (1.0, 0.0, 0.0)
        if version is not None:  # one jitter per clip: the same scale and shift on every frame's box
            if version >= 0:  # a fixed version of the track
                rng = np.random.default_rng([self.seed, i, version])
            jitter = draw_jitter(rng, scale=s.jitter_scale, shift=s.jitter_shift)
        boxes = [b.moved(*jitter) for b in face_boxes(track, margin=s.margin, source=s.box,
                                                       frames=range(start, start + s.frames))]  # fmt: skip
        return track, start, boxes, jitter

    def item_meta(self, index: int) -> dict[str, Any]:
        """The item without its ``rgb`` frames (cheap: no decoding)."""
        track, start, boxes, _ = self._layout(index)
        truth = track.points[start : start + self.settings.frames]  # (T, 68, 2)
        points = np.stack([b.to_crop(p, self.settings.size) for b, p in zip(boxes, truth, strict=True)])
        return {
            "points": torch.from_numpy(points.astype(np.float32)),
            "truth": torch.from_numpy(truth.astype(np.float32)),
            "box": torch.from_numpy(np.stack([b.array() for b in boxes])),
            "video": str(track.video),
            "start": track.first + start,
        }

    def input_key(self, index: int) -> str:
        """What item `index`'s crops depend on: the video file's bytes (hashed), its frames, the crop size and
        every frame's box (`vidrec.engine.feature_cache` keys the frozen features with it)."""
        track, start, boxes, _ = self._layout(index)
        if track.video not in self._digests:
            self._digests[track.video] = file_digest(track.video)
        first = track.first + start
        box_text = ";".join(",".join(f"{v:.4f}" for v in b.array()) for b in boxes)
        return (f"landmark crops v1 video={self._digests[track.video]} frames={first}+{self.settings.frames} "
                f"size={self.settings.size} boxes={box_text}")  # fmt: skip

    def _item(self, index: int) -> dict[str, Any]:
        from vidrec.io import read_frames

        item = self.item_meta(index)
        _, _, boxes, _ = self._layout(index)
        frames = read_frames(item["video"], [item["start"] + k for k in range(self.settings.frames)])
        crops = np.stack(
            [crop_face(f, b, self.settings.size) for f, b in zip(frames, boxes, strict=True)]
        )  # (T, S, S, 3)
        return {**item, "rgb": torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()}  # (T, 3, S, S)


def _disjoint(starts: list[int], t: int) -> list[int]:
    """Greedy non-overlapping clip starts from the earliest."""
    out: list[int] = []
    for s in starts:
        if not out or s >= out[-1] + t:
            out.append(s)
    return out


def inter_ocular(points: np.ndarray | torch.Tensor) -> Any:
    """Distance between the outer eye corners (iBUG points 36 and 45, 0-based) of `(..., 68, 2)` points."""
    return _norm(points[..., 36, :] - points[..., 45, :])


def inter_pupil(points: np.ndarray | torch.Tensor) -> Any:
    """Distance between the eye centres (means of points 36-41 and 42-47) of `(..., 68, 2)` points."""
    return _norm(points[..., 36:42, :].mean(-2) - points[..., 42:48, :].mean(-2))


def _norm(v: np.ndarray | torch.Tensor) -> Any:
    return torch.linalg.vector_norm(v, dim=-1) if isinstance(v, torch.Tensor) else np.linalg.norm(v, axis=-1)


__all__ = [
    "Box",
    "CropSettings",
    "FaceTrack",
    "LandmarkClips",
    "LandmarksError",
    "box_from_points",
    "crop_face",
    "find_videos",
    "inter_ocular",
    "inter_pupil",
    "draw_jitter",
    "face_boxes",
    "file_digest",
    "jitter_box",
    "landmarks_file",
    "load_tracks",
    "read_pts",
    "read_track",
    "split_tracks",
    "write_pts",
]
