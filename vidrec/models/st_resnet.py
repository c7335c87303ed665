"""ST-ResNet (Feichtenhofer, Pinz, Wildes, NIPS'16): spatiotemporal residual two-stream ResNet-50.

Two ResNet-50 streams (appearance: RGB; motion: 2L-channel flow stacks) with
(a) motion -> appearance additive connections at the first unit of every stage (res2a..res5a);
    released code (default, `cross_stream="code"`): appearance output = ReLU(s^a + m), feeding both
    paths of the next unit; paper form (`"paper"`): m is added to the residual-branch input of the
    next unit only; `"none"` removes them;
(b) temporal filters: in both streams the 1x1 `conv1`/`conv3` (Caffe branch2a/branch2c) of the second
    unit of every stage (res2b..res5b) become (3,1,1) convs over time, zero-padded, initialised
    [W/3, W/3, W/3] (`temporal_init="average"`, released code) or [0, W, 0] (`"centre"`);
(c) optional stage-2 temporal max-pooling (window 5, stride 2) after res5 in both streams.
All other layers run per frame (time folded into batch). Output: `{"appearance": (B,K), "motion": (B,K)}`,
per-frame class scores averaged over space, then time (the fc is linear, so pooling space before it
equals averaging the fully-convolutional class map, `class_maps`). Whole frames of any size go through
as they are: ST-ResNet's dense test protocol (25 frames, full frame) is `vidrec eval --protocol st_resnet`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from vidrec.models.backbones import Backbone, read_state_dict
from vidrec.models.init import init_from
from vidrec.models.layers import TimeAware, num_steps
from vidrec.models.registry import register_model

STAGES = ("layer1", "layer2", "layer3", "layer4")  # Caffe res2..res5


class TemporalConv(TimeAware):
    """A 2D conv extended over time with a 3-tap kernel: (B*T, C, H, W) -> (B*T, C', H', W')."""

    def __init__(self, conv: nn.Conv2d, *, init: str = "average") -> None:
        super().__init__()
        if init not in ("average", "centre"):
            raise ValueError(f"temporal_init={init!r}; choose 'average' ([W/3]*3) or 'centre' ([0, W, 0])")
        self.conv = nn.Conv3d(
            conv.in_channels, conv.out_channels, (3, *conv.kernel_size), stride=(1, *conv.stride),
            padding=(1, *conv.padding), bias=conv.bias is not None,
        )  # fmt: skip
        with torch.no_grad():
            w = conv.weight  # (O, I, kh, kw)
            taps = [w / 3] * 3 if init == "average" else [torch.zeros_like(w), w, torch.zeros_like(w)]
            self.conv.weight.copy_(torch.stack(taps, dim=2))  # (O, I, 3, kh, kw)
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _ = self.unfold_size(x.shape[0])
        clip = rearrange(x, "(b t) c h w -> b c t h w", b=b)  # (B, C, T, H, W)
        return rearrange(self.conv(clip), "b c t h w -> (b t) c h w")  # (B*T, C', H', W')


def add_temporal_filters(net: nn.Module, *, init: str = "average") -> None:
    """Make conv1 and conv3 of the second unit of every stage temporal (8 layers), in place."""
    for stage in STAGES:
        block = getattr(net, stage)[1]
        block.conv1 = TemporalConv(block.conv1, init=init)
        block.conv3 = TemporalConv(block.conv3, init=init)


def bottleneck_sum(block: nn.Module, x: torch.Tensor, branch_in: torch.Tensor | None = None) -> torch.Tensor:
    """A torchvision Bottleneck's pre-ReLU sum s = shortcut(x) + F(branch_in), branch_in defaulting to x."""
    shortcut = x if block.downsample is None else block.downsample(x)
    y = x if branch_in is None else branch_in
    y = block.relu(block.bn1(block.conv1(y)))
    y = block.relu(block.bn2(block.conv2(y)))
    return block.bn3(block.conv3(y)) + shortcut


class STResNet(nn.Module):
    """Appearance and motion ResNets with cross-stream connections and temporal filters.

    Args:
        appearance: `Backbone("resnet50", in_chans=3, num_classes=K)`.
        motion: `Backbone("resnet50", in_chans=2L, num_classes=K)`.
        cross_stream: "code" (released), "paper" or "none".
        temporal_init: "average" or "centre"; None keeps the 2D streams (no temporal filters).
        temporal_pool: stage-2 max-pooling over time (window 5, stride 2) after res5.
    """

    modalities = ("rgb", "flow")
    fully_convolutional = True  # dense testing: any frame size, class maps averaged over space and time

    def __init__(
        self,
        *,
        appearance: Backbone,
        motion: Backbone,
        cross_stream: str = "code",
        temporal_init: str | None = "average",
        temporal_pool: bool = False,
    ) -> None:
        super().__init__()
        if cross_stream not in ("code", "paper", "none"):
            raise ValueError(f"cross_stream={cross_stream!r}; choose 'code', 'paper' or 'none'")
        self.appearance, self.motion = appearance, motion
        self.cross_stream, self.temporal_pool = cross_stream, temporal_pool
        if temporal_init is not None:
            add_temporal_filters(appearance.net, init=temporal_init)
            add_temporal_filters(motion.net, init=temporal_init)
        self.num_classes = appearance.net.fc.out_features
        self.fusion_weights = {"appearance": 0.5, "motion": 0.5}

    @staticmethod
    def _stem(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net.maxpool(net.relu(net.bn1(net.conv1(x))))  # (B*T, 64, H/4, W/4)

    def _stage(self, name: str, a: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        la, lm = getattr(self.appearance.net, name), getattr(self.motion.net, name)
        m = lm[0](m)  # motion res{N}a output, ReLU(s^m)
        if self.cross_stream == "code":
            a = F.relu(bottleneck_sum(la[0], a) + m)  # feeds both paths of res{N}b
            return la[1:](a), lm[1:](m)
        a = la[0](a)
        if self.cross_stream == "paper":
            a = F.relu(bottleneck_sum(la[1], a, branch_in=a + m))  # identity path untouched
            return la[2:](a), lm[1:](m)
        return la[1:](a), lm[1:](m)

    def forward_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`{"rgb": (B,T,3,H,W), "flow": (B,T,2L,H,W)}` -> conv5 maps `{stream: (B,T',C,h,w)}`."""
        rgb, flow = x["rgb"], x["flow"]
        b, t = rgb.shape[:2]
        if flow.shape[:2] != (b, t):
            raise ValueError(f"rgb (B, T)={(b, t)} and flow (B, T)={tuple(flow.shape[:2])} must match")
        with num_steps(self, t):
            a = self._stem(self.appearance.net, rearrange(rgb, "b t c h w -> (b t) c h w"))  # (B*T, 64, ...)
            m = self._stem(self.motion.net, rearrange(flow, "b t c h w -> (b t) c h w"))
            for name in STAGES:
                a, m = self._stage(name, a, m)  # (B*T, 2048, h, w) after layer4
        maps = {"appearance": a, "motion": m}
        return {k: self._pool_time(rearrange(v, "(b t) c h w -> b t c h w", b=b)) for k, v in maps.items()}

    def _pool_time(self, maps: torch.Tensor) -> torch.Tensor:
        if not self.temporal_pool:
            return maps
        if maps.shape[1] < 5:
            raise ValueError(f"temporal_pool needs T >= 5 frames, got {maps.shape[1]}")
        pooled = F.max_pool3d(
            rearrange(maps, "b t c h w -> b c t h w"), (5, 1, 1), (2, 1, 1)
        )  # (B, C, T', h, w)
        return rearrange(pooled, "b c t h w -> b t c h w")  # (B, T', C, h, w)

    def class_maps(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Class scores at every conv5 position `{"appearance", "motion"}: (B, T', K, h, w)` (the fc as a
        1x1 convolution; the release's dense evaluation averages these over space, then time)."""
        out = {}
        for name, maps in self.forward_features(x).items():  # (B, T', C, h, w)
            fc = getattr(self, name).net.fc
            out[name] = torch.einsum("btchw,kc->btkhw", maps, fc.weight) + fc.bias[:, None, None]
        return out

    def forward_frames(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-frame class scores `{"appearance", "motion"}: (B, T', K)` (class maps averaged over space)."""
        out = {}
        for name, maps in self.forward_features(x).items():
            fc = getattr(self, name).net.fc
            out[name] = fc(maps.mean(dim=(-2, -1)))  # (B, T', 2048) -> (B, T', K)
        return out

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`{"rgb", "flow"}` clips -> `{"appearance": (B, K), "motion": (B, K)}` (mean over time)."""
        return {name: logits.mean(dim=1) for name, logits in self.forward_frames(x).items()}


StreamWeights = bool | str


def _stream(source: StreamWeights, *, in_chans: int, num_classes: int) -> Backbone:
    """A ResNet-50 stream: random (False), ImageNet (True, conv1 cross-modality for flow) or a trained
    stream from a file: a vidrec checkpoint of one stream (e.g. `tsn_resnet50`) or a torchvision state
    dict, matched by torchvision layer name (`vidrec.models.init`); every tensor must load."""
    if not isinstance(source, str):
        return Backbone("resnet50", pretrained=source, in_chans=in_chans, num_classes=num_classes)
    backbone = Backbone("resnet50", in_chans=in_chans, num_classes=num_classes)
    report = init_from(
        backbone, read_state_dict(source), source=source, keep_heads=True, num_classes=num_classes
    )
    if report.skipped:
        missing = "; ".join(f"{k}: {why}" for k, why in sorted(report.skipped.items())[:6])
        raise ValueError(
            f"{source} is not a trained ResNet-50 stream with {in_chans} input channels and "
            f"{num_classes} classes: {len(report.skipped)} tensors do not match ({missing})"
        )
    return backbone


@register_model(input_shapes={"rgb": (5, 3, 224, 224), "flow": (5, 20, 224, 224)})
def st_resnet50(
    *,
    num_classes: int,
    pretrained: StreamWeights | dict[str, StreamWeights] = False,
    flow_length: int = 10,
    cross_stream: str = "code",
    temporal_init: str = "average",
    temporal_pool: bool = False,
) -> STResNet:
    """ST-ResNet (Feichtenhofer et al., NIPS'16) on two ResNet-50 streams.

    `pretrained` initialises the 2D streams before the temporal filters are grown from them: True is
    ImageNet for both (motion conv1 by cross-modality averaging); `{"appearance": A, "motion": M}` sets
    each stream, A/M being True, False or a trained stream's file, as the paper starts from two separately
    trained streams (e.g. the checkpoints of `tsn_resnet50` RGB and flow with 2L-channel input and
    `num_classes` heads, which are kept). Stage 2 sets `temporal_pool=True` with 11 frames."""
    both = {"appearance": pretrained, "motion": pretrained}
    per_stream = pretrained if isinstance(pretrained, dict) else both
    unknown = set(per_stream) - {"appearance", "motion"}
    if unknown:
        raise ValueError(f"pretrained: unknown streams {sorted(unknown)}; use 'appearance' and 'motion'")
    appearance = _stream(per_stream.get("appearance", False), in_chans=3, num_classes=num_classes)
    motion = _stream(per_stream.get("motion", False), in_chans=2 * flow_length, num_classes=num_classes)
    return STResNet(
        appearance=appearance, motion=motion, cross_stream=cross_stream,
        temporal_init=temporal_init, temporal_pool=temporal_pool,
    )  # fmt: skip
