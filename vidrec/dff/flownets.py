"""Flow sources for Deep Feature Flow, each a module that keeps the flow-net contract of
`vidrec.dff.model` (``(key_img, cur_img) (B, 3, H, W) -> (flow current -> key (B, 2, h, w), features|None)``):

- `FlowNetLite`: a light FlowNet-style encoder-decoder (methods.md 4.1: flow predicted at the feature
  stride, decoder features for the scale field; the pair at ``stride / 4`` resolution, not the paper's
  half). There is no Flying Chairs offline: `vidrec.dff.pretrain.pretrain_flownet` trains it
  self-supervised (photometric + smoothness loss) on unlabelled frame pairs; then it is trained end to end
  through the task loss like the paper's FlowNet.
- `DISFlow`: vidrec's tuned classical DIS flow (`vidrec.flow.estimators`) on the pair at 1/4 resolution,
  no training, no scale field.
- `RaftFlowNet`: torchvision RAFT (`vidrec.flow.raft`) when its weights are on disk.

`make_flow_net("learned" | "dis" | "raft", ...)` builds one by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidrec.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidrec.dff.warp import resize_flow, warp

__all__ = [
    "FLOW_SOURCES",
    "DISFlow",
    "FlowNetLite",
    "RaftFlowNet",
    "load_flownet",
    "make_flow_net",
    "photometric_loss",
    "save_flownet",
]

FLOW_SOURCES = ("learned", "dis", "raft")


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.LeakyReLU(0.1, inplace=True))


class FlowNetLite(nn.Module):
    """A light FlowNetS: ``[cur, key]`` (6 channels), average-pooled by `downscale` -> flow at `stride`.

    Encoder to 1/16 of its input, a decoder with skip connections back to 1/4 of its input (``4 x
    downscale`` of the image), where the flow and the scale-field features are predicted, then
    average-pooled to `stride` when that is coarser (the spec's extra pooling). When `stride` is only
    ``2 x downscale`` the decoder goes one level further, to 1/2 of its input (skip from the first encoder
    level), so that the flow is still predicted on the feature grid. The flow is in pixels of the output
    grid (feature pixels) -- trained from scratch, there are no FlowNet units to convert (the spec's x2.5).

    The paper's FlowNet sees the pair at half resolution; DFF only needs flow at the feature stride, so by
    default the pair is pooled to ``stride / 4`` (1/4 of the image at stride 16) and the decoder ends on
    the feature grid: a quarter of the half-resolution net's cost, which keeps a propagated frame under a
    ninth of a key frame (issue 23). A detector's stride-8 pyramid (issue 24) takes ``downscale=4``: the
    pair at 1/4 of the image, the flow on the stride-8 grid, for about 2/5 of the default's cost.

    Args:
        stride: output stride w.r.t. the input image, 8, 16 or 32 (the feature net's).
        width: channels of the first encoder level (the others are 2x, 4x, 6x).
        downscale: the pair's pooling before the net, 1, 2, 4 or 8 with ``2 x downscale`` dividing
            `stride`; None: ``stride // 4``.
    """

    def __init__(self, *, stride: int = 16, width: int = 16, downscale: int | None = None) -> None:
        super().__init__()
        if stride not in (8, 16, 32):
            raise ValueError(f"FlowNetLite stride must be 8, 16 or 32, got {stride}")
        downscale = stride // 4 if downscale is None else downscale
        if downscale not in (1, 2, 4, 8) or stride % (2 * downscale):
            raise ValueError(
                f"FlowNetLite downscale must be 1, 2, 4 or 8 with 2 x downscale dividing the stride "
                f"{stride}, got {downscale}"
            )
        self.stride, self.width, self.downscale = stride, width, downscale
        c1, c2, c3, c4 = width, 2 * width, 4 * width, 6 * width
        self.enc1 = _conv(6, c1, 7, 2)  # 1/2 of the pooled pair
        self.enc2 = _conv(c1, c2, 5, 2)  # 1/4
        self.enc3 = nn.Sequential(_conv(c2, c3, 3, 2), _conv(c3, c3, 3))  # 1/8
        self.enc4 = nn.Sequential(_conv(c3, c4, 3, 2), _conv(c4, c4, 3))  # 1/16
        self.dec3 = _conv(c4 + c3, c3, 3)
        self.dec2 = _conv(c3 + c2, c2, 3)
        # the stride-8 grid from a pair at 1/4 of the image: one more decoder level, at 1/2 of the pair
        self.dec1 = _conv(c2 + c1, c1, 3) if stride == 2 * downscale else None
        last = c2 if self.dec1 is None else c1
        self.predict = nn.Conv2d(last, 2, 3, padding=1)
        nn.init.zeros_(self.predict.weight)  # start from zero flow: DFF starts as "copy the key features"
        nn.init.zeros_(self.predict.bias)
        self.scale_channels = last

    def pool(self, img: torch.Tensor) -> torch.Tensor:
        """`(B, 3, H, W)` -> the image as the net's first layer sees it, `(B, 3, H/d, W/d)` average-pooled by
        `downscale` (as is at 1): a walk pools a key frame once for all the frames it serves (`pooled`)."""
        return F.avg_pool2d(img, self.downscale, ceil_mode=True) if self.downscale > 1 else img

    def forward(
        self, key_img: torch.Tensor, cur_img: torch.Tensor, *, pooled: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, 3, H, W)` each -> (flow `(B, 2, H/stride, W/stride)` feature px, features
        `(B, scale_channels, ., .)`). ``pooled=True``: both images already went through `pool`."""
        if not pooled:  # each image pooled before the concatenation: no full-size 6-channel copy
            cur_img, key_img = self.pool(cur_img), self.pool(key_img)
        x = torch.cat([cur_img, key_img], dim=1)  # (B, 6, H/d, W/d), [current, key]
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        d3 = self.dec3(torch.cat([_up_to(e4, e3), e3], dim=1))  # 1/8 of the pooled pair
        d2 = self.dec2(torch.cat([_up_to(d3, e2), e2], dim=1))  # 1/4: the image's 1/(4d)
        if self.dec1 is not None:  # stride = 2d: 1/2 of the pooled pair is the feature grid
            d1 = self.dec1(torch.cat([_up_to(d2, e1), e1], dim=1))  # (B, w, H/2d, W/2d)
            return self.predict(d1), d1
        flow = self.predict(d2)  # (B, 2, H/4d, W/4d), px of that grid
        pool = self.stride // (4 * self.downscale)
        if pool == 1:
            return flow, d2
        # average-pool to the feature grid; pixels of a grid `pool` times coarser are `pool` times fewer
        return F.avg_pool2d(flow, pool, ceil_mode=True) / pool, F.avg_pool2d(d2, pool, ceil_mode=True)


def _up_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


# -- classical and pretrained flow behind the same contract ---------------------------------------------
def _to_uint8(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised `(B, 3, H, W)` -> uint8 RGB `(B, H, W, 3)`."""
    m = torch.tensor(mean, device=img.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=img.device).view(1, 3, 1, 1)
    rgb = ((img.detach().float() * s + m) * 255.0).clamp(0, 255).round().to(torch.uint8)
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


class _PairFlow(nn.Module):
    """Runs a numpy frame-pair estimator ``(prev, next) -> (H, W, 2)`` per batch item, current -> key."""

    def __init__(self, *, downscale: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.downscale, self.mean, self.std = downscale, tuple(mean), tuple(std)
        self.scale_channels = 0

    def estimate(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, key_img: torch.Tensor, cur_img: torch.Tensor) -> tuple[torch.Tensor, None]:
        if self.downscale > 1:  # flow on a smaller image: cheaper, and DFF needs it at 1/16 anyway
            key_img, cur_img = (F.avg_pool2d(x, self.downscale) for x in (key_img, cur_img))
        keys = _to_uint8(key_img, self.mean, self.std)
        curs = _to_uint8(cur_img, self.mean, self.std)
        flows = [self.estimate(c, k) for c, k in zip(curs, keys, strict=True)]  # current -> key
        flow = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)  # (B, 2, h, w) px of the smaller image
        return flow.to(device=cur_img.device, dtype=cur_img.dtype), None


class DISFlow(_PairFlow):
    """DIS optical flow (OpenCV, vidrec's tuned settings) as a DFF flow source; no training, S = 1.

    Args:
        downscale: compute flow on the image average-pooled by this factor (default 4: DFF needs the flow
            only at the feature stride, and DIS at half resolution cost a quarter of a key frame).
        mean, std: the normalisation of the images DFF passes (ImageNet's), undone to get uint8 frames.
        **opts: `vidrec.flow.estimators.FlowEstimator` DIS options.
    """

    def __init__(
        self,
        *,
        downscale: int = 4,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        **opts,
    ) -> None:
        super().__init__(downscale=downscale, mean=mean, std=std)
        from vidrec.flow.estimators import FlowEstimator

        self._dis = FlowEstimator("dis", **opts)

    def estimate(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._dis(prev, nxt)


class RaftFlowNet(_PairFlow):
    """torchvision RAFT as a DFF flow source; raises `RaftWeightsMissing` (saying where to put the file)
    when the weights are not on disk. vidrec never downloads them.

    Args:
        model: "small" or "large".
        weights: "DEFAULT" (torchvision's file under `$TORCH_HOME`) or a state-dict path.
        downscale, mean, std: as `DISFlow`.
    """

    def __init__(
        self,
        *,
        model: str = "small",
        weights: str | os.PathLike = "DEFAULT",
        downscale: int = 2,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        device: str | None = None,
    ) -> None:
        super().__init__(downscale=downscale, mean=mean, std=std)
        from vidrec.flow.raft import RaftFlow
        from vidrec.flow.raft_weights import require_raft_weights

        require_raft_weights(model, weights)  # the clear error before anything is built
        self._raft = RaftFlow(model=model, weights=weights, device=device)

    def estimate(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._raft(prev, nxt)


def make_flow_net(
    source: str, *, stride: int = 16, weights: str | os.PathLike | None = None, **opts
) -> nn.Module:
    """A flow net by name: "learned" (`FlowNetLite`, from `weights` = a `save_flownet` file if given),
    "dis" (`DISFlow`) or "raft" (`RaftFlowNet`, `weights` = its state dict, default torchvision's file)."""
    if source == "learned":
        return load_flownet(weights) if weights else FlowNetLite(stride=stride, **opts)
    if source == "dis":
        return DISFlow(**opts)
    if source == "raft":
        return RaftFlowNet(weights=weights or "DEFAULT", **opts)
    raise ValueError(f"flow source must be one of {FLOW_SOURCES}, got {source!r}")


# -- weights as safetensors ------------------------------------------------------------------------------
_KIND = "vidrec.dff.FlowNetLite"


def save_flownet(net: FlowNetLite, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write `net`'s weights and its constructor arguments to a `.safetensors` file, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    config = {"stride": net.stride, "width": net.width, "downscale": net.downscale}
    meta = {"kind": _KIND, "config": json.dumps(config)}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata=meta
    )
    os.replace(tmp, path)
    return path


def load_flownet(path: str | os.PathLike) -> FlowNetLite:
    """A `FlowNetLite` from a `save_flownet` file (tensors and JSON metadata only; strict key check)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"flow-net weights {path} do not exist; train them with pretrain_flownet first"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("kind") != _KIND:
            raise ValueError(f"{path} is not a FlowNetLite weight file (kind {meta.get('kind')!r})")
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    config = {"downscale": 2, **json.loads(meta["config"])}  # files from before issue 23: half resolution
    net = FlowNetLite(**config)
    net.load_state_dict(state, strict=True)
    return net


# -- self-supervised pretraining --------------------------------------------------------------------------
def photometric_loss(
    net: nn.Module, key_img: torch.Tensor, cur_img: torch.Tensor, *, smooth_weight: float = 0.1
) -> torch.Tensor:
    """Unsupervised flow loss on a pair `(B, 3, H, W)`: Charbonnier error between the current frame and the
    key frame warped by the predicted flow (at half resolution, where the net looks) plus `smooth_weight` x
    the first-order smoothness of the flow. Pixels whose flow leaves the key frame compare against zeros
    (the mean colour after normalisation) and count: masking them out would reward flow that leaves the frame.
    """
    flow, _ = net(key_img, cur_img)  # (B, 2, h, w) feature px, current -> key
    key, cur = F.avg_pool2d(key_img, 2), F.avg_pool2d(cur_img, 2)  # (B, 3, H/2, W/2)
    dense = resize_flow(flow, cur.shape[-2:])  # (B, 2, H/2, W/2) px of the half-resolution image
    photo = torch.sqrt((cur - warp(key, dense)) ** 2 + 1e-6).mean()
    smooth = (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean() + (
        flow[..., 1:] - flow[..., :-1]
    ).abs().mean()
    return photo + smooth_weight * smooth
