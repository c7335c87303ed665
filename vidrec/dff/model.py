"""Deep Feature Flow (Zhu et al., CVPR 2017; methods.md section 4): run the expensive feature network on
key frames only, and carry its features to the other frames along the optical flow.

``DFF(feature_net, flow_net, task_net, *, feature_stride)`` is built from three parts passed in:

- ``feature_net(img (B, 3, H, W)) -> features (B, C, h, w)``, ``h = ceil(H / feature_stride)`` or so;
- ``task_net(features (B, C, h, w)) -> output (B, K, h, w)`` (e.g. segmentation logits); with
  ``upsample=True`` (default) DFF resizes it bilinearly to the image, ``(B, K, H, W)``;
- ``flow_net(key_img, cur_img) -> (flow, scale_features)``, the **flow-net contract**: both images are
  what the feature net takes, float ``(B, 3, H, W)``; ``flow`` is ``(B, 2, h', w')``, from the **current**
  frame to the **key** frame, in pixels of its own grid, channel 0 = x (``cur(p) ~ key(p + flow(p))``);
  usually ``(h', w')`` is the feature grid, else DFF resamples it with `resize_flow`. When the feature net
  takes a frame with its neighbours stacked (``(B, 9, H, W)``, `vidrec.models.motion`), the flow net
  gets the first three channels, the frame's own RGB. ``scale_features``
  is ``(B, C_s, h', w')`` for the scale field (FlowNet's decoder features), or None for flow sources
  without features (DIS, RAFT): then S = 1. A flow net may set ``scale_channels = C_s``. One that pools
  its input (`vidrec.dff.flownets.FlowNetLite`) may offer ``pool(img)`` and take ``pooled=True``: the
  walks then pool each frame once (`DFF.flow_input`), a key frame not again for every frame it serves.

The scale field S (`ScaleField`) is a 1x1 conv on the flow net's features, weights 0 and bias 1 with the
bias frozen (a buffer: no optimiser can move it), so S = 1 at initialisation. Propagation is
``S * warp(f_key, flow)`` (`vidrec.dff.warp.warp`), plus ``B`` when the model has a bias field
(`BiasField`, ours: a 1x1 conv on the same features, zero at initialisation, so that the current frame can
correct what the warp cannot carry). Training uses (key, current) pairs (`forward`, the loss
on the current frame reaches the task net, the feature net through the warp, the flow net and S);
inference walks a video with a key-frame schedule (`run`, `vidrec.dff.schedule`).

**The reduced feature map** (``reduced=True``): the paper's feature net ends in a new conv that reduces
ResNet's 2048 channels to 1024, and those are what it propagates. Here the task net brings the reduction:
a task net with ``reduce`` (a 1x1 conv, e.g. 1280 -> 128 channels) and ``classify_reduced`` (the rest,
`vidrec.models.segnet.SegHead`) has ``reduce`` run on key frames, and the reduced map is what is cached,
warped and scaled (S then has the reduced channel count). Per frame and on key frames nothing changes (the
same ops in the same order); a propagated frame costs a tenth of the warp and no 1280-channel conv, which
keeps it under a ninth of a key frame (issue 23, `vidrec.dff.cost`). As the 1x1 conv is linear per
position, warping the reduced map equals reducing the warped map wherever the flow stays inside the frame.

**A fresh motion cue on propagated frames** (``fresh_motion=True``): when the feature net carries the motion
cue (`vidrec.models.motion.MotionFeatures`: appearance maps and the cue's branch, joined) and the reduction
is a 1x1 conv, the reduced map splits exactly into an appearance part and a motion part (the conv is
linear in its input channels). A key frame keeps both (``{"appearance": A, "motion": M}``, A + M = the
reduced map: its output is unchanged); what is warped is A alone, and each propagated frame adds its own
M from its own cue, computed with OpenCV DIS's *fast* preset (`FRESH_CUE_PRESET`: about 10 ms a frame at
288 x 512 instead of 28 for the key frame's medium preset). A warped cue says where the object moved
ten frames ago; the frame's own says where it moves now. Near a key frame the key frame's (better) cue
still holds: a frame fewer than ``fresh_from`` frames from the key frame it is propagated from (the nearer
one, bidirectional) warps the whole map as without `fresh_motion`; the rest compute their own. docs/dff.md
gives how the preset and ``fresh_from`` were chosen on held-out sequences. `refreshable` says whether a
model can.

A checkpoint's model works with `as_dff` (and so with ``vidrec dff run``) when it is a `DFF` or any
module with ``feature_net``, ``task_net`` and ``feature_stride`` attributes (a per-frame model).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import torch
import torch.nn.functional as F
from torch import nn

from vidrec.dff.schedule import Schedule
from vidrec.dff.warp import (
    PADDINGS,
    keep_largest_object,
    mirror_averaged,
    resize_flow,
    warp,
    with_foreground_bias,
)

__all__ = [
    "DFF",
    "FRESH_CUE_NEIGHBOURS",
    "FRESH_CUE_PRESET",
    "SIGNALS",
    "BiasField",
    "ScaleField",
    "as_dff",
    "refreshable",
    "walk",
    "walk_bidirectional",
    "warp_error",
]

FRESH_CUE_PRESET = cv2.DISOPTICAL_FLOW_PRESET_FAST  # the propagated frames' motion cue (module docstring)
FRESH_CUE_NEIGHBOURS = (1, 2)  # ... from both neighbours, as key frames (docs/dff.md: next alone, 0.9 J less)
FRESH_FROM = 3  # a propagated frame this many frames or more from its nearest key frame computes its own cue
# `vidrec dff run / eval` and benchmarks/dff.py: added to a propagated frame's foreground logits; off
# (docs/dff.md: +2.9 J points bidirectional on the tuning sequences, -0.4 to -1.9 on the validation split)
PROPAGATED_BIAS = 0.0


class ScaleField(nn.Module):
    """S: a 1x1 conv `(B, C_s, h, w) -> (B, C, h, w)` with weights 0 and a frozen bias of 1 (a buffer)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        nn.init.zeros_(self.conv.weight)
        self.register_buffer("bias", torch.ones(out_channels))  # the spec's frozen bias (lr 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.bias.view(1, -1, 1, 1)


