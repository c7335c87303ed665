"""Test-time flips (``flip_test``): the segmenter's features are those of the frame and of its mirror image
averaged (`vidrec.dff.warp.mirror_averaged`), in eval mode only; under Deep Feature Flow on key frames
only, so a key frame is still the per-frame net and propagated frames cost what they cost."""

from __future__ import annotations

import torch
from torch import nn

from vidrec.dff import as_dff
from vidrec.dff.flownets import make_flow_net
from vidrec.dff.schedule import FixedInterval
from vidrec.dff.warp import mirror_averaged
from vidrec.models.segnet import SegHead, SegNet, dff_segnet_mobilenet_v2, segnet_mobilenet_v2


class Counting(nn.Module):
    """Wraps a module and counts the images it saw."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.images = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.inner(x)


def test_mirror_averaged_is_the_mean_of_the_features_and_the_mirrored_features_of_the_mirror():
    torch.manual_seed(0)
    net = nn.Conv2d(3, 4, 3, padding=1)  # not mirror-symmetric: the two terms differ
    x = torch.randn(2, 3, 8, 10)
    with torch.no_grad():
        a, b = net(x), net(x.flip(-1)).flip(-1)
        assert not torch.allclose(a, b)
        assert torch.allclose(mirror_averaged(net, x), (a + b) / 2, atol=1e-6)
        # a mirror image gives the mirrored output: the average is flip-equivariant
        assert torch.allclose(mirror_averaged(net, x.flip(-1)), mirror_averaged(net, x).flip(-1), atol=1e-6)


def test_flip_test_averages_in_eval_mode_only_and_keeps_the_weights():
    plain, flipped = segnet_mobilenet_v2(hidden=8), segnet_mobilenet_v2(hidden=8, flip_test=True)
    assert flipped.flip_test and not plain.flip_test
    assert flipped.state_dict().keys() == plain.state_dict().keys()  # a checkpoint loads either way
    torch.manual_seed(1)
    feature_net = nn.Sequential(nn.Conv2d(3, 6, 16, stride=16), nn.ReLU())
    model = SegNet(Counting(feature_net), SegHead(6, 2, hidden=5), feature_stride=16, flip_test=True).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = (feature_net(x) + feature_net(x.flip(-1)).flip(-1)) / 2
        want = nn.functional.interpolate(model.task_net(features), size=(64, 96), mode="bilinear")
        got = model(x)
        model.flip_test = False
        assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, model(x), atol=1e-4)
    model.flip_test = True
    model.feature_net.images = 0
    model.train()
    model(x).sum().backward()  # training sees the frame once, with gradients
    assert model.feature_net.images == 1


def test_dff_flips_key_frames_only_and_as_dff_keeps_the_choice():
    torch.manual_seed(2)
    seg = segnet_mobilenet_v2(hidden=8, flip_test=True).eval()
    dff = as_dff(seg, flow_net=make_flow_net("dis", stride=16)).eval()
    assert dff.flip_test
    dff.feature_net = Counting(dff.feature_net)
    frames = [torch.randn(1, 3, 64, 96) for _ in range(4)]
    with torch.no_grad():
        outs = list(dff.run(iter(frames), FixedInterval(3)))
        assert dff.feature_net.images == 2 * 2  # key frames 0 and 3, each with its mirror image
        assert torch.allclose(outs[0][0], seg(frames[0]), atol=1e-5)  # a key frame is the per-frame net
    built = dff_segnet_mobilenet_v2(hidden=8, flow="dis", flip_test=True)
    assert built.flip_test and not dff_segnet_mobilenet_v2(hidden=8, flow="dis").flip_test


def test_dff_run_and_eval_drop_the_mirror_image_with_no_flip_test():
    from dff_args import dff_from_cli

    model = segnet_mobilenet_v2(hidden=8, flip_test=True)
    assert dff_from_cli(model, []).flip_test
    assert not dff_from_cli(model, ["--no-flip-test"]).flip_test
