"""Deep Feature Flow for detection (`vidrec.dff.detect`): key frames and l = 1 give the per-frame detections
exactly; every pyramid level is warped by the flow resized to its grid and scaled to its pixels."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from vidrec.dff.cost import count_flops, part_costs, path_totals
from vidrec.dff.detect import KEY_PARTS, NON_KEY_PARTS, PyramidDFF, as_pyramid_dff, cost_steps, warp_pyramid
from vidrec.dff.flownets import FlowNetLite
from vidrec.dff.model import ScaleField
from vidrec.dff.schedule import Bidirectional, FixedInterval
from vidrec.models.detector import STRIDES, fcos_mobilenet_v2


class ShiftFlow(nn.Module):
    """A flow net giving a constant current -> key flow of `dx` image pixels, on the image grid."""

    scale_channels = 0

    def __init__(self, dx: float) -> None:
        super().__init__()
        self.dx = dx

    def forward(self, key_img, cur_img):
        flow = torch.zeros(key_img.shape[0], 2, *key_img.shape[-2:])
        flow[:, 0] = self.dx
        return flow, None


def test_each_level_is_warped_by_the_flow_scaled_to_its_stride():
    h, w = 64, 128  # image
    torch.manual_seed(0)
    levels = OrderedDict(
        (f"p{i + 3}", torch.randn(1, 4, h // s, w // s)) for i, s in enumerate(STRIDES)
    )  # strides 8, 16, 32
    flow, _ = ShiftFlow(16.0)(torch.zeros(1, 3, h, w), None)  # 16 image px to the right
    out = warp_pyramid(levels, flow)
    # current(p) = key(p + 16 px): 2 cells at stride 8, 1 at 16, half a cell at 32
    assert torch.allclose(out["p3"][..., :-2], levels["p3"][..., 2:], atol=1e-5)
    assert torch.allclose(out["p4"][..., :-1], levels["p4"][..., 1:], atol=1e-5)
    p5 = levels["p5"]
    assert torch.allclose(out["p5"][..., :-1], (p5[..., :-1] + p5[..., 1:]) / 2, atol=1e-5)
    # unscaled (image px used as cell px) would have moved p4 by 16 cells: make sure it did not
    assert not torch.allclose(out["p4"][..., :-1], torch.zeros_like(out["p4"][..., :-1]))


def test_the_scale_field_multiplies_every_level():
    levels = OrderedDict(p3=torch.randn(1, 4, 8, 16), p4=torch.randn(1, 4, 4, 8))
    zero = torch.zeros(1, 2, 8, 16)
    twice = torch.full((1, 4, 8, 16), 2.0)
    out = warp_pyramid(levels, zero, twice)
    assert torch.allclose(out["p3"], 2 * levels["p3"]) and torch.allclose(out["p4"], 2 * levels["p4"])


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    det = fcos_mobilenet_v2(score_thresh=0.0).eval()  # random weights: every candidate box is kept
    return det


def same_detections(a: list[dict], b: list[dict]) -> bool:
    return all(
        torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in ("boxes", "scores", "labels")
    )


def test_key_frames_equal_per_frame_and_l1_equals_per_frame(detector):
    torch.manual_seed(1)
    flow = FlowNetLite(stride=8)
    nn.init.normal_(flow.predict.weight, std=0.5)  # a non-zero flow: propagated frames do differ
    dff = PyramidDFF(detector.feature_net, flow, detector.task_net).eval()
    frames = [torch.randn(1, 3, 64, 96) for _ in range(5)]
    with torch.no_grad():
        per_frame = [detector(f) for f in frames]
    l3 = list(dff.run(iter(frames), FixedInterval(3)))
    assert [k for _, k in l3] == [True, False, False, True, False]
    for (dets, is_key), ref in zip(l3, per_frame, strict=True):
        assert same_detections(dets, ref) == is_key  # key frames exactly; the others differ
    l1 = list(dff.run(iter(frames), FixedInterval(1)))
    assert all(k for _, k in l1)
    assert all(same_detections(d, ref) for (d, _), ref in zip(l1, per_frame, strict=True))


def test_bidirectional_blends_every_pyramid_level_from_both_key_frames(detector):
    """With a zero flow the blend is exact arithmetic: the middle frame of l = 2 gets the mean of the two
    key pyramids on every level (tau 0: nearness alone), so its detections are the head's on that mean."""
    dff = PyramidDFF(detector.feature_net, ShiftFlow(0.0), detector.task_net).eval()
    torch.manual_seed(2)
    frames = [torch.randn(1, 3, 64, 96) for _ in range(3)]
    runs = list(dff.run(iter(frames), Bidirectional(2, tau=0.0)))
    assert [k for _, k in runs] == [True, False, True]
    with torch.no_grad():
        a, b = detector.feature_net(frames[0]), detector.feature_net(frames[2])
        mean = OrderedDict((k, (a[k] + b[k]) / 2) for k in a)
        expected = detector.task_net(mean, (64, 96))
    assert same_detections(runs[1][0], expected)


