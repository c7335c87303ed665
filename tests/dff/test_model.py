"""DFF's promises (methods.md 4.7.1, 4.7.2, 4.7.4, 4.7.6): l = 1 is per-frame inference exactly, key
frames are per-frame at any l, S = 1 at initialisation and its bias never changes in training, the loss on
the current frame reaches the feature net (through the warp), the flow net, S and the task net, and the
FLOPs of a window of l frames give the amortised speed-up s(l)."""

from __future__ import annotations

import pytest
import torch
from dff_helpers import tiny_dff
from torch import nn

from vidrec.dff.cost import (
    KEY_PARTS,
    NON_KEY_PARTS,
    amortised_speed_up,
    count_flops,
    flop_ratio,
    part_costs,
    path_totals,
)
from vidrec.dff.model import DFF, BiasField, ScaleField, as_dff, nearness_weights, warp_error
from vidrec.dff.schedule import Adaptive, Bidirectional, FixedInterval
from vidrec.dff.warp import warp


def _per_frame(model: DFF, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model.per_frame(f) for f in frames]


def test_interval_one_equals_per_frame_inference_exactly(frames):
    model = tiny_dff().eval()
    runs = list(model.run(frames, FixedInterval(1)))
    assert all(is_key for _, is_key in runs)
    for (out, _), ref in zip(runs, _per_frame(model, frames), strict=True):
        assert out.shape == (1, 2, 48, 64) and torch.equal(out, ref)


@pytest.mark.parametrize("interval", [2, 3, 5, 10])
def test_key_frames_equal_per_frame_at_any_interval_and_the_others_are_propagated(frames, interval):
    model = tiny_dff().eval()
    runs = list(model.run(frames, FixedInterval(interval)))
    refs = _per_frame(model, frames)
    assert [k for _, k in runs] == [i % interval == 0 for i in range(len(frames))]
    for i, ((out, is_key), ref) in enumerate(zip(runs, refs, strict=True)):
        if is_key:
            assert torch.equal(out, ref), i
        else:  # propagated: not the per-frame output, but the head of the warped key features
            assert not torch.allclose(out, ref)
            key = frames[i - i % interval]
            with torch.no_grad():
                expected = model.head(model.propagate(model.key_features(key), key, frames[i]), (48, 64))
            assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize(("interval", "tau"), [(2, 0.0), (3, 0.0), (5, 0.0), (3, 0.5)])
def test_bidirectional_blends_both_key_frames_and_keeps_fixed_intervals_keys(frames, interval, tau):
    model = tiny_dff().eval()
    runs = list(model.run(iter(frames), Bidirectional(interval, tau=tau)))
    refs = _per_frame(model, frames)
    assert [k for _, k in runs] == [i % interval == 0 for i in range(len(frames))]  # FixedInterval's keys
    last_key = (len(frames) - 1) // interval * interval
    with torch.no_grad():
        feats = {k: model.key_features(frames[k]) for k in range(0, len(frames), interval)}

        def side(k, i):  # (features propagated from key frame k to frame i, their warp error map)
            flow, scale_in = model.estimate_flow(frames[k], frames[i], feats[k].shape[-2:])
            return model.warp_features(feats[k], flow, scale_in), warp_error(flow, frames[k], frames[i])

        for i, ((out, is_key), ref) in enumerate(zip(runs, refs, strict=True)):
            prev = i - i % interval
            fwd, e0 = side(prev, i)
            if is_key:
                assert torch.equal(out, ref), i
            elif i > last_key:  # after the last key frame: forward only, as FixedInterval
                assert torch.allclose(out, model.head(fwd, (48, 64)), atol=1e-6), i
            else:
                back, e1 = side(prev + interval, i)
                w = (prev + interval - i) / interval
                if tau:  # per pixel: each side times exp(-error / tau), normalised
                    a0, a1 = w * torch.exp(-e0 / tau), (1 - w) * torch.exp(-e1 / tau)
                    w = a0 / (a0 + a1)
                    assert w.shape == (1, 1, *fwd.shape[-2:]) and w.std() > 0
                expected = model.head(w * fwd + (1 - w) * back, (48, 64))
                assert torch.allclose(out, expected, atol=1e-5), i
                assert not torch.allclose(out, model.head(fwd, (48, 64)), atol=1e-4), i  # both sides count


def test_nearness_weights_trust_the_side_whose_warp_explains_the_frame():
    good, bad = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    assert nearness_weights(0.8, None, 0.1) == 0.8 and nearness_weights(0.8, (bad, good), 0.0) == 0.8
    w = nearness_weights(0.5, (bad, good), 0.1)  # the earlier side's warp fails here: the later one wins
    assert w.shape == (1, 1, 2, 2) and float(w.max()) < 0.01
    assert torch.allclose(nearness_weights(0.7, (good, good), 0.1), torch.full((1, 1, 2, 2), 0.7))
    with pytest.raises(ValueError, match="tau must be >= 0"):
        Bidirectional(10, tau=-1.0)


