"""TSN (Wang et al., ECCV'16) segment consensus and two-stream late fusion (Simonyan & Zisserman).

A TSN stream runs its CNN on each of T segments (time folded into batch) and averages the logits over
segments. The two-stream model holds an RGB and a flow stream (the flow stream's first conv takes the
2L-channel stack, cross-modality initialised) and returns both streams' logits; they are trained
jointly (losses summed) and fused at test time with `fusion_weights`.

On a ResNet or MobileNetV2 backbone (global average pool, then the linear classifier) a stream is fully
convolutional (`fully_convolutional`): given whole frames of any size, its logits are its class map
(`class_map`: the classifier at every position of the last feature map) averaged over space and time, which
is ST-ResNet's dense test protocol (`vidrec eval --protocol st_resnet`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from vidrec.models.backbones import Backbone
from vidrec.models.registry import register_model

DEFAULT_FUSION = {"rgb": 1 / 3, "flow": 2 / 3}  # flow weighted higher, as in the LRCN/TSN papers
# methods.md 3.1: dropout 0.8 in the motion stream, none in the appearance stream
DEFAULT_DROPOUT = {"rgb": 0.0, "flow": 0.8}
GLOBAL_AVERAGE_HEADS = ("resnet18", "resnet50", "resnet101", "mobilenet_v2")  # pool, then one Linear


class TSN(nn.Module):
    """One stream with segment consensus: (B, T, C, H, W) -> (B, K), T = number of segments.

    Args:
        backbone: a `Backbone` whose head has K outputs.
        modality: the batch key read ("rgb" or "flow").
        dropout: before the classifier (the recipe: 0.8 for flow, none for RGB; `DEFAULT_DROPOUT`).
    """

    def __init__(self, *, backbone: Backbone, modality: str = "rgb", dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.modalities = (modality,)
        self.num_classes = backbone.net.get_submodule(backbone.spec.head).out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        feats = self.backbone.forward_features(rearrange(x, "b t c h w -> (b t) c h w"))  # (B*T, D)
        logits = self.backbone.forward_head(self.dropout(feats))  # (B*T, K)
        return rearrange(logits, "(b t) k -> b t k", b=b).mean(dim=1)  # (B, K): segment consensus

    @property
    def fully_convolutional(self) -> bool:
        """True when the head is a global average pool and one Linear (VGG / AlexNet fc6-fc8 are not)."""
        return self.backbone.arch in GLOBAL_AVERAGE_HEADS

    def class_map(self, x: torch.Tensor) -> torch.Tensor:
        """Frames `(B, T, C, H, W)` -> class scores at every position of the last feature map
        `(B, T, K, h, w)`: the classifier applied as a 1x1 convolution (eval mode: dropout is off)."""
        if not self.fully_convolutional:
            raise ValueError(f"{self.backbone.arch} has no global-average head; it has no dense class map")
        b = x.shape[0]
        fmap = self.backbone.forward_spatial(rearrange(x, "b t c h w -> (b t) c h w"))  # (B*T, D, h, w)
        fc = self.backbone.net.get_submodule(self.backbone.spec.head)  # Linear(D, K)
        scores = F.conv2d(fmap, fc.weight[:, :, None, None], fc.bias)  # (B*T, K, h, w)
        return rearrange(scores, "(b t) k h w -> b t k h w", b=b)


class TwoStream(nn.Module):
    """RGB + flow streams: `{"rgb": (B,T,3,H,W), "flow": (B,T,2L,H,W)}` -> `{"rgb": (B,K), "flow": (B,K)}`."""

    modalities = ("rgb", "flow")

    def __init__(
        self, *, rgb: nn.Module, flow: nn.Module, fusion_weights: dict[str, float] | None = None
    ) -> None:
        super().__init__()
        self.rgb, self.flow = rgb, flow
        self.fusion_weights = dict(fusion_weights or DEFAULT_FUSION)
        if set(self.fusion_weights) != {"rgb", "flow"}:
            raise ValueError(f"fusion_weights needs keys 'rgb' and 'flow', got {sorted(self.fusion_weights)}")
        if rgb.num_classes != flow.num_classes:
            raise ValueError(f"streams disagree on num_classes: {rgb.num_classes} vs {flow.num_classes}")
        self.num_classes = rgb.num_classes

    @property
    def fully_convolutional(self) -> bool:
        """Both streams dense-capable (see `TSN.fully_convolutional`)."""
        return all(getattr(s, "fully_convolutional", False) for s in (self.rgb, self.flow))

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [m for m in self.modalities if m not in x]
        if missing:
            raise KeyError(f"TwoStream needs batch keys {list(self.modalities)}; missing {missing}")
        return {"rgb": self.rgb(x["rgb"]), "flow": self.flow(x["flow"])}


def _stream(
    arch: str,
    modality: str,
    *,
    num_classes: int,
    pretrained: bool | str,
    flow_length: int,
    dropout: float | None,
):
    if modality not in ("rgb", "flow"):
        raise ValueError(f"modality={modality!r}; choose 'rgb' or 'flow'")
    in_chans = 3 if modality == "rgb" else 2 * flow_length
    backbone = Backbone(arch, pretrained=pretrained, in_chans=in_chans, num_classes=num_classes)
    if arch == "mobilenet_v2":  # torchvision's Dropout(0.2) before the head: TSN's own dropout replaces it
        backbone.net.classifier[0].p = 0.0
    p = DEFAULT_DROPOUT[modality] if dropout is None else dropout
    return TSN(backbone=backbone, modality=modality, dropout=p)


@register_model(input_shapes={"rgb": (3, 3, 224, 224)})
def tsn_resnet50(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    modality: str = "rgb",
    flow_length: int = 5,
    dropout: float | None = None,
) -> TSN:
    """TSN (Wang et al., ECCV'16) single stream on ResNet-50; 3 training segments; `modality` rgb or flow.

    `dropout` None: 0.8 for flow, none for RGB (methods.md 3.1, the streams ST-ResNet starts from)."""
    return _stream(
        "resnet50",
        modality,
        num_classes=num_classes,
        pretrained=pretrained,
        flow_length=flow_length,
        dropout=dropout,
    )


def _two_stream(arch, num_classes, pretrained, flow_length, dropout, fusion_weights) -> TwoStream:
    kw = {"num_classes": num_classes, "pretrained": pretrained, "flow_length": flow_length}
    drop = {**DEFAULT_DROPOUT, **(dropout or {})}
    return TwoStream(
        rgb=_stream(arch, "rgb", dropout=drop["rgb"], **kw),
        flow=_stream(arch, "flow", dropout=drop["flow"], **kw),
        fusion_weights=fusion_weights,
    )


@register_model(input_shapes={"rgb": (3, 3, 224, 224), "flow": (3, 20, 224, 224)})
def two_stream_resnet50(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    flow_length: int = 10,
    dropout: dict[str, float] | None = None,
    fusion_weights: dict[str, float] | None = None,
) -> TwoStream:
    """Two-stream ResNet-50 (Simonyan & Zisserman 2014) with TSN consensus; flow stack of L fields (2L ch).

    `dropout` per stream, default `{"rgb": 0.0, "flow": 0.8}` (methods.md 3.1)."""
    return _two_stream("resnet50", num_classes, pretrained, flow_length, dropout, fusion_weights)


@register_model(input_shapes={"rgb": (3, 3, 224, 224), "flow": (3, 20, 224, 224)})
def two_stream_mobilenet_v2(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    flow_length: int = 10,
    dropout: dict[str, float] | None = None,
    fusion_weights: dict[str, float] | None = None,
) -> TwoStream:
    """Two-stream MobileNetV2 with TSN consensus; flow stack of L fields (2L channels); `dropout` per
    stream, default `{"rgb": 0.0, "flow": 0.8}` (methods.md 3.1)."""
    return _two_stream("mobilenet_v2", num_classes, pretrained, flow_length, dropout, fusion_weights)
