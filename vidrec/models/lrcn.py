"""LRCN (Donahue et al., CVPR'15 / TPAMI) and its single-frame baseline.

Per-frame CNN (time folded into batch) -> LSTM -> dropout -> Linear at every step. Output is
`(B, T, K)` per-step logits; the video prediction is the mean of the per-step softmaxes
(`vidrec.models.outputs.video_probs`). State is reset per clip (h0 = c0 = 0), so the model is causal
and clips in a batch do not interact. `step` streams one frame at a time with carried state.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from vidrec.models.backbones import Backbone
from vidrec.models.registry import register_model

RnnState = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None
MODALITY_CHANNELS = {"rgb": 3, "flow3": 3}


def lrcn_init_(rnn: nn.RNNBase, scale: float = 0.01) -> nn.RNNBase:
    """The release's init: weights U(-scale, scale), every bias 0 (incl. `bias_hh`; Caffe has one bias)."""
    for name, p in rnn.named_parameters():
        nn.init.zeros_(p) if name.startswith("bias") else nn.init.uniform_(p, -scale, scale)
    return rnn


class LRCN(nn.Module):
    """Encoder -> recurrent net -> dropout -> per-step classifier.

    Args:
        encoder: maps frames `(N, C, H, W)` to features `(N, D)` (e.g. `Backbone.forward_features`).
        rnn: a batch-first `nn.LSTM` / `nn.GRU` / `nn.RNN` with input size D.
        head: `nn.Linear(hidden, K)` applied at every step.
        modality: the batch key read ("rgb" or "flow3").
        dropout: before the head (0.5 in the release).
        freeze_encoder: keep the encoder in eval mode with no gradients (frozen features).
    """

    head_lr_mult = {"weight": 10.0, "bias": 20.0}  # the release's lr_mult on the classifier

    def __init__(
        self,
        *,
        encoder: nn.Module,
        rnn: nn.RNNBase,
        head: nn.Linear,
        modality: str = "rgb",
        dropout: float = 0.5,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if not rnn.batch_first:
            raise ValueError("LRCN needs a batch_first rnn")
        self.encoder, self.rnn, self.head = encoder, rnn, head
        self.dropout = nn.Dropout(dropout)
        self.modalities = (modality,)
        self.num_classes = head.out_features
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        self.prefix_cached = False  # True: inputs are the frozen encoder's features (feature cache)

    def frozen_prefix(self) -> nn.Module | None:
        """The frozen encoder (frames ``(N, C, H, W)`` -> ``(N, D)``), or None when it trains."""
        return self.encoder if self.freeze_encoder else None

    def train(self, mode: bool = True) -> LRCN:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> per-frame features (B, T, D); while `prefix_cached`, x is them already."""
        if self.prefix_cached:
            return x
        b = x.shape[0]
        frames = rearrange(x, "b t c h w -> (b t) c h w")  # (B*T, C, H, W)
        feats = self.encoder(frames)  # (B*T, D)
        return rearrange(feats, "(b t) d -> b t d", b=b)  # (B, T, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> per-step logits (B, T, K); zero initial state for every clip."""
        hidden, _ = self.rnn(self.encode(x))  # (B, T, hidden)
        return self.head(self.dropout(hidden))  # (B, T, K)

    def step(self, frame: torch.Tensor, state: RnnState = None) -> tuple[torch.Tensor, RnnState]:
        """One frame `(B, C, H, W)` -> (logits `(B, K)`, new state); pass `state=None` to start a clip."""
        feats = self.encode(frame[:, None])  # (B, 1, D)
        hidden, state = self.rnn(feats, state)  # (B, 1, hidden)
        return self.head(self.dropout(hidden[:, 0])), state  # (B, K)

    def param_groups(self, base_lr: float) -> list[dict]:
        """Optimizer groups: body at `base_lr`, head weight x10 and bias x20 (the release's lr_mult)."""
        head_ids = {id(p) for p in self.head.parameters()}
        body = [p for p in self.parameters() if id(p) not in head_ids and p.requires_grad]
        return [
            {"params": body, "lr": base_lr},
            {"params": [self.head.weight], "lr": base_lr * self.head_lr_mult["weight"]},
            {"params": [self.head.bias], "lr": base_lr * self.head_lr_mult["bias"]},
        ]


class FeatureEncoder(nn.Module):
    """Adapts a `Backbone` to an encoder: frames (N, C, H, W) -> pooled features (N, D) -> dropout.

    `dropout` follows the features (LRCN-fc6: fc6 -> ReLU -> Dropout(0.9), methods.md 1.1).
    """

    def __init__(self, backbone: Backbone, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.backbone.forward_features(x))  # (N, D)


CAFFE_DROPOUT = {"fc6": 0.9, "fc7": 0.5}  # LRCN's hybrid net: drop6 0.9 (spec); drop7: CaffeNet's 0.5


def caffe_order_(backbone: Backbone, *, drop6: float = CAFFE_DROPOUT["fc6"], drop7: float = 0.5) -> Backbone:
    """Give torchvision AlexNet's classifier CaffeNet's dropout placement, in place, keys unchanged.

    torchvision: Dropout -> fc6 -> ReLU -> Dropout -> fc7 -> ReLU -> fc8.
    Caffe (LRCN): fc6 -> ReLU -> Dropout(drop6) -> fc7 -> ReLU -> Dropout(drop7) -> fc8.
    Only parameter-free modules move, so state-dict keys stay torchvision's (`classifier.1` is fc6).
    """
    c = backbone.net.classifier
    c[0] = nn.Identity()  # no dropout on pool5
    if isinstance(c[3], nn.Dropout):
        c[3].p = drop6
    if isinstance(c[5], nn.ReLU):  # absent once the head is removed (fc6 features)
        c[5] = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(drop7))
    return backbone


