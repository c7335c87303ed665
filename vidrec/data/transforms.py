"""Clip transforms on torchvision.transforms.v2, shared by every frame of a clip and every stream.

A clip is a ``tv_tensors.Video`` `(T, C, H, W)`, so one draw of random parameters (crop box, flip)
applies to all T frames. The dataset passes all modalities of an item together as one dict, e.g.
``{"rgb": Video, "flow": FlowVideo}``, so the RGB and flow streams get the same crop and flip.

Flow types:
- `FlowVideo` `(T, 2L, H, W)` float, displacements in pixels, x/y interleaved (`[x1, y1, ..., xL, yL]`).
  A horizontal flip mirrors the image AND negates the x channels (the even ones).
- `Flow3Video` `(T, 3, H, W)` float, LRCN's 3-channel flow image minus 128 (`clip(16u, -128, 127)`,
  `clip(16v, ...)`, `min(16|f|, 127)`). A horizontal flip negates channel 0 (u around 128).

Normalisation is one spec per modality (`NORMALIZATION`, applied by `normalize_modality`), written on the
scale the dataset hands over, so it applies unchanged wherever it runs (worker or device):
- rgb: uint8 0..255 -> `(x - 255 mean) / (255 std)`, the ImageNet statistics: one level is
  1 / (255 std_c), 0.0171-0.0175 for the three channels;
- every flow form: the released two-stream pipelines (ST-ResNet, TSN; LRCN alike) store flow as a
  0..255 image, subtract 128 and feed it on the same 0..255 scale as RGB. Here a flow image level minus
  128 is divided by `255 * FLOW_STD` (`FLOW_STD` = 0.226, the mean of the ImageNet stds), so one flow
  level weighs what one RGB level weighs after ImageNet normalisation (1 / 57.6 = 0.0174):
  - flow3 (LRCN's image minus 128, already in levels, 16 levels per px): `x / (255 FLOW_STD)`;
  - flow (stacks in pixels): the released stores map +-`FLOW_BOUND` = 20 px onto 0..255, so
    1 px = 255 / 40 levels and the input is `x / (2 FLOW_BOUND FLOW_STD)` = x / 9.04 px. Raw pixels
    (1 px = 1.0) made a stack ~9x louder than RGB. The factor is fixed, whatever bound a store was
    quantised with: a pixel of motion is the same input for every store.
Spatial resizing does not rescale flow values (as in TSN and LRCN, flow crops are treated as images).
With `normalize=False` the transforms leave RGB uint8 (4x fewer bytes from DataLoader workers) and
`normalize_rgb` does its float conversion and normalisation on the device, to float tolerance the same
numbers (every resampling step runs on uint8 either way); flow, float in any case, is still normalised
in the worker.

Test views (`test_transform(crops=3|5|10)`) return tensors with a leading views axis `(N, T, C, h, w)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = [
    "FLOW_BOUND",
    "FLOW_LEVEL_SCALE",
    "FLOW_PX_SCALE",
    "FLOW_STD",
    "NORMALIZATION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Flow3Video",
    "FlowVideo",
    "MultiScaleCornerCrop",
    "OuterCornerCrop",
    "Normalization",
    "TestViews",
    "full_frame_transform",
    "normalize_modality",
    "normalize_frames",
    "normalize_rgb",
    "test_transform",
    "train_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)
ST_RESNET_CROP_SIZES = (256, 224, 192, 168)  # "multiScaleRegular" (Feichtenhofer et al., NeurIPS 2016)


@dataclass(frozen=True)
class Normalization:
    """`(x - mean) / std` per channel, on the scale the dataset delivers the modality (see module doc)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: torch.Tensor, channel_dim: int = -3) -> torch.Tensor:
        """`x` (..., C, H, W) float -> normalised; C must equal len(mean) (1-element specs broadcast)."""
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std


FLOW_STD = sum(IMAGENET_STD) / 3  # 0.226: flow's channels are not R, G, B, so one scale for all
FLOW_BOUND = (
    20.0  # px onto 0..255 in the released flow stores (gpu_flow, denseflow); vidrec.flow.DEFAULT_BOUND
)
FLOW_LEVEL_SCALE = 255.0 * FLOW_STD  # 57.6: a flow image level (minus 128) -> RGB's normalised scale
FLOW_PX_SCALE = 2.0 * FLOW_BOUND * FLOW_STD  # 9.04 px: 1 px = 255 / (2 FLOW_BOUND) levels
NORMALIZATION: dict[str, Normalization] = {
    "rgb": Normalization(tuple(255.0 * m for m in IMAGENET_MEAN), tuple(255.0 * s for s in IMAGENET_STD)),
    "flow3": Normalization((0.0, 0.0, 0.0), (FLOW_LEVEL_SCALE,) * 3),  # levels, already minus 128
    "flow": Normalization((0.0,), (FLOW_PX_SCALE,)),  # pixels (zero mean, as the image minus 128)
}


