"""``padding="border"`` of the DFF warp: where the flow leaves the key frame's map the nearest edge cell is
read instead of zeros (content entering the frame gets the features at the frame's edge); inside the map
it is the zero-padded warp exactly. `DFF.warp_padding` chooses it (the paper's zeros by default), `vidrec
dff` and benchmarks/dff.py use border unless --warp-padding zeros."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dff_args import dff_from_cli

from vidrec.dff import DFF, as_dff
from vidrec.dff.warp import warp
from vidrec.models.segnet import segnet_mobilenet_v2


def test_an_integer_shift_past_the_edge_repeats_the_edge_cells():
    torch.manual_seed(0)
    h, w, dx = 9, 14, 3
    f = torch.randn(2, 5, h, w)
    flow = torch.zeros(2, 2, h, w)
    flow[:, 0] = dx  # out(y, x) = f(y, x + 3): the last 3 columns leave the map on the right
    out = warp(f, flow, padding="border")
    assert torch.equal(out[..., : w - dx], f[..., dx:])  # inside: an exact shift, as with zeros
    assert torch.equal(out[..., w - dx :], f[..., w - 1 :].expand(-1, -1, -1, dx))  # outside: the last column
    zeros = warp(f, flow)
    assert torch.equal(zeros[..., : w - dx], out[..., : w - dx]) and not zeros[..., w - dx :].any()
    flow[:, 0], flow[:, 1] = -2.0, -1.0  # up and to the left: the first row and column repeat
    out = warp(f, flow, padding="border")
    assert torch.equal(out[..., 1:, 2:], f[..., :-1, :-2])
    assert torch.equal(out[..., 0, :2], f[..., 0, :1].expand(-1, -1, 2))


@pytest.mark.parametrize("size", [(5, 7), (17, 33)])
def test_border_padding_is_grid_samples_border_mode(size):
    torch.manual_seed(1)
    f, flow = torch.randn(1, 3, *size, dtype=torch.float64), 6 * torch.randn(1, 2, *size, dtype=torch.float64)
    h, w = size
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij"
    )
    grid = torch.stack([2 * (xs + flow[:, 0]) / (w - 1) - 1, 2 * (ys + flow[:, 1]) / (h - 1) - 1], dim=-1)
    want = F.grid_sample(f, grid, mode="bilinear", padding_mode="border", align_corners=True)
    assert torch.allclose(warp(f, flow, padding="border"), want, atol=1e-10)


def test_a_bad_padding_is_refused():
    with pytest.raises(ValueError, match="padding"):
        warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), padding="reflect")
    seg = segnet_mobilenet_v2(pretrained=False)
    with pytest.raises(ValueError, match="warp_padding"):
        DFF(seg.feature_net, torch.nn.Identity(), seg.task_net, warp_padding="edge")


def test_dff_warps_with_its_padding_and_the_cli_defaults_to_border():
    seg = segnet_mobilenet_v2(pretrained=False).eval()
    dff = dff_from_cli(seg, [])
    assert dff.warp_padding == "border"
    assert dff_from_cli(seg, ["--warp-padding", "zeros"]).warp_padding == "zeros"
    assert as_dff(dff, flow_net=dff.flow_net).warp_padding == "border"  # a new flow net keeps it
    assert as_dff(seg, flow_net=dff.flow_net).warp_padding == "zeros"  # the paper's, in Python
    feat = torch.randn(1, 4, 3, 5)
    flow = torch.zeros(1, 2, 3, 5)
    flow[:, 0] = -1.0  # the first column comes from outside the key frame
    out = dff.warp_features(feat, flow, None)
    assert torch.equal(out[..., 0], feat[..., 0]) and torch.equal(out[..., 1:], feat[..., :-1])
    dff.warp_padding = "zeros"
    assert not dff.warp_features(feat, flow, None)[..., 0].any()
