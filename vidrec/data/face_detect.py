"""Finding the face in a frame and following its box from window to window (`vidrec predict` on landmarks).

Detectors (`get_detector`), all offline:
- ``haar``: OpenCV's frontal-face Haar cascade, the XML file that ships inside the opencv wheel
  (``cv2.data.haarcascades``); the default, no extra dependency;
- ``dlib``: dlib's HOG frontal face detector (``dlib.get_frontal_face_detector()``, built into dlib, no
  model file), with ``pip install vidrec[dlib]``;
- a fixed rectangle (`FixedBox`, ``--face-box``) for a face no detector finds.

A detector returns rectangles ``[left, top, right, bottom]`` in frame pixels; the largest is the face. A
detector's rectangle is not the box vidrec's landmarks data crops with (the square around the 68 points'
bounding box, side ``margin`` x its longer side, `vidrec.data.landmarks.box_from_points`): each detector
carries a `Calibration`, data measured by ``benchmarks/face_detectors.py``, that maps its rectangle to the
points' bounding box it usually holds, so a crop of a detected face looks like a crop of a training face.

Tracking (`BoxTracker`): every frame of a window is searched; the window's box is the median of its
frames' boxes, smoothed with the previous window's box; a window without any face keeps the previous box,
and its frames are reported as frames without a face.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from vidrec.data.landmarks import Box, box_from_points

DETECTORS = ("haar", "dlib")


@dataclass(frozen=True)
class Calibration:
    """Where a detector's rectangle puts the face's 68 points: the centre of their bounding box is the
    rectangle's centre plus (`dx`, `dy`) rectangle widths, and its longer side is `extent` widths."""

    dx: float = 0.0
    dy: float = 0.0
    extent: float = 1.0
    source: str = ""  # where the numbers were measured


# Measured by benchmarks/face_detectors.py on ../shared/data/faces_video (all 400 frames of 2 faces, dlib's
# 68 points): Haar dx 0.000 +- 0.048, dy 0.156 +- 0.013, extent 0.856 +- 0.026; dlib 0.004 +- 0.058,
# 0.089 +- 0.035, 0.995 +- 0.072. 300VW sequence 001 (human points, a slightly turned face) gives Haar dx
# 0.12 / 0.15, dy 0.15 / 0.16, extent 0.90 / 0.93.
HAAR_CALIBRATION = Calibration(0.0, 0.16, 0.86, "faces_video: Haar rectangles vs dlib's 68 points")
DLIB_CALIBRATION = Calibration(0.0, 0.09, 0.99, "faces_video: dlib rectangles vs dlib's 68 points")


def relative_to(calibration: Calibration, base: Calibration) -> Calibration:
    """The calibration that maps one detector's rectangle (`calibration`) to the rectangle another
    detector (`base`) puts around the same face: for a model trained on ``task_options.box=detector``
    crops, whose boxes are dlib's rectangles (`DLIB_CALIBRATION` as `base`)."""
    k = calibration.extent / base.extent
    return Calibration(
        calibration.dx - base.dx * k, calibration.dy - base.dy * k, k,
        f"{calibration.source}; relative to {base.source}",
    )  # fmt: skip


def crop_box(points: np.ndarray, *, margin: float, convention: str = "points") -> Box:
    """The crop box a model trained with ``task_options.box=convention`` expects around a face whose 68
    points are `points` `(68, 2)`: `box_from_points` for ``points``; for ``detector``, the square around the
    dlib rectangle those points usually sit in (`DLIB_CALIBRATION` inverted)."""
    if convention != "detector":
        return box_from_points(points, margin=margin)
    lo, hi = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
    width = float(max(hi - lo)) / DLIB_CALIBRATION.extent
    cx = (lo[0] + hi[0]) / 2 - DLIB_CALIBRATION.dx * width
    cy = (lo[1] + hi[1]) / 2 - DLIB_CALIBRATION.dy * width
    side = max(width * margin, 1.0)
    return Box(float(cx) - side / 2, float(cy) - side / 2, side)


