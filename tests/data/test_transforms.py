"""Clip transforms: one draw per clip and per item (all frames, all streams), flow-aware flips, test views."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from vidrec.data.transforms import (
    FLOW_PX_SCALE,
    FLOW_STD,
    ST_RESNET_CROP_SIZES,
    Flow3Video,
    FlowVideo,
    MultiScaleCornerCrop,
    TestViews,
    test_transform,
    train_transform,
)

T, H, W = 4, 40, 56


def _item(seed: int = 0):
    """rgb frames all equal to one random grey image B; flow x = -B/10, y = B/10 on each of L=2 steps."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (H, W), generator=g, dtype=torch.uint8)
    rgb = tv_tensors.Video(base.expand(T, 3, H, W).clone())
    b = base.float() / 10
    flow = FlowVideo(torch.stack([-b, b, -b, b]).expand(T, 4, H, W).clone())  # (T, 2L, H, W)
    return {"rgb": rgb, "flow": flow}


@pytest.mark.parametrize("kind", ["tsn", "resized", "crop"])
def test_same_parameters_for_every_frame_and_both_streams(kind):
    torch.manual_seed(1)
    transform = train_transform(32, kind=kind, mean=(0, 0, 0), std=(1, 1, 1))
    for seed in range(6):
        out = transform(_item(seed))
        rgb, flow = out["rgb"], out["flow"]
        assert rgb.shape == (T, 3, 32, 32) and flow.shape == (T, 4, 32, 32)
        assert rgb.dtype == flow.dtype == torch.float32
        assert torch.equal(rgb, rgb[:1].expand_as(rgb))  # every frame got the same crop / flip
        # same crop in both streams: rgb grey value * 25.5 equals flow y in px; flow x is -y unless flipped
        assert torch.allclose(rgb[:, 0] * 25.5, flow[:, 1] * FLOW_PX_SCALE, atol=0.15)
        x_sign = torch.sign((flow[:, 0] * flow[:, 1]).sum())
        assert torch.equal(flow[:, 2], flow[:, 0]) and torch.allclose(flow[:, 0], x_sign * flow[:, 1])


def test_flip_negates_flow_x_exactly_and_mirrors_everything():
    item = _item()
    out = v2.RandomHorizontalFlip(p=1.0)(item)
    assert torch.equal(out["rgb"], item["rgb"].flip(-1))
    assert torch.equal(out["flow"][:, 0::2], -item["flow"][:, 0::2].flip(-1))
    assert torch.equal(out["flow"][:, 1::2], item["flow"][:, 1::2].flip(-1))
    assert type(out["flow"]) is FlowVideo


def test_flip_flow3_negates_channel_0_only():
    f3 = Flow3Video(torch.randn(T, 3, H, W) * 50)
    out = v2.RandomHorizontalFlip(p=1.0)(f3)
    assert torch.equal(out[:, 0], -f3[:, 0].flip(-1))
    assert torch.equal(out[:, 1:], f3[:, 1:].flip(-1))


def test_flips_happen_about_half_the_time():
    torch.manual_seed(0)
    transform = train_transform(32, kind="resized", mean=(0, 0, 0), std=(1, 1, 1))
    flips = [float((transform(_item())["flow"][:, 0] > 0).float().mean()) > 0.5 for _ in range(40)]
    assert 8 < sum(flips) < 32


def _fed(flow: torch.Tensor) -> torch.Tensor:
    """A flow stack in px as the model is fed it (`NORMALIZATION["flow"]`: px / FLOW_PX_SCALE)."""
    from vidrec.data.transforms import NORMALIZATION

    return NORMALIZATION["flow"](flow.as_subclass(torch.Tensor))


