"""The folder walk of `vidrec flow` and `vidrec prepare`: a re-run never takes the command's own outputs for
input (`*.flow.flow.mkv`, `copy/copy/...`), and a symlink cycle is walked once."""

from __future__ import annotations

import os

import pytest
from flow_helpers import make_video

from vidrec.cli import main
from vidrec.jobs import list_jobs


@pytest.fixture
def two_videos(tmp_path):
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    make_video(folder / "a.mp4", 6)
    make_video(folder / "sub" / "b.mp4", 6, seed=1)
    return folder


def _ids(folder, **kw) -> list[str]:
    return [j.video_id for j in list_jobs(folder, **kw)]


def test_a_symlink_cycle_is_walked_once(two_videos):
    os.symlink(two_videos, two_videos / "sub" / "loop")  # videos/sub/loop -> videos
    assert _ids(two_videos) == ["a", "sub/b"]
    linked = two_videos.parent / "linked"
    os.symlink(two_videos, linked)  # a dataset linked in is still followed
    assert _ids(linked) == ["a", "sub/b"]


def test_flow_beside_the_videos_is_not_taken_for_input_again(two_videos, capsys):
    args = ["flow", str(two_videos), "--out", str(two_videos), "--workers", "1"]
    assert main(args) == 0
    assert (two_videos / "a.flow.mkv").is_file() and (two_videos / "sub" / "b.flow.mkv").is_file()
    capsys.readouterr()
    assert main(args) == 0
    assert "2 videos, 2 already complete, 0 to do" in capsys.readouterr().out
    assert not list(two_videos.rglob("*.flow.flow.*"))


def test_flow_into_a_folder_inside_the_input(two_videos, capsys):
    out = two_videos / "flow"
    args = ["flow", str(two_videos), "--out", str(out), "--workers", "1", "--format", "npy"]
    assert main(args) == 0
    (out / "extra").mkdir()
    make_video(out / "extra" / "stray.mp4", 6)  # anything under --out is output, never input
    capsys.readouterr()
    assert main(args) == 0
    assert "2 videos, 2 already complete, 0 to do" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flow.npy")) == [
        "a.flow.npy",
        "sub/b.flow.npy",
    ]


def test_prepare_into_a_folder_inside_the_source(two_videos, capsys):
    out = two_videos / "copy"
    args = ["prepare", str(two_videos), "--out", str(out), "--workers", "1", "--no-register"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "2 videos, 2 already prepared, 0 to do" in capsys.readouterr().out
    assert not (out / "copy").exists()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4")) == ["a.mp4", "sub/b.mp4"]
    # the copy (it holds a manifest) is not input of another command on the source either
    assert _ids(two_videos) == ["a", "sub/b"]
