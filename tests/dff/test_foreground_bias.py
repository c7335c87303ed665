"""``foreground_bias``: in eval mode every frame's foreground logits are raised by it, before the
largest-region filter (the per-frame `SegNet`, and under DFF key and propagated frames alike, on top of
``propagated_bias``); training never sees it; DFF takes it from the per-frame model, `vidrec dff` and the
benchmarks override it with --foreground-bias."""

from __future__ import annotations

import torch
from dff_args import dff_from_cli
from dff_helpers import tiny_dff
from test_propagated_bias import Given, walk

from vidrec.dff import as_dff
from vidrec.dff.schedule import Bidirectional
from vidrec.models.segnet import segnet_mobilenet_v2


def test_segnet_adds_the_bias_in_eval_before_the_largest_region_filter():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 96)
    plain = segnet_mobilenet_v2(pretrained=False).eval()
    biased = segnet_mobilenet_v2(pretrained=False, foreground_bias=0.6).eval()
    biased.load_state_dict(plain.state_dict())
    with torch.no_grad():
        a, b = plain(x), biased(x)
        assert torch.equal(a[:, 0], b[:, 0]) and torch.allclose(b[:, 1], a[:, 1] + 0.6, atol=1e-5)
        assert torch.equal(plain.train()(x), biased.train()(x))  # training never sees it
    logits = torch.zeros(1, 2, 4, 6)
    logits[0, 1] = -1.0
    logits[0, 1, 0, 0] = 2.0  # 1 cell of foreground
    logits[0, 1, 2:, 3:] = -0.5  # 6 cells of foreground once raised by 1
    net = segnet_mobilenet_v2(pretrained=False, largest_object=True, foreground_bias=1.0).eval()
    net.task_net = Given(logits)
    with torch.no_grad():
        fg = net(torch.zeros(1, 3, 64, 96)).argmax(1)
    assert fg.sum() > 0 and not fg[0, :16, :16].any()  # raised first, then the largest region kept


def test_dff_raises_key_and_propagated_frames_and_keeps_the_per_frame_models_bias(frames):
    model = tiny_dff().eval()
    plain = walk(model, frames, Bidirectional(3))
    model.foreground_bias, model.propagated_bias = 0.5, 0.25
    biased = walk(model, frames, Bidirectional(3))
    for (a, is_key), (b, _) in zip(plain, biased, strict=True):
        shift = 0.5 if is_key else 0.75  # propagated frames add both
        assert torch.equal(b[:, 0], a[:, 0]) and torch.allclose(b[:, 1:], a[:, 1:] + shift, atol=1e-5)
    seg = segnet_mobilenet_v2(pretrained=False, foreground_bias=0.8).eval()
    dff = dff_from_cli(seg, [])
    assert dff.foreground_bias == 0.8  # the checkpoint's calibration, unless overridden
    assert dff_from_cli(seg, ["--foreground-bias", "0"]).foreground_bias == 0.0
    assert as_dff(dff, flow_net=dff.flow_net).foreground_bias == 0.8  # a new flow net keeps it
