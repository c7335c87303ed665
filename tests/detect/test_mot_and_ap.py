"""MOT ground truth (`vidrec.data.mot`): lines checked by file and line, boxes clipped and counted, frames
past the video refused, empty frames valid negatives; contiguous splits; COCO box AP (`BoxAP`)."""

from __future__ import annotations

import numpy as np
import pytest

from vidrec.data.mot import MotFormatError, find_gt, parse_frames, read_mot
from vidrec.engine.det_metrics import BoxAP

LINES = [
    "1,1,10,20,30,60,1,-1,-1,-1",
    "1,2,100,50,20,40,0,-1,-1,-1",  # conf 0: an ignore region
    "3,1,12.5,21,30.25,60,1,-1,-1,-1",
]


def write(tmp_path, lines, name="gt.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_boxes_by_zero_based_frame_with_ignore_regions(tmp_path):
    gt = read_mot(write(tmp_path, LINES), num_frames=5, height=120, width=160)
    boxes, ignore = gt.frame(0)  # MOT frame 1
    assert boxes.tolist() == [[10, 20, 40, 80]] and ignore.tolist() == [[100, 50, 120, 90]]
    assert np.allclose(gt.frame(2)[0], [[12.5, 21, 42.75, 81]])
    assert gt.last_frame == 2 and gt.count() == 2 and gt.clipped == 0


def test_a_frame_without_lines_is_a_valid_negative(tmp_path):
    gt = read_mot(write(tmp_path, LINES), num_frames=5, height=120, width=160)
    boxes, ignore = gt.frame(1)  # MOT frame 2 has no line
    assert boxes.shape == (0, 4) and ignore.shape == (0, 4)
    # a detection there is a false positive: it lowers AP
    clean, with_fp = BoxAP(), BoxAP()
    for ap in (clean, with_fp):
        ap.update(0, gt.frame(0)[0], [0.5], gt.frame(0)[0])
        ap.update(1, np.zeros((0, 4)), [], boxes)
    with_fp.update(1, [[50, 50, 80, 110]], [0.9], boxes)
    assert clean.compute()["AP50"] == pytest.approx(1.0) and with_fp.compute()["AP50"] < 0.6


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2,1,10,20,abc,60,1,-1,-1,-1", "not comma-separated numbers"),
        ("2,1,10,20,30", "5 fields"),
        ("0,1,10,20,30,60,1,-1,-1,-1", "not a 1-based frame number"),
        ("2,1,10,20,0,60,1,-1,-1,-1", "width and height must be positive"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line(tmp_path, line, message):
    path = write(tmp_path, [*LINES, line])
    with pytest.raises(MotFormatError, match=message) as err:
        read_mot(path, num_frames=5, height=120, width=160)
    assert f"{path}:4:" in str(err.value)


def test_a_frame_past_the_video_is_an_error_naming_the_line(tmp_path):
    path = write(tmp_path, [LINES[0], "9,1,10,20,30,60,1,-1,-1,-1", LINES[2]])
    with pytest.raises(MotFormatError, match=r"gt.txt:2: frame 9 is past the end of the video \(5 frames\)"):
        read_mot(path, num_frames=5, height=120, width=160)


def test_a_box_outside_the_frame_is_clipped_and_counted(tmp_path):
    lines = [
        "1,1,-5,20,30,60,1,-1,-1,-1",  # left edge outside
        "1,2,150,100,30,60,1,-1,-1,-1",  # right and bottom outside
        "2,3,170,10,20,20,1,-1,-1,-1",  # wholly outside: dropped
        "2,4,10,10,20,20,1,-1,-1,-1",  # inside
    ]
    gt = read_mot(write(tmp_path, lines), num_frames=3, height=120, width=160)
    assert gt.frame(0)[0].tolist() == [[0, 20, 25, 80], [150, 100, 160, 120]]
    assert gt.frame(1)[0].tolist() == [[10, 10, 30, 30]]
    assert (gt.clipped, gt.dropped) == (2, 1)


def test_gt_txt_is_found_beside_a_video_or_in_gt_folder(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert find_gt(video) is None
    (tmp_path / "gt").mkdir()
    write(tmp_path / "gt", LINES)
    assert find_gt(video) == tmp_path / "gt" / "gt.txt"
    write(tmp_path, LINES)
    assert find_gt(video) == tmp_path / "gt.txt"


def test_frame_ranges_are_contiguous_one_based_and_inside_the_video():
    assert parse_frames("1-350", num_frames=795) == range(0, 350)
    assert parse_frames("351-500", num_frames=795) == range(350, 500)
    with pytest.raises(ValueError, match="val: '5-3' must satisfy"):
        parse_frames("5-3", num_frames=10, what="val")
    with pytest.raises(ValueError, match="past the end of the video"):
        parse_frames("1-11", num_frames=10)
    with pytest.raises(ValueError, match="expected a frame range A-B"):
        parse_frames("1,2,3", num_frames=10)


GT = np.array([[10, 10, 40, 90], [100, 50, 130, 140]], np.float32)


def test_ap_of_perfect_boxes_is_one_and_of_shifted_boxes_lower():
    perfect, shifted, far = BoxAP(), BoxAP(), BoxAP()
    for frame in range(4):
        perfect.update(frame, GT, [0.9, 0.8], GT)
        shifted.update(frame, GT + [6, 0, 6, 0], [0.9, 0.8], GT)  # IoU 0.67: a hit at 0.5, not at 0.75
        far.update(frame, GT + [40, 0, 40, 0], [0.9, 0.8], GT)  # no overlap
    assert perfect.compute() == {"AP": 1.0, "AP50": 1.0, "AP75": 1.0}
    s = shifted.compute()
    assert s["AP50"] == 1.0 and s["AP75"] == 0.0 and 0.0 < s["AP"] < 0.5
    assert far.compute()["AP50"] == 0.0


def test_a_detection_on_an_ignore_region_is_neither_hit_nor_false_positive():
    region = np.array([[200, 200, 230, 270]], np.float32)
    on_region = np.vstack([GT, region + [2, 2, -2, -2]])
    ignored, counted = BoxAP(), BoxAP()
    ignored.update(0, on_region, [0.9, 0.8, 0.95], GT, ignore=region)
    counted.update(
        0, on_region, [0.9, 0.8, 0.95], GT
    )  # the same detection without the region: a false positive
    assert ignored.compute()["AP50"] == 1.0
    assert counted.compute()["AP50"] < 0.9
    # the region is not a positive to find: missing it costs nothing
    alone = BoxAP()
    alone.update(0, GT, [0.9, 0.8], GT, ignore=region)
    assert alone.compute()["AP50"] == 1.0


def test_frames_load_from_a_video_or_a_frame_folder_alike(boxes_video, tmp_path):
    import cv2

    from vidrec.data.mot import load_frames
    from vidrec.io import read_frames

    decoded = read_frames(boxes_video / "clip.mp4", range(6))
    for i, frame in enumerate(decoded):
        cv2.imwrite(str(tmp_path / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    from_video = load_frames(boxes_video / "clip.mp4", range(2, 5), (48, 64))
    from_folder = load_frames(tmp_path, range(2, 5), (48, 64))
    assert from_video.shape == (3, 48, 64, 3) and np.array_equal(from_video, from_folder)
    with pytest.raises(ValueError, match="decoded 4 of the 5 frames"):
        load_frames(tmp_path, range(2, 7), (48, 64))
