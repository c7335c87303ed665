"""The DFF warp (methods.md 4.2, 4.7.3 and 4.7.7): zero flow with S = 1 is the exact identity, an integer
flow is an exact shift with zeros filled in, it is grid_sample(align_corners=True, zeros) of base + flow,
and gradcheck passes w.r.t. the features, the flow and S."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidrec.dff.warp import resize_flow, warp


def _reference(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The spec's formula written out: grid = base + flow normalised as 2x/(W-1) - 1, zeros, align_corners."""
    _, _, h, w = features.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij"
    )
    gx = 2 * (xs + flow[:, 0]) / (w - 1) - 1
    gy = 2 * (ys + flow[:, 1]) / (h - 1) - 1
    grid = torch.stack([gx, gy], dim=-1)  # (B, h, w, 2)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (16, 16), (17, 33), (23, 30)])
def test_zero_flow_with_unit_scale_is_the_exact_identity(size):
    torch.manual_seed(0)
    f = torch.randn(2, 8, *size)
    out = warp(f, torch.zeros(2, 2, *size), torch.ones(2, 8, *size))
    assert torch.equal(out, f)


@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (0, 1), (2, -3), (-4, 5)])
def test_an_integer_flow_is_an_exact_shift_with_zeros_filled_in(dx, dy):
    torch.manual_seed(1)
    h, w = 13, 22
    f = torch.randn(2, 4, h, w)
    flow = torch.zeros(2, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy  # current -> key: out(y, x) = f(y + dy, x + dx)
    out = warp(f, flow)
    expected = torch.zeros_like(f)
    ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    src_y, src_x = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
    expected[:, :, ys, xs] = f[:, :, src_y, src_x]
    assert torch.equal(out, expected)
    assert (out == 0).sum() >= 2 * 4 * (abs(dy) * w + abs(dx) * h - abs(dx * dy))  # the filled-in zeros


def test_fractional_flow_is_the_specs_grid_sample():
    torch.manual_seed(2)
    f = torch.randn(3, 5, 11, 14)
    flow = 4 * torch.randn(3, 2, 11, 14)  # many samples leave the map
    assert torch.allclose(warp(f, flow), _reference(f, flow), atol=1e-5)
    half = torch.zeros(1, 2, 11, 14)
    half[:, 0] = 0.5
    out = warp(f[:1], half)
    assert torch.allclose(out[..., :-1], 0.5 * (f[:1, :, :, :-1] + f[:1, :, :, 1:]), atol=1e-6)
    assert torch.allclose(
        out[..., -1], 0.5 * f[:1, :, :, -1], atol=1e-6
    )  # half of the last column and a zero


def test_gradcheck_wrt_features_flow_and_scale():
    torch.manual_seed(3)
    f = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    # fractional flow away from the kinks of the bilinear kernel (integers), some of it out of the map
    flow = (torch.randint(-3, 3, (1, 2, 5, 6)) + 0.2 + 0.6 * torch.rand(1, 2, 5, 6)).double().requires_grad_()
    scale = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(warp, (f, flow, scale), eps=1e-6, atol=1e-5)


def test_resize_flow_scales_to_feature_pixels():
    flow = torch.zeros(1, 2, 64, 96)
    flow[:, 0], flow[:, 1] = 16.0, -8.0  # image px
    small = resize_flow(flow, (4, 6))  # stride 16
    assert small.shape == (1, 2, 4, 6)
    assert torch.allclose(small[:, 0], torch.full((1, 4, 6), 1.0)) and torch.allclose(
        small[:, 1], torch.full((1, 4, 6), -0.5)
    )
    assert torch.allclose(resize_flow(small, (64, 96))[:, 0], torch.full((1, 64, 96), 16.0))


def test_warp_rejects_a_flow_of_another_size():
    with pytest.raises(ValueError, match=r"flow must be \(B, 2, h, w\)"):
        warp(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 8, 8))


def test_half_precision_features_are_sampled_with_float32_coordinates():
    torch.manual_seed(4)
    f = torch.randn(1, 3, 40, 50)
    flow = torch.full((1, 2, 40, 50), 0.3)
    flow[:, 0] = 17.37  # bf16 holds 17.37 as 17.375 and the grid value 2 * x / 63 - 1 far worse
    out = warp(f.bfloat16(), flow)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), warp(f.bfloat16().float(), flow), atol=1e-2)
