"""`vidrec info` and `vidrec sheet`."""

from __future__ import annotations

import json

import cv2
import pytest

from vidrec.cli import main
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
    assert sample_indices(80, 8, "uniform") == [5, 15, 25, 35, 45, 55, 65, 75]
    assert sample_indices(3, 5, "uniform") == [0, 0, 1, 2, 2]
    random = sample_indices(80, 8, "random", seed=1)
    assert all(10 * k <= i < 10 * (k + 1) for k, i in enumerate(random))
    assert sample_indices(10, 4, "consecutive") == [3, 4, 5, 6]