class Counted(nn.Module):
    """`module` counting its calls."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module, self.calls = module, 0

    def forward(self, *args):
        self.calls += 1
        return self.module(*args)


def test_non_key_frames_skip_the_feature_net(detector):
    """l = 10 over 12 frames: the feature net runs on frames 0 and 10 only, the flow net on the other ten."""
    feature_net, flow_net = Counted(detector.feature_net), Counted(ShiftFlow(8.0))
    dff = PyramidDFF(feature_net, flow_net, detector.task_net).eval()
    frames = [torch.randn(1, 3, 64, 96) for _ in range(12)]
    keys = [k for _, k in dff.run(iter(frames), FixedInterval(10))]
    assert [i for i, k in enumerate(keys) if k] == [0, 10]
    assert feature_net.calls == 2 and flow_net.calls == 10


def test_cost_steps_split_a_frame_into_parts_that_compose_to_its_detections(detector):
    """`cost_steps` times the parts `PyramidDFF.run` runs: key = feature net + head + postprocess (the
    per-frame FLOPs), non-key = flow + scale field + warp + head + postprocess (no feature net); the head's
    postprocess on its raw outputs gives the head's detections."""
    torch.manual_seed(2)
    flow = FlowNetLite(stride=8, downscale=4)
    nn.init.normal_(flow.predict.weight, std=0.5)
    dff = PyramidDFF(detector.feature_net, flow, detector.task_net, scale_field=ScaleField(16, 64)).eval()
    key, cur = torch.randn(2, 1, 3, 64, 96)
    costs = part_costs(dff, key, cur, timed=False, steps=cost_steps)
    assert [c.part for c in costs if c.path == "key"] == list(KEY_PARTS)
    assert [c.part for c in costs if c.path == "non-key"] == list(NON_KEY_PARTS)
    totals = path_totals(costs)
    assert totals["key"].flops == count_flops(lambda: dff.per_frame(key))
    assert totals["non-key"].flops < totals["key"].flops / 5  # no feature net on a propagated frame
    steps = cost_steps(dff, key, cur)
    with torch.inference_mode():
        assert same_detections(steps["key", "postprocess"](), dff.per_frame(key))
        assert same_detections(steps["non-key", "postprocess"](), dff(key, cur))


def test_dff_detector_uses_the_key_pyramid_unwarped_on_same_pairs():
    from vidrec.models import get_model

    torch.manual_seed(0)
    dff = get_model("dff_fcos_mobilenet_v2", num_classes=2, score_thresh=0.0).eval()
    assert as_pyramid_dff(dff) is dff and torch.equal(dff.scale.bias, torch.ones(64))  # S = 1 at the start
    assert (dff.flow_net.stride, dff.flow_net.downscale) == (8, 4)  # the pair at 1/4, flow on the p3 grid
    assert dff.task_net.topk_candidates == 100
    nn.init.normal_(dff.flow_net.predict.weight, std=0.5)  # a non-zero flow
    img, key = torch.randn(2, 3, 64, 96), torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert same_detections(dff(img, img, torch.tensor([True, True])), dff.per_frame(img))
        out, ref = dff(key, img, torch.tensor([True, False])), dff.per_frame(key)
    assert same_detections(out[:1], ref[:1])  # the key pyramid as it is
    assert not same_detections(out[1:], ref[1:])  # warped


def test_as_pyramid_dff_needs_a_flow_source_for_a_per_frame_detector(detector):
    with pytest.raises(ValueError, match="no flow net of its own"):
        as_pyramid_dff(detector)
    built = as_pyramid_dff(detector, flow_net=ShiftFlow(0.0))
    assert built.feature_net is detector.feature_net and built.scale is None


def test_bidirectional_detections_side_by_side_are_the_one_thread_walks(detector):
    """At two threads the walk runs key frames, then the frames between them, side by side
    (`vidrec.dff.model.map_frames`): the same detections, pyramids and warp errors included."""
    torch.manual_seed(3)
    flow = FlowNetLite(stride=8)
    nn.init.normal_(flow.predict.weight, std=0.5)
    dff = PyramidDFF(detector.feature_net, flow, detector.task_net).eval()
    frames = [torch.randn(1, 3, 64, 96) for _ in range(8)]
    before, runs = torch.get_num_threads(), {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs[threads] = list(dff.run(iter(frames), Bidirectional(3, tau=0.1)))
    finally:
        torch.set_num_threads(before)
    assert [k for _, k in runs[2]] == [k for _, k in runs[1]] == [i % 3 == 0 for i in range(8)]
    for (a, _), (b, _) in zip(runs[1], runs[2], strict=True):
        assert torch.allclose(a[0]["boxes"], b[0]["boxes"], atol=1e-3)
        assert torch.allclose(a[0]["scores"], b[0]["scores"], atol=1e-5)