def test_bidirectional_holds_at_most_the_interval_and_yields_in_order(frames):
    """Outputs come in frame order, each once the next key frame has been read, never later."""
    model = tiny_dff().eval()
    read: list[int] = []

    def source():
        for i, f in enumerate(frames):
            read.append(i)
            yield f

    lag = []
    for index, _ in enumerate(model.run(source(), Bidirectional(3))):
        lag.append(read[-1] - index)
    assert len(lag) == len(frames) and max(lag) <= 2 and lag[0] == 0


def test_adaptive_run_marks_the_frames_its_schedule_chose(frames):
    model = tiny_dff().eval()
    every = [k for _, k in model.run(frames, Adaptive(budget=7, window=7, threshold=-1.0))]
    never = [k for _, k in model.run(frames, Adaptive(budget=7, window=7, threshold=1e9))]
    assert every == [True] * 7 and never == [True] + [False] * 6


def train_on_pairs(model: DFF, opt: torch.optim.Optimizer, frames, *, steps: int = 3, first: int = 3) -> None:
    """`steps` optimiser steps of cross-entropy against one random mask on the pairs (frame 0, frame
    `first` + step): the loss on the current frame, as DFF trains."""
    target = torch.randint(0, 2, (1, 48, 64))
    for step in range(steps):
        loss = nn.functional.cross_entropy(model(frames[0], frames[first + step]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_scale_field_starts_at_one_and_its_bias_never_changes_in_training(frames):
    model = tiny_dff()
    s_in = torch.randn(2, model.flow_net.scale_channels, 3, 4)
    assert torch.equal(model.scale(s_in), torch.ones(2, 6, 3, 4))
    bias = model.scale.bias.clone()
    assert "scale.bias" in model.state_dict() and all(p is not model.scale.bias for p in model.parameters())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_on_pairs(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1), frames)
    assert torch.equal(model.scale.bias, bias)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    for part in ("feature_net.0.weight", "task_net.weight", "scale.conv.weight", "flow_net.predict.weight"):
        assert part in moved, f"the loss on the current frame did not reach {part}"


def test_frozen_parts_keep_their_weights_and_statistics_while_the_flow_trains(frames):
    model = tiny_dff()
    model.feature_net.insert(1, nn.BatchNorm2d(6))  # statistics that a training batch would move
    model.freeze(["feature_net", "task_net"]).train()
    assert model.training and not model.feature_net.training and not model.task_net.training
    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    train_on_pairs(
        model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01), frames
    )
    after = model.state_dict()
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert not [n for n in moved if n.startswith(("feature_net.", "task_net."))]  # BN running stats too
    assert {"scale.conv.weight", "flow_net.predict.weight"} <= moved
    with pytest.raises(ValueError, match="not parts of a DFF model"):
        tiny_dff().freeze(["backbone"])


def test_same_flag_uses_the_key_features_unwarped(frames):
    model = tiny_dff().eval()
    pair = torch.cat(frames[:2]), torch.cat(frames[2:4])
    with torch.no_grad():
        out = model(*pair, same=torch.tensor([True, False]))
        assert torch.allclose(out[:1], model.per_frame(frames[0]), atol=1e-6)  # batched: not bitwise
        assert torch.allclose(out[1:], model(frames[1], frames[3]), atol=1e-6)


def test_as_dff_wraps_a_per_frame_model_and_refuses_other_models():
    per_frame = nn.Module()
    per_frame.feature_net, per_frame.task_net, per_frame.feature_stride = nn.Identity(), nn.Identity(), 8
    flow = tiny_dff().flow_net
    dff = as_dff(per_frame, flow_net=flow)
    assert isinstance(dff, DFF) and dff.flow_net is flow and dff.scale is None and dff.feature_stride == 8
    with pytest.raises(ValueError, match="no flow net of its own"):
        as_dff(per_frame)
    with pytest.raises(ValueError, match="lacks feature_net, task_net, feature_stride"):
        as_dff(nn.Linear(2, 2), flow_net=flow)


def test_scale_field_is_a_1x1_conv_with_zero_weights():
    s = ScaleField(5, 7)
    assert (
        s.conv.kernel_size == (1, 1) and s.conv.weight.abs().sum() == 0 and torch.equal(s.bias, torch.ones(7))
    )


