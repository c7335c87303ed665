"""Deep Feature Flow for detection: a feature pyramid carried along the flow, the detection head on every
frame (Zhu et al., CVPR 2017, section 4: their R-FCN's feature maps are propagated, its heads are not).

``PyramidDFF(feature_net, flow_net, task_net, *, scale_field=None)``:

- ``feature_net(img (B, 3, H, W)) -> {name: (B, C, h_l, w_l)}``, an ordered dict of pyramid levels
  (`vidrec.models.detector.MobileNetV2FPN`);
- ``task_net(levels, image_size, targets=None)`` -> detections per image, or a loss dict with targets
  (`vidrec.models.detector.DetectHead`);
- ``flow_net``: the flow-net contract of `vidrec.dff.model` (current -> key flow in pixels of its own grid).

Each level is warped by the flow resampled to that level's grid and scaled to its pixels
(`vidrec.dff.warp.resize_flow`: a shift of 16 image pixels is 2 cells at stride 8 and 1 at stride 16), and
multiplied by the scale field S resized to the level (one `ScaleField` for all levels: they share their
width). Key frames use the pyramid unwarped, so their output is the per-frame output exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from vidrec.dff.model import ScaleField, walk
from vidrec.dff.schedule import Schedule
from vidrec.dff.warp import resize_flow, warp

__all__ = ["KEY_PARTS", "NON_KEY_PARTS", "PyramidDFF", "as_pyramid_dff", "cost_steps", "warp_pyramid"]

# what a key frame and a propagated frame run (`cost_steps`, `vidrec.dff.cost.part_costs`)
KEY_PARTS = ("feature net", "head", "postprocess")
NON_KEY_PARTS = ("flow", "scale field", "warp", "head", "postprocess")

Pyramid = OrderedDict[str, torch.Tensor]


def warp_pyramid(levels: Pyramid, flow: torch.Tensor, scale: torch.Tensor | None = None) -> Pyramid:
    """Every level `(B, C, h_l, w_l)` warped by `flow` `(B, 2, h, w)` (px of its grid) resized to the
    level and scaled to its pixels, times `scale` `(B, C, h', w')` resized to the level (None: S = 1)."""
    out = OrderedDict()
    for name, feat in levels.items():
        grid = tuple(feat.shape[-2:])
        s = scale
        if s is not None and tuple(s.shape[-2:]) != grid:
            s = F.interpolate(s, size=grid, mode="bilinear", align_corners=False)
        out[name] = warp(feat, resize_flow(flow, grid), s)
    return out


class PyramidDFF(nn.Module):
    """Deep Feature Flow around a pyramid feature net, a flow net and a detection head.

    Args:
        feature_net: `(B, 3, H, W) -> {level: (B, C, h, w)}`, run on key frames.
        flow_net: the flow-net contract of `vidrec.dff.model`.
        task_net: ``(levels, image_size, targets=None)`` -> detections or a loss dict.
        scale_field: S, e.g. ``ScaleField(flow_net.scale_channels, C)``; None: S = 1.
    """

    def __init__(
        self,
        feature_net: nn.Module,
        flow_net: nn.Module,
        task_net: nn.Module,
        *,
        scale_field: ScaleField | None = None,
    ) -> None:
        super().__init__()
        self.feature_net, self.flow_net, self.task_net = feature_net, flow_net, task_net
        self.scale = scale_field
        self.feature_stride = int(getattr(feature_net, "strides", (8,))[0])

    def key_features(self, img: torch.Tensor) -> Pyramid:
        return self.feature_net(img)

    def flow(self, key_img: torch.Tensor, cur_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(current -> key flow `(B, 2, h, w)` in px of the flow net's grid, S `(B, C, h, w)` or None)."""
        flow, scale_in = self.flow_net(key_img, cur_img)
        if self.scale is None or scale_in is None:
            return flow, None
        return flow, self.scale(scale_in)

    def propagate(self, key_feat: Pyramid, key_img: torch.Tensor, cur_img: torch.Tensor) -> Pyramid:
        return warp_pyramid(key_feat, *self.flow(key_img, cur_img))

    def per_frame(self, img: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The per-frame baseline: ``task_net(feature_net(img))``."""
        return self.task_net(self.key_features(img), tuple(img.shape[-2:]))

    def forward(
        self,
        key_img: torch.Tensor,
        cur_img: torch.Tensor,
        same: torch.Tensor | None = None,
        targets: list[dict[str, torch.Tensor]] | None = None,
    ):
        """Detections on the current frames (or the loss dict with `targets`), the pyramid propagated
        from the key frames; items whose `same` is True use the key pyramid unwarped (``eq_flag``)."""
        key_feat = self.key_features(key_img)
        feat = self.propagate(key_feat, key_img, cur_img)
        if same is not None:
            keep = same.view(-1, 1, 1, 1).to(key_img.device)
            feat = OrderedDict((k, torch.where(keep, key_feat[k], v)) for k, v in feat.items())
        return self.task_net(feat, tuple(cur_img.shape[-2:]), targets)

    def run(
        self, frames: Iterable[torch.Tensor], schedule: Schedule
    ) -> Iterator[tuple[list[dict[str, torch.Tensor]], bool]]:
        """Walk one video: yield ``(detections per image, is_key)`` per frame `(B, 3, H, W)`, in order
        (the key-frame logic of `vidrec.dff.model.DFF.run`). Runs without autograd."""
        yield from walk(
            self,
            frames,
            schedule,
            flow=lambda key_img, img, key_feat: self.flow(key_img, img),
            warp_features=warp_pyramid,
            head=lambda feat, img, propagated=False: self.task_net(feat, tuple(img.shape[-2:])),
        )


def as_pyramid_dff(model: nn.Module, *, flow_net: nn.Module | None = None) -> PyramidDFF:
    """A `PyramidDFF` from a detect checkpoint's model: itself (its own flow net unless `flow_net` is
    given; another flow net gets no scale field) or a per-frame `Detector`'s parts with `flow_net`."""
    if isinstance(model, PyramidDFF) and flow_net is None:
        return model
    missing = [a for a in ("feature_net", "task_net") if not hasattr(model, a)]
    if missing:
        raise ValueError(f"{type(model).__name__} lacks {', '.join(missing)}; give a detect-task checkpoint")
    if flow_net is None:
        raise ValueError(f"{type(model).__name__} has no flow net of its own; choose a flow source (dis)")
    return PyramidDFF(model.feature_net, flow_net, model.task_net)


