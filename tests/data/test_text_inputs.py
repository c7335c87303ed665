"""The text files a user hands vidrec (YAML configs, list files, caption and gesture CSVs) are UTF-8: a
byte-order mark is dropped, another encoding or an over-long CSV field is one line naming the file and
the line, exit 2 (issue 20, "wrong-kind inputs"); malicious RAFT weights are one line too."""

from __future__ import annotations

import errno
import pathlib

import pytest
import torch

from vidrec.cli import UsageError, describe, exit_code, main
from vidrec.data.gestures import read_gesture_labels, read_point_history
from vidrec.data.records import read_list_file
from vidrec.engine.config import load_config
from vidrec.tasks.caption_data import read_captions
from vidrec.textfiles import TextFileError

BOM = b"\xef\xbb\xbf"
LATIN1 = "caf\xe9".encode("latin-1")  # not UTF-8
LONG_FIELD = b'"' + b"x" * 200_000 + b'"'  # over csv's field limit: nearly always an unclosed quote


def test_a_config_with_a_bom_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(BOM + b"data: {train_list: t.txt}\nmodel: {name: single_frame_mobilenet_v2}\n")
    assert load_config(path).data.train_list == "t.txt"


def test_a_config_that_is_not_utf8_is_one_line_naming_file_and_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"data: {train_list: t.txt}\n# " + LATIN1 + b"\n")
    assert main(["train", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"vidrec train: error: config {path}: line 2 is not UTF-8 text (byte 0xe9); save the file as UTF-8"
    )


@pytest.mark.parametrize("name", ["list.txt", "list.csv"])
def test_list_files_drop_a_bom(name, tmp_path):
    path = tmp_path / name
    body = b"a/x.mp4 1\nb/y.mp4 0\n" if name.endswith(".txt") else b"path,label\na/x.mp4,1\nb/y.mp4,0\n"
    path.write_bytes(BOM + body)
    records, _ = read_list_file(path)
    assert [r.path for r in records] == ["a/x.mp4", "b/y.mp4"] and [r.label for r in records] == [1, 0]


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("list.txt", b"a/x.mp4 0\nb/" + LATIN1 + b".mp4 1\n", "line 2 is not UTF-8 text"),
        ("list.csv", b"path,label\na/x.mp4,0\n" + LATIN1 + b".mp4,1\n", "line 3 is not UTF-8 text"),
        ("list.csv", b"path,label\n" + LONG_FIELD + b",1\n", "line 2: field larger than field limit"),
    ],
)
def test_a_bad_list_file_is_one_error_naming_file_and_line(name, body, message, tmp_path):
    path = tmp_path / name
    path.write_bytes(body)
    with pytest.raises(TextFileError) as info:
        read_list_file(path)
    assert message in str(info.value) and str(path) in str(info.value) and exit_code(info.value) == 2


def test_caption_files_drop_a_bom_and_refuse_other_encodings(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_bytes(BOM + b"image,caption\na.jpg,a red square\n")
    assert [(i.file, i.sentences) for i in read_captions(path)] == [("a.jpg", ["a red square"])]
    path.write_bytes(b"image,caption\na.jpg,a " + LATIN1 + b" square\n")
    with pytest.raises(TextFileError, match="line 2 is not UTF-8"):
        read_captions(path)
    path.write_bytes(b"image,caption\na.jpg," + LONG_FIELD + b"\n")
    with pytest.raises(TextFileError, match="line 2: field larger than field limit"):
        read_captions(path)
    json_file = tmp_path / "captions.json"
    json_file.write_bytes(BOM + b'{"v.mp4": ["a square moves"]}')
    assert read_captions(json_file)[0].sentences == ["a square moves"]


def test_gesture_csvs_drop_a_bom_and_refuse_other_encodings(tmp_path):
    history = tmp_path / "point_history.csv"
    history.write_bytes(BOM + b"1," + b",".join([b"0.5"] * 32) + b"\n")
    labels, points = read_point_history(history)
    assert labels.tolist() == [1] and points.shape == (1, 16, 2)
    names = tmp_path / "labels.csv"
    names.write_bytes(BOM + b"Stop\nClockwise\n")
    assert read_gesture_labels(names) == ["Stop", "Clockwise"]
    names.write_bytes(b"Stop\n" + LATIN1 + b"\n")
    with pytest.raises(TextFileError, match="line 2 is not UTF-8"):
        read_gesture_labels(names)


def test_an_over_long_path_is_a_usage_error_of_one_short_line():
    err = OSError(errno.ENAMETOOLONG, "File name too long", "videos/" + "x" * 5000 + ".mp4")
    line = describe(err)
    assert exit_code(err) == 2 and len(line) < 300 and "5011 characters" in line and "check the list" in line


class _Touch:
    """Unpickling this object creates `marker` (what a malicious `.pth` would do, harmlessly)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_malicious_raft_weights_are_one_line_without_torchs_advice(tmp_path, capsys):
    from vidrec.data.synthetic import make_synthetic_dataset
    from vidrec.flow.raft import RaftFlow

    marker, evil = tmp_path / "code_ran", tmp_path / "raft_small.pth"
    torch.save({"conv.weight": _Touch(marker)}, evil)
    with pytest.raises(UsageError, match="refuses to unpickle"):
        RaftFlow(model="small", weights=evil, device="cpu")
    data = make_synthetic_dataset(
        tmp_path / "d", per_class=1, frames=4, size=32, classes=["grow"], progress=False
    )
    argv = ["flow", str(data / "train.txt"), "--out", str(tmp_path / "flow"), "--method", "raft"]
    assert main([*argv, "--raft-weights", str(evil), "--workers", "1", "--device", "cpu"]) == 2
    out, err = capsys.readouterr()
    assert (
        len(err.strip().splitlines()) == 1 and f"RAFT weights {evil}" in err and "refuses to unpickle" in err
    )
    assert "weights_only" not in out + err and not marker.exists() and not (tmp_path / "flow").exists()
