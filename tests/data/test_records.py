"""List files, UCF101 / HMDB51 splits and class folders: records, labels, ids, and line-numbered errors."""

from __future__ import annotations

import pytest

from vidrec.data.records import (
    VideoRecord,
    class_folders,
    hmdb51_split,
    read_class_names,
    read_list_file,
    ucf101_split,
    video_id_of,
)


def test_plain_list_file_with_comments_and_blank_lines(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("# videos\n\na/x.mp4 1\n  b/y.avi 0  \n# end\nc/z.mkv 30 2\n")
    records, names = read_list_file(f)
    assert records == [
        VideoRecord("a/x.mp4", 1, "a/x"),
        VideoRecord("b/y.avi", 0, "b/y"),
        VideoRecord("c/z.mkv", 2, "c/z", num_frames=30),
    ]
    assert names == ["0", "1", "2"]


def test_classes_file_beside_and_name_labels(tmp_path):
    (tmp_path / "classes.txt").write_text("run\nwalk\n")
    f = tmp_path / "list.txt"
    f.write_text("v1.mp4 walk\nv2.mp4 0\n")
    records, names = read_list_file(f)
    assert names == ["run", "walk"] and [r.label for r in records] == [1, 0]
    records, names = read_list_file(f, classes=["walk", "run"])  # explicit names win
    assert [r.label for r in records] == [0, 0]


def test_csv_list(tmp_path):
    f = tmp_path / "list.csv"
    f.write_text("path,label,num_frames\nx/a.mp4,1,12\nx/b.mp4,0,\n")
    records, _ = read_list_file(f)
    assert records == [VideoRecord("x/a.mp4", 1, "x/a", 12), VideoRecord("x/b.mp4", 0, "x/b")]


def test_absolute_paths_get_ids_relative_to_root(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text(f"{tmp_path}/cls/v.mp4 0\n")
    (record,), _ = read_list_file(f, root=tmp_path)
    assert record.video_id == "cls/v" and record.path == f"{tmp_path}/cls/v.mp4"
    assert video_id_of("/elsewhere/v.avi", tmp_path) == "/elsewhere/v"


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("a.mp4 0\nb.mp4\n", 2, "expected 'path label'"),
        ("a.mp4 0\n\n# c\nb.mp4 x y z\n", 4, "expected 'path label'"),
        ("a.mp4 0\nb.mp4 7\n", 2, "label '7'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, text, line, what):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.txt:{line}: .*{what}"):
        read_list_file(f)


def test_bad_csv(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("file,class\na,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1: expected a CSV header"):
        read_list_file(f)
    f.write_text("path,label\na.mp4,1\nb.mp4,\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: expected a path and a label"):
        read_list_file(f)


def test_missing_list_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_list_file(tmp_path / "nope.txt")


@pytest.fixture
def ucf_dir(tmp_path):
    d = tmp_path / "ucfTrainTestlist"
    d.mkdir()
    (d / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    (d / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nYoYo/v_YoYo_g08_c01.avi 3\r\n"
    )
    (d / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nHandStandPushups/v_HandStandPushups_g01_c01.avi\n"
    )
    return d


def test_ucf101(ucf_dir):
    train, names = ucf101_split(ucf_dir, 1, train=True)
    assert names == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert [(r.path, r.label) for r in train] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
        ("YoYo/v_YoYo_g08_c01.avi", 2),
    ]
    test, _ = ucf101_split(ucf_dir, 1, train=False)
    assert [r.label for r in test] == [0, 1]  # folder case differs from classInd.txt
    assert test[1].video_id == "HandStandPushups/v_HandStandPushups_g01_c01"


def test_ucf101_errors(ucf_dir):
    (ucf_dir / "trainlist02.txt").write_text("YoYo/v_YoYo_g08_c01.avi 1\n")
    with pytest.raises(ValueError, match=r"trainlist02\.txt:1: label 1 disagrees"):
        ucf101_split(ucf_dir, 2)
    (ucf_dir / "classInd.txt").write_text("1 A\nB\n")
    with pytest.raises(ValueError, match=r"classInd\.txt:2: expected 'index ClassName'"):
        ucf101_split(ucf_dir, 1)


def test_hmdb51(tmp_path):
    (tmp_path / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (tmp_path / "wave_test_split1.txt").write_text("d.avi 2\ne.avi 1\n")
    (tmp_path / "wave_test_split2.txt").write_text("d.avi 1\n")
    train, names = hmdb51_split(tmp_path, 1, train=True)
    assert names == ["brush_hair", "wave"]
    assert [(r.path, r.label) for r in train] == [("brush_hair/a.avi", 0), ("wave/e.avi", 1)]
    test, _ = hmdb51_split(tmp_path, 1, train=False)
    assert [r.video_id for r in test] == ["brush_hair/b", "wave/d"]
    (tmp_path / "wave_test_split3.txt").write_text("d.avi 5\n")
    with pytest.raises(ValueError, match=r"wave_test_split3\.txt:1: expected 'video.avi 0\|1\|2'"):
        hmdb51_split(tmp_path, 3)


def test_class_folders(tmp_path):
    for rel in ("walk/b.mp4", "walk/a.avi", "run/c.mp4", "run/notes.txt", ".hidden/x.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    records, names = class_folders(tmp_path)
    assert names == ["run", "walk"]
    assert [(r.path, r.label, r.video_id) for r in records] == [
        ("run/c.mp4", 0, "run/c"),
        ("walk/a.avi", 1, "walk/a"),
        ("walk/b.mp4", 1, "walk/b"),
    ]


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "count"), [("ucf101", 101), ("hmdb51", 51), ("kinetics", 400)])
def test_real_label_maps(shared_data, name, count):
    (path,) = (shared_data / "label_maps").glob(f"*{name}*.txt")
    assert len(read_class_names(path)) == count