class FaceDetector:
    """Base of the detectors: ``detector(frame)`` -> rectangles `(N, 4)` float ``[left, top, right, bottom]``.

    Frames are uint8 RGB `(H, W, 3)`; those larger than `max_side` on their longer side are searched at that
    size (faces in talking-head video are large; the search cost grows with the pixels) and the rectangles
    scaled back.
    """

    name = ""
    calibration = Calibration()

    def __init__(self, *, max_side: int = 640) -> None:
        self.max_side = max_side

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        scale = min(1.0, self.max_side / max(frame.shape[:2]))
        small = (
            frame
            if scale == 1.0
            else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        rects = np.asarray(self.detect(np.ascontiguousarray(small)), dtype=np.float64).reshape(-1, 4)
        return rects / scale

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Rectangles `(N, 4)` in the pixels of `frame` (already at most `max_side`)."""
        raise NotImplementedError


class HaarDetector(FaceDetector):
    """OpenCV's ``haarcascade_frontalface_default.xml`` on the equalised grey frame (Viola-Jones)."""

    name = "haar"
    calibration = HAAR_CALIBRATION

    def __init__(self, *, max_side: int = 640, min_face: float = 0.1, neighbours: int = 5) -> None:
        super().__init__(max_side=max_side)
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV could not load its Haar cascade {path}; reinstall opencv")
        self.min_face, self.neighbours = min_face, neighbours

    def detect(self, frame: np.ndarray) -> np.ndarray:
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        side = max(24, round(self.min_face * min(frame.shape[:2])))  # 24: the cascade's own window
        found = self.cascade.detectMultiScale(grey, 1.1, self.neighbours, minSize=(side, side))
        xywh = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


class DlibDetector(FaceDetector):
    """dlib's HOG + linear SVM frontal face detector (``get_frontal_face_detector``). Its smallest face is
    about 80 pixels; frames whose short side is under `upsample_below` are searched upsampled once."""

    name = "dlib"
    calibration = DLIB_CALIBRATION

    def __init__(self, *, max_side: int = 640, upsample_below: int = 400) -> None:
        super().__init__(max_side=max_side)
        try:
            import dlib
        except ImportError:
            from vidrec.cli import UsageError

            raise UsageError(
                "--detector dlib needs dlib: pip install 'vidrec[dlib]' (builds dlib; needs CMake and a C++ "
                "compiler), or use --detector haar"
            ) from None
        self.detector, self.upsample_below = dlib.get_frontal_face_detector(), upsample_below

    def detect(self, frame: np.ndarray) -> np.ndarray:
        upsample = int(min(frame.shape[:2]) < self.upsample_below)
        return [[r.left(), r.top(), r.right(), r.bottom()] for r in self.detector(frame, upsample)]


class FixedBox(FaceDetector):
    """The same rectangle in every frame (a face no detector finds): taken as the points' bounding box."""

    name = "fixed"

    def __init__(self, rect: Sequence[float]) -> None:
        super().__init__(max_side=1 << 30)
        self.rect = np.asarray(rect, dtype=np.float64).reshape(1, 4)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        return self.rect


def get_detector(name: str) -> FaceDetector:
    """A detector of `DETECTORS` by name."""
    if name == "haar":
        return HaarDetector()
    if name == "dlib":
        return DlibDetector()
    raise ValueError(f"unknown face detector {name!r}; one of {list(DETECTORS)}")


def largest(rects: np.ndarray) -> np.ndarray | None:
    """The rectangle of `rects` `(N, 4)` with the largest area, or None when there is none."""
    if not len(rects):
        return None
    return rects[int(np.argmax((rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])))]


def face_box(rect: np.ndarray, calibration: Calibration, *, margin: float) -> Box:
    """The crop box of the training data's convention (`box_from_points` with `margin`) for a detector
    rectangle ``[left, top, right, bottom]``, through the detector's `calibration`."""
    left, top, right, bottom = (float(v) for v in rect)
    width = right - left
    cx = (left + right) / 2 + calibration.dx * width
    cy = (top + bottom) / 2 + calibration.dy * width
    side = max(calibration.extent * max(width, bottom - top) * margin, 1.0)
    return Box(cx - side / 2, cy - side / 2, side)


def _centre(box: Box) -> np.ndarray:
    return np.array([box.x0 + box.side / 2, box.y0 + box.side / 2, box.side])


def _from_centre(c: np.ndarray) -> Box:
    return Box(float(c[0] - c[2] / 2), float(c[1] - c[2] / 2), float(c[2]))


@dataclass
class WindowBoxes:
    """One window's tracking result: the `box` its frames are cropped with (None while no face has been
    seen yet), and per frame the detector's rectangle (None: no face in that frame)."""

    box: Box | None
    rects: list[np.ndarray | None] = field(default_factory=list)

    @property
    def found(self) -> list[bool]:
        return [r is not None for r in self.rects]


@dataclass
class BoxTracker:
    """Follows one face through consecutive windows of frames (module docstring).

    Args:
        detector: frame -> rectangles `(N, 4)` (a `FaceDetector`, or any callable in tests).
        calibration: maps the detector's rectangle to the points' box convention.
        margin: the training data's box margin (``task_options.margin``).
        smoothing: weight of the previous window's box in the new one (0: the window's own detections only).
    """

    detector: Callable[[np.ndarray], np.ndarray]
    calibration: Calibration
    margin: float
    smoothing: float = 0.5
    box: Box | None = None  # the last window's box; None until a face has been found

    def window(self, frames: Sequence[np.ndarray]) -> WindowBoxes:
        """Search every frame `(H, W, 3)` of the next window; the box to crop all of them with."""
        rects = [largest(np.asarray(self.detector(f), dtype=np.float64).reshape(-1, 4)) for f in frames]
        boxes = [_centre(face_box(r, self.calibration, margin=self.margin)) for r in rects if r is not None]
        if boxes:  # the median: one stray detection in a window does not move the box
            new = np.median(np.stack(boxes), axis=0)
            old = new if self.box is None else _centre(self.box)
            self.box = _from_centre(self.smoothing * old + (1 - self.smoothing) * new)
        return WindowBoxes(self.box, rects)


def frame_ranges(frames: Sequence[int]) -> str:
    """Sorted frame numbers as ranges: ``0-3, 7, 9-10``."""
    parts, start = [], None
    for i, f in enumerate(frames):
        if start is None:
            start = f
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            parts.append(str(start) if start == f else f"{start}-{f}")
            start = None
    return ", ".join(parts)
