"""Every command turns ordinary errors into one line (exit 2: usage/config/input, 1: runtime failure);
`--debug` shows the traceback; Ctrl-C prints one line and exits 130 (issue 8, point 5)."""

from __future__ import annotations

import errno
import os

import pytest

from vidrec.cli import main


def _one_line_error(capsys, argv: list[str], code: int, *needles: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"vidrec {argv[0]}: "), err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


@pytest.fixture
def garbage(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a checkpoint at all")
    return path


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_missing_files_are_usage_errors(capsys, tmp_path):
    missing = str(tmp_path / "nope.safetensors")
    _one_line_error(capsys, ["eval", missing], 2, missing, "does not exist")
    _one_line_error(capsys, ["predict", missing, "v.mp4"], 2, "does not exist")
    _one_line_error(capsys, ["export", missing, "--out", str(tmp_path / "m.onnx")], 2, "does not exist")
    _one_line_error(capsys, ["flow", str(tmp_path / "none"), "--out", str(tmp_path / "f")], 2, "none")
    _one_line_error(capsys, ["train", str(tmp_path / "none.yaml")], 2, "none.yaml")


def test_bad_checkpoint_and_pipes(capsys, garbage, fifo):
    _one_line_error(capsys, ["eval", str(garbage)], 2, str(garbage), "not a .safetensors")
    _one_line_error(capsys, ["export", str(fifo), "--out", "x.onnx"], 2, "not a regular file")


def test_predict_refuses_stdin_and_fifo(capsys, tmp_path, fifo):
    from vidrec.engine.checkpoint import Checkpoint, save_checkpoint

    ckpt = save_checkpoint(
        tmp_path / "c.safetensors",
        Checkpoint(
            model={},
            config={"data": {"train_list": "t.txt"}, "model": {"name": "lrcn_nope"}},
            class_names=["a"],
        ),
    )
    # the checkpoint names an unknown model: a usage error naming it, before the video is read
    _one_line_error(capsys, ["predict", str(ckpt), str(tmp_path), "--out", "p.csv"], 2, "lrcn_nope")
    _one_line_error(capsys, ["predict", str(ckpt), str(fifo)], 2, "not a regular file")


def test_bad_yaml_and_unknown_model(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  train_list: [a, b\n")
    _one_line_error(capsys, ["train", str(bad)], 2, str(bad), "not valid YAML", "line")
    (tmp_path / "t.txt").write_text("a.mp4 0\n")
    (tmp_path / "classes.txt").write_text("a\n")
    argv = ["train", f"data.train_list={tmp_path / 't.txt'}", "model.name=lrcn_mobilenet_v3"]
    _one_line_error(capsys, [*argv, f"out_dir={tmp_path / 'run'}"], 2, "lrcn_mobilenet_v3", "vidrec models")
    _one_line_error(capsys, ["synth", "--out", str(tmp_path / "s"), "--size", "15"], 2, "even size")
    _one_line_error(capsys, ["flow", str(tmp_path), "--out", str(tmp_path / "f"), "--shard", "3/2"], 2, "3/2")


@pytest.mark.parametrize(
    ("code", "hint"),
    [(errno.ENOSPC, "free disk space"), (errno.EROFS, "read-only"), (errno.EACCES, "permission")],
)
def test_disk_errors_are_runtime_failures(capsys, tmp_path, monkeypatch, code, hint):
    import vidrec.data.synthetic as S

    def fail(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(S, "write_video", fail)
    line = _one_line_error(capsys, ["synth", "--out", str(tmp_path / "s"), "--per-class", "1"], 1, hint)
    assert ".mp4" in line  # names the file


def test_debug_shows_the_traceback(capsys, tmp_path, garbage):
    assert main(["eval", str(garbage), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert main(["--debug", "eval", str(garbage)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_ctrl_c_is_one_line(capsys, monkeypatch):
    import vidrec.models.cli as M

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(M, "run", interrupted)
    rc = main(["models"])
    err = capsys.readouterr().err
    assert rc == 130 and err.strip() == "vidrec models: interrupted"


def test_unexpected_errors_say_so(capsys, monkeypatch):
    import vidrec.models.cli as M

    def broken(args):
        raise TypeError("boom")

    monkeypatch.setattr(M, "run", broken)
    line = _one_line_error(capsys, ["models"], 1, "TypeError: boom", "--debug")
    assert "unexpected" in line
