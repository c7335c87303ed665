"""``largest_object``: in eval mode the segmenter keeps its foreground in the largest connected region only
(`vidrec.dff.warp.keep_largest_object`, on the feature grid before the upsampling); under Deep Feature Flow
on every frame's output, key and propagated, so the per-frame row and DFF's rows are filtered alike."""

from __future__ import annotations

import torch
from dff_args import dff_from_cli
from torch import nn

import vidrec.dff.model as dff_model
from vidrec.dff import as_dff
from vidrec.dff.flownets import make_flow_net
from vidrec.dff.schedule import FixedInterval
from vidrec.dff.warp import keep_largest_object
from vidrec.models.segnet import SegHead, SegNet, dff_segnet_mobilenet_v2, segnet_mobilenet_v2


def two_blobs(k: int = 2) -> torch.Tensor:
    """Logits (2, k, 12, 16): item 0 with a 4x5 and a 2x2 foreground region (class k - 1) and a one-pixel
    region touching the big one diagonally (8-connected: part of it); item 1 with one region."""
    logits = torch.zeros(2, k, 12, 16)
    logits[:, 0] = 1.0
    logits[0, k - 1, 2:6, 2:7] = torch.linspace(2, 3, 5)  # the big region
    logits[0, k - 1, 6, 7] = 2.5  # diagonal neighbour of (5, 6)
    logits[0, k - 1, 9:11, 12:14] = 4.0  # a small, confident region
    logits[1, k - 1, 3:5, 3:5] = 2.0
    return logits


def test_keep_largest_object_drops_the_smaller_regions_and_nothing_else():
    for k in (2, 3):
        logits = two_blobs(k)
        out = keep_largest_object(logits)
        fg_in, fg_out = logits.argmax(1) != 0, out.argmax(1) != 0
        want = fg_in.clone()
        want[0, 9:11, 12:14] = False
        assert torch.equal(fg_out, want)
        assert torch.equal(out[1], logits[1])  # one region: unchanged
        assert torch.equal(out[0, :, :9], logits[0, :, :9])  # the kept region's logits as they were
        assert (out[0, k - 1, 9:11, 12:14] < out[0, 0, 9:11, 12:14]).all()
        # the dropped region stays dropped through a bilinear upsampling
        up = nn.functional.interpolate(out, scale_factor=8, mode="bilinear", align_corners=False)
        assert not (up.argmax(1) != 0)[0, 9 * 8 : 11 * 8, 12 * 8 : 14 * 8].any()
    single = two_blobs()[1:]
    assert keep_largest_object(single) is single  # nothing dropped: no copy


def test_largest_object_in_eval_mode_only():
    torch.manual_seed(0)
    feature_net = nn.Conv2d(3, 6, 16, stride=16)
    head = SegHead(6, 2, hidden=5)
    model = SegNet(feature_net, head, feature_stride=16, largest_object=True)
    x = torch.randn(1, 3, 192, 256)
    with torch.no_grad():
        head.classify.bias.copy_(torch.tensor([0.0, 0.0]))
        grid = head(feature_net(x))  # (1, 2, 12, 16)
        assert ((grid.argmax(1) != 0) != (keep_largest_object(grid).argmax(1) != 0)).any(), (
            "test needs 2+ regions"
        )
        want = nn.functional.interpolate(keep_largest_object(grid), size=(192, 256), mode="bilinear")
        assert torch.allclose(model.eval()(x), want, atol=1e-6)
        plain = nn.functional.interpolate(grid, size=(192, 256), mode="bilinear")
        assert torch.allclose(model.train()(x), plain, atol=1e-6)  # training sees every region


def test_dff_filters_key_and_propagated_frames_and_the_flag_travels(monkeypatch):
    torch.manual_seed(2)
    seg = segnet_mobilenet_v2(hidden=8, largest_object=True).eval()
    dff = as_dff(seg, flow_net=make_flow_net("dis", stride=16)).eval()
    assert dff.largest_object
    seen, calls = [], []
    real = dff.task_net.classify_reduced
    monkeypatch.setattr(dff.task_net, "classify_reduced", lambda f: seen.append(f.shape) or real(f))
    monkeypatch.setattr(
        dff_model, "keep_largest_object", lambda x: calls.append(x.shape) or keep_largest_object(x)
    )
    frames = [torch.randn(1, 3, 64, 96) for _ in range(4)]
    with torch.no_grad():
        outs = list(dff.run(iter(frames), FixedInterval(3)))
    assert len(calls) == len(seen) == 4  # every frame's output, key frames and propagated ones
    assert torch.allclose(outs[0][0], seg(frames[0]), atol=1e-5)  # a key frame is the per-frame net
    assert dff_segnet_mobilenet_v2(hidden=8, flow="dis", largest_object=True).largest_object
    assert not dff_segnet_mobilenet_v2(hidden=8, flow="dis").largest_object
    model = segnet_mobilenet_v2(hidden=8, largest_object=True)
    assert dff_from_cli(model, []).largest_object
    assert not dff_from_cli(model, ["--no-largest-object"]).largest_object
