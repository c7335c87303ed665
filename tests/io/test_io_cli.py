"""`vidrec info` and `vidrec sheet`."""

from __future__ import annotations

import json

import cv2
import pytest
from io_helpers import damage_packet

from vidrec.cli import main
from vidrec.data.samplers import tsn_segments
from vidrec.io.cli_sheet import sample_indices


def test_info_table_and_json(videos, capsys, tmp_path):
    assert main(["info", str(videos["h264_bframes_gop100.mp4"]), str(videos["vp9.webm"])]) == 0
    out = capsys.readouterr().out
    assert "h264" in out and "64x48" in out and "120" in out and "vp9.webm" in out
    assert main(["info", "--json", str(videos["mpeg4_gop12.avi"])]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["num_frames"] == 60 and meta["codec"] == "mpeg4"
    assert main(["info", str(tmp_path / "missing.mp4")]) == 1
    assert "missing.mp4" in capsys.readouterr().err


def test_sheet_writes_png(videos, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["sheet", str(videos["h264_vfr.mkv"]), "--out", str(out), "--frames", "6"]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert "6 frames" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["info", "sheet"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "Example" in capsys.readouterr().out


def test_sample_indices():
    assert sample_indices(80, 8, "uniform") == [4, 14, 24, 34, 44, 54, 64, 74]
    for n in range(1, 120):
        for count in (1, 3, 8, 16):  # the sheet shows exactly what the test-time TSN sampler picks
            assert sample_indices(n, count, "uniform") == list(
                tsn_segments(n, num_segments=count, train=False)[0].indices
            )
    random = sample_indices(80, 8, "random", seed=1)
    assert all(10 * k <= i < 10 * (k + 1) for k, i in enumerate(random))
    assert sample_indices(10, 4, "consecutive") == [3, 4, 5, 6]


def test_info_check_folder_and_list(videos, truncated_videos, tmp_path, capsys):
    """--check decodes everything, lists what failed and exits 1; sound inputs exit 0."""
    good = [videos["mpeg4_gop12.avi"], videos["h264_vfr.mkv"]]
    assert main(["info", "--check", "--workers", "1", *map(str, good)]) == 0
    assert "all 2 videos decode completely" in capsys.readouterr().err

    folder = tmp_path / "dataset"
    (folder / "class_a").mkdir(parents=True)
    for path in good:
        (folder / "class_a" / path.name).write_bytes(path.read_bytes())
    bad = folder / "class_a" / "cut.mkv"
    bad.write_bytes(truncated_videos["h264_gop10.mkv"].read_bytes())
    damaged = damage_packet(videos["mpeg4_gop12.avi"], folder / "damaged.avi", 30, at=0.0, length=8)
    (folder / "notes.txt").write_text("not a list of videos\n")  # skipped: not a video extension
    assert main(["info", "--check", "--workers", "2", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert out.count(" ok ") == 2 and out.count("DAMAGED") == 2
    assert "2 of 4 videos failed" in err and f"{bad}: the header promises" in err
    assert f"{damaged}: the decoder rejected packet 30" in err

    listing = tmp_path / "list.txt"
    listing.write_text("dataset/class_a/mpeg4_gop12.avi 0\n# comment\ndataset/damaged.avi 1\n")
    assert main(["info", "--check", "--json", "--workers", "1", str(listing)]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["ok"] for r in rows] == [True, False] and rows[1]["problems"]


def test_info_without_check_reports_truncation(truncated_videos, capsys):
    assert main(["info", str(truncated_videos["h264_gop10.mkv"])]) == 1
    out, err = capsys.readouterr()
    assert "(truncated)" in out and "1 of 1 videos failed" in err
