"""The segment task trains through the one engine loop (`vidrec.engine.train.train`) on a tiny DAVIS
folder, reports DAVIS J / F, resumes exactly, and its checkpoint comes back from `load_task`."""

from __future__ import annotations

import pytest
import torch

from vidrec.engine.checkpoint import load_checkpoint, load_task
from vidrec.engine.config import ConfigError, load_config
from vidrec.engine.train import train
from vidrec.models.segnet import SegNet, normalize_images, segnet_mobilenet_v2
from vidrec.tasks.segment import Segment

QUIET = ["progress=false", "tensorboard=false", "plots=false", "data.workers=0", "runtime.device=cpu"]


def segment_config(root, out, *extra):
    return load_config(None, [
        "task=segment", f"data.root={root}", "model.name=segnet_mobilenet_v2", "data.batch_size=4",
        "task_options={size: [32, 48], train_sequences: [seq-a, seq-b], val_sequences: [seq-c]}",
        "optim.name=adamw", "optim.lr=0.003", "schedule.name=constant", f"out_dir={out}", *QUIET, *extra,
    ])  # fmt: skip


def test_segnet_keeps_output_stride_16_and_upsamples_to_the_input():
    model = segnet_mobilenet_v2(output_stride=16).eval()
    x = torch.randn(1, 3, 64, 96)
    assert model.feature_net(x).shape == (1, 1280, 4, 6)
    assert model(x).shape == (1, 2, 64, 96)
    assert segnet_mobilenet_v2(output_stride=8).feature_net(x).shape == (1, 1280, 8, 12)
    assert normalize_images(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))[0, 0, 0, 0] == pytest.approx(
        (1 - 0.485) / 0.229
    )


def test_segment_task_trains_scores_j_f_and_round_trips(tiny_davis, tmp_path):
    result = train(segment_config(tiny_davis, tmp_path / "run", "schedule.epochs=3", "max_steps_per_epoch=2"))
    hist = result.history
    assert all({"val_J", "val_F", "val_JF", "train_iou"} <= set(h) for h in hist)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(0.0 <= h["val_J"] <= 1.0 and 0.0 <= h["val_F"] <= 1.0 for h in hist)
    assert result.best_top1 == max(h["val_J"] for h in hist)  # val_J picks best.safetensors
    best = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert best.task_state["size"] == [32, 48] and best.class_names == ["background", "foreground"]
    model, task = load_task(tmp_path / "run" / "best.safetensors")
    assert isinstance(task, Segment) and isinstance(model, SegNet) and not model.training
    assert all(torch.equal(model.state_dict()[k], v.float()) for k, v in best.model.items())


def test_segment_task_resumes_to_the_same_weights(tiny_davis, tmp_path):
    short = ["max_steps_per_epoch=1", "task_options.val_stride=4"]
    straight = train(segment_config(tiny_davis, tmp_path / "a", "schedule.epochs=2", *short))
    train(segment_config(tiny_davis, tmp_path / "b", "schedule.epochs=1", *short))
    resumed = train(segment_config(tiny_davis, tmp_path / "b", "schedule.epochs=2", "resume=auto", *short))
    a = load_checkpoint(tmp_path / "a" / "last.safetensors").model
    b = load_checkpoint(tmp_path / "b" / "last.safetensors").model
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history[-1]["val_J"] == straight.history[-1]["val_J"]


def test_segment_options_and_data_errors_name_the_field(tiny_davis, tmp_path):
    with pytest.raises(ConfigError, match=r"task_options\.size"):
        Segment(load_config(None, ["task=segment", "task_options={size: [32]}"]))
    with pytest.raises(ConfigError, match=r"data\.root: required with task=segment"):
        train(load_config(None, ["task=segment", f"out_dir={tmp_path}/x", *QUIET]))
    with pytest.raises(ConfigError, match=r"task_options\.pairs: segnet_mobilenet_v2 takes one image"):
        train(segment_config(tiny_davis, tmp_path / "y", "task_options.pairs=true"))
    from vidrec.data.davis import DavisError

    with pytest.raises(DavisError, match=r"seq-z: sequence folder not found"):
        train(segment_config(tiny_davis, tmp_path / "z", "task_options.val_sequences=[seq-z]"))