def cost_steps(
    dff: PyramidDFF, key_img: torch.Tensor, cur_img: torch.Tensor
) -> dict[tuple[str, str], Callable]:
    """Each part of both paths of `dff` (a `PyramidDFF` whose task net is a `DetectHead`) as a call on the
    inputs it gets in `PyramidDFF.run`, for `vidrec.dff.cost.part_costs`: `KEY_PARTS` and `NON_KEY_PARTS`
    (head = the head's convs, postprocess = FCOS's score threshold, top-k, box decoding and NMS)."""
    size = tuple(cur_img.shape[-2:])
    head = dff.task_net
    with torch.inference_mode():
        key_feat = dff.key_features(key_img)  # cached on the key frame
        flow, scale_in = dff.flow_net(key_img, cur_img)
        scale = dff.scale(scale_in) if dff.scale is not None and scale_in is not None else None
        warped = warp_pyramid(key_feat, flow, scale)
        key_levels, levels = list(key_feat.values()), list(warped.values())
        key_out, out = head.head(key_levels), head.head(levels)
    return {
        ("key", "feature net"): lambda: dff.key_features(key_img),
        ("key", "head"): lambda: head.head(key_levels),
        ("key", "postprocess"): lambda: head.postprocess(key_out, key_levels, size),
        ("non-key", "flow"): lambda: dff.flow_net(key_img, cur_img),
        ("non-key", "scale field"): lambda: None if scale is None else dff.scale(scale_in),
        ("non-key", "warp"): lambda: warp_pyramid(key_feat, flow, scale),
        ("non-key", "head"): lambda: head.head(levels),
        ("non-key", "postprocess"): lambda: head.postprocess(out, levels, size),
    }
