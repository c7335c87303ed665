"""What a checkpoint carries is data to check: stored sizes outside sane bounds are refused before anything
is allocated, and class names are printed with their control characters escaped."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import vidrec.engine.checkpoint as C
from vidrec.cli import main, printable
from vidrec.engine.config import load_config
from vidrec.engine.schema import config_to_dict
from vidrec.io import write_video

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # the test-local plug-in module `tinyvid`
    sys.path.insert(0, HERE)
TinyNet = importlib.import_module("tinyvid").TinyNet


def _save(tmp_path, overrides, *, task_state=None, class_names=("a", "b"), options=None):
    config = config_to_dict(load_config(None, overrides))
    config["task_options"].update(options or {})  # written past the config checks, as a crafted file is
    ckpt = C.Checkpoint(model={}, config=config, class_names=list(class_names), task_state=task_state or {})
    return C.save_checkpoint(tmp_path / "best.safetensors", ckpt)


@pytest.mark.parametrize(
    ("overrides", "task_state", "field"),
    [
        (["task=segment"], None, "task_options.size = [60000, 60000]"),
        (["task=segment"], {"size": [480, 60000]}, "task_state.size = [480, 60000]"),
        (
            ["task=landmarks", "model.name=prernn_rnn_conv_mobilenet_v2"],
            {"size": 60000, "frames": 16, "margin": 1.3, "points": 68},
            "task_state.size = 60000",
        ),  # fmt: skip
        (
            ["task=landmarks", "model.name=prernn_rnn_conv_mobilenet_v2"],
            {"size": 128, "frames": 10**7, "margin": 1.3, "points": 68},
            "task_state.frames = 10000000",
        ),  # fmt: skip
    ],
)
def test_crafted_sizes_in_a_checkpoint_are_refused(tmp_path, overrides, task_state, field):
    options = {"size": [60000, 60000]} if field.startswith("task_options") else {}
    path = _save(tmp_path, overrides, task_state=task_state, options=options)
    with pytest.raises(C.CheckpointError, match=rf"{re.escape(f'{path}: {field}')} is outside 1\.\.\d+"):
        C.load_task(path)


def test_printable_escapes_control_characters():
    assert printable("\x1b[2J\x1b]0;owned\x07name") == "\\x1b[2J\\x1b]0;owned\\x07name"
    assert printable("a\rb\nc\u202ed") == "a\\rb\\nc\\u202ed"
    assert printable("ApplyEyeMakeup Über 跳舞") == "ApplyEyeMakeup Über 跳舞"  # printable text is kept


def test_predict_prints_class_names_escaped(tmp_path, capsys):
    frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    video = write_video(tmp_path / "v.mp4", frames, 25)
    names = ["\x1b[2J\x1b[Hwiped", "back\rspace", "plain"]
    cfg = load_config(
        None, ["data.train_list=t.txt", "model.name=tinyvid:tiny_net", "data.resize=32", "data.size=32"]
    )
    model = TinyNet(len(names))
    ckpt = C.Checkpoint(model=model.state_dict(), config=config_to_dict(cfg), class_names=names)
    path = C.save_checkpoint(tmp_path / "best.safetensors", ckpt)
    capsys.readouterr()
    assert main(["predict", str(path), str(video), "--model-factory", "tinyvid:tiny_net", "--topk", "3"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert "\\x1b[2J\\x1b[Hwiped" in out and "back\\rspace" in out and "plain" in out
