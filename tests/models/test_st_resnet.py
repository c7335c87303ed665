"""ST-ResNet (methods.md §3.5): temporal filters, per-stream equality, counter-property, receptive field."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from vidrec.models import Backbone, STResNet, TemporalConv, classification_loss, num_steps

L = 2  # flow stack length: 2L = 4 channels keeps the tests small


def streams():
    torch.manual_seed(0)
    return Backbone("resnet50", num_classes=5).eval(), Backbone(
        "resnet50", in_chans=2 * L, num_classes=5
    ).eval()


def st(cross_stream: str, **kw) -> tuple[STResNet, Backbone, Backbone]:
    """An ST-ResNet plus 2D copies of its two streams taken before conversion."""
    a, m = streams()
    a2d, m2d = copy.deepcopy(a), copy.deepcopy(m)
    return STResNet(appearance=a, motion=m, cross_stream=cross_stream, **kw).eval(), a2d, m2d


def constant_clip(t: int, size: int = 32) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    rgb = torch.randn(1, 1, 3, size, size).expand(-1, t, -1, -1, -1)  # (1, T, 3, H, W), constant in time
    flow = torch.randn(1, 1, 2 * L, size, size).expand(-1, t, -1, -1, -1)
    return {"rgb": rgb, "flow": flow}


@pytest.mark.parametrize("init", ["average", "centre"])
def test_temporal_conv_on_constant_input(init):
    torch.manual_seed(0)
    conv2d = nn.Conv2d(8, 6, 1, bias=True)
    layer = TemporalConv(conv2d, init=init)
    frame = torch.randn(2, 8, 4, 4)
    x = frame.repeat_interleave(5, dim=0)  # (B*T, C, H, W) with B=2, T=5, constant in time
    with num_steps(layer, 5), torch.no_grad():
        out = layer(x).unflatten(0, (2, 5))  # (B, T, C', H, W)
        ref = conv2d(frame)  # (B, C', H, W)
        bias = conv2d.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(out[:, 2], ref)  # interior frames: the 2D output
    end_scale = 2 / 3 if init == "average" else 1.0  # zero temporal padding drops one tap at the ends
    for t in (0, 4):
        torch.testing.assert_close(out[:, t] - bias, end_scale * (ref - bias))


def test_every_converted_layer_of_both_streams_is_its_2d_layer_on_constant_input():
    """methods.md 3.5.1 on the model itself: exactly conv1/conv3 of res{2..5}b are temporal in each stream,
    and each gives its 2D layer's output inside and 2/3 of it at the first and last frame."""
    model, a2d, m2d = st("code")
    expected = {f"net.layer{s}.1.conv{c}" for s in (1, 2, 3, 4) for c in (1, 3)}
    for stream, flat in ((model.appearance, a2d), (model.motion, m2d)):
        converted = {n: m for n, m in stream.named_modules() if isinstance(m, TemporalConv)}
        assert set(converted) == expected
        for name, layer in converted.items():
            conv2d = flat.get_submodule(name)
            frame = torch.randn(1, conv2d.in_channels, 3, 3)
            with num_steps(layer, 4), torch.no_grad():
                out = layer(frame.repeat_interleave(4, dim=0))  # (T=4, C', 3, 3), constant in time
                ref = conv2d(frame)[0]
            # float32 sums of 3 x 1024 products in another order: tolerance on the output's scale, far
            # below what a wrong conversion changes (O(1)), and the same at any thread count
            tol = {"rtol": 1e-5, "atol": 1e-5 * float(ref.abs().max())}
            torch.testing.assert_close(out[1:3], ref.expand(2, -1, -1, -1), msg=name, **tol)
            torch.testing.assert_close(out[[0, 3]], (2 / 3 * ref).expand(2, -1, -1, -1), msg=name, **tol)


