"""Landmarks on any video (`vidrec.tasks.landmarks_video`): points come back in frame pixels through the
tracked crop box, a window without a face keeps the previous box and its frames are reported, and a blank
video reports every frame without a face."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidrec.data.face_detect import (
    DLIB_CALIBRATION,
    HAAR_CALIBRATION,
    BoxTracker,
    Calibration,
    HaarDetector,
    crop_box,
    face_box,
    relative_to,
)
from vidrec.data.landmarks import CropSettings
from vidrec.io import write_video
from vidrec.tasks.landmarks_video import landmarks_on_video


def dot_finder(rgb: torch.Tensor) -> torch.Tensor:
    """Every point at the centroid of the crop's bright pixels, in centred crop units: a 'model' whose
    right answer is known in frame pixels. uint8 crops `(1, t, 3, S, S)` -> `(1, t, 68, 2)`."""
    w = rgb[:, :, 0].double()  # (1, t, S, S), 0 on the black background
    idx = torch.arange(rgb.shape[-1], dtype=w.dtype)
    total = w.sum((-2, -1))
    cx = (w.sum(-2) * idx).sum(-1) / total  # crop pixels
    cy = (w.sum(-1) * idx).sum(-1) / total
    point = torch.stack([cx, cy], -1) / rgb.shape[-1] - 0.5  # (1, t, 2)
    return point[:, :, None].expand(-1, -1, 68, -1)


def centre(rgb: torch.Tensor) -> torch.Tensor:
    return torch.zeros(*rgb.shape[:2], 68, 2)


def _dot_video(path, n=12, h=72, w=96):
    """A white 5x5 dot on black moving right and down; its centre per frame `(n, 2)`."""
    centres = np.array([[30 + 2 * t, 30 + t] for t in range(n)], dtype=np.float64)
    frames = np.zeros((n, h, w, 3), np.uint8)
    for f, (x, y) in zip(frames, centres.astype(int), strict=True):
        f[y - 2 : y + 3, x - 2 : x + 3] = 255
    write_video(path, frames, 25, crf=0)
    return centres


class DotDetector:
    """Finds the dot (a rectangle 30 px around it), except in the frames listed in `blind`."""

    def __init__(self, blind=()):
        self.blind, self.frame = set(blind), 0

    def __call__(self, frame):
        i, self.frame = self.frame, self.frame + 1
        ys, xs = np.nonzero(frame[..., 0] > 128)
        if i in self.blind or not len(xs):
            return np.zeros((0, 4))
        cx, cy = xs.mean(), ys.mean()
        return np.array([[cx - 15, cy - 15, cx + 15, cy + 15]])


def _run(tmp_path, points_of, video, detector, *, frames=4, overlay=True):
    crop = CropSettings(frames=frames, size=40, margin=1.5)
    tracker = BoxTracker(detector, Calibration(), crop.margin, smoothing=0.5)
    out = tmp_path / "drawn.mp4"
    points_file, overlay = tmp_path / "drawn.landmarks.json", out if overlay else None
    line = landmarks_on_video(
        points_of, video, crop, points_file=points_file, overlay=overlay, tracker=tracker, detector="test"
    )
    return line, json.loads((tmp_path / "drawn.landmarks.json").read_text())


def test_points_map_back_to_frame_pixels_through_the_crop_box(tmp_path):
    centres = _dot_video(tmp_path / "dot.mp4")
    line, data = _run(tmp_path, dot_finder, tmp_path / "dot.mp4", DotDetector())
    points = np.array(data["landmarks"])  # (12, 68, 2)
    assert points.shape == (12, 68, 2)
    boxes = np.array(data["crop_boxes"])
    assert len({tuple(b) for b in boxes}) == 3  # one box per 4-frame window, each a different place
    assert np.abs(points[:, 0] - centres).max() < 0.5  # within half a pixel of the dot, frame pixels
    assert data["face"] == [True] * 12 and data["no_face"] == [] and "a face in every frame (test)" in line
    from vidrec.io import read_frames

    drawn = read_frames(tmp_path / "drawn.mp4", range(12))
    x, y = np.round(centres[5]).astype(int)
    assert drawn[5, y, x, 1] > 200 and drawn[5, y, x, 0] < 60  # a green point on the dot


def test_a_window_without_a_face_keeps_the_previous_box_and_its_frames_are_reported(tmp_path):
    centres = _dot_video(tmp_path / "dot.mp4")
    line, data = _run(tmp_path, dot_finder, tmp_path / "dot.mp4", DotDetector(blind=range(4, 8)))
    boxes = np.array(data["crop_boxes"])
    assert (boxes[4:8] == boxes[0]).all() and (boxes[8] != boxes[0]).any()  # kept, then tracked again
    assert data["no_face"] == [4, 5, 6, 7] and data["face"] == [True] * 4 + [False] * 4 + [True] * 4
    assert data["face_rects"][4] is None and len(data["face_rects"][3]) == 4
    assert "no face (test) in 4 of 12 frames: 4-7" in line
    points = np.array(data["landmarks"])[:, 0]
    assert np.abs(points - centres).max() < 0.5  # the dot is still inside the kept box


def test_a_blank_video_reports_every_frame_without_a_face(tmp_path):
    video = write_video(tmp_path / "blank.mp4", np.zeros((10, 64, 80, 3), np.uint8), 25)
    line, data = _run(tmp_path, centre, video, HaarDetector(), overlay=False)
    assert data["face"] == [False] * 10 and data["no_face"] == list(range(10))
    assert "no face (test) in 10 of 10 frames: 0-9" in line
    points = np.array(data["landmarks"])
    assert points.shape == (10, 68, 2)  # the starting box, the centred square of the short side:
    assert points[0, 0] == pytest.approx([40.0, 32.0])  # a centred prediction is the frame's centre
    assert not (tmp_path / "drawn.mp4").exists()  # points only


def test_an_odd_sized_video_gets_an_overlay_padded_to_even_sides(tmp_path):
    from vidrec.io import probe

    video = write_video(tmp_path / "odd.mp4", np.zeros((4, 33, 47, 3), np.uint8), 25, pix_fmt="yuv444p")
    line, data = _run(tmp_path, centre, video, HaarDetector())
    assert len(data["landmarks"]) == 4 and "drew 4 frames" in line
    meta = probe(tmp_path / "drawn.mp4")
    assert (meta.height, meta.width, meta.num_frames) == (34, 48, 4)


def test_without_a_detector_each_window_is_cropped_around_the_previous_points(tmp_path):
    from faces import template

    from vidrec.data.landmarks import box_from_points

    shape = torch.tensor((template() - 0.5) * 0.6, dtype=torch.float32)  # a face filling 60% of the crop

    def face_shape(rgb):
        return shape.expand(1, rgb.shape[1], 68, 2)

    video = write_video(tmp_path / "blank.mp4", np.zeros((8, 64, 80, 3), np.uint8), 25)
    crop = CropSettings(frames=4, size=40, margin=1.5)
    line = landmarks_on_video(
        face_shape, video, crop, points_file=tmp_path / "p.json", overlay=None, tracker=None, detector="none"
    )
    data = json.loads((tmp_path / "p.json").read_text())
    boxes, points = np.array(data["crop_boxes"]), np.array(data["landmarks"])
    assert boxes[0] == pytest.approx([8, 0, 64])  # the centred square of the short side
    follow = box_from_points(points[3], margin=1.5)  # the first window's last points
    assert boxes[4] == pytest.approx([follow.x0, follow.y0, follow.side], abs=0.01)
    assert "face" not in data and "no face detector" in line


def test_a_detector_maps_to_the_dlib_rectangle_convention_of_box_detector_models():
    """A model trained on crops around dlib's rectangles (task_options.box=detector): the Haar rectangle
    of a face, through `relative_to(HAAR, DLIB)`, gives the box `crop_box` draws around its points in that
    convention; dlib relative to itself changes nothing."""
    same = relative_to(DLIB_CALIBRATION, DLIB_CALIBRATION)
    assert (same.dx, same.dy, same.extent) == pytest.approx((0.0, 0.0, 1.0))
    from faces import template

    points = template() * 80 + [30.0, 40.0]
    lo, hi = points.min(0), points.max(0)
    width = (hi - lo).max() / HAAR_CALIBRATION.extent  # the rectangle Haar would draw around them
    cx, cy = (lo + hi) / 2 - [HAAR_CALIBRATION.dx * width, HAAR_CALIBRATION.dy * width]
    haar = np.array([cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2])
    got = face_box(haar, relative_to(HAAR_CALIBRATION, DLIB_CALIBRATION), margin=1.2)
    want = crop_box(points, margin=1.2, convention="detector")
    np.testing.assert_allclose([got.x0, got.y0, got.side], [want.x0, want.y0, want.side], rtol=1e-6)
    assert want.y0 < crop_box(points, margin=1.2).y0  # dlib's rectangle sits higher than the points' box