def test_normalisation_gives_rgb_imagenet_statistics_and_flow_its_scale():
    item = _item()
    out = test_transform(H, crops=1)(item)  # centre crop H x H
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    crop = item["rgb"][..., :, (W - H) // 2 : (W - H) // 2 + H].float() / 255
    assert torch.allclose(out["rgb"], (crop - mean) / std, atol=1e-5)
    assert torch.equal(out["flow"], _fed(item["flow"][..., (W - H) // 2 : (W - H) // 2 + H]))  # px / 9.04


@pytest.mark.parametrize("crops", [3, 5, 10])
def test_test_views(crops):
    item = _item()
    out = test_transform(32, crops=crops)(item)
    assert out["rgb"].shape == (crops, T, 3, 32, 32)
    assert out["flow"].shape == (crops, T, 4, 32, 32)
    if crops == 10:  # the last five are the mirrors of the first five, flow x negated
        assert torch.equal(out["rgb"][5:], out["rgb"][:5].flip(-1))
        assert torch.equal(out["flow"][5:, :, 0::2], -out["flow"][:5, :, 0::2].flip(-1))
        assert torch.equal(out["flow"][5:, :, 1::2], out["flow"][:5, :, 1::2].flip(-1))
    if crops in (5, 10):  # corners then centre
        assert torch.equal(out["flow"][0], _fed(item["flow"][..., :32, :32]))
        assert torch.equal(out["flow"][3], _fed(item["flow"][..., H - 32 :, W - 32 :]))
    if crops == 3:  # along the longer (width) side, vertically centred
        top = (H - 32) // 2
        assert torch.equal(out["flow"][0], _fed(item["flow"][..., top : top + 32, :32]))
        assert torch.equal(out["flow"][2], _fed(item["flow"][..., top : top + 32, W - 32 :]))


def test_test_views_too_large_crop():
    with pytest.raises(ValueError, match="larger than the frames"):
        TestViews(64, crops=5)(_item())


def _boxes(transform, n=200, h=240, w=320):
    torch.manual_seed(0)
    video = [tv_tensors.Video(torch.zeros(1, 3, h, w, dtype=torch.uint8))]
    return [transform.make_params(video) for _ in range(n)]


def test_tsn_multiscale_crop_sizes_and_positions():
    boxes = _boxes(MultiScaleCornerCrop(224))
    sizes = [240, 210, 180, 158]  # (1, .875, .75, .66) x the short side 240
    for b in boxes:
        assert b["height"] in sizes and b["width"] in sizes
        assert abs(sizes.index(b["height"]) - sizes.index(b["width"])) <= 1  # max_distort 1
        dy, dx = 240 - b["height"], 320 - b["width"]
        qy, qx = dy // 4, dx // 4
        assert (b["top"], b["left"]) in {(0, 0), (0, 4 * qx), (4 * qy, 0), (4 * qy, 4 * qx), (2 * qy, 2 * qx)}
    assert len({(b["height"], b["width"]) for b in boxes}) == 10  # all allowed pairs occur
    assert len({(b["top"] == 0, b["left"] == 0) for b in boxes}) == 4


def test_st_resnet_multiscale_regular():
    crop = MultiScaleCornerCrop(224, crop_sizes=ST_RESNET_CROP_SIZES, max_distort=3)
    boxes = _boxes(crop, n=300, h=256, w=340)
    pairs = {(b["height"], b["width"]) for b in boxes}
    assert pairs == {(h, w) for h in (256, 224, 192, 168) for w in (256, 224, 192, 168)}  # independent
    out = crop(tv_tensors.Video(torch.zeros(2, 3, 256, 340, dtype=torch.uint8)))
    assert out.shape == (2, 3, 224, 224)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        train_transform(32, kind="zoom")
    with pytest.raises(ValueError, match="crops"):
        test_transform(32, crops=4)


def _flow3_of(flow_px: torch.Tensor) -> Flow3Video:
    """LRCN's flow image minus 128 (as the dataset delivers it) of flow `(T, H, W, 2)` in pixels."""
    from vidrec.data.dataset import lrcn_flow_image

    return Flow3Video(lrcn_flow_image(flow_px))


def test_flow3_is_normalised_to_the_rgb_scale():
    """methods.md 1.2: flow is an image minus 128 on the same scale as RGB (not ~27x its spread)."""
    g = torch.Generator().manual_seed(0)
    flow_px = (torch.randn(T, H, W, 2, generator=g) * 2.2).clamp(-20, 20)  # ~UCF101's flow spread
    rgb = tv_tensors.Video(torch.randint(0, 256, (T, 3, H, W), generator=g, dtype=torch.uint8))
    flow3 = _flow3_of(flow_px)
    out = test_transform(H, crops=1)({"rgb": rgb, "flow3": flow3})
    centre = flow3[..., (W - H) // 2 : (W - H) // 2 + H]
    assert torch.allclose(out["flow3"], centre / (255 * FLOW_STD), atol=1e-5)  # one scale for flow's channels
    ratio = float(out["flow3"].std() / out["rgb"].std())
    assert 0.1 < ratio < 1.0, ratio  # was ~27 when flow3 skipped normalisation
    train_out = train_transform(32, kind="crop", flip=False)({"rgb": rgb, "flow3": flow3})
    assert float(train_out["flow3"].abs().max()) < 128 / (255 * FLOW_STD) + 1e-4


def test_flow_stack_is_on_the_rgb_scale():
    """Every flow form enters like the released pipelines' 0..255 flow image minus 128, on RGB's scale: one
    quantisation level of a stored flow stack (2 * 20 / 255 px), one level of LRCN's flow image (1/16 px)
    and one RGB level give the same input step within 2 % (flow's single scale is the mean of the ImageNet
    stds, which spread +-1.3 % around it). Raw pixels made a stack level 9x an RGB level."""
    import numpy as np

    from vidrec.data.transforms import FLOW_BOUND
    from vidrec.flow import DEFAULT_BOUND, dequantize

    assert FLOW_BOUND == DEFAULT_BOUND  # the store's default bound sets the pixel scale
    levels = np.array([128, 129], dtype=np.uint8)  # one level apart, as a stored stack holds them
    px = torch.from_numpy(dequantize(levels, DEFAULT_BOUND)).view(2, 1, 1, 1).expand(2, 4, H, W)
    rgb = tv_tensors.Video(torch.from_numpy(levels).view(2, 1, 1, 1).expand(2, 3, H, W).contiguous())
    flow3 = _flow3_of(torch.tensor([0.0, 1 / 16]).view(2, 1, 1, 1).expand(2, H, W, 2))  # 16 levels per px
    for transform in (test_transform(H), train_transform(32, kind="crop", flip=False)):
        out = transform({"rgb": rgb, "flow": FlowVideo(px.clone()), "flow3": flow3})
        rgb_step = (out["rgb"][1] - out["rgb"][0]).mean((1, 2))  # (3,): 1 / (255 std_c)
        flow_step = float((out["flow"][1] - out["flow"][0]).abs().mean())
        flow3_step = float((out["flow3"][1, :2] - out["flow3"][0, :2]).mean())  # u and v; |f| rounds
        for step in (flow_step, flow3_step):
            assert torch.all((step / rgb_step - 1).abs() < 0.02), (step, rgb_step)
    assert abs(FLOW_PX_SCALE - 9.04) < 0.01  # 1 px of a stack: 255 / 40 levels / (255 * 0.226)


def test_normalization_spec_matches_the_transforms():
    """The per-modality spec (for code that normalises on the device) gives what the transforms give."""
    from vidrec.data.transforms import NORMALIZATION, normalize_modality

    g = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (T, 3, H, W), generator=g, dtype=torch.uint8)
    flow3 = _flow3_of(torch.randn(T, H, W, 2, generator=g))
    out = test_transform(H, crops=1)({"rgb": tv_tensors.Video(rgb), "flow3": flow3})
    crop = (slice(None), slice(None), slice(None), slice((W - H) // 2, (W - H) // 2 + H))
    assert torch.allclose(normalize_modality("rgb", rgb[crop].float()), out["rgb"], atol=1e-5)
    assert torch.allclose(normalize_modality("flow3", flow3[crop].as_subclass(torch.Tensor)), out["flow3"])
    flow = torch.randn(T, 4, H, W, generator=g) * 3
    assert torch.allclose(NORMALIZATION["flow"](flow), flow / FLOW_PX_SCALE)
    flow_out = test_transform(H, crops=1)({"flow": FlowVideo(flow)})["flow"]
    assert torch.allclose(normalize_modality("flow", flow[crop]), flow_out)


def test_bound_8_store_keeps_the_lrcn_codec_precision():
    """docs/flow.md: `--bound 255/32` keeps |u| <= 7.9 px within 1/32 px (flow3 within half a level)."""
    import numpy as np

    from vidrec.flow import dequantize, quantize

    u = np.linspace(-7.9, 7.9, 2001, dtype=np.float32)
    for bound, worst in ((255 / 32, 1 / 32), (20.0, 20 / 255)):
        err = np.abs(dequantize(quantize(u, bound), bound) - u).max()
        assert err <= worst + 1e-5
    assert np.abs(dequantize(quantize(u, 20.0), 20.0) - u).max() > 1 / 32  # the default store is coarser


def _random_item(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rgb = tv_tensors.Video(torch.randint(0, 256, (T, 3, H, W), generator=g, dtype=torch.uint8))
    flow = FlowVideo(torch.randn(T, 4, H, W, generator=g) * 3)
    flow3 = Flow3Video(torch.randn(T, 3, H, W, generator=g) * 40)
    return {"rgb": rgb, "flow": flow, "flow3": flow3}


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: train_transform(32, kind="tsn", **kw),
        lambda **kw: train_transform(32, kind="resized", **kw),
        lambda **kw: train_transform(32, kind="crop", **kw),
        lambda **kw: test_transform(32, crops=10, resize=36, **kw),
    ],
    ids=["tsn", "resized", "crop", "test10"],
)
def test_uint8_output_normalised_on_device_equals_the_float_pipeline(make):
    from vidrec.data.transforms import normalize_rgb

    for seed in range(3):
        torch.manual_seed(seed)
        ref = make()(_random_item(seed))
        torch.manual_seed(seed)
        raw = make(normalize=False)(_random_item(seed))
        assert raw["rgb"].dtype == torch.uint8 and raw["flow"].dtype == torch.float32
        torch.testing.assert_close(normalize_rgb(raw["rgb"]), ref["rgb"].as_subclass(torch.Tensor))
        torch.testing.assert_close(raw["flow"], ref["flow"])
        torch.testing.assert_close(raw["flow3"], ref["flow3"])  # flow is normalised in the worker either way


def test_normalize_rgb_leaves_float_alone_and_rejects_other_types():
    from vidrec.data.transforms import normalize_rgb

    x = torch.randn(2, 3, 4, 4)
    assert normalize_rgb(x) is x
    with pytest.raises(TypeError, match="uint8"):
        normalize_rgb(torch.zeros(2, 3, 4, 4, dtype=torch.int32))
    custom = normalize_rgb(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert torch.allclose(custom, torch.ones(1, 3, 1, 1))


def test_outer_corner_crop_f25noctr():
    """ST-ResNet stage 1: offsets in the outer quarter near a corner, never the centre."""
    from vidrec.data.transforms import OuterCornerCrop

    boxes = _boxes(OuterCornerCrop(224), n=300, h=256, w=340)
    dy, dx = 256 - 224, 340 - 224
    for b in boxes:
        assert b["height"] == b["width"] == 224
        assert b["top"] <= dy // 4 or b["top"] >= dy - dy // 4
        assert b["left"] <= dx // 4 or b["left"] >= dx - dx // 4
    corners = {(b["top"] > dy // 2, b["left"] > dx // 2) for b in boxes}
    assert len(corners) == 4 and len({b["left"] for b in boxes}) > 8  # all corners, jitter inside
    train = train_transform(224, kind="multiscale")
    assert train.transforms[0].crop_sizes == ST_RESNET_CROP_SIZES and train.transforms[0].max_distort >= 3


def test_mirrored_flow_views_can_keep_x_as_lrcn_release():
    """methods.md 1.4: LRCN's released test path does not negate u in mirrored flow crops."""
    f3 = Flow3Video(torch.randn(T, 3, H, W) * 30)
    kept = test_transform(32, crops=10, negate_flow=False)({"flow3": f3})["flow3"]
    negated = test_transform(32, crops=10)({"flow3": f3})["flow3"]
    assert torch.equal(kept[5:], kept[:5].flip(-1))
    assert torch.equal(negated[5:, :, 0], -negated[:5, :, 0].flip(-1))
