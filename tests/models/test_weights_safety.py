"""Cached ImageNet weights are read with `weights_only=True`: a crafted pickle in $TORCH_HOME cannot run
code (issue 8, point 2); rebuilding a model from a checkpoint never reads ImageNet weights at all."""

from __future__ import annotations

import pathlib

import pytest
import torch

from vidrec.models.backbones import SPECS, Backbone, weights_file


class _Touch:
    """Unpickling this object creates `marker` (what a malicious `.pth` would do, harmlessly)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def poisoned_cache(tmp_path, monkeypatch):
    """A TORCH_HOME whose MobileNetV2 file is a pickle that touches a marker file when unpickled."""
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = weights_file(SPECS["mobilenet_v2"].weights)
    path.parent.mkdir(parents=True)
    marker = tmp_path / "code_ran"
    torch.save({"features.0.0.weight": _Touch(marker)}, path)
    return marker


def test_cached_weights_are_never_fully_unpickled(poisoned_cache):
    with pytest.raises(ValueError, match="refuses to unpickle"):
        Backbone("mobilenet_v2", pretrained=True)
    assert not poisoned_cache.exists()


def test_a_checkpoint_supplies_the_model_without_imagenet(poisoned_cache, tmp_path):
    from vidrec.engine.checkpoint import Checkpoint, load_for_inference, save_checkpoint
    from vidrec.models import get_model

    model = get_model("single_frame_mobilenet_v2", num_classes=3)  # random weights, no file read
    cfg = {
        "data": {"train_list": "t.txt"},
        "model": {"name": "single_frame_mobilenet_v2", "kwargs": {"pretrained": True}},
    }
    path = save_checkpoint(
        tmp_path / "c.safetensors",
        Checkpoint(model=model.state_dict(), config=cfg, class_names=["a", "b", "c"]),
    )
    rebuilt, _, _ = load_for_inference(path)
    assert not poisoned_cache.exists()
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
