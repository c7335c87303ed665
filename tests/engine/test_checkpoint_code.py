"""A checkpoint is data: the model or plug-in it names is never imported or called (issue 8, point 1).

The crafted checkpoints below are valid safetensors files whose stored config names `logging:basicConfig`
with a `filename`: calling it would create the marker file. Nothing may create it."""

from __future__ import annotations

import pytest

from vidrec.cli import main
from vidrec.engine.checkpoint import Checkpoint, CheckpointError, load_for_inference, save_checkpoint


def _crafted(tmp_path, marker, *, model_name: str, plugin: str = "") -> str:
    from vidrec.models import get_model

    state = {} if ":" in model_name else get_model(model_name, num_classes=2).state_dict()
    kwargs = {"filename": str(marker), "force": True} if ":" in model_name else {}
    cfg = {
        "data": {"train_list": "t.txt", "plugin": plugin},
        "model": {"name": model_name, "kwargs": kwargs},
    }
    path = tmp_path / "crafted.safetensors"
    save_checkpoint(path, Checkpoint(model=state, config=cfg, class_names=["a", "b"]))
    return str(path)


def test_checkpoint_model_factory_is_never_imported(tmp_path, capsys):
    marker = tmp_path / "code_ran"
    ckpt = _crafted(tmp_path, marker, model_name="logging:basicConfig")
    with pytest.raises(CheckpointError, match="--model-factory logging:basicConfig"):
        load_for_inference(ckpt)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    for argv in (
        ["predict", ckpt, str(video)],
        ["eval", ckpt, "--list", str(video)],
        ["export", ckpt, "--out", str(tmp_path / "m.onnx")],
    ):
        assert main(argv) == 2
        assert "not a registered model" in capsys.readouterr().err
    assert not marker.exists()


def test_checkpoint_data_plugin_is_dropped(tmp_path):
    marker = tmp_path / "code_ran"
    ckpt = _crafted(tmp_path, marker, model_name="single_frame_mobilenet_v2", plugin="logging:basicConfig")
    _, cfg, names = load_for_inference(ckpt)
    assert cfg.data.plugin == "" and names == ["a", "b"]
    from vidrec.tasks.classify import build_datasets

    with pytest.raises(FileNotFoundError):  # the list files, not the plug-in
        build_datasets(cfg, ("rgb",))
    assert not marker.exists()


def test_own_factory_runs_only_when_named(tmp_path):
    """The user may name a trusted factory on the command line: then (and only then) it is built."""
    from vidrec.engine.checkpoint import PACKAGE_FACTORIES

    assert all(name.startswith("vidrec.") for name in PACKAGE_FACTORIES)
    marker = tmp_path / "code_ran"
    ckpt = _crafted(tmp_path, marker, model_name="logging:basicConfig")
    with pytest.raises(CheckpointError, match="not a registered model"):
        load_for_inference(ckpt, factory="logging:other")
    assert not marker.exists()
