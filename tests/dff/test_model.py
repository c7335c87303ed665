"""DFF's promises (methods.md 4.7.1, 4.7.2, 4.7.4, 4.7.6): l = 1 is per-frame inference exactly, key
frames are per-frame at any l, S = 1 at initialisation and its bias never changes in training, the loss on
the current frame reaches the feature net (through the warp), the flow net, S and the task net, and the
FLOPs of a window of l frames give the amortised speed-up s(l)."""

from __future__ import annotations

import pytest
import torch
from dff_helpers import tiny_dff
from torch import nn

from vidrec.dff.model import DFF, ScaleField, as_dff
from vidrec.dff.schedule import Adaptive, FixedInterval


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


def test_adaptive_run_marks_the_frames_its_schedule_chose(frames):
    model = tiny_dff().eval()
    every = [k for _, k in model.run(frames, Adaptive(budget=7, window=7, threshold=-1.0))]
    never = [k for _, k in model.run(frames, Adaptive(budget=7, window=7, threshold=1e9))]
    assert every == [True] * 7 and never == [True] + [False] * 6


def test_scale_field_starts_at_one_and_its_bias_never_changes_in_training(frames):
    model = tiny_dff()
    s_in = torch.randn(2, model.flow_net.scale_channels, 3, 4)
    assert torch.equal(model.scale(s_in), torch.ones(2, 6, 3, 4))
    bias = model.scale.bias.clone()
    assert "scale.bias" in model.state_dict() and all(p is not model.scale.bias for p in model.parameters())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    target = torch.randint(0, 2, (1, 48, 64))
    for step in range(3):
        out = model(frames[0], frames[3 + step])
        loss = nn.functional.cross_entropy(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(model.scale.bias, bias)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    for part in ("feature_net.0.weight", "task_net.weight", "scale.conv.weight", "flow_net.predict.weight"):
        assert part in moved, f"the loss on the current frame did not reach {part}"


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


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("interval", [1, 2, 5, 7])
def test_flops_per_window_of_l_frames_match_the_amortised_speed_up(frames, interval):
    """methods.md 4.7.6 / 4.4: over a window of l frames (one key frame, l - 1 propagated) the measured
    FLOPs give s(l) = l / (1 + (l - 1) / r), r = per-frame cost / propagated-frame cost."""
    model = tiny_dff().eval()
    # a feature net that costs more than the flow net, as ResNet-101 does against FlowNet
    model.feature_net = nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 6, 16, stride=16)
    )
    key, cur = frames[0], frames[1]
    per_frame = _flops(lambda: model.per_frame(cur))
    propagated = _flops(lambda: model.head(model.propagate(model.key_features(key), key, cur), (48, 64)))
    propagated -= _flops(lambda: model.key_features(key))  # the key features are cached, not recomputed
    r = per_frame / propagated
    assert r > 1.5  # the feature net dominates, as in the paper (else s(l) could not tell l apart)
    window = _flops(lambda: list(model.run(frames[:interval], FixedInterval(interval))))
    speed_up = interval * per_frame / window
    assert speed_up == pytest.approx(interval / (1 + (interval - 1) / r), rel=1e-9)
