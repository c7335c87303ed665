"""Face detection and box tracking for landmarks on any video (`vidrec.data.face_detect`): the tracking rules
with an injected detector, the box convention, and OpenCV's (and dlib's) detector on real faces."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vidrec.data.face_detect import (
    BoxTracker,
    Calibration,
    HaarDetector,
    face_box,
    frame_ranges,
    largest,
)
from vidrec.data.landmarks import box_from_points, read_pts

IDENTITY = Calibration(0.0, 0.0, 1.0)


class ScriptedDetector:
    """Frame number (stored in pixel [0, 0, 0]) -> the rectangles it "finds"; every call is recorded."""

    def __init__(self, rects: dict[int, list[list[float]]]) -> None:
        self.rects, self.calls = rects, []

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        self.calls.append(int(frame[0, 0, 0]))
        return np.array(self.rects.get(int(frame[0, 0, 0]), []), dtype=np.float64).reshape(-1, 4)


def _frames(start: int, n: int) -> list[np.ndarray]:
    out = []
    for i in range(start, start + n):
        f = np.zeros((8, 8, 3), np.uint8)
        f[0, 0, 0] = i
        out.append(f)
    return out


def _centre(box) -> tuple[float, float, float]:
    return box.x0 + box.side / 2, box.y0 + box.side / 2, box.side


def test_a_window_without_a_face_keeps_the_previous_box_and_is_reported():
    face = [40.0, 40.0, 60.0, 60.0]  # centre (50, 50), side 20
    moved = [60.0, 40.0, 80.0, 60.0]  # centre (70, 50)
    detector = ScriptedDetector({0: [face], 1: [face], 2: [face], 3: [face], 8: [moved], 9: [moved]})
    tracker = BoxTracker(detector, IDENTITY, margin=1.5, smoothing=0.5)

    first = tracker.window(_frames(0, 4))
    assert first.found == [True] * 4 and _centre(first.box) == pytest.approx((50, 50, 30))
    blind = tracker.window(_frames(4, 4))  # nothing found in frames 4-7
    assert blind.found == [False] * 4 and blind.rects == [None] * 4
    assert blind.box == first.box  # the previous box is kept
    back = tracker.window(_frames(8, 4))  # found again in 8 and 9, moved right by 20 px
    assert back.found == [True, True, False, False]
    assert _centre(back.box) == pytest.approx((60, 50, 30))  # half way: smoothed with the previous box
    assert detector.calls == list(range(12))  # every frame of every window is searched


def test_no_box_before_the_first_face_and_no_smoothing_towards_nothing():
    tracker = BoxTracker(ScriptedDetector({5: [[10, 10, 30, 30]]}), IDENTITY, margin=1.0, smoothing=0.9)
    assert tracker.window(_frames(0, 4)).box is None  # nothing seen yet: the caller's starting box applies
    found = tracker.window(_frames(4, 4))
    assert found.found == [False, True, False, False]
    assert _centre(found.box) == pytest.approx((20, 20, 20))  # the first face is taken as it is


def test_the_window_box_is_the_median_of_its_frames_and_the_largest_face_counts():
    small, big = [0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 140.0, 140.0]
    stray = [300.0, 300.0, 310.0, 340.0]  # one frame's false detection
    detector = ScriptedDetector({0: [small, big], 1: [big], 2: [big, small], 3: [stray]})
    assert np.array_equal(largest(np.array([small, big])), big) and largest(np.zeros((0, 4))) is None
    box = BoxTracker(detector, IDENTITY, margin=1.0, smoothing=0.0).window(_frames(0, 4)).box
    assert _centre(box) == pytest.approx((120, 120, 40))  # the stray frame does not move it


def test_detector_rectangles_map_to_the_training_crop_convention():
    points = np.array([[10.0, 20.0], [50.0, 20.0], [30.0, 80.0]])  # bounding box 40 x 60
    rect = np.array([10.0, 20.0, 50.0, 80.0])
    assert face_box(rect, IDENTITY, margin=1.3) == box_from_points(points, margin=1.3)
    haar_like = Calibration(dx=0.1, dy=0.2, extent=0.5)  # points centred lower and half the rectangle
    box = face_box(rect, haar_like, margin=1.0)
    assert _centre(box) == pytest.approx((30 + 4, 50 + 8, 30))  # offsets in rectangle widths (40)


def test_frame_ranges_are_compact():
    assert frame_ranges([0, 1, 2, 3, 7, 9, 10]) == "0-3, 7, 9-10" and frame_ranges([]) == ""


def test_haar_finds_no_face_in_blank_or_noise_frames():
    haar = HaarDetector()
    assert len(haar(np.zeros((120, 160, 3), np.uint8))) == 0
    assert len(haar(np.full((64, 64, 3), 200, np.uint8))) == 0


# ----------------------------------------------------------------------------- real faces


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _square(box) -> list[float]:
    return [box.x0, box.y0, box.x0 + box.side, box.y0 + box.side]


def _faces_video(shared_data, every: int = 10):
    """(frame, dlib rectangle, dlib points) of every `every`-th frame of the two faces_video videos."""
    from vidrec.io import read_frames

    folder = shared_data / "faces_video"
    videos = sorted(folder.glob("*.mp4"))
    if not videos:
        pytest.skip(f"{folder} holds no video")
    for video in videos:
        data = json.loads(video.with_name(video.stem + ".landmarks.json").read_text())
        idx = list(range(0, data["n_frames"], every))
        for i, frame in zip(idx, read_frames(video, idx), strict=True):
            yield frame, data["boxes"][i], np.array(data["landmarks"][i], dtype=np.float64)


@pytest.mark.shared_data
def test_haar_boxes_cover_dlibs_on_real_faces(shared_data):
    haar = HaarDetector()
    rect_iou, crop_iou = [], []
    for frame, dlib_rect, points in _faces_video(shared_data, every=20):
        rect = largest(haar(frame))
        rect_iou.append(0.0 if rect is None else _iou(rect, dlib_rect))
        truth = _square(box_from_points(points, margin=1.3))
        crop_iou.append(
            0.0 if rect is None else _iou(_square(face_box(rect, haar.calibration, margin=1.3)), truth)
        )
    assert len(rect_iou) == 20
    assert np.mean(np.array(rect_iou) >= 0.5) >= 0.9  # the detector's own rectangle vs dlib's
    assert np.mean(np.array(crop_iou) >= 0.8) >= 0.9  # the crop box vs the training data's (dlib points)


@pytest.mark.shared_data
def test_haar_crop_box_fits_human_annotated_300vw_points(shared_data):
    folder = shared_data / "faces_300vw" / "001"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    haar = HaarDetector()
    for image in sorted((folder / "imgs").glob("*.jpg")):
        frame = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)  # 1280 x 720: searched at 640
        rect = largest(haar(frame))
        assert rect is not None, f"no face found in {image}"
        truth = box_from_points(read_pts(folder / "annot" / f"{image.stem}.pts"), margin=1.3)
        assert _iou(_square(face_box(rect, haar.calibration, margin=1.3)), _square(truth)) >= 0.7


@pytest.mark.shared_data
def test_dlib_detector_reproduces_the_boxes_of_faces_video(shared_data):
    pytest.importorskip("dlib", reason="dlib is an optional extra: pip install 'vidrec[dlib]'")
    from vidrec.data.face_detect import DlibDetector

    dlib = DlibDetector()
    ious = [_iou(largest(dlib(frame)), rect) for frame, rect, _ in _faces_video(shared_data, every=50)]
    assert min(ious) >= 0.9  # the file's boxes are dlib's own detections
