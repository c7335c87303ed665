"""Grad-CAM over time and the hooks behind it."""

from __future__ import annotations

import pytest
import torch
from viz_tiny import OneFrame, tiny_two_stream

from vidrec.models import get_model
from vidrec.visualize.gradcam import default_layers, grad_cam
from vidrec.visualize.hooks import capture, hook_count
from vidrec.visualize.maximize import MaximizeConfig, frozen, maximize
from vidrec.visualize.units import Unit


@pytest.mark.parametrize("frame", [0, 2])
def test_gradcam_of_a_model_that_sees_one_frame_is_zero_on_the_others(frame):
    torch.manual_seed(0)
    model = OneFrame(frame)
    cam = grad_cam(model, {"rgb": torch.rand(2, 4, 3, 12, 12)}, target=1, layers={"rgb": "conv"})
    heat = cam.heat["rgb"]  # (B, T, H, W)
    assert heat.shape == (2, 4, 12, 12)
    others = [t for t in range(4) if t != frame]
    assert torch.count_nonzero(heat[:, others]) == 0
    assert float(heat[:, frame].max()) == pytest.approx(1.0)


def test_gradcam_per_stream_for_two_stream_models():
    model = tiny_two_stream()
    x = {"rgb": torch.randn(1, 3, 3, 16, 16), "flow": torch.randn(1, 3, 4, 16, 16)}
    cam = grad_cam(model, x, layers={"rgb": "rgb.conv2", "flow": "flow.conv2"})
    assert set(cam.heat) == {"rgb", "flow"}
    for heat in cam.heat.values():
        assert heat.shape == (1, 3, 16, 16) and heat.min() >= 0 and heat.max() <= 1
    assert 0 <= cam.target < 3 and cam.probs.shape == (1, 3)
    only_flow = grad_cam(model, x, layers={"rgb": "rgb.conv2", "flow": "flow.conv2"}, stream="flow", target=0)
    assert torch.count_nonzero(only_flow.heat["rgb"]) == 0  # the flow logit does not see the RGB stream


def test_default_layers_of_registered_models():
    lrcn = get_model("lrcn_resnet18", num_classes=3)
    assert default_layers(lrcn) == {"rgb": "encoder.backbone.net.layer4.1"}
    ts = get_model("two_stream_mobilenet_v2", num_classes=3, flow_length=2)
    assert default_layers(ts) == {
        "rgb": "rgb.backbone.net.features.18",
        "flow": "flow.backbone.net.features.18",
    }
    cam = grad_cam(lrcn, {"rgb": torch.randn(1, 3, 3, 32, 32)}, target=0)
    assert cam.heat["rgb"].shape == (1, 3, 32, 32)  # per step of the recurrent model


def test_st_resnet_streams_are_named_and_hooked_through_stage_slices():
    torch.manual_seed(0)
    model = get_model("st_resnet50", num_classes=3, flow_length=1)
    layers = default_layers(model)
    assert layers == {"appearance": "appearance.net.layer4.2", "motion": "motion.net.layer4.2"}
    cam = grad_cam(model, {"rgb": torch.randn(1, 3, 3, 32, 32), "flow": torch.randn(1, 3, 2, 32, 32)})
    assert {k: tuple(v.shape) for k, v in cam.heat.items()} == {
        "appearance": (1, 3, 32, 32), "motion": (1, 3, 32, 32)
    }  # fmt: skip


def test_hooks_are_removed_after_an_exception():
    model = tiny_two_stream()
    with pytest.raises(RuntimeError, match="boom"), capture(model, ["rgb.conv1", "flow.conv2"]):
        assert hook_count(model) == 2
        raise RuntimeError("boom")
    assert hook_count(model) == 0
    bad = {"rgb": torch.randn(1, 2, 5, 16, 16), "flow": torch.randn(1, 2, 4, 16, 16)}  # 5 colour channels
    with pytest.raises(RuntimeError):
        grad_cam(model, bad, layers={"rgb": "rgb.conv1", "flow": "flow.conv1"})
    assert hook_count(model) == 0
    shapes = {"rgb": (1, 5, 16, 16), "flow": (1, 4, 16, 16)}
    with pytest.raises(RuntimeError):
        maximize(
            model, Unit(layer="rgb.conv2"), shapes=shapes, config=MaximizeConfig(steps=2), progress=False
        )
    assert hook_count(model) == 0
    assert model.training and all(p.requires_grad for p in model.parameters())  # `frozen` restored them


def test_frozen_restores_state_after_an_exception():
    model = tiny_two_stream()
    model.rgb.conv1.weight.requires_grad_(False)
    with pytest.raises(ValueError), frozen(model):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        raise ValueError
    assert (
        model.training and not model.rgb.conv1.weight.requires_grad and model.rgb.conv2.weight.requires_grad
    )


def test_uint8_rgb_from_datasets_is_normalised_like_the_engine():
    from vidrec.data.transforms import normalize_rgb

    model = OneFrame(1)
    pixels = torch.randint(0, 256, (1, 3, 3, 12, 12), dtype=torch.uint8)
    a = grad_cam(model, {"rgb": pixels}, target=0, layers={"rgb": "conv"})
    b = grad_cam(model, {"rgb": normalize_rgb(pixels)}, target=0, layers={"rgb": "conv"})
    assert torch.equal(a.heat["rgb"], b.heat["rgb"])
