"""`vidrec flow DATA_ROOT --out FLOW` pairs with `data.root=DATA_ROOT data.flow_root=FLOW`: the official
UCF101 layout (`UCF-101/<Class>/v_*.avi` beside `ucfTrainTestlist/`), class folders, symlinked folders,
and a training run on the result."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from flow_helpers import make_video

from vidrec.cli import main
from vidrec.data import VideoDataset, build_sampler, class_folders, ucf101_split
from vidrec.data.records import VideoRecord
from vidrec.flow import find_flow, quantize, save_flow
from vidrec.io import VideoDecodeError

CLASSES = ["ApplyEyeMakeup", "HandstandPushups"]
FRAMES = 8


def _ucf_video(folder: Path, cls: str, group: int, seed: int, dx: int) -> str:
    """Writes `folder/<cls>/v_<cls>_gXX_c01.avi` (MPEG-4, as UCF101) and returns its relative path."""
    rel = f"{cls}/v_{cls}_g{group:02d}_c01.avi"
    (folder / cls).mkdir(parents=True, exist_ok=True)
    make_video(folder / rel, FRAMES, seed=seed, dx=dx)
    return rel


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory) -> Path:
    """A miniature UCF101 as the official archives unpack: `UCF-101/` and `ucfTrainTestlist/` (CRLF)."""
    root = tmp_path_factory.mktemp("UCF101")
    train = [_ucf_video(root / "UCF-101", c, 8, seed=k, dx=1 - 2 * k) for k, c in enumerate(CLASSES)]
    test = [_ucf_video(root / "UCF-101", c, 1, seed=5 + k, dx=1 - 2 * k) for k, c in enumerate(CLASSES)]
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    crlf = {"newline": "\r\n"}
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)), **crlf)
    (lists / "trainlist01.txt").write_text("".join(f"{p} {i + 1}\n" for i, p in enumerate(train)), **crlf)
    (lists / "testlist01.txt").write_text("".join(f"{p}\n" for p in test), **crlf)
    return root


def _flow(src: Path, out: Path, capsys) -> str:
    assert main(["flow", str(src), "--out", str(out), "--short-side", "0", "--workers", "1"]) == 0
    return capsys.readouterr().out


def _dataset(records, root, flow_root, modalities=("rgb", "flow")) -> VideoDataset:
    return VideoDataset(
        records,
        root=root,
        modalities=modalities,
        sampler=build_sampler("dense", clip_len=3, train=False),
        flow_root=flow_root,
        strict=True,
    )


def _mean_dx(item) -> float:
    return float(item["flow"][:, 0].median())


def test_flow_of_the_official_ucf101_download_is_found_by_the_split_records(ucf_root, tmp_path, capsys):
    out = tmp_path / "flow"
    text = _flow(ucf_root, out, capsys)
    assert "4 videos" in text and "4 extracted" in text  # the split files are not videos
    assert (out / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.flow.mkv").is_file()
    for train in (True, False):
        records, names = ucf101_split(ucf_root / "ucfTrainTestlist", 1, train=train)
        assert names == CLASSES and len(records) == 2
        # the reader's paths are relative to UCF-101/; `vidrec flow` was given the folder above it
        ds = _dataset(records, ucf_root / "UCF-101", out)
        dx = [_mean_dx(ds[i]) for i in range(len(ds))]
        assert dx[0] == pytest.approx(1.0, abs=0.3) and dx[1] == pytest.approx(-1.0, abs=0.3)
        # ids that keep the `UCF-101/` folder find the same files directly
        prefixed = [VideoRecord(f"UCF-101/{r.path}", r.label, f"UCF-101/{r.video_id}") for r in records]
        ds = _dataset(prefixed, ucf_root, out)
        assert [_mean_dx(ds[i]) for i in range(len(ds))] == dx


def test_flow_of_the_video_folder_is_found_by_ids_that_name_it(ucf_root, tmp_path, capsys):
    out = tmp_path / "flow"
    _flow(ucf_root / "UCF-101", out, capsys)
    assert find_flow(out, "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01") == (
        out / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01"
    )
    assert find_flow(out, "HandstandPushups/v_ApplyEyeMakeup_g08_c01") is None  # the class must match


def test_only_an_unambiguous_match_is_taken(tmp_path):
    q = quantize(np.zeros((2, 8, 8, 2), np.float32))
    for top in ("x", "y"):
        save_flow(tmp_path, f"{top}/cls/v", q, bound=20, method="dis", fps=25)
    save_flow(tmp_path, "x/cls/w", q, bound=20, method="dis", fps=25)
    assert find_flow(tmp_path, "cls/w") == tmp_path / "x" / "cls" / "w"
    assert find_flow(tmp_path, "cls/v") is None  # x/cls/v or y/cls/v: neither is guessed
    # stripping leading folders stops at `<class>/<name>`: same-named videos of two classes stay apart
    save_flow(tmp_path, "cls/u", q, bound=20, method="dis", fps=25)
    assert find_flow(tmp_path, "data/cls/u") == tmp_path / "cls" / "u"
    assert find_flow(tmp_path, "data/other/u") is None


def test_class_folders_and_symlinked_class_folders(tmp_path, capsys):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    make_video((data / "left").mkdir(parents=True) or data / "left" / "a.mp4", FRAMES, seed=1, dx=-1)
    make_video(elsewhere.mkdir() or elsewhere / "b.mp4", FRAMES, seed=2, dx=1)
    os.symlink(elsewhere, data / "right", target_is_directory=True)  # datasets are often linked in
    out = tmp_path / "flow"
    _flow(data, out, capsys)
    assert (out / "right" / "b.flow.mkv").is_file() and (out / "left" / "a.flow.mkv").is_file()
    records, names = class_folders(data)
    assert names == ["left", "right"]
    ds = _dataset(records, data, out)
    assert _mean_dx(ds[0]) == pytest.approx(-1.0, abs=0.3) and _mean_dx(ds[1]) == pytest.approx(1.0, abs=0.3)


def test_missing_flow_names_the_file_and_the_command(tmp_path):
    (tmp_path / "flow").mkdir()
    ds = _dataset([VideoRecord("cls/v.mp4", 0, "cls/v")], tmp_path, tmp_path / "flow", ("flow",))
    with pytest.raises(VideoDecodeError, match=r"cls/v\.flow\.mkv.*vidrec flow DATA_ROOT --out FLOW_ROOT"):
        ds[0]


def test_training_runs_on_the_flow_of_the_data_root(ucf_root, tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))  # the tinyvid plug-ins
    from vidrec.engine.config import load_config
    from vidrec.engine.train import train

    flow = tmp_path / "flow"
    _flow(ucf_root, flow, capsys)
    lists = tmp_path / "lists"
    lists.mkdir()
    records, _ = ucf101_split(ucf_root / "ucfTrainTestlist", 1)
    (lists / "train.txt").write_text("".join(f"{r.path} {r.label}\n" for r in records))
    cfg = load_config(
        None,
        [
            f"data.train_list={lists / 'train.txt'}",
            f"data.root={ucf_root / 'UCF-101'}",
            f"data.flow_root={flow}",
            "data.frames=3",
            "data.resize=32",
            "data.size=24",
            "data.batch_size=2",
            "data.workers=0",
            "model.name=tinyvid:tiny_two_stream",
            "schedule.epochs=1",
            "progress=false",
            "tensorboard=false",
            "plots=false",
            f"out_dir={tmp_path / 'run'}",
        ],
    )
    result = train(cfg)
    assert result.global_step == 1 and not result.skipped
    assert np.isfinite(result.history[0]["train_loss"])
