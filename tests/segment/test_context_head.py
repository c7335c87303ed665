"""The segmentation head's context option (`vidrec.models.segnet.ContextReduce`): its shapes, that it sees
beyond one feature pixel (the 1x1 head does not), that Deep Feature Flow still splits it into a key-frame
part and a cheap per-frame part, and that a wrong ``context`` names the field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidrec.dff import DFF, FixedInterval
from vidrec.dff.flownets import FlowNetLite
from vidrec.models.segnet import ContextReduce, SegHead, segnet_mobilenet_v2


def test_context_head_keeps_the_shapes_and_its_reduction_sees_its_neighbours():
    torch.manual_seed(0)
    head = SegHead(16, 2, hidden=8, context=(1, 2)).eval()
    assert isinstance(head.reduce, ContextReduce) and head.reduce.out_channels == 8
    x = torch.randn(2, 16, 6, 9)
    with torch.no_grad():
        reduced = head.reduce(x)
        assert reduced.shape == (2, 8, 6, 9) and head(x).shape == (2, 2, 6, 9)
        assert torch.equal(head(x), head.classify_reduced(reduced))
        poked = x.clone()
        poked[:, :, 0, 0] += 5.0  # one corner pixel changes
        far = (head.reduce(poked) - reduced).abs().amax(dim=(0, 1))  # (6, 9)
        assert far[2, 2] > 0 and far[5, 8] > 0  # within the dilated 3x3 reach, and the image-level branch
        plain = SegHead(16, 2, hidden=8).eval()
        plain_far = (plain.reduce(poked) - plain.reduce(x)).abs().amax(dim=(0, 1))
        assert plain_far[0, 0] > 0 and plain_far.count_nonzero() == 1  # 1x1: the poked pixel only
    model = segnet_mobilenet_v2(context=[2, 4]).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 2, 64, 96)
    assert segnet_mobilenet_v2().task_net.state_dict().keys() == {  # checkpoints from before `context`
        "reduce.weight",
        "reduce.bias",
        "classify.weight",
        "classify.bias",
    }


@pytest.fixture
def frames() -> list[torch.Tensor]:
    """7 frames `(1, 3, 48, 64)` of a texture moving right by 3 px a frame."""
    torch.manual_seed(5)
    big = torch.randn(1, 3, 48, 64 + 3 * 7)
    return [big[..., 3 * t : 3 * t + 64].clone() for t in range(7)]


class Counting(nn.Module):
    """Wraps a module and counts its calls."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_dff_runs_the_context_on_key_frames_only_and_key_frames_equal_per_frame(frames):
    torch.manual_seed(3)
    head = SegHead(6, 2, hidden=5, context=(1, 2))
    feature_net = Counting(nn.Sequential(nn.Conv2d(3, 6, 16, stride=16), nn.ReLU()))
    head.reduce = Counting(head.reduce)
    flow_net = FlowNetLite(stride=16, width=4)
    nn.init.normal_(flow_net.predict.weight, std=0.5)  # a non-zero flow: propagation is not a copy
    model = DFF(feature_net, flow_net, head, feature_stride=16, reduced=True).eval()
    with torch.no_grad():
        per_frame = [
            nn.functional.interpolate(
                head(feature_net(f)), size=(48, 64), mode="bilinear", align_corners=False
            )
            for f in frames
        ]
        feature_net.calls = head.reduce.calls = 0
        runs = list(model.run(frames, FixedInterval(3)))
    assert [k for _, k in runs] == [True, False, False, True, False, False, True]
    assert feature_net.calls == head.reduce.calls == 3  # the feature net and the context: key frames only
    for (out, is_key), ref in zip(runs, per_frame, strict=True):
        assert out.shape == (1, 2, 48, 64)
        assert torch.equal(out, ref) if is_key else not torch.allclose(out, ref)


@pytest.mark.parametrize("context", [[0], [2, -1], [1.5]])
def test_a_wrong_context_names_the_field(context):
    with pytest.raises(ValueError, match=r"^context: dilation rates must be integers >= 1"):
        segnet_mobilenet_v2(context=context)
