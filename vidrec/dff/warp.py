"""The Deep Feature Flow warp (Zhu et al., CVPR 2017; methods.md 4.2), flow resizing, and the segmenter's
test-time ops shared with DFF: mirror-averaged features (test-time flips of the segmenter and of DFF's key
frames) and `keep_largest_object` on the logits.

Propagation reads the key frame's features at the positions the flow points to:
``f_i(p) = sum_q G(q, p + flow(p)) f_k(q)`` with the bilinear kernel ``G`` and zeros outside the map. The
flow is from the **current** frame to the **key** frame, in feature-map pixels, channel 0 = x, 1 = y.
In PyTorch this is `grid_sample(f_k, grid, "bilinear", padding_mode="zeros", align_corners=True)` with
``grid = base + flow`` normalised as ``2 x / (W - 1) - 1``: with ``align_corners=True`` -1 and +1 are the
centres of the corner pixels, so an integer flow moves features by whole cells, exactly. (mmtracking's port
normalises by W and pads with the border: it is not this operator.) ``padding="border"`` reads the nearest
edge cell instead of zeros where the flow leaves the map: content entering the frame (a pan) then gets the
features of what is at the frame's edge, not zeros the task net never saw (`DFF.warp_padding`; docs/dff.md
measures it on held-out sequences).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PADDINGS",
    "keep_largest_object",
    "mirror_averaged",
    "resize_flow",
    "warp",
    "with_foreground_bias",
]

PADDINGS = ("zeros", "border")  # what `warp` reads where the flow leaves the map


def _base_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates `(1, 2, h, w)`: channel 0 = x (column), 1 = y (row)."""
    ys = torch.arange(h, dtype=like.dtype, device=like.device)
    xs = torch.arange(w, dtype=like.dtype, device=like.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
    return torch.stack([gx, gy])[None]


def _dyadic(n: int) -> int:
    """The least 2^k + 1 >= n (at least 2)."""
    return 2 ** max(math.ceil(math.log2(max(n - 1, 1))), 0) + 1


def warp(
    features: torch.Tensor, flow: torch.Tensor, scale: torch.Tensor | None = None, *, padding: str = "zeros"
) -> torch.Tensor:
    """Bilinear warp of key-frame features to the current frame, optionally times the scale field.

    Args:
        features: key-frame features `(B, C, h, w)`.
        flow: current -> key flow `(B, 2, h, w)` in feature-map pixels, channel 0 = x.
        scale: the scale field S `(B, C, h, w)` (or anything broadcasting to it); None means S = 1.
        padding: where the flow leaves the map, "zeros" (the paper's) or "border" (the nearest edge cell).

    Returns:
        `(B, C, h, w)`: ``S * grid_sample(features, base + flow)``, zeros (or the border) where the flow
        leaves the map.
    """
    if padding not in PADDINGS:
        raise ValueError(f"warp padding must be one of {PADDINGS}, got {padding!r}")
    b, _, h, w = features.shape
    if flow.shape != (b, 2, h, w):
        raise ValueError(
            f"flow must be (B, 2, h, w) = {(b, 2, h, w)} like the features, got {tuple(flow.shape)}"
        )
    # grid_sample maps the normalised grid back to pixels as ((g + 1) / 2) (size - 1); in floating point that
    # round trip is exact only when size - 1 is a power of two. So the map is zero-padded on the right and
    # bottom to 2^k + 1 cells: reading the padding gives the zeros that zero padding gives anyway (with
    # "border", copies of the last row and column: what border padding reads anyway), and an
    # integer flow now lands exactly on cells (without it a shift leaks ~1e-7 of a neighbour's value).
    # Half-precision inputs (AMP, .half()) are sampled in float32: a bf16 coordinate is off by up to 1/4 px.
    work = torch.promote_types(torch.promote_types(features.dtype, flow.dtype), torch.float32)
    big_h, big_w = _dyadic(h), _dyadic(w)
    mode = "constant" if padding == "zeros" else "replicate"
    padded = F.pad(features.to(work), (0, big_w - w, 0, big_h - h), mode=mode)  # (B, C, 2^k + 1, 2^j + 1)
    flow = flow.to(work)
    coords = _base_grid(h, w, flow) + flow  # (B, 2, h, w) absolute positions in the key frame, px
    norm = torch.tensor([big_w - 1, big_h - 1], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    grid = (2.0 * coords / norm - 1.0).permute(0, 2, 3, 1)  # (B, h, w, 2), x first; align_corners=True
    out = F.grid_sample(padded, grid, mode="bilinear", padding_mode=padding, align_corners=True)
    out = out.to(features.dtype)
    return out if scale is None else out * scale


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Flow `(B, 2, H, W)` in pixels of its grid, resampled to `size = (h, w)` in pixels of the new grid.

    The field is resampled bilinearly (area-averaged when shrinking) and x / y are multiplied by
    ``w / W`` / ``h / H``, so a displacement of 16 image pixels becomes 1 feature pixel at stride 16.
    """
    h, w = size
    big_h, big_w = flow.shape[-2:]
    if (h, w) == (big_h, big_w):
        return flow
    shrinking = h < big_h and w < big_w
    out = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False, antialias=shrinking)
    factor = torch.tensor([w / big_w, h / big_h], dtype=flow.dtype, device=flow.device)
    return out * factor.view(1, 2, 1, 1)


def mirror_averaged(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(net(x) + mirror(net(mirror(x)))) / 2`` for a dense network `(B, C, H, W) -> (B, C', h, w)`, mirror =
    the horizontal flip: test-time flip augmentation on the feature grid. Every channel of `x` is flipped
    (a frame with its neighbours stacked stays stacked); the net runs once on a batch of 2B."""
    both = net(torch.cat([x, x.flip(-1)]))
    direct, mirrored = both.chunk(2)
    return (direct + mirrored.flip(-1)) / 2


def with_foreground_bias(logits: torch.Tensor, bias: float) -> torch.Tensor:
    """Logits `(B, K, h, w)` with `bias` added to every class but the first (background): a shift of the
    decision towards (bias > 0) or away from the foreground; a new tensor."""
    return torch.cat([logits[:, :1], logits[:, 1:] + bias], dim=1)


def keep_largest_object(logits: torch.Tensor) -> torch.Tensor:
    """Logits `(B, K, h, w)` (class 0 the background) with the foreground (argmax != 0) kept in each item's
    largest 8-connected region only: elsewhere every foreground logit is mirrored below the background's
    (``bg - |fg - bg|``), so the argmax there is the background, and stays so after a bilinear upsampling
    (a dropped region touches no kept one). DAVIS-2016 annotates one object per sequence; a segmenter's
    stray blobs on the background are what this removes (docs/guides/segmentation.md). Run on the feature
    grid, before the upsampling: a few microseconds. Returns `logits` itself when nothing is dropped."""
    fg = (logits.argmax(dim=1) != 0).cpu().numpy().astype(np.uint8)  # (B, h, w)
    out = logits
    for b, mask in enumerate(fg):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 2:  # background and at most one region
            continue
        keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        drop = torch.from_numpy((labels != keep) & (mask > 0)).to(logits.device)  # (h, w)
        if out is logits:
            out = logits.clone()
        bg, rest = out[b, :1], out[b, 1:]
        out[b, 1:] = torch.where(drop, bg - (rest - bg).abs(), rest)
    return out