def normalize_modality(modality: str, x: torch.Tensor) -> torch.Tensor:
    """`NORMALIZATION[modality]` applied to a float `(..., C, H, W)` tensor of that modality."""
    return NORMALIZATION[modality](x)


class FlowVideo(tv_tensors.Video):
    """An optical-flow stack `(T, 2L, H, W)` in pixels; even channels are x, odd channels are y."""


class Flow3Video(tv_tensors.Video):
    """LRCN's 3-channel flow image minus 128, `(T, 3, H, W)`; channel 0 is the x displacement."""


@F.register_kernel(F.horizontal_flip, FlowVideo)
def _flip_flow(inpt: FlowVideo) -> FlowVideo:
    out = inpt.as_subclass(torch.Tensor).flip(-1)  # (T, 2L, H, W)
    out[..., 0::2, :, :] *= -1  # x displacements change sign in a mirror image
    return tv_tensors.wrap(out, like=inpt)


@F.register_kernel(F.horizontal_flip, Flow3Video)
def _flip_flow3(inpt: Flow3Video) -> Flow3Video:
    out = inpt.as_subclass(torch.Tensor).flip(-1)  # (T, 3, H, W)
    out[..., 0, :, :] *= -1  # 16u + 128 -> 128 - 16u
    return tv_tensors.wrap(out, like=inpt)


@F.register_kernel(F.normalize, FlowVideo)
def _normalize_flow(inpt: FlowVideo, *args, **kwargs) -> FlowVideo:
    out = NORMALIZATION["flow"](inpt.as_subclass(torch.Tensor))  # (T, 2L, H, W) on RGB's scale
    return tv_tensors.wrap(out, like=inpt)


@F.register_kernel(F.normalize, Flow3Video)
def _normalize_flow3(inpt: Flow3Video, *args, **kwargs) -> Flow3Video:
    out = NORMALIZATION["flow3"](inpt.as_subclass(torch.Tensor))  # (T, 3, H, W) on RGB's scale
    return tv_tensors.wrap(out, like=inpt)


