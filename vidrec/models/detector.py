"""Object detection on ImageNet MobileNetV2 + FPN with torchvision's FCOS, split in the parts Deep Feature
Flow reuses.

- Feature net (N_feat, the expensive part, `MobileNetV2FPN`): torchvision's MobileNetV2 ``features`` up to
  block 17 (ImageNet weights from $TORCH_HOME, never downloaded), its stride-8, 16 and 32 outputs into a
  torchvision `FeaturePyramidNetwork`: an ordered dict of pyramid levels, all ``out_channels`` wide.
- Task net (N_task, `DetectHead`): torchvision's `FCOSHead` (``head_convs`` shared 3x3 convs, 0 by
  default so that it is light beside the feature net) on every level, its anchors, and FCOS's own loss
  and post-processing (score threshold, top-k, NMS), borrowed from `torchvision.models.detection.FCOS`:
  no detection op is written here.
- `Detector` runs both on a batch of frames. Unlike torchvision's FCOS it has no
  `GeneralizedRCNNTransform`: frames arrive already resized to the working size and ImageNet-normalised
  (`vidrec.data.transforms.normalize_rgb`), so boxes are in pixels of the frames it is given.

`dff_fcos_mobilenet_v2` puts the same two parts and a flow net into `vidrec.dff.detect.PyramidDFF`, so a
per-frame checkpoint's ``feature_net.*`` / ``task_net.*`` weights initialise it (``model.init_from``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FCOS
from torchvision.models.detection._utils import BoxLinearCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FeaturePyramidNetwork

from vidrec.models.backbones import mobilenet_v2
from vidrec.models.registry import register_model

# MobileNetV2 ``features`` blocks whose outputs feed the pyramid: stride 8 (32 ch), 16 (96 ch), 32 (320 ch)
PYRAMID_BLOCKS = {"6": "p3", "13": "p4", "17": "p5"}
PYRAMID_IN = [32, 96, 320]
STRIDES = (8, 16, 32)


class MobileNetV2FPN(nn.Module):
    """N_feat: normalised RGB `(B, 3, H, W)` -> ``{"p3", "p4", "p5"}``, `(B, C, ~H/s, ~W/s)`, s = 8, 16, 32.

    Args:
        pretrained: True = torchvision's ImageNet file from $TORCH_HOME; a str = a local state dict of
            torchvision's MobileNetV2 (.pth / .safetensors); False = random.
        out_channels: C, the width of every pyramid level.
    """

    strides = STRIDES

    def __init__(self, *, pretrained: bool | str = False, out_channels: int = 64) -> None:
        super().__init__()
        net = mobilenet_v2(pretrained)
        body = net.features[:18]  # block 18 (the 1x1 conv to 1280) feeds only the classifier
        self.body = IntermediateLayerGetter(body, return_layers=PYRAMID_BLOCKS)
        self.fpn = FeaturePyramidNetwork(PYRAMID_IN, out_channels)  # no extra levels: people are small
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


class DetectHead(nn.Module):
    """N_task: pyramid levels -> detections (eval) or FCOS's losses (training), per image.

    Boxes are ``(x1, y1, x2, y2)`` in pixels of the image the levels were computed from (`image_size`).
    The loss and the post-processing are torchvision FCOS's own methods (they read only the attributes
    set here), so assignment, centre sampling, focal / GIoU / centre-ness losses and NMS are torchvision's.

    Args:
        channels: width of the pyramid levels.
        num_classes: object classes plus background (FCOS counts background: person = 2).
        anchor_sizes: one size per level, px of the working image: FCOS assigns a box to the level whose
            range ``(4 * size, 8 * size]`` holds the box's largest centre-to-side distance (the first
            level takes everything smaller, the last everything larger).
        head_convs: shared 3x3 convs before the classifier / regressor (torchvision's default is 4).
        score_thresh, nms_thresh, detections_per_img: FCOS's post-processing (torchvision's defaults).
        topk_candidates: the best-scoring locations kept per level before NMS. torchvision's 1000 is for
            COCO's crowds; a frame of a few dozen people needs far fewer, and the top-k over the
            stride-8 level's 2700 locations was half of the head's wall time (issue 24). 100 by default.
    """

    compute_loss = FCOS.compute_loss
    postprocess_detections = FCOS.postprocess_detections

    def __init__(
        self,
        channels: int,
        num_classes: int = 2,
        *,
        anchor_sizes: tuple[int, ...] = (4, 8, 16),
        head_convs: int = 0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        topk_candidates: int = 100,
        center_sampling_radius: float = 1.5,
    ) -> None:
        super().__init__()
        self.head = FCOSHead(channels, 1, num_classes, num_convs=head_convs)
        self.anchor_generator = AnchorGenerator(
            tuple((s,) for s in anchor_sizes), ((1.0,),) * len(anchor_sizes)
        )
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.topk_candidates = detections_per_img, topk_candidates
        self.center_sampling_radius = center_sampling_radius

    def forward(
        self,
        features: OrderedDict[str, torch.Tensor] | list[torch.Tensor],
        image_size: tuple[int, int],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> list[dict[str, torch.Tensor]] | dict[str, torch.Tensor]:
        """Detections ``[{"boxes" (N, 4), "scores" (N,), "labels" (N,)}]`` per image, or with `targets`
        (``[{"boxes", "labels"}]``, as FCOS takes them) the loss dict ``classification``, ``bbox_regression``,
        ``bbox_ctrness``. On the meta device (FLOP counting) the raw head outputs, before post-processing."""
        levels = list(features.values()) if isinstance(features, dict) else list(features)
        outputs = self.head(levels)
        if levels[0].is_meta:  # FLOP counting (`vidrec models --flops`): NMS and top-k need real values
            return outputs
        return self.postprocess(outputs, levels, image_size, targets)

    def postprocess(
        self,
        outputs: dict[str, torch.Tensor],
        levels: list[torch.Tensor],
        image_size: tuple[int, int],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> list[dict[str, torch.Tensor]] | dict[str, torch.Tensor]:
        """The raw head `outputs` on `levels` -> detections (FCOS's score threshold, top-k per level, NMS),
        or the loss dict with `targets`: the part after the convs (`vidrec.dff.cost` times it apart)."""
        batch = levels[0].shape[0]
        # the anchor generator reads only the padded batch size and the per-image sizes
        images = ImageList(levels[0].new_empty((batch, 0, *image_size)), [tuple(image_size)] * batch)
        anchors = self.anchor_generator(images, levels)
        per_level = [x.size(2) * x.size(3) for x in levels]
        if targets is not None:
            return self.compute_loss(targets, outputs, anchors, per_level)
        split = {k: list(v.split(per_level, dim=1)) for k, v in outputs.items()}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        return self.postprocess_detections(split, split_anchors, images.image_sizes)


class Detector(nn.Module):
    """Per-frame detection: ``task_net(feature_net(x), x's size)``.

    ``forward(x)`` -> detections per image; ``forward(x, targets)`` -> FCOS's loss dict.
    """

    modalities = ("rgb",)

    def __init__(self, feature_net: MobileNetV2FPN, task_net: DetectHead) -> None:
        super().__init__()
        self.feature_net, self.task_net = feature_net, task_net
        self.feature_stride = feature_net.strides[0]  # the finest level's: what a flow net must resolve

    def forward(self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None):
        return self.task_net(self.feature_net(x), tuple(x.shape[-2:]), targets)


DETECT_INPUT = {"rgb": (3, 360, 480)}  # one PETS 2009 frame at the working size (C, H, W)


@register_model(input_shapes=DETECT_INPUT, task="detect")
def fcos_mobilenet_v2(
    *,
    num_classes: int = 2,
    pretrained: bool | str = False,
    channels: int = 64,
    head_convs: int = 0,
    anchor_sizes: list[int] | tuple[int, ...] = (4, 8, 16),
    score_thresh: float = 0.05,
    topk_candidates: int = 100,
) -> Detector:
    """FCOS on ImageNet MobileNetV2 + FPN (strides 8, 16, 32); `num_classes` counts the background."""
    feature_net = MobileNetV2FPN(pretrained=pretrained, out_channels=channels)
    head = DetectHead(
        channels,
        num_classes,
        anchor_sizes=tuple(anchor_sizes),
        head_convs=head_convs,
        score_thresh=score_thresh,
        topk_candidates=topk_candidates,
    )
    model = Detector(feature_net, head)
    model.num_classes = num_classes
    return model


@register_model(input_shapes=DETECT_INPUT, task="detect", paired=True)
def dff_fcos_mobilenet_v2(
    *,
    num_classes: int = 2,
    pretrained: bool | str = False,
    channels: int = 64,
    head_convs: int = 0,
    anchor_sizes: list[int] | tuple[int, ...] = (4, 8, 16),
    score_thresh: float = 0.05,
    topk_candidates: int = 100,
    flow: str = "learned",
    flow_weights: str = "",
    flow_downscale: int = 4,
) -> nn.Module:
    """Deep Feature Flow around `fcos_mobilenet_v2`'s parts: the pyramid is propagated, the head runs on
    every frame. ``flow``: learned = `FlowNetLite` at stride 8 on the pair pooled by ``flow_downscale``
    (from ``flow_weights`` when given) with the scale field, trained end to end; dis = OpenCV DIS on the
    pair pooled by ``flow_downscale`` (S = 1)."""
    from vidrec.dff.detect import PyramidDFF
    from vidrec.dff.flownets import make_flow_net
    from vidrec.dff.model import ScaleField

    det = fcos_mobilenet_v2(
        num_classes=num_classes, pretrained=pretrained, channels=channels, head_convs=head_convs,
        anchor_sizes=anchor_sizes, score_thresh=score_thresh, topk_candidates=topk_candidates,
    )  # fmt: skip
    opts = {} if flow_weights else {"downscale": flow_downscale}  # a weight file names its own
    flow_net = make_flow_net(flow, stride=8, weights=flow_weights or None, **opts)
    scale_channels = getattr(flow_net, "scale_channels", 0)
    scale = ScaleField(scale_channels, channels) if scale_channels else None
    model = PyramidDFF(det.feature_net, flow_net, det.task_net, scale_field=scale)
    model.num_classes, model.modalities = num_classes, ("rgb",)
    return model
