"""A motion cue for the segmenter: where a frame moves unlike its camera.

The object DAVIS-2016 annotates is the one that moves; appearance alone learnt from ten training
sequences does not find it on unseen video (docs/guides/segmentation.md). This module gives the
segmenter that cue as an input, computed once per frame it runs on:

- The model's input is the frame with its two neighbours stacked on the channels, **(B, 9, H, W)** =
  (current, previous, next) RGB, each normalised as `vidrec.data.transforms.normalize_rgb` does
  (`normalize_frames`). The first frame's previous and the last frame's next are its other neighbour
  (`neighbour_indices`); `stack_neighbours` builds them for a loaded sequence and `stream_neighbours` for a
  stream (one frame of look-ahead).
- `MotionCue` (no parameters): OpenCV DIS optical flow (medium preset) from the current frame to each
  neighbour, a global affine camera motion fitted to each flow (RANSAC on a grid of samples), the
  residual flow's magnitude, the smaller of the two (a pixel occluded in one neighbour is usually seen in
  the other), smoothed. Two channels out: the residual relative to the frame's mean residual, and
  log(1 + residual in px). The flows run in a thread pool of torch's thread count (OpenCV releases the
  GIL); ``neighbours=(2,)`` takes the next frame's flow alone (half the cost; docs/dff.md measures it).
- `MotionBranch`: four stride-2 3x3 convs from the cue to ``channels`` maps at output stride 16.
- `MotionFeatures`: the feature net with the cue: ``cat(rgb_net(x[:, :3]), branch(cue(x)))``. Under Deep
  Feature Flow it is the key frame's feature net, so the cue costs only on key frames; the flow net sees
  the current RGB (``x[:, :3]``).

The cue runs on the CPU (OpenCV) whatever the model's device, without autograd; its wall time is part of
the feature net's in `vidrec.dff.cost`, its FLOPs are not (OpenCV is not counted).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidrec.data.transforms import IMAGENET_MEAN, IMAGENET_STD

NEIGHBOURS = 3  # frames stacked on the channels: current, previous, next
CUE_CHANNELS = 2

__all__ = [
    "MotionBranch",
    "MotionCue",
    "MotionFeatures",
    "camera_residual",
    "motion_residual",
    "neighbour_indices",
    "stack_neighbours",
    "stream_neighbours",
    "takes_neighbours",
]


def neighbour_indices(i: int, length: int) -> tuple[int, int]:
    """(previous, next) frame of frame `i` in a sequence of `length`: at an end, the other neighbour;
    a one-frame sequence is its own neighbour."""
    if length <= 1:
        return i, i
    prev = i - 1 if i > 0 else i + 1
    nxt = i + 1 if i < length - 1 else i - 1
    return prev, nxt


def stack_neighbours(frames: torch.Tensor) -> torch.Tensor:
    """Frames `(T, 3, H, W)` -> `(T, 9, H, W)`: each with its previous and next (`neighbour_indices`)."""
    length = len(frames)
    pairs = [neighbour_indices(i, length) for i in range(length)]
    prev = frames[[p for p, _ in pairs]]
    nxt = frames[[n for _, n in pairs]]
    return torch.cat([frames, prev, nxt], dim=1)


def stream_neighbours(frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """`stack_neighbours` over a stream of frames `(..., 3, H, W)`: each is yielded once the next one has
    been read (one frame of look-ahead; the last one at the end), so memory stays three frames."""
    it = iter(frames)
    prev = cur = None
    for nxt in it:
        if cur is not None:
            yield torch.cat([cur, nxt if prev is None else prev, nxt], dim=-3)
        prev, cur = cur, nxt
    if cur is not None:
        other = prev if prev is not None else cur
        yield torch.cat([cur, other, other], dim=-3)


def takes_neighbours(model: nn.Module) -> bool:
    """True when `model` (a segmenter or a DFF around one, possibly wrapped) wants `(B, 9, H, W)` frames."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return bool(getattr(getattr(model, "feature_net", None), "neighbours", False))


def camera_residual(flow: np.ndarray, step: int = 8) -> np.ndarray:
    """|flow - the affine motion that best explains it| per pixel, float32 (H, W), for flow (H, W, 2) in px.

    The affine map is fitted with RANSAC (1 px) on flow samples every `step` px: the camera's motion when
    the background covers most of the frame; a translation (the median flow) when the fit fails.
    """
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    src = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    dst = src + flow[ys.ravel(), xs.ravel()]
    matrix = None
    if len(src) >= 3:
        matrix, _ = cv2.estimateAffine2D(src, dst, ransacReprojThreshold=1.0)
    if matrix is None:
        cx, cy = np.median(flow.reshape(-1, 2), axis=0)
        dx, dy = flow[..., 0] - np.float32(cx), flow[..., 1] - np.float32(cy)
    else:  # the camera's flow at (x, y) is (a x + b y + c - x, d x + e y + f - y); rows and columns broadcast
        (a, b, c), (d, e, f) = matrix.astype(np.float32)
        gx, gy = np.arange(w, dtype=np.float32)[None], np.arange(h, dtype=np.float32)[:, None]
        dx = flow[..., 0] - ((a - 1) * gx + (b * gy + c))
        dy = flow[..., 1] - (d * gx + ((e - 1) * gy + f))
    return cv2.magnitude(np.ascontiguousarray(dx, np.float32), np.ascontiguousarray(dy, np.float32))


def motion_residual(gray: np.ndarray, neighbours: Iterable[np.ndarray], dis=None) -> np.ndarray:
    """The smoothed per-pixel minimum over `neighbours` of `camera_residual` of DIS flow `gray` ->
    neighbour: float32 (H, W) in px. Images are uint8 (H, W) grey of one size."""
    dis = dis if dis is not None else cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = None
    for other in neighbours:
        res = camera_residual(dis.calc(gray, other, None))
        out = res if out is None else np.minimum(out, res)
    sigma = max(1.0, gray.shape[1] / 216)  # 2 px at the working width 432
    return cv2.GaussianBlur(out, (0, 0), sigma)


