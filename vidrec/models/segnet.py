"""Binary video segmentation on a dilated ImageNet MobileNetV2, the parts Deep Feature Flow reuses.

- Feature net (N_feat, the expensive part): torchvision's MobileNetV2 ``features`` (all 19 blocks,
  1280 channels out) with the stride-2 blocks after the chosen output stride turned to stride 1 and
  the later depthwise convs dilated (DeepLab's recipe), so the feature map keeps output stride 16
  (or 8) instead of 32; ImageNet weights from $TORCH_HOME (never downloaded).
- Task net (N_task, light): 1x1 conv to `hidden` channels, ReLU, 1x1 conv to the classes, on the
  feature grid; methods.md 4.1 uses a single 1x1 conv, the hidden layer adds little cost.
- `SegNet` runs both and upsamples the logits bilinearly to the input size (per-frame inference).
  `dff_segnet_mobilenet_v2` puts the same two parts, plus a flow net and the scale field, into
  `vidrec.dff.DFF`, so a per-frame checkpoint's ``feature_net.*`` / ``task_net.*`` weights initialise it
  (``model.init_from``).

Training end to end (``freeze_stem_bn=True``, the DFF recipe): the stem (the first conv and its BatchNorm)
keeps its ImageNet weights, and every BatchNorm of the feature net normalises with its running (ImageNet)
statistics in training too (`FrozenStatsBatchNorm2d`: batches of a few frames give noisy statistics),
while its scale and shift still learn; every other weight trains. The state dict is the same either way,
so such a checkpoint loads into a model built without the flag (and into `dff_segnet_mobilenet_v2`).

Inputs are ImageNet-normalised RGB (B, 3, H, W) float (`vidrec.data.transforms.normalize_rgb`); with
``motion`` > 0, each frame with its previous and next one stacked, (B, 9, H, W) (`vidrec.models.motion`:
the object DAVIS annotates is the one that moves unlike the camera).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidrec.dff.warp import keep_largest_object, mirror_averaged, with_foreground_bias
from vidrec.models.backbones import mobilenet_v2
from vidrec.models.registry import register_model

FEATURE_CHANNELS = 1280
_STRIDE_BLOCKS = {8: 7, 16: 14}  # the first MobileNetV2 block whose stride-2 is removed for each OS


def dilated_mobilenet_v2(*, pretrained: bool | str = False, output_stride: int = 16) -> nn.Sequential:
    """MobileNetV2 ``features`` (B, 3, H, W) -> (B, 1280, H/os, W/os) with output stride 16 or 8.

    ``pretrained``: True = torchvision's ImageNet file from $TORCH_HOME, a str = a local state dict of
    torchvision's MobileNetV2 (.pth / .safetensors).
    """
    if output_stride not in _STRIDE_BLOCKS:
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    net = mobilenet_v2(pretrained)
    features = net.features
    dilation = 1
    for i in range(_STRIDE_BLOCKS[output_stride], len(features)):
        block = features[i]
        if not hasattr(block, "conv"):  # the last 1x1 ConvBNReLU: nothing spatial
            continue
        depthwise = block.conv[1][0] if len(block.conv) == 4 else block.conv[0][0]  # (t != 1) / (t == 1)
        if depthwise.stride == (2, 2):
            depthwise.stride = (1, 1)  # this block keeps its own dilation; the ones after double it
            dilation *= 2
            continue
        depthwise.dilation, depthwise.padding = (dilation, dilation), (dilation, dilation)
    return features


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its running statistics and never updates them; its
    affine weight and bias still train. Same parameters and buffers as `nn.BatchNorm2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


def freeze_stem_and_bn_stats(features: nn.Sequential) -> nn.Sequential:
    """Freeze MobileNetV2's stem (``features[0]``: conv + BN) and every BatchNorm's statistics, in place."""
    for module in list(features.modules()):
        for name, child in module.named_children():
            if type(child) is nn.BatchNorm2d:
                frozen = FrozenStatsBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
                frozen.load_state_dict(child.state_dict())
                setattr(module, name, frozen)
    features[0].requires_grad_(False)
    return features


class ContextReduce(nn.Module):
    """The head's reduction with context (ASPP-lite): features (B, C, h, w) -> (B, hidden, h, w).

    A 1x1 conv to ``hidden`` channels and ReLU, then the sum of that map, one 3x3 conv per dilation rate
    on it and an image-level branch (global average, 1x1 conv, broadcast), each through ReLU; DeepLab's
    ASPP summed instead of concatenated, on the reduced channels so it stays light. It runs where the
    1x1 reduction ran: on key frames only under Deep Feature Flow, which propagates its output (the
    paper's feature net likewise ends in a 3x3 dilated conv, methods.md 4.1).
    """

    def __init__(self, in_channels: int, hidden: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, hidden
        self.conv = nn.Conv2d(in_channels, hidden, 1)
        self.branches = nn.ModuleList(nn.Conv2d(hidden, hidden, 3, padding=r, dilation=r) for r in rates)
        self.image = nn.Conv2d(hidden, hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(features))  # (B, hidden, h, w)
        out = x + F.relu(self.image(x.mean(dim=(2, 3), keepdim=True)))  # (B, hidden, 1, 1) broadcast
        for branch in self.branches:
            out = out + F.relu(branch(x))
        return out


class SegHead(nn.Module):
    """Light task net: features (B, C, h, w) -> class logits (B, K, h, w).

    ``reduce`` (the part Deep Feature Flow runs on key frames) is a 1x1 conv to ``hidden`` channels, or
    with ``context`` (dilation rates, e.g. (2, 4)) a `ContextReduce`; ``classify_reduced`` (the part run
    on every frame) is ReLU and a 1x1 conv to the classes.
    """

    def __init__(
        self,
        in_channels: int = FEATURE_CHANNELS,
        num_classes: int = 2,
        *,
        hidden: int = 128,
        context: tuple[int, ...] = (),
    ):
        super().__init__()
        if not all(isinstance(r, int) and r >= 1 for r in context):
            raise ValueError(f"context: dilation rates must be integers >= 1 (e.g. [2, 4]), got {context}")
        self.context = tuple(context)
        if self.context:
            self.reduce: nn.Module = ContextReduce(in_channels, hidden, self.context)
        else:  # a plain 1x1 conv: the state dict of checkpoints written before `context` existed
            self.reduce = nn.Conv2d(in_channels, hidden, 1)
        self.classify = nn.Conv2d(hidden, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classify_reduced(self.reduce(features))

    def classify_reduced(self, reduced: torch.Tensor) -> torch.Tensor:
        """The head after its reduction `(B, hidden, h, w)`: what Deep Feature Flow propagates."""
        return self.classify(F.relu(reduced))


class SegNet(nn.Module):
    """Per-frame segmentation: ``task_net(feature_net(x))`` upsampled to the input size.

    Args:
        feature_net: (B, 3, H, W) -> (B, C, H/s, W/s) (or (B, 9, H, W), a `MotionFeatures`).
        task_net: (B, C, h, w) -> (B, K, h, w).
        feature_stride: s, the feature net's output stride.
        flip_test: in eval mode, the features are those of the frame and its mirror image averaged
            (`vidrec.dff.warp.mirror_averaged`: the feature net costs twice); training never flips.
        largest_object: in eval mode, the foreground is kept in its largest connected region only
            (`vidrec.dff.warp.keep_largest_object`, on the feature grid before the upsampling).
        foreground_bias: in eval mode, added to the logits of every class but the first (background),
            before `largest_object`: a calibration of the decision, which training never sees (0: off).
    """

    modalities = ("rgb",)

    def __init__(
        self,
        feature_net: nn.Module,
        task_net: nn.Module,
        *,
        feature_stride: int,
        flip_test: bool = False,
        largest_object: bool = False,
        foreground_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.feature_net, self.task_net, self.feature_stride = feature_net, task_net, feature_stride
        self.flip_test, self.largest_object = flip_test, largest_object
        self.foreground_bias = float(foreground_bias)
        self.num_classes = task_net.classify.out_channels if isinstance(task_net, SegHead) else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature net's output on `x`, mirror-averaged in eval mode when `flip_test`."""
        if self.flip_test and not self.training:
            return mirror_averaged(self.feature_net, x)
        return self.feature_net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised RGB (B, 3, H, W) -> logits (B, K, H, W)."""
        logits = self.task_net(self.features(x))  # (B, K, H/s, W/s)
        if self.foreground_bias and not self.training:
            logits = with_foreground_bias(logits, self.foreground_bias)
        if self.largest_object and not self.training:
            logits = keep_largest_object(logits)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


SEGMENT_INPUT = {"rgb": (3, 480, 854)}  # one DAVIS 480p frame (C, H, W)


@register_model(input_shapes=SEGMENT_INPUT, task="segment")
def segnet_mobilenet_v2(
    *,
    num_classes: int = 2,
    pretrained: bool | str = False,
    output_stride: int = 16,
    hidden: int = 128,
    context: tuple[int, ...] | list[int] = (),
    freeze_stem_bn: bool = False,
    motion: int = 0,
    flip_test: bool = False,
    largest_object: bool = False,
    foreground_bias: float = 0.0,
) -> SegNet:
    """Per-frame binary segmentation on dilated ImageNet MobileNetV2 (output stride 16 or 8).

    ``freeze_stem_bn``: train end to end except the stem and the BatchNorm statistics (see the module
    docstring). ``context``: dilation rates of the head's `ContextReduce` (empty: a 1x1 reduction).
    ``motion``: channels of the motion cue's branch (`vidrec.models.motion.MotionFeatures`) joined to the
    features; the model then takes each frame with its two neighbours, `(B, 9, H, W)`. 0: RGB only.
    ``flip_test``: inference averages the features of each frame and of its mirror image (`SegNet`; the
    feature net costs twice). ``largest_object``: inference keeps the foreground in its largest connected
    region (`SegNet`; DAVIS-2016 annotates one object). ``foreground_bias``: inference adds it to the
    foreground logits before that (`SegNet`; chosen on a tuning split, docs/guides/segmentation.md).
    """
    if motion < 0:
        raise ValueError(f"motion: channels of the motion branch must be >= 0 (0 = none), got {motion}")
    features: nn.Module = dilated_mobilenet_v2(pretrained=pretrained, output_stride=output_stride)
    if freeze_stem_bn:
        features = freeze_stem_and_bn_stats(features)
    if motion:
        from vidrec.models.motion import MotionBranch, MotionFeatures

        features = MotionFeatures(features, MotionBranch(channels=motion))
    head = SegHead(FEATURE_CHANNELS + motion, num_classes, hidden=hidden, context=tuple(context))
    return SegNet(
        features,
        head,
        feature_stride=output_stride,
        flip_test=flip_test,
        largest_object=largest_object,
        foreground_bias=foreground_bias,
    )


@register_model(input_shapes=SEGMENT_INPUT, task="segment", paired=True)
def dff_segnet_mobilenet_v2(
    *,
    num_classes: int = 2,
    pretrained: bool | str = False,
    output_stride: int = 16,
    hidden: int = 128,
    context: tuple[int, ...] | list[int] = (),
    flow: str = "learned",
    flow_weights: str = "",
    freeze_stem_bn: bool = False,
    bias_field: bool = False,
    motion: int = 0,
    freeze: tuple[str, ...] | list[str] = (),
    flip_test: bool = False,
    largest_object: bool = False,
    foreground_bias: float = 0.0,
) -> nn.Module:
    """Deep Feature Flow (Zhu et al., CVPR'17) around `segnet_mobilenet_v2`'s parts plus a flow net.

    ``flow``: learned = `vidrec.dff.flownets.FlowNetLite` (from ``flow_weights``, a self-supervised
    pretraining file, when given) with the scale field S, trained end to end; dis = OpenCV DIS (no
    weights, S = 1); raft = torchvision RAFT when its weights are on disk (S = 1). The task net's
    ``hidden``-channel reduction is what DFF propagates (``DFF(reduced=True)``). ``bias_field``: the
    learned flow's DFF adds B (`vidrec.dff.model.BiasField`, zero at the start) to the scaled warp.
    ``motion``: as `segnet_mobilenet_v2`'s (the key frames' cue; `vidrec.dff.DFF` ``fresh_motion`` gives
    propagated frames their own, as `vidrec dff run / eval` do by default). ``freeze``: parts kept
    as they are in training (``feature_net``, ``task_net``, ``flow_net``; `vidrec.dff.DFF.freeze`): the
    dff_davis config freezes the per-frame network it starts from and trains the flow net and S.
    ``flip_test``: as `segnet_mobilenet_v2`'s, on key frames (`vidrec.dff.DFF`). ``largest_object``: as
    `segnet_mobilenet_v2`'s, on every frame's output; ``foreground_bias`` too.
    """
    from vidrec.dff.flownets import make_flow_net
    from vidrec.dff.model import DFF, BiasField, ScaleField

    seg = segnet_mobilenet_v2(
        num_classes=num_classes,
        pretrained=pretrained,
        output_stride=output_stride,
        hidden=hidden,
        context=context,
        freeze_stem_bn=freeze_stem_bn,
        motion=motion,
    )
    flow_net = make_flow_net(flow, stride=output_stride, weights=flow_weights or None)
    channels = getattr(flow_net, "scale_channels", 0)
    scale = ScaleField(channels, hidden) if channels else None  # S over the reduced map that is propagated
    bias = BiasField(channels, hidden) if channels and bias_field else None
    model = DFF(
        seg.feature_net,
        flow_net,
        seg.task_net,
        feature_stride=output_stride,
        scale_field=scale,
        bias_field=bias,
        reduced=True,
        flip_test=flip_test,
        largest_object=largest_object,
        foreground_bias=foreground_bias,
    )
    model.num_classes, model.modalities = num_classes, ("rgb",)
    return model.freeze(freeze) if freeze else model