@pytest.mark.parametrize("interval", [1, 2, 5, 7])
def test_flops_per_window_match_s_of_l(frames, interval):
    """methods.md 4.7.6 / 4.4: over a window of l frames (one key frame, l - 1 propagated) the FLOPs that
    `DFF.run` spends are l * cost(key) / s(l), s(l) = l / (1 + (l - 1) / r), for the r that
    `vidrec.dff.cost` measures part by part; and per frame (l = 1) costs what the key path costs."""
    model = tiny_dff().eval()
    # a feature net that costs more than the flow net, as ResNet-101 does against FlowNet
    model.feature_net = nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 6, 16, stride=16)
    )
    costs = part_costs(model, frames[0], frames[1], timed=False)
    assert [(c.path, c.part) for c in costs] == [("key", p) for p in KEY_PARTS] + [
        ("non-key", p) for p in NON_KEY_PARTS
    ]
    key = path_totals(costs)["key"].flops
    r = flop_ratio(costs)
    assert r > 1.5  # the feature net dominates, as in the paper (else s(l) could not tell l apart)
    assert count_flops(lambda: model.per_frame(frames[1])) == key
    window = count_flops(lambda: list(model.run(frames[:interval], FixedInterval(interval))))
    assert window == pytest.approx(interval * key / amortised_speed_up(interval, r), rel=1e-9)


def test_default_model_propagates_a_frame_for_at_most_a_ninth_of_a_key_frame():
    """Issue 23: the default DFF (`dff_segnet_mobilenet_v2`, learned flow) at the default 240 x 432: the
    non-key path (flow from the pair at 1/4 resolution, S on the flow net's features, the warp and task net
    on the 128-channel reduced map) costs <= 1/9 of the key path, so s(10) >= 5 in FLOPs."""
    from vidrec.models.segnet import dff_segnet_mobilenet_v2

    model = dff_segnet_mobilenet_v2(pretrained=False).eval()
    torch.manual_seed(0)
    key, cur = torch.randn(2, 1, 3, 240, 432)
    costs = part_costs(model, key, cur, timed=False)
    by_part = {(c.path, c.part): c.flops for c in costs}
    assert flop_ratio(costs) >= 9 and amortised_speed_up(10, flop_ratio(costs)) >= 5
    assert by_part[("non-key", "task net")] < by_part[("key", "feature net")] / 1000  # the reduced map
    assert model.scale.conv.out_channels == model.task_net.reduce.out_channels == 128


def test_propagating_the_reduced_map_equals_reducing_the_propagated_map(frames):
    """The task net's 1x1 reduction is linear per position: warping its output (``reduced=True``, what DFF
    propagates) equals reducing the warped full map wherever the flow stays inside; per frame and on key
    frames the reduced model is the per-frame model exactly."""
    from vidrec.models.segnet import SegHead

    torch.manual_seed(1)
    full = tiny_dff(channels=12).eval()
    full.task_net, full.scale = SegHead(12, 2, hidden=5), None
    reduced = DFF(full.feature_net, full.flow_net, full.task_net, feature_stride=16, reduced=True).eval()
    with torch.no_grad():
        feat = full.feature_net(frames[0])  # (1, 12, 3, 4)
        flow = torch.zeros(1, 2, 3, 4)
        flow[:, 0, :, :2] = 1.25  # inside the map: x + 1.25 <= 2.25 < 3
        ref = full.task_net.reduce(warp(feat, flow))
        assert torch.allclose(warp(reduced.key_features(frames[0]), flow), ref, atol=1e-6)
        assert reduced.key_features(frames[0]).shape == (1, 5, 3, 4)
        for (out, _), expected in zip(reduced.run(frames, FixedInterval(1)), _per_frame(full, frames)):
            assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="lacks reduce, classify_reduced"):
        DFF(full.feature_net, full.flow_net, nn.Conv2d(12, 2, 1), reduced=True)


def test_bias_field_adds_a_correction_that_starts_at_zero_and_leaves_key_frames_exact(frames):
    """B (`BiasField`): zero at initialisation, so propagation is the paper's ``S * warp``; once trained it
    is added to the scaled warp on propagated frames only, and the loss on the current frame reaches it."""
    model = tiny_dff().eval()
    plain = [out for out, _ in model.run(frames, FixedInterval(3))]
    model.bias_field = BiasField(model.flow_net.scale_channels, 6)
    assert all(torch.equal(a, b) for a, b in zip(plain, [o for o, _ in model.run(frames, FixedInterval(3))]))
    model.train()
    before = model.bias_field.conv.weight.detach().clone()
    train_on_pairs(model, torch.optim.SGD(model.parameters(), lr=0.1), frames, steps=2, first=2)
    assert not torch.equal(model.bias_field.conv.weight, before)
    model.eval()
    runs = list(model.run(frames, FixedInterval(3)))
    refs = _per_frame(model, frames)
    with torch.no_grad():
        key_feat = model.key_features(frames[3])
        flow, scale_in = model.estimate_flow(frames[3], frames[4], key_feat.shape[-2:])
        bias = model.bias(scale_in, key_feat.shape[-2:])
        warped = warp(key_feat, flow, model.scale_field(scale_in, flow.shape[-2:]))
        expected = model.head(warped + bias, (48, 64))
    assert bias.abs().sum() > 0 and torch.allclose(runs[4][0], expected, atol=1e-6)
    keys = [(out, ref) for i, ((out, _), ref) in enumerate(zip(runs, refs, strict=True)) if i % 3 == 0]
    assert all(torch.equal(out, ref) for out, ref in keys)
