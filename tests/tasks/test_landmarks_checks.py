"""Checked landmark input: a list longer or shorter than its video is left out with both counts named, and
NaN coordinates are frames without points, reported as such (not as an empty list file)."""

from __future__ import annotations

import json

import pytest
from faces import write_face_video

from vidrec.engine.config import load_config
from vidrec.tasks.landmarks import Landmarks, LandmarksError


def _faces(tmp_path, n=3, frames=12):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(n):
        write_face_video(folder, f"face{i}", frames=frames, size=48, seed=i)
    return folder


def _edit(folder, name, change):
    path = folder / f"{name}.landmarks.json"
    data = json.loads(path.read_text())
    data["landmarks"] = change(data["landmarks"])
    path.write_text(json.dumps(data))  # NaN is written as the JSON extension `NaN`, which Python reads
    return path


def _task(folder, *extra):
    cfg = load_config(None, [
        "task=landmarks", f"data.root={folder}", "data.frames=4", "data.size=16", "data.workers=0",
        "model.name=prernn_rnn_conv_mobilenet_v2", "model.kwargs={pretrained: false}", *extra,
    ])  # fmt: skip
    return Landmarks(cfg)


def test_a_list_longer_or_shorter_than_its_video_is_left_out_naming_the_counts(tmp_path):
    folder = _faces(tmp_path)
    short = _edit(folder, "face1", lambda marks: marks[:5])  # 5 entries for 12 frames
    long = _edit(folder, "face2", lambda marks: marks + marks)  # 24 entries for 12 frames
    lines = []
    train, val = _task(folder).datasets(None, log=lines.append)
    assert any(f"{short}: 5 landmark entries for the 12 frames of face1.mp4" in line for line in lines)
    assert any(f"{long}: 24 landmark entries for the 12 frames of face2.mp4" in line for line in lines)
    used = {str(t.video.name) for t in train.tracks + val.tracks}
    assert used == {"face0.mp4"}  # one video left: split into blocks
    for i in range(len(train)):  # every clip of what is left reads
        assert train[i]["rgb"].shape[0] == 4
    for name in ("face0",):
        _edit(folder, name, lambda marks: marks[:3])
    with pytest.raises(LandmarksError, match="no usable video among 3"):
        _task(folder).datasets(None, log=lines.append)


def test_nan_points_are_frames_without_points_and_the_message_says_so(tmp_path):
    folder = _faces(tmp_path, n=2)

    def every_third_nan(marks):
        for i in range(0, len(marks), 3):
            marks[i][10][0] = float("nan")  # one coordinate of one point
        return marks

    for name in ("face0", "face1"):
        _edit(folder, name, every_third_nan)
    lines = []
    with pytest.raises(LandmarksError) as err:
        _task(folder).datasets(None, log=lines.append)
    message = str(err.value)
    assert "no training clip" in message and "4 consecutive frames with points" in message
    assert "4 of their 12 frames have none (4 for NaN coordinates, 0 null)" in message
    assert "list file" not in message
    assert any("face0.landmarks.json: 4 of 12 frames have NaN coordinates" in line for line in lines)
    # with clips of 2 frames the same data trains, and no clip holds a NaN
    train, _ = _task(folder, "data.frames=2").datasets(None, log=lines.append)
    assert len(train) > 0
    for i in range(len(train)):
        assert train[i]["truth"].isfinite().all()
