"""`data.format` layouts: the official UCF101 / HMDB51 downloads read as they unpack, class folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/official_layout.py
from official_layout import HMDB_CLASSES, UCF_CLASSES, make_hmdb51, make_ucf101  # noqa: E402

from vidrec.data.layouts import split_records  # noqa: E402


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    return make_ucf101(tmp_path_factory.mktemp("UCF101"))


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory) -> Path:
    return make_hmdb51(tmp_path_factory.mktemp("HMDB51"))


def test_ucf101_official_files_as_they_are(ucf):
    assert (ucf / "ucfTrainTestlist" / "trainlist01.txt").read_bytes().count(b"\r\n") == 6  # CRLF kept
    train, names = split_records("ucf101", ucf, split=1, train=True)
    test, test_names = split_records("ucf101", ucf, split=1, train=False)
    assert names == test_names == list(UCF_CLASSES)  # from classInd.txt, 1-based there, 0-based here
    assert len(train) == 6 and len(test) == 3
    assert sorted({r.label for r in train}) == [0, 1, 2]
    # test lists carry no labels: the label comes from the class folder (HandStand vs Handstand too)
    assert [(r.path, r.label) for r in test] == [
        ("UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi", 0),
        ("UCF-101/Archery/v_Archery_g03_c01.avi", 1),
        ("UCF-101/HandstandPushups/v_HandStandPushups_g03_c01.avi", 2),
    ]
    assert all((ucf / r.path).is_file() for r in train + test)  # paths relative to data.root
    assert test[0].video_id == "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01"


def test_hmdb51_codes_and_folders(hmdb):
    train, names = split_records("hmdb51", hmdb, split=2, train=True)
    test, _ = split_records("hmdb51", hmdb, split=2, train=False)
    assert names == list(HMDB_CLASSES)
    assert len(train) == 6 and len(test) == 3  # code 0 (unused) videos are in neither
    assert {r.label for r in test} == {0, 1, 2} and all((hmdb / r.path).is_file() for r in train + test)
    assert "_3_" not in " ".join(r.path for r in train + test)


def test_hmdb51_class_folders_in_hmdb51_org(tmp_path):
    root = make_hmdb51(tmp_path / "h")
    (root / "hmdb51_org").mkdir()
    for name in HMDB_CLASSES:
        (root / name).rename(root / "hmdb51_org" / name)
    train, _ = split_records("hmdb51", root, train=True)
    assert train[0].path.startswith("hmdb51_org/") and all((root / r.path).is_file() for r in train)


def test_folders_layout_with_and_without_validation(tmp_path):
    for sub, classes in (("train", ("a", "b")), ("val", ("b",))):
        for c in classes:
            (tmp_path / sub / c).mkdir(parents=True)
            (tmp_path / sub / c / "v.mp4").write_bytes(b"")
    train, names = split_records("folders", tmp_path, train=True)
    val, val_names = split_records("folders", tmp_path, train=False)
    assert names == ["a", "b"] and [r.path for r in train] == ["train/a/v.mp4", "train/b/v.mp4"]
    assert val_names == ["b"] and val[0].path == "val/b/v.mp4"  # the trainer relabels by name
    assert split_records("folders", tmp_path / "train", train=False) is None


@pytest.mark.parametrize("fmt", ["ucf101", "hmdb51"])
def test_wrong_root_names_what_it_must_hold(tmp_path, fmt):
    with pytest.raises(FileNotFoundError, match="must hold") as err:
        split_records(fmt, tmp_path, train=True)
    assert ("ucfTrainTestlist" if fmt == "ucf101" else "testTrainMulti_7030_splits") in str(err.value)
    assert "\n" not in str(err.value)