class BiasField(nn.Module):
    """B: a 1x1 conv `(B, C_s, h, w) -> (B, C, h, w)` on the flow net's features, zero at initialisation,
    added to the scaled warp (``S * warp(f_key) + B``): a correction from the current frame for what the
    warp cannot carry (disocclusions, changes of shape). It costs what S costs."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        nn.init.zeros_(self.conv.weight)  # B = 0: DFF starts as the paper's propagation
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def flow_signal(flow: torch.Tensor, key_img: torch.Tensor, cur_img: torch.Tensor) -> float:
    """Mean flow magnitude, feature pixels: how far the current frame has moved from the key frame."""
    return float(flow.norm(dim=1).mean())


def warp_error(flow: torch.Tensor, key_img: torch.Tensor, cur_img: torch.Tensor) -> torch.Tensor:
    """Per-pixel photometric error of the warp on the flow's grid, `(B, 1, h, w)`: |cur - warp(key, flow)|
    averaged over the RGB channels of both frames area-pooled to the grid (units of the images given)."""
    key, cur = (pool_rgb(x, tuple(flow.shape[-2:])) for x in (key_img, cur_img))
    return (cur - warp(key, flow)).abs().mean(dim=1, keepdim=True)


def pool_rgb(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A frame's own RGB (its first three channels) area-pooled to `size`; as is when already that size."""
    rgb = img[:, :3]
    return rgb if tuple(rgb.shape[-2:]) == tuple(size) else F.interpolate(rgb, size=size, mode="area")


def warp_signal(flow: torch.Tensor, key_img: torch.Tensor, cur_img: torch.Tensor) -> float:
    """Photometric error of the warp on the flow's grid: mean |cur - warp(key, flow)| where it is defined."""
    inside = warp(torch.ones_like(flow[:, :1]), flow) > 0.999  # (B, 1, h, w) all four neighbours in the map
    err = warp_error(flow, key_img, cur_img)
    return float(err[inside].mean()) if inside.any() else float("inf")


SIGNALS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]] = {
    "flow": flow_signal,
    "warp": warp_signal,
}