def test_streams_equal_2d_resnets_without_cross_stream_sums():
    model, a2d, m2d = st("none")
    x = constant_clip(17)
    with torch.no_grad():
        frames = model.forward_frames(x)  # (1, 17, K) per stream
        ref_a, ref_m = a2d(x["rgb"][:, 0]), m2d(x["flow"][:, 0])
    torch.testing.assert_close(frames["appearance"][:, 8], ref_a, rtol=1e-4, atol=1e-4 * ref_a.abs().max())
    torch.testing.assert_close(frames["motion"][:, 8], ref_m, rtol=1e-4, atol=1e-4 * ref_m.abs().max())


@pytest.mark.parametrize("cross_stream", ["code", "paper"])
def test_cross_stream_sums_break_equality(cross_stream):
    model, a2d, m2d = st(cross_stream)
    x = constant_clip(17)
    with torch.no_grad():
        frames = model.forward_frames(x)
        ref_a, ref_m = a2d(x["rgb"][:, 0]), m2d(x["flow"][:, 0])
    assert (frames["appearance"][:, 8] - ref_a).abs().max() > 1e-2 * ref_a.abs().max()  # shifted by motion
    torch.testing.assert_close(frames["motion"][:, 8], ref_m, rtol=1e-4, atol=1e-4 * ref_m.abs().max())


def test_impulse_reaches_conv5_within_8_frames():
    model, _, _ = st("code")
    torch.manual_seed(2)
    x = {"rgb": torch.randn(1, 19, 3, 32, 32), "flow": torch.randn(1, 19, 2 * L, 32, 32)}
    y = {k: v.clone() for k, v in x.items()}
    y["rgb"][:, 9] += 3.0
    y["flow"][:, 9] += 3.0
    with torch.no_grad():
        fx, fy = model.forward_features(x), model.forward_features(y)
    for name in fx:
        change = (fx[name] - fy[name]).abs().flatten(2).amax(-1)[0]  # (T,)
        assert change[[0, 18]].max() == 0, name  # |t - 9| = 9: outside the 17-frame receptive field
        assert (change[1:18] > 0).all(), name  # every frame within ±8 is reached


def test_appearance_loss_reaches_motion_stream():
    model, _, _ = st("code")
    model.train()
    x = {"rgb": torch.randn(2, 3, 3, 32, 32), "flow": torch.randn(2, 3, 2 * L, 32, 32)}
    out = model(x)
    assert set(out) == {"appearance", "motion"} and out["appearance"].shape == (2, 5)
    classification_loss(out["appearance"], torch.tensor([0, 1])).backward()
    assert model.motion.net.layer1[0].conv1.weight.grad.abs().sum() > 0
    assert model.motion.net.fc.weight.grad is None  # the motion head is not on the appearance path


def test_temporal_pool_stage2():
    model, _, _ = st("code", temporal_pool=True)
    x = {"rgb": torch.randn(1, 11, 3, 32, 32), "flow": torch.randn(1, 11, 2 * L, 32, 32)}
    with torch.no_grad():
        frames = model.forward_frames(x)
    assert frames["appearance"].shape == (1, 4, 5)  # (11 - 5) / 2 + 1 = 4
    with pytest.raises(ValueError, match="T >= 5"):
        model.forward_frames({k: v[:, :3] for k, v in x.items()})


def test_dense_scores_are_class_maps_averaged_over_space_then_time():
    """methods.md 3.4: on whole frames of any size (here 48x80, not the 224 training crop) the output is
    the class map -- the fc at every conv5 position -- averaged over space and then over time."""
    model, _, _ = st("code")
    torch.manual_seed(2)
    x = {"rgb": torch.randn(1, 3, 3, 48, 80), "flow": torch.randn(1, 3, 2 * L, 48, 80)}
    with torch.no_grad():
        maps = model.class_maps(x)
        out = model(x)
    assert maps["appearance"].shape == (1, 3, 5, 2, 3)  # (B, T, K, h, w): a 2x3 class map per frame
    for name in ("appearance", "motion"):
        torch.testing.assert_close(out[name], maps[name].mean(dim=(-2, -1)).mean(dim=1), atol=1e-5, rtol=1e-4)
    assert (maps["appearance"] - maps["appearance"].mean(dim=(-2, -1), keepdim=True)).abs().max() > 1e-4