class OuterCornerCrop(v2.Transform):
    """ST-ResNet stage 1's "f25noCtr" crop (Feichtenhofer et al., NeurIPS 2016): a `size` crop whose
    offset lies in the outer quarter of the free space near one of the 4 corners, never the centre.

    With free space `dy`, `dx`, the top is drawn from `[0, dy/4]` or `[3dy/4, dy]` and the left from
    `[0, dx/4]` or `[3dx/4, dx]` (one corner per clip, uniform inside its quarter).
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__()
        self.size = _pair(size)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        h, w = min(self.size[0], height), min(self.size[1], width)
        top = self._offset(height - h, bool(torch.randint(2, ())))
        left = self._offset(width - w, bool(torch.randint(2, ())))
        return {"top": top, "left": left, "height": h, "width": w}

    @staticmethod
    def _offset(free: int, far: bool) -> int:
        quarter = free // 4
        step = int(torch.randint(quarter + 1, ()))
        return free - step if far else step

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resized_crop, inpt, **params, size=list(self.size), antialias=True)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class MultiScaleCornerCrop(v2.Transform):
    """TSN's multi-scale corner crop (Wang et al., ECCV 2016), resized to `size`.

    Crop height and width are drawn independently from `scales` x the short side (or from absolute
    `crop_sizes`, e.g. ST-ResNet's {256, 224, 192, 168}), at most `max_distort` steps apart in the list; a
    size within 3 px of the output is snapped to it (as TSN does). The crop sits at one of the 4 corners
    or the centre (`more_fix_crop`: also the 4 edge midpoints and 4 quarter points, 13 in all).
    """

    def __init__(
        self,
        size: int | Sequence[int],
        *,
        scales: Sequence[float] = TSN_SCALES,
        crop_sizes: Sequence[int] | None = None,
        max_distort: int = 1,
        more_fix_crop: bool = False,
    ) -> None:
        super().__init__()
        self.size = _pair(size)
        self.scales, self.crop_sizes = tuple(scales), None if crop_sizes is None else tuple(crop_sizes)
        self.max_distort, self.more_fix_crop = max_distort, more_fix_crop

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        base = min(height, width)
        sizes = self.crop_sizes or tuple(int(base * s) for s in self.scales)
        crop_h = [self.size[0] if abs(s - self.size[0]) < 3 else s for s in sizes]
        crop_w = [self.size[1] if abs(s - self.size[1]) < 3 else s for s in sizes]
        pairs = [
            (min(h, height), min(w, width))
            for i, h in enumerate(crop_h)
            for j, w in enumerate(crop_w)
            if abs(i - j) <= self.max_distort
        ]
        h, w = pairs[int(torch.randint(len(pairs), ()))]
        offsets = self._offsets(height - h, width - w)
        top, left = offsets[int(torch.randint(len(offsets), ()))]
        return {"top": top, "left": left, "height": h, "width": w}

    def _offsets(self, dy: int, dx: int) -> list[tuple[int, int]]:
        """(top, left) of the allowed crop positions given the free space `dy`, `dx`."""
        qy, qx = dy // 4, dx // 4
        out = [(0, 0), (0, 4 * qx), (4 * qy, 0), (4 * qy, 4 * qx), (2 * qy, 2 * qx)]
        if self.more_fix_crop:
            out += [(2 * qy, 0), (2 * qy, 4 * qx), (4 * qy, 2 * qx), (0, 2 * qx)]
            out += [(qy, qx), (qy, 3 * qx), (3 * qy, qx), (3 * qy, 3 * qx)]
        return out

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resized_crop, inpt, **params, size=list(self.size), antialias=True)


class TestViews(v2.Transform):
    """Deterministic test crops of `size`, stacked on a new leading views axis: `(N, T, C, h, w)`.

    `crops`: 1 (centre; no views axis), 3 (start / centre / end of the longer side, as in SlowFast's
    3-crop), 5 (4 corners + centre) or 10 (those 5 and their mirror images, flow x negated unless
    `negate_flow=False`: LRCN's released test path mirrors flow crops without negating u, methods.md 1.4).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, size: int | Sequence[int], *, crops: int = 1, negate_flow: bool = True) -> None:
        super().__init__()
        if crops not in (1, 3, 5, 10):
            raise ValueError(f"crops must be 1, 3, 5 or 10, got {crops}")
        self.size, self.crops, self.negate_flow = _pair(size), crops, negate_flow

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        h, w = self.size
        if h > height or w > width:
            raise ValueError(f"test crop {h}x{w} is larger than the frames ({height}x{width}); resize first")
        dy, dx = height - h, width - w
        if self.crops == 1:
            boxes = [(dy // 2, dx // 2)]
        elif self.crops == 3:
            boxes = [(0, 0), (dy // 2, dx // 2), (dy, dx)]  # along the longer side (the other offset is 0)
            boxes = [(t if dy >= dx else dy // 2, l if dx > dy else dx // 2) for t, l in boxes]
        else:
            boxes = [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]
        return {"boxes": boxes}

    def _mirror(self, view: Any) -> Any:
        if self.negate_flow or not isinstance(view, FlowVideo | Flow3Video):
            return F.horizontal_flip(view)
        return tv_tensors.wrap(view.as_subclass(torch.Tensor).flip(-1), like=view)  # pixels only

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        h, w = self.size
        views = [F.crop(inpt, top, left, h, w) for top, left in params["boxes"]]
        if self.crops == 10:
            views += [self._mirror(v) for v in views]
        if self.crops == 1:
            return views[0]
        return torch.stack([v.as_subclass(torch.Tensor) for v in views])  # (N, T, C, h, w)


def _finish(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    """RGB uint8 -> float in [0, 1] -> normalised; flow normalised by its own kernels (`NORMALIZATION`)."""
    return [
        # flow is float already (float -> float is never rescaled); listed to keep it float32
        v2.ToDtype(
            {
                tv_tensors.Video: torch.float32,
                FlowVideo: torch.float32,
                Flow3Video: torch.float32,
                "others": None,
            },
            scale=True,
        ),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def _flow_only() -> v2.Transform:
    """The worker's share of normalisation when RGB is left uint8 for the device: both flow forms."""
    return v2.Lambda(lambda x: F.normalize(x, mean=[0.0], std=[1.0]), FlowVideo, Flow3Video)  # own kernels


def normalize_rgb(
    x: torch.Tensor, *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """uint8 RGB `(..., 3, H, W)` -> float32 normalised, where `x` lives (run it on the device).

    The same arithmetic as the transforms' `ToDtype(scale=True)` + `Normalize`. A floating-point `x` is
    taken as already normalised and returned unchanged.
    """
    if x.is_floating_point():
        return x
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize_rgb expects uint8 or float RGB, got {x.dtype}")
    if x.shape[-3] != 3:
        raise ValueError(f"normalize_rgb expects RGB (..., 3, H, W), got shape {tuple(x.shape)}")
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return x.to(torch.float32).mul_(1.0 / 255.0).sub_(m).div_(s)


def normalize_frames(x: torch.Tensor, **kw) -> torch.Tensor:
    """`normalize_rgb` of RGB frames stacked on the channels, uint8 `(..., 3k, H, W)` (e.g. a frame and its
    neighbours, `vidrec.models.motion`); a floating-point `x` is returned unchanged."""
    if x.is_floating_point() or x.shape[-3] == 3:
        return normalize_rgb(x, **kw)
    if x.shape[-3] % 3:
        raise ValueError(f"normalize_frames expects stacked RGB frames (..., 3k, H, W), got {tuple(x.shape)}")
    *lead, c, h, w = x.shape
    return normalize_rgb(x.reshape(*lead, c // 3, 3, h, w), **kw).reshape(x.shape)


def train_transform(
    size: int | Sequence[int],
    *,
    kind: str = "tsn",
    scales: Sequence[float] = TSN_SCALES,
    crop_sizes: Sequence[int] | None = None,
    max_distort: int = 1,
    more_fix_crop: bool = False,
    resized_scale: tuple[float, float] = (0.25, 1.0),
    flip: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    normalize: bool = True,
) -> v2.Compose:
    """Training augmentation for clips (one set of parameters per item, shared by all streams).

    Args:
        size: output `(H, W)` or square side.
        kind: "tsn" (`MultiScaleCornerCrop`), "multiscale" (ST-ResNet's multiScaleRegular: the same crop
            with `crop_sizes=ST_RESNET_CROP_SIZES` drawn independently), "corners" (`OuterCornerCrop`,
            ST-ResNet stage 1's f25noCtr), "resized" (`RandomResizedCrop` with `resized_scale`) or "crop"
            (a plain random crop, as LRCN's 227 crops from 240x320 frames).
        flip: random horizontal flip with p = 0.5 (flow x negated).
        mean: RGB normalisation mean per channel.
        std: RGB normalisation standard deviation per channel.
        normalize: False leaves RGB uint8 for `normalize_rgb` on the device (flow is normalised either way).
    """
    if kind == "tsn":
        crop = MultiScaleCornerCrop(
            size, scales=scales, crop_sizes=crop_sizes, max_distort=max_distort, more_fix_crop=more_fix_crop
        )
    elif kind == "resized":
        crop = v2.RandomResizedCrop(_pair(size), scale=resized_scale, antialias=True)
    elif kind == "crop":
        crop = v2.RandomCrop(_pair(size), pad_if_needed=True)
    elif kind == "multiscale":  # ST-ResNet's base streams: multiScaleRegular
        sizes = ST_RESNET_CROP_SIZES
        crop = MultiScaleCornerCrop(size, crop_sizes=sizes, max_distort=len(sizes))
    elif kind == "corners":  # ST-ResNet stage 1: f25noCtr
        crop = OuterCornerCrop(size)
    else:
        raise ValueError(f"kind must be 'tsn', 'resized', 'crop', 'multiscale' or 'corners', got {kind!r}")
    steps = [crop] + ([v2.RandomHorizontalFlip(0.5)] if flip else [])
    return v2.Compose(steps + (_finish(mean, std) if normalize else [_flow_only()]))


def test_transform(
    size: int | Sequence[int],
    *,
    crops: int = 1,
    resize: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    normalize: bool = True,
    negate_flow: bool = True,
) -> v2.Compose:
    """Test-time views: optional short-side `resize`, then 1 / 3 / 5 / 10 crops of `size`, normalised.

    With crops > 1 each modality comes back as `(N, T, C, h, w)`; the dataset folds N into its views.
    `normalize=False` leaves RGB uint8 for `normalize_rgb` on the device. `negate_flow=False` mirrors flow
    crops without negating x (LRCN's released test path).
    """
    steps = [v2.Resize(resize, antialias=True)] if resize else []
    finish = _finish(mean, std) if normalize else [_flow_only()]
    return v2.Compose(steps + finish + [TestViews(size, crops=crops, negate_flow=negate_flow)])


test_transform.__test__ = False  # type: ignore[attr-defined]


def full_frame_transform(
    *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, normalize: bool = True
) -> v2.Compose:
    """Whole frames, no crop: only normalised (dense full-frame testing, ST-ResNet's protocol; the short
    side is set when decoding). `normalize=False` leaves RGB uint8 for `normalize_rgb` on the device."""
    return v2.Compose(_finish(mean, std) if normalize else [_flow_only()])