class DFF(nn.Module):
    """Deep Feature Flow around a feature net, a flow net and a task net (see the module docstring).

    Args:
        feature_net: `(B, 3, H, W) -> (B, C, h, w)`, the expensive part, run on key frames.
        flow_net: the flow-net contract of the module docstring.
        task_net: `(B, C, h, w) -> (B, K, h, w)`.
        feature_stride: image pixels per feature pixel (16 in the paper).
        scale_field: S, e.g. ``ScaleField(flow_net.scale_channels, C)``; None: S = 1.
        bias_field: B, e.g. ``BiasField(flow_net.scale_channels, C)``, added to the scaled warp; None: B = 0.
        upsample: resize the task output bilinearly to the image size.
        reduced: propagate the task net's reduced map (the module docstring); the task net must have
            ``reduce`` and ``classify_reduced``, and S the reduced channel count.
        flip_test: in eval mode, a key frame's features are those of the frame and of its mirror image
            averaged (`vidrec.dff.warp.mirror_averaged`): key frames cost twice, propagated frames the
            same. Training never flips.
        largest_object: in eval mode, every frame's output keeps its foreground in its largest connected
            region only (`vidrec.dff.warp.keep_largest_object`, in `task`, on the feature grid).
        fresh_motion: propagated frames warp the key frame's appearance part and add their own motion
            cue's part (the module docstring); needs `refreshable` parts (and ``reduced``).
        fresh_from: with `fresh_motion`, the distance (frames) to the nearest key frame from which a
            propagated frame computes its own cue; nearer ones warp the key frame's (1: every frame).
        propagated_bias: in eval mode, added to every class but the first (background) of a propagated
            frame's output (`task` with ``propagated=True``, before `largest_object`): a warped map, and more
            so two blended ones, is a smoothed copy of a key frame's, its foreground logits weaker; key
            frames are never changed (0: off, the default of `vidrec dff` and benchmarks/dff.py too, where
            --propagated-bias sets it: measured, it does not carry over from sequence to sequence).
        foreground_bias: in eval mode, added to every frame's foreground classes, key and propagated
            (before `propagated_bias` and `largest_object`): `SegNet`'s calibration, which the per-frame
            model it came from carries (`as_dff`).
        warp_padding: what the warp reads where the flow leaves the key frame's map (`vidrec.dff.warp.warp`):
            "zeros" (the paper's, the default here) or "border", the nearest edge cell (`vidrec dff run /
            eval` and benchmarks/dff.py use it: measured on held-out sequences, docs/dff.md).
    """

    def __init__(
        self,
        feature_net: nn.Module,
        flow_net: nn.Module,
        task_net: nn.Module,
        *,
        feature_stride: int = 16,
        scale_field: ScaleField | None = None,
        bias_field: BiasField | None = None,
        upsample: bool = True,
        reduced: bool = False,
        flip_test: bool = False,
        fresh_motion: bool = False,
        fresh_from: int = FRESH_FROM,
        largest_object: bool = False,
        propagated_bias: float = 0.0,
        foreground_bias: float = 0.0,
        warp_padding: str = "zeros",
    ) -> None:
        super().__init__()
        if warp_padding not in PADDINGS:
            raise ValueError(f"warp_padding must be one of {PADDINGS}, got {warp_padding!r}")
        self.warp_padding = warp_padding
        if fresh_from < 1:
            raise ValueError(f"fresh_from: frames from a key frame, >= 1 (1: every frame), got {fresh_from}")
        self.fresh_from = int(fresh_from)
        missing = [a for a in ("reduce", "classify_reduced") if reduced and not hasattr(task_net, a)]
        if missing:
            raise ValueError(
                f"reduced=True needs a task net with reduce and classify_reduced; {type(task_net).__name__} "
                f"lacks {', '.join(missing)}"
            )
        self.feature_net, self.flow_net, self.task_net = feature_net, flow_net, task_net
        self.feature_stride = feature_stride
        self.scale = scale_field
        self.bias_field = bias_field
        self.upsample = upsample
        self.reduced = reduced
        self.flip_test = flip_test
        self.largest_object = largest_object
        self.propagated_bias = float(propagated_bias)
        self.foreground_bias = float(foreground_bias)
        self.fresh_motion = fresh_motion  # checked by the setter below

    @property
    def fresh_motion(self) -> bool:
        return self._fresh_motion

    @fresh_motion.setter
    def fresh_motion(self, on: bool) -> None:
        if on and not refreshable(self):
            raise ValueError(
                "fresh_motion needs a feature net with a motion cue (model.kwargs.motion > 0), a task net "
                "whose reduction is a 1x1 conv, and reduced=True"
            )
        self._fresh_motion = bool(on)

    frozen_parts: tuple[str, ...] = ()
    PARTS = ("feature_net", "task_net", "flow_net")

    def freeze(self, parts: Iterable[str]) -> DFF:
        """Keep `parts` (of `PARTS`) as they are while the rest trains: no gradients, and eval mode under
        ``train()`` (BatchNorm running statistics, no dropout). The DFF recipe of benchmarks/dff.py trains
        the flow net and S on a frozen per-frame network: the key frame's features then need no backward."""
        parts = tuple(parts)
        unknown = [p for p in parts if p not in self.PARTS]
        if unknown:
            raise ValueError(f"freeze: {unknown} are not parts of a DFF model: {', '.join(self.PARTS)}")
        for name in parts:
            getattr(self, name).requires_grad_(False)
        self.frozen_parts = parts
        return self.train(self.training)

    def train(self, mode: bool = True) -> DFF:
        super().train(mode)
        for name in self.frozen_parts:
            getattr(self, name).eval()
        return self

    # -- the parts (`vidrec.dff.cost` times each of them) ---------------------------------------------
    def key_features(self, img: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """N_feat on a key frame: `(B, 3, H, W) -> (B, C, h, w)`, the task net's reduction included when
        `reduced` (what is cached and propagated); mirror-averaged in eval mode when `flip_test`. With
        `fresh_motion`, ``{"appearance": A, "motion": M}``, A + M the reduced map."""
        if self.flip_test and not self.training:
            features = mirror_averaged(self.feature_net, img)
        else:
            features = self.feature_net(img)
        if not self.reduced:
            return features
        reduced = self.task_net.reduce(features)
        if not self.fresh_motion:
            return reduced
        motion = self._motion_part(features[:, -self.feature_net.branch.out_channels :])
        return {"appearance": reduced - motion, "motion": motion}

    def _motion_part(self, branch_maps: torch.Tensor) -> torch.Tensor:
        """The reduction's motion columns applied to the branch's maps `(B, c, h, w)` (no bias)."""
        weight = self.task_net.reduce.weight[:, -branch_maps.shape[1] :]
        return F.conv2d(branch_maps, weight)

    def fresh_motion_map(self, img: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """M of a propagated frame `(B, 9, H, W)` (frame and neighbours): its own cue (DIS fast preset), the
        branch, the reduction's motion columns, `(B, hidden, h, w)` on `grid`."""
        net = self.feature_net
        if getattr(self, "_cue", None) is None:  # the key frames' cue class (`motion.MotionCue`)
            self._cue = type(net.cue)(FRESH_CUE_PRESET, FRESH_CUE_NEIGHBOURS).to(img.device)
        maps = net.branch(self._cue(img).to(img.dtype))
        if maps.shape[-2:] != tuple(grid):
            maps = F.interpolate(maps, size=tuple(grid), mode="bilinear", align_corners=False)
        return self._motion_part(maps)

    def with_motion(self, features, img: torch.Tensor):
        """Propagated `features` (``{"appearance": A}``) with the frame's own motion part added; anything
        else (a key frame's features, a model without `fresh_motion`) as it is."""
        if not isinstance(features, dict) or "motion" in features:
            return features
        appearance = features["appearance"]
        return {"appearance": appearance, "motion": self.fresh_motion_map(img, appearance.shape[-2:])}

    def task(self, features, *, propagated: bool = False) -> torch.Tensor:
        """N_task on (propagated or key) features `(B, C, h, w)` -> `(B, K, h, w)`, on the feature grid (a
        `fresh_motion` dict: on the sum of its parts); in eval mode, a `propagated` frame's foreground
        classes get `propagated_bias` (every frame's `foreground_bias`), and with `largest_object` the
        foreground is kept in its largest connected region."""
        if isinstance(features, dict):
            features = sum(features.values())
        out = self.task_net.classify_reduced(features) if self.reduced else self.task_net(features)
        if self.training:
            return out
        bias = self.foreground_bias + (self.propagated_bias if propagated else 0.0)
        if bias:
            out = with_foreground_bias(out, bias)
        return keep_largest_object(out) if self.largest_object else out

    def upsample_to(self, out: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The task output resized bilinearly to `size` = (H, W) when `upsample`."""
        if self.upsample and out.shape[-2:] != tuple(size):
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out

    def head(
        self, features: torch.Tensor, size: tuple[int, int], *, propagated: bool = False
    ) -> torch.Tensor:
        """N_task on features `(B, C, h, w)` (`task`), upsampled to `size` = (H, W) when `upsample`."""
        return self.upsample_to(self.task(features, propagated=propagated), size)

    def estimate_flow(
        self, key_img: torch.Tensor, cur_img: torch.Tensor, grid: tuple[int, int], *, pooled: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(flow `(B, 2, h, w)` current -> key in feature px on `grid`, the flow net's scale features).
        ``pooled=True``: both images come from `flow_input`."""
        if pooled:
            flow, scale_in = self.flow_net(key_img, cur_img, pooled=True)
        else:  # the frames' own RGB (module doc)
            flow, scale_in = self.flow_net(key_img[:, :3], cur_img[:, :3])
        return resize_flow(flow, grid), scale_in

    def flow_input(self, img: torch.Tensor) -> torch.Tensor:
        """A frame's own RGB as the flow net's first layer sees it (its ``pool``, e.g. `FlowNetLite`'s
        average pooling): `estimate_flow(..., pooled=True)` takes it, so a walk pools each key frame once
        for all the frames it serves. For a flow net without ``pool``: the RGB as is."""
        pool = getattr(self.flow_net, "pool", None)
        return img[:, :3] if pool is None else pool(img[:, :3])

    def scale_field(self, scale_in: torch.Tensor | None, grid: tuple[int, int]) -> torch.Tensor | None:
        """S `(B, C, h, w)` on `grid` from the flow net's features, or None (S = 1)."""
        return _field_on_grid(self.scale, scale_in, grid)

    def bias(self, scale_in: torch.Tensor | None, grid: tuple[int, int]) -> torch.Tensor | None:
        """B `(B, C, h, w)` on `grid` from the flow net's features, or None (B = 0)."""
        return _field_on_grid(self.bias_field, scale_in, grid)

    def warp_features(
        self, key_feat, flow: torch.Tensor, scale_in: torch.Tensor | None, *, distance: int | None = None
    ):
        """``S * warp(key_feat, flow) + B``, S and B from the flow net's features `scale_in`. A `fresh_motion`
        key frame's parts: the appearance part alone (``{"appearance": ...}``, the frame adds its own cue)
        when `distance` (frames to the nearest key frame; None: far) is at least `fresh_from`, else the
        whole map (their sum, one warp: the key frame's cue carried as without `fresh_motion`)."""
        if isinstance(key_feat, dict):
            if distance is not None and distance < self.fresh_from:  # S * warp(A + M) + B: the whole map
                return self.warp_features(key_feat["appearance"] + key_feat["motion"], flow, scale_in)
            return {"appearance": self.warp_features(key_feat["appearance"], flow, scale_in)}
        grid = key_feat.shape[-2:]
        out = warp(key_feat, flow, self.scale_field(scale_in, grid), padding=self.warp_padding)
        bias = self.bias(scale_in, grid)
        return out if bias is None else out + bias

    def flow(self, key_img: torch.Tensor, cur_img: torch.Tensor, grid: tuple[int, int]):
        """(flow `(B, 2, h, w)` current -> key in feature px on `grid`, S `(B, C, h, w)` or None)."""
        flow, scale_in = self.estimate_flow(key_img, cur_img, grid)
        return flow, self.scale_field(scale_in, grid)

    def propagate(self, key_feat, key_img: torch.Tensor, cur_img: torch.Tensor):
        """The current frame's features from the key frame's: ``S * warp(key_feat, flow(cur -> key)) + B``
        (with `fresh_motion`, plus the current frame's own motion part)."""
        flow, scale_in = self.estimate_flow(key_img, cur_img, feature_grid(key_feat))
        return self.with_motion(self.warp_features(key_feat, flow, scale_in), cur_img)

    # -- training and per-frame inference -----------------------------------------------------------
    def per_frame(self, img: torch.Tensor) -> torch.Tensor:
        """N_task(N_feat(img)): the per-frame baseline, `(B, 3, H, W) -> (B, K, H, W)`."""
        return self.head(self.key_features(img), img.shape[-2:])

    def forward(
        self, key_img: torch.Tensor, cur_img: torch.Tensor, same: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The task output on the current frame `(B, K, H, W)`, its features propagated from the key frame.

        Args:
            key_img, cur_img: `(B, 3, H, W)` each.
            same: optional bool `(B,)`: items whose key frame is the current frame use the key features
                unwarped (the release's ``eq_flag``); the flow net still runs so that the batch is one shape.
        """
        key_feat = self.key_features(key_img)
        feat = self.task_input(self.propagate(key_feat, key_img, cur_img))
        if same is not None:
            feat = torch.where(same.view(-1, 1, 1, 1).to(feat.device), self.task_input(key_feat), feat)
        return self.head(feat, cur_img.shape[-2:])

    @staticmethod
    def task_input(features) -> torch.Tensor:
        """Features as the task net takes them: a `fresh_motion` dict summed."""
        return sum(features.values()) if isinstance(features, dict) else features

    # -- inference on a video -----------------------------------------------------------------------
    def run(self, frames: Iterable[torch.Tensor], schedule: Schedule) -> Iterator[tuple[torch.Tensor, bool]]:
        """Walk one video: yield ``(output (B, K, H, W), is_key)`` per frame `(B, 3, H, W)`, in order.

        Key frames (as `schedule.decide` says) run the feature net and are kept; the others are propagated
        from the last key frame. A schedule that `needs_signal` gets ``SIGNALS[schedule.signal]`` of the
        flow to the last key frame (computed anyway for a non-key frame). Runs without autograd.
        """
        yield from walk(
            self,
            frames,
            schedule,
            flow=lambda key_img, img, key_feat, pooled=False: self.estimate_flow(
                key_img, img, feature_grid(key_feat), pooled=pooled
            ),
            warp_features=self.warp_features,
            head=lambda feat, img, propagated=False: self.head(
                self.with_motion(feat, img), img.shape[-2:], propagated=propagated
            ),
            flow_input=self.flow_input if hasattr(self.flow_net, "pool") else None,
        )


def feature_grid(features) -> tuple[int, int]:
    """(h, w) of a feature map, or of a `fresh_motion` dict's maps."""
    if isinstance(features, dict):
        features = features["appearance"]
    return tuple(features.shape[-2:])


def refreshable(model: nn.Module) -> bool:
    """Whether `model` (a `DFF`) can give propagated frames a fresh motion cue: a feature net with the cue
    (``branch`` and ``cue``, `vidrec.models.motion.MotionFeatures`), a task net whose ``reduce`` is a 1x1
    conv over the joined channels, and ``reduced``."""
    net, head = getattr(model, "feature_net", None), getattr(model, "task_net", None)
    reduce = getattr(head, "reduce", None)
    branch = getattr(net, "branch", None)
    return (
        bool(getattr(model, "reduced", False))
        and branch is not None
        and hasattr(net, "cue")
        and isinstance(reduce, nn.Conv2d)
        and reduce.kernel_size == (1, 1)
        and reduce.in_channels > getattr(branch, "out_channels", reduce.in_channels)
    )


def _field_on_grid(
    field: nn.Module | None, scale_in: torch.Tensor | None, grid: tuple[int, int]
) -> torch.Tensor | None:
    """`field(scale_in)` (S or B) resized bilinearly to `grid`; None when there is no field or no input."""
    if field is None or scale_in is None:
        return None
    out = field(scale_in)
    if out.shape[-2:] != tuple(grid):
        out = F.interpolate(out, size=tuple(grid), mode="bilinear", align_corners=False)
    return out


def walk(
    model: nn.Module,
    frames: Iterable[torch.Tensor],
    schedule: Schedule,
    *,
    flow: Callable,
    warp_features: Callable,
    head: Callable,
    flow_input: Callable | None = None,
) -> Iterator[tuple[object, bool]]:
    """The key-frame walk shared by `DFF.run` and `vidrec.dff.detect.PyramidDFF.run`.

    `model` gives ``key_features(img)``; ``flow(key_img, img, key_feat) -> (flow, scale)`` and
    ``warp_features(key_feat, flow, scale)`` propagate (a model with ``fresh_motion`` gets ``distance=``,
    the frames to the key frame, too); ``head(feat, img)`` makes each frame's output (a propagated frame's
    with ``propagated=True``). With `flow_input`
    (e.g. `DFF.flow_input`: the RGB pooled as the flow net pools it) each frame goes through it once and
    `flow` gets what it gives, and ``pooled=True``: a key frame is pooled once, not once per frame it serves.
    Yields ``(output, is_key)`` per frame, without autograd; frame 0 is always a key frame. A
    `vidrec.dff.schedule.Bidirectional` schedule goes to `walk_bidirectional`.
    """
    if getattr(schedule, "bidirectional", False):
        yield from walk_bidirectional(
            model, frames, schedule, flow=flow, warp_features=warp_features, head=head, flow_input=flow_input
        )
        return
    flow, prep = _flow_on_inputs(flow, flow_input)
    schedule.reset()
    key_img = key_feat = None
    key_index = 0
    signal_fn = SIGNALS[getattr(schedule, "signal", "flow")] if schedule.needs_signal else None
    for index, img in enumerate(frames):
        with torch.inference_mode():
            flow_now = scale = signal = cur_in = None
            if signal_fn is not None and key_feat is not None:
                cur_in = prep(img)
                flow_now, scale = flow(key_img, cur_in, key_feat)
                signal = signal_fn(flow_now, key_img, cur_in)
            is_key = schedule.decide(index, signal) or key_feat is None
            if is_key:
                key_img, key_feat, key_index = prep(img), model.key_features(img), index
                feat = key_feat
            else:
                if flow_now is None:
                    flow_now, scale = flow(key_img, prep(img), key_feat)
                feat = warp_features(key_feat, flow_now, scale, **_distance(model, index - key_index))
            out = head(feat, img) if is_key else head(feat, img, propagated=True)
        yield out, is_key


def _flow_on_inputs(flow: Callable, flow_input: Callable | None) -> tuple[Callable, Callable]:
    """(`flow` on what `flow_input` gives, the frame -> flow-input map): `flow` with ``pooled=True`` and
    `flow_input` when there is one, else `flow` as is and the frame's own RGB."""
    if flow_input is None:
        return flow, lambda img: img[:, :3]
    return functools.partial(flow, pooled=True), flow_input


def _distance(model: nn.Module, distance: int) -> dict[str, int]:
    """``{"distance": distance}`` for a model whose warp takes it (``fresh_motion``), else nothing."""
    return {"distance": distance} if getattr(model, "fresh_motion", False) else {}


def blend(a, b, weight: float | torch.Tensor):
    """``weight * a + (1 - weight) * b`` for feature maps `(B, C, h, w)`, or level by level for pyramids
    (dicts); a `weight` map `(B, 1, h', w')` is resized bilinearly to each map's grid."""
    if isinstance(a, dict):
        return type(a)((k, blend(a[k], b[k], weight)) for k in a)
    if isinstance(weight, torch.Tensor) and weight.shape[-2:] != a.shape[-2:]:
        weight = F.interpolate(weight, size=a.shape[-2:], mode="bilinear", align_corners=False)
    return weight * a + (1 - weight) * b


def nearness_weights(
    before: float, errors: tuple[torch.Tensor, torch.Tensor] | None, tau: float
) -> float | torch.Tensor:
    """The earlier key frame's weight in a bidirectional blend: `before` = (next - i) / (next - prev), times
    ``exp(-error / tau)`` per pixel for each side's warp error when `tau` > 0 (a side whose warp does not
    explain the frame there -- occluded, new content -- counts less), normalised against the other side's."""
    if not tau or errors is None:
        return before
    e0, e1 = errors
    return torch.sigmoid(math.log(before / (1 - before)) - (e0 - e1) / tau)


def walk_bidirectional(
    model: nn.Module,
    frames: Iterable[torch.Tensor],
    schedule: Schedule,
    *,
    flow: Callable,
    warp_features: Callable,
    head: Callable,
    flow_input: Callable | None = None,
) -> Iterator[tuple[object, bool]]:
    """`walk` for a `Bidirectional` schedule: the key frames its `decide` picks; each frame `i` between key
    frames `p` < i < `n` gets ``blend(f_p -> i, f_n -> i, w)`` of the features propagated from both, `w` from
    `nearness_weights` ((n - i) / (n - p), and per pixel each side's `warp_error` at the schedule's
    ``tau``); frames after the last key frame take it alone (as `walk`). Frames between two key frames wait
    for the next one (at most the interval minus one are held); outputs come in frame order. The two sides
    run as one batch (the flow net, S and the warp see both key frames at once): the same arithmetic, with
    half the calls of small ops whose cost is mostly their overhead.

    On the CPU with torch at n > 1 threads the walk runs whole frames side by side, each at one thread
    (`map_frames`; on a GPU one at a time): it reads on until n key frames wait, runs their feature nets
    at once, then every frame held between them, n at a time. The outputs are those of the one-thread
    walk; the cores stay busy on whole frames instead of splitting each op, which pays most on the
    propagated frames' small ops (docs/dff.md). The price is latency and memory: up to n intervals of
    frames wait (n x l; one interval at one thread)."""
    schedule.reset()
    tau = float(getattr(schedule, "tau", 0.0))
    flow, prep = _flow_on_inputs(flow, flow_input)
    side_by_side = None  # frames run at once: torch's threads on the CPU, 1 on a GPU (set by the first frame)
    step = functools.partial(
        _key_frames_and_between, model, tau=tau, flow=flow, warp_features=warp_features, head=head, prep=prep
    )
    key = None  # (index, flow input, features) of the last key frame whose features are known
    waiting: list[tuple[int, torch.Tensor, list]] = []  # key frames read, each with the frames before it
    held: list[tuple[int, torch.Tensor]] = []  # frames since the last key frame read
    for index, img in enumerate(frames):
        if (key is not None or waiting) and not schedule.decide(index, None):
            held.append((index, img))
            continue
        waiting.append((index, img, held))
        held = []
        if side_by_side is None:
            side_by_side = max(1, torch.get_num_threads()) if img.device.type == "cpu" else 1
        if len(waiting) == side_by_side:
            key, outs = step(key, waiting, side_by_side)
            yield from outs
            waiting = []
    if waiting:
        key, outs = step(key, waiting, side_by_side)
        yield from outs
    for i, cur in held:  # after the last key frame: forward only
        with torch.inference_mode():
            flow_now, scale = flow(key[1], prep(cur), key[2])
            out = head(
                warp_features(key[2], flow_now, scale, **_distance(model, i - key[0])), cur, propagated=True
            )
        yield out, False


def _key_features(model: nn.Module, img: torch.Tensor):
    with torch.inference_mode():
        return model.key_features(img)


def _key_frames_and_between(model, key, waiting, workers: int, *, tau, flow, warp_features, head, prep):
    """`walk_bidirectional`'s step: the features of the `waiting` key frames ``(index, img, held before
    it)``, `workers` at a time, then each held frame's output (`_between`) from the key frames around it.
    Returns the last key frame ``(index, flow input, features)`` (`prep`: frame -> flow input) and the
    ``(output, is_key)`` in frame order."""
    feats = map_frames(functools.partial(_key_features, model), [img for _, img, _ in waiting], workers)
    items = []  # (held frame, the pair of key frames around it)
    keys = [key] + [(index, prep(img), feat) for (index, img, _), feat in zip(waiting, feats, strict=True)]
    for before, after, (_, _, held) in zip(keys[:-1], keys[1:], waiting, strict=True):
        if held:
            # (2B, 3, h, w): the earlier and later key frame's flow input (own RGB, pooled as the flow net
            # pools it), all the flow net and the warp errors look at
            pair_img = torch.cat([before[1], after[1]])
            pair = _KeyPair(before[0], after[0], pair_img, _cat(before[2], after[2]), after[1].shape[0])
            items += [(item, pair) for item in held]
    between = functools.partial(
        _between, tau=tau, model=model, flow=flow, warp_features=warp_features, head=head, prep=prep
    )
    outs = iter(map_frames(lambda x: between(x[0], pair=x[1]), items, workers))
    ordered = []
    for (_, img, held), (_, _, feat) in zip(waiting, keys[1:], strict=True):
        ordered += [(next(outs), False) for _ in held]
        with torch.inference_mode():
            ordered.append((head(feat, img), True))
    return keys[-1], ordered


@dataclasses.dataclass
class _KeyPair:
    """Two key frames around held frames: their indices, RGB and features joined on the batch (B each)."""

    first: int
    last: int
    img: torch.Tensor  # (2B, 3, h, w): their flow input
    feat: object  # (2B, C, h, w) or a dict of them
    n: int  # B
    small: dict = dataclasses.field(default_factory=dict)  # img area-pooled to a flow grid (warp errors)


def _between(
    item: tuple[int, torch.Tensor], *, pair: _KeyPair, tau: float, model, flow, warp_features, head, prep
):
    """The output of held frame `item` = (index, frame) between the key frames of `pair`: the features
    propagated from both, blended (`walk_bidirectional`). Makes its own inference mode (`map_frames`)."""
    i, cur = item
    n = pair.n
    with torch.inference_mode():
        rgb = prep(cur)  # its flow input, once for both sides
        both_flow, scale = flow(pair.img, torch.cat([rgb, rgb]), pair.feat)
        near = _distance(model, min(i - pair.first, pair.last - i))  # frames to the nearer key frame
        before, after = _split(warp_features(pair.feat, both_flow, scale, **near), n)
        errors = None
        if tau:
            grid = tuple(both_flow.shape[-2:])
            if grid not in pair.small:  # threads racing here compute the same tensor
                pair.small[grid] = pool_rgb(pair.img, grid)
            small = pool_rgb(rgb, grid)
            err = warp_error(both_flow, pair.small[grid], torch.cat([small, small]))
            errors = (err[:n], err[n:])
        w = nearness_weights((pair.last - i) / (pair.last - pair.first), errors, tau)
        return head(blend(before, after, w), cur, propagated=True)


_FRAME_POOL: list = [None, 0]  # a ThreadPoolExecutor whose threads run torch at one thread each, its size


def _one_torch_thread(ready: threading.Barrier) -> None:
    # torch sets a thread's OpenMP team from its global thread count on the thread's first query (which a
    # later set_num_threads in another thread changes): query first, then one thread for this worker
    torch.get_num_threads()
    torch.set_num_threads(1)  # this worker's own team only: the caller keeps its threads
    ready.wait()


def map_frames(fn: Callable, items: list, workers: int | None = None) -> list:
    """``[fn(x) for x in items]``, in order, over `workers` threads (default: torch's thread count) that
    run torch at one thread each, so that independent frames (the frames held between two key frames)
    run side by side instead of splitting each small op over the cores. `fn` makes its own
    ``torch.inference_mode()`` (grad mode is per thread). With one worker or one item: a loop."""
    workers = torch.get_num_threads() if workers is None else workers
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    if _FRAME_POOL[1] != workers:
        if _FRAME_POOL[0] is not None:
            _FRAME_POOL[0].shutdown(wait=False)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="vidrec-frames")
        ready, mine = threading.Barrier(workers + 1), torch.get_num_threads()
        for _ in range(workers):  # start every worker now, each at one torch thread
            pool.submit(_one_torch_thread, ready)
        ready.wait()
        torch.set_num_threads(mine)  # the workers' set_num_threads(1) moved the default of new threads
        _FRAME_POOL[:] = [pool, workers]
    return list(_FRAME_POOL[0].map(fn, items))


def _cat(a, b):
    """Two feature maps (or pyramids: dicts of them) joined on the batch."""
    if isinstance(a, dict):
        return type(a)((k, torch.cat([a[k], b[k]])) for k in a)
    return torch.cat([a, b])


def _split(x, n: int):
    """`_cat`'s inverse: the first `n` items and the rest."""
    if isinstance(x, dict):
        return type(x)((k, v[:n]) for k, v in x.items()), type(x)((k, v[n:]) for k, v in x.items())
    return x[:n], x[n:]


def as_dff(model: nn.Module, *, flow_net: nn.Module | None = None) -> DFF:
    """A `DFF` from a trained model: the model itself (its own flow net unless `flow_net` is given), or a
    per-frame model's ``feature_net`` / ``task_net`` / ``feature_stride`` (and ``flip_test``) with
    `flow_net`, propagating the task net's reduced map when it has one (``reduced``). With a `flow_net` of
    its choosing the result has no scale field (S = 1): a trained S belongs to its own flow net."""
    if isinstance(model, DFF):
        if flow_net is None:
            return model
        return DFF(
            model.feature_net,
            flow_net,
            model.task_net,
            feature_stride=model.feature_stride,
            upsample=model.upsample,
            reduced=model.reduced,
            flip_test=model.flip_test,
            fresh_motion=model.fresh_motion,
            fresh_from=model.fresh_from,
            largest_object=model.largest_object,
            propagated_bias=model.propagated_bias,
            foreground_bias=model.foreground_bias,
            warp_padding=model.warp_padding,
        )
    missing = [a for a in ("feature_net", "task_net", "feature_stride") if not hasattr(model, a)]
    if missing:
        raise ValueError(
            f"{type(model).__name__} is not a DFF model and lacks {', '.join(missing)}; give a checkpoint of "
            "the segment task (a per-frame or DFF segmentation model)"
        )
    if flow_net is None:
        raise ValueError(
            f"{type(model).__name__} has no flow net of its own; choose a flow source (dis or raft)"
        )
    reduced = all(hasattr(model.task_net, a) for a in ("reduce", "classify_reduced"))  # a SegHead
    return DFF(
        model.feature_net,
        flow_net,
        model.task_net,
        feature_stride=int(model.feature_stride),
        reduced=reduced,
        flip_test=bool(getattr(model, "flip_test", False)),
        largest_object=bool(getattr(model, "largest_object", False)),
        foreground_bias=float(getattr(model, "foreground_bias", 0.0)),
    )