def _flow_residual(preset: int, pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """`camera_residual` of the DIS flow (`preset`) from one grey frame to another (a DIS object per call:
    OpenCV's are not shared between threads; creating one costs microseconds)."""
    return camera_residual(cv2.DISOpticalFlow_create(preset).calc(pair[0], pair[1], None))


_POOL: list = [None, 0]  # a ThreadPoolExecutor and its size, made when first needed


def _parallel_map(fn, items: list) -> list:
    """`[fn(x) for x in items]`, over ``torch.get_num_threads()`` threads when that is more than one."""
    workers = min(torch.get_num_threads(), len(items))
    if workers <= 1:
        return [fn(x) for x in items]
    if _POOL[1] < workers:
        if _POOL[0] is not None:
            _POOL[0].shutdown(wait=False)
        _POOL[:] = [ThreadPoolExecutor(workers, thread_name_prefix="vidrec-cue"), workers]
    return list(_POOL[0].map(fn, items))


class MotionCue(nn.Module):
    """Stacked normalised frames `(B, 9, H, W)` -> cue `(B, 2, H, W)` float32 on `x`'s device (see the
    module docstring). No parameters, no autograd.

    Args:
        preset: OpenCV's DIS preset: medium where the branch learnt; fast is 5x cheaper.
        neighbours: which stacked neighbours the flows go to, 1 = previous, 2 = next: both (what the
            branch learnt) or one (half the flows and camera fits; Deep Feature Flow's propagated frames,
            `vidrec.dff.model.FRESH_CUE_NEIGHBOURS`).
    """

    def __init__(
        self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, neighbours: tuple[int, ...] = (1, 2)
    ) -> None:
        super().__init__()
        if not neighbours or any(n not in (1, 2) for n in neighbours):
            raise ValueError(f"MotionCue neighbours are 1 (previous) and/or 2 (next), got {neighbours}")
        self.preset, self.neighbours = preset, tuple(neighbours)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.grey = (0.299, 0.587, 0.114)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 3 * NEIGHBOURS:
            raise ValueError(
                f"the motion cue needs a frame and its two neighbours stacked, (B, 9, H, W); got "
                f"{tuple(x.shape)} (vidrec.models.motion.stack_neighbours builds them)"
            )
        b, _, h, w = x.shape
        # grey = 255 sum_c w_c (x_c std_c + mean_c): the un-normalising and the grey weights folded into one
        # product over the colour axis (element-wise ops broadcast over (B, 3, 3, H, W): 5 ms at 288 x 512)
        weights = torch.tensor(self.grey, device=x.device)
        scale = weights * self.std.view(3) * 255
        shift = float((weights * self.mean.view(3)).sum() * 255)
        used = (0, *self.neighbours)  # the current frame, then the neighbours the flows go to
        rgb = x.detach().float().reshape(b, NEIGHBOURS, 3, h * w)
        rgb = rgb if len(used) == NEIGHBOURS else rgb[:, list(used)]
        grey = torch.matmul(scale, rgb).add_(shift).clamp_(0, 255).round_().to(torch.uint8)
        grey = grey.view(b, len(used), h, w).cpu().numpy()
        # the flows (B x neighbours, each with its camera fit) run in parallel over torch's thread count:
        # OpenCV releases the GIL, and one DIS flow uses little of a second core by itself
        pairs = [(g[0], other) for g in grey for other in g[1:]]
        residuals = _parallel_map(functools.partial(_flow_residual, self.preset), pairs)
        per = len(used) - 1
        sigma = max(1.0, w / 216)  # as motion_residual
        maps = np.stack(
            [
                cv2.GaussianBlur(
                    functools.reduce(np.minimum, residuals[i * per : (i + 1) * per]), (0, 0), sigma
                )
                for i in range(b)
            ]
        )  # (B, H, W) px: motion_residual of each frame
        res = torch.from_numpy(maps).to(x.device)
        relative = (res / (res.mean(dim=(1, 2), keepdim=True) + 0.1)).clamp_(max=10.0) / 5.0
        return torch.stack([relative, torch.log1p(res)], dim=1)


class MotionBranch(nn.Module):
    """Cue `(B, 2, H, W)` -> `(B, channels, ceil(H/16), ceil(W/16))`: four stride-2 3x3 conv + ReLU."""

    def __init__(self, in_channels: int = CUE_CHANNELS, channels: int = 64) -> None:
        super().__init__()
        widths = (in_channels, 16, 32, channels, channels)
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, cue: torch.Tensor) -> torch.Tensor:
        return self.net(cue)


class MotionFeatures(nn.Module):
    """``cat(rgb(x[:, :3]), branch(cue(x)))`` on the RGB net's grid: `(B, 9, H, W)` -> `(B, C + c, h, w)`.

    Args:
        rgb: the appearance feature net, `(B, 3, H, W) -> (B, C, h, w)`.
        branch: `MotionBranch` (its maps are resized to the RGB grid when the strides round apart).
    """

    neighbours = True  # `takes_neighbours`: the inputs are (current, previous, next) stacked

    def __init__(self, rgb: nn.Module, branch: MotionBranch) -> None:
        super().__init__()
        self.rgb, self.cue, self.branch = rgb, MotionCue(), branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.rgb(x[:, :3])
        motion = self.branch(self.cue(x).to(features.dtype))
        if motion.shape[-2:] != features.shape[-2:]:
            motion = F.interpolate(motion, size=features.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([features, motion.to(features.dtype)], dim=1)