class SingleFrame(nn.Module):
    """The single-frame baseline: the same CNN on every frame, returning per-frame logits (B, T, K).

    Per-frame output (not a clip average) keeps training per frame and makes the video prediction
    the mean of per-frame softmaxes, as in LRCN's evaluation.
    """

    def __init__(self, *, backbone: Backbone, modality: str = "rgb") -> None:
        super().__init__()
        self.backbone = backbone
        self.modalities = (modality,)
        self.num_classes = backbone.net.get_submodule(backbone.spec.head).out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, K)."""
        b = x.shape[0]
        logits = self.backbone(rearrange(x, "b t c h w -> (b t) c h w"))  # (B*T, K)
        return rearrange(logits, "(b t) k -> b t k", b=b)  # (B, T, K)


def _check_modality(modality: str) -> int:
    if modality not in MODALITY_CHANNELS:
        raise ValueError(f"modality={modality!r}: LRCN reads 'rgb' or 'flow3' (3-channel flow images)")
    return MODALITY_CHANNELS[modality]


def build_lrcn(
    arch: str,
    *,
    num_classes: int,
    pretrained: bool | str,
    modality: str,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    feature_layer: str = "penultimate",
    feature_dropout: float = 0.0,
    freeze_encoder: bool = False,
) -> LRCN:
    """Shared body of the `lrcn_*` builders."""
    backbone = Backbone(
        arch,
        pretrained=pretrained,
        in_chans=_check_modality(modality),
        num_classes=0,
        feature_layer=feature_layer,
    )
    if arch == "alexnet":
        caffe_order_(backbone)
    rnn = lrcn_init_(nn.LSTM(backbone.feature_dim, hidden_size, num_layers=num_layers, batch_first=True))
    head = nn.Linear(hidden_size, num_classes)
    encoder = FeatureEncoder(backbone, dropout=feature_dropout)
    return LRCN(
        encoder=encoder, rnn=rnn, head=head, modality=modality, dropout=dropout, freeze_encoder=freeze_encoder
    )


_LRCN_INPUT = {"rgb": (16, 3, 227, 227)}


@register_model(input_shapes=_LRCN_INPUT)
def lrcn_alexnet(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    modality: str = "rgb",
    hidden_size: int = 256,
    num_layers: int = 1,
    dropout: float = 0.5,
    feature_dropout: float = CAFFE_DROPOUT["fc6"],
) -> LRCN:
    """LRCN-fc6 (Donahue et al. 2015) on torchvision AlexNet (the nearest offline net to the hybrid
    CaffeNet): fc6 -> ReLU -> Dropout(0.9) -> LSTM(256) -> dropout 0.5 -> per-step Linear."""
    return build_lrcn(
        "alexnet", num_classes=num_classes, pretrained=pretrained, modality=modality,
        hidden_size=hidden_size, num_layers=num_layers, dropout=dropout, feature_layer="fc6",
        feature_dropout=feature_dropout,
    )  # fmt: skip


@register_model(input_shapes={"rgb": (16, 3, 224, 224)})
def lrcn_mobilenet_v2(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    modality: str = "rgb",
    hidden_size: int = 256,
    num_layers: int = 1,
    dropout: float = 0.5,
    freeze_encoder: bool = False,
) -> LRCN:
    """LRCN (Donahue et al. 2015) on MobileNetV2 pooled features (1280) -> LSTM -> per-step Linear;
    `freeze_encoder` keeps the CNN as it is (frozen features, computed once by `vidrec train`)."""
    return build_lrcn(
        "mobilenet_v2", num_classes=num_classes, pretrained=pretrained, modality=modality,
        hidden_size=hidden_size, num_layers=num_layers, dropout=dropout, freeze_encoder=freeze_encoder,
    )  # fmt: skip


@register_model(input_shapes={"rgb": (16, 3, 224, 224)})
def lrcn_resnet18(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    modality: str = "rgb",
    hidden_size: int = 256,
    num_layers: int = 1,
    dropout: float = 0.5,
) -> LRCN:
    """LRCN (Donahue et al. 2015) on ResNet-18 pooled features (512) -> LSTM -> per-step Linear."""
    return build_lrcn(
        "resnet18", num_classes=num_classes, pretrained=pretrained, modality=modality,
        hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
    )  # fmt: skip


def _single_frame(arch: str, num_classes: int, pretrained: bool | str, modality: str) -> SingleFrame:
    backbone = Backbone(
        arch, pretrained=pretrained, in_chans=_check_modality(modality), num_classes=num_classes
    )
    return SingleFrame(backbone=backbone, modality=modality)


@register_model(input_shapes=_LRCN_INPUT)
def single_frame_alexnet(
    *, num_classes: int, pretrained: bool | str = False, modality: str = "rgb"
) -> SingleFrame:
    """LRCN's stage (a) (Donahue et al. 2015): the single-frame AlexNet, CaffeNet's dropout placement
    (fc6 -> ReLU -> Dropout(0.9) -> fc7 -> ReLU -> Dropout(0.5) -> fc8); per-frame logits (B, T, K).
    Its conv1..fc6 weights initialise `lrcn_alexnet` (`model.init_from`)."""
    model = _single_frame("alexnet", num_classes, pretrained, modality)
    caffe_order_(model.backbone)
    return model


@register_model(input_shapes={"rgb": (16, 3, 224, 224)})
def single_frame_mobilenet_v2(
    *, num_classes: int, pretrained: bool | str = False, modality: str = "rgb"
) -> SingleFrame:
    """Single-frame baseline (LRCN paper, stage a) on MobileNetV2: per-frame logits (B, T, K)."""
    return _single_frame("mobilenet_v2", num_classes, pretrained, modality)


@register_model(input_shapes={"rgb": (16, 3, 224, 224)})
def single_frame_resnet50(
    *, num_classes: int, pretrained: bool | str = False, modality: str = "rgb"
) -> SingleFrame:
    """Single-frame baseline (LRCN paper, stage a) on ResNet-50: per-frame logits (B, T, K)."""
    return _single_frame("resnet50", num_classes, pretrained, modality)
