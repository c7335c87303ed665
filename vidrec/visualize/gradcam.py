"""Grad-CAM over time (Selvaraju et al., ICCV'17) for per-frame, recurrent and two-stream recognizers.

For each stream, a convolutional layer that runs per frame (time folded into batch, `(B*T, C, h, w)`)
is recorded with a forward hook; the class score's gradient with respect to it gives one set of
channel weights per frame (the gradient's spatial mean), and the heat map of frame t is
ReLU(sum_c w_c(t) A_c(t)), upsampled to the input size. Frames are kept on one scale per stream (the
clip's maximum is 1), so a frame that does not influence the score is exactly zero: for an LRCN the
score is the mean over steps, for a two-stream model the fused logit (or one stream's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from vidrec.models.backbones import Backbone
from vidrec.models.outputs import video_probs
from vidrec.visualize.hooks import capture
from vidrec.visualize.maximize import frozen
from vidrec.visualize.units import Unit, as_model_units, model_input, model_modalities, output_value

STREAM_INPUT = {"appearance": "rgb", "motion": "flow"}  # ST-ResNet stream names -> batch keys


@dataclass
class CamResult:
    """Heat maps `{stream: (B, T, H, W)}` in [0, 1] (one scale per stream), the class explained,
    the layers read and the model's class probabilities `(B, K)`."""

    heat: dict[str, torch.Tensor]
    target: int
    layers: dict[str, str]
    probs: torch.Tensor


def _backbone_layer(name: str, backbone: Backbone) -> str:
    """The last block of a backbone's convolutional trunk (hooked on a block, not the container,
    because ST-ResNet runs stage slices such as `layer4[1:]`, which bypass the container's hooks)."""
    trunk = "layer4" if backbone.arch.startswith("resnet") else "features"
    last = len(backbone.net.get_submodule(trunk)) - 1
    return f"{name}.net.{trunk}.{last}" if name else f"net.{trunk}.{last}"


def default_layers(model: nn.Module) -> dict[str, str]:
    """Per stream, the layer Grad-CAM reads: the last conv block of each backbone (else the last Conv2d).

    Stream names are the model's top-level children holding a backbone (`rgb`/`flow`,
    `appearance`/`motion`); a single-stream model's one stream is named after its modality.
    """
    backbones = [(n, m) for n, m in model.named_modules() if isinstance(m, Backbone)]
    if len(backbones) > 1:
        return {n.split(".")[0]: _backbone_layer(n, m) for n, m in backbones}
    modality = model_modalities(model)[0]
    if backbones:
        return {modality: _backbone_layer(*backbones[0])}
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; pass layers={{stream: name}}")
    return {modality: convs[-1]}


def _per_frame(act: torch.Tensor, batch: int) -> torch.Tensor:
    """A recorded activation as `(B, T, C, h, w)`: time-folded, 3D `(B, C, T, h, w)` or per clip."""
    if act.dim() == 5:
        return rearrange(act, "b c t h w -> b t c h w")
    if act.dim() != 4:
        raise ValueError(f"Grad-CAM needs a convolutional layer; this one gives a {act.dim()}-D output")
    return rearrange(act, "(b t) c h w -> b t c h w", b=batch)


def _cam(act: torch.Tensor, grad: torch.Tensor | None, batch: int) -> torch.Tensor:
    """ReLU(sum_c mean_hw(dS/dA_c) * A_c) per frame: `(B, T, h, w)`."""
    a = _per_frame(act.detach(), batch)
    if grad is None:  # the score does not depend on this layer
        return torch.zeros(a.shape[:2] + a.shape[3:], device=a.device)
    g = _per_frame(grad, batch)
    weights = g.mean(dim=(-2, -1), keepdim=True)  # (B, T, C, 1, 1): one weight set per frame
    return F.relu((weights * a).sum(dim=2))  # (B, T, h, w)


def _upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    b = cam.shape[0]
    flat = rearrange(cam, "b t h w -> (b t) 1 h w")
    up = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return rearrange(up, "(b t) 1 h w -> b t h w", b=b)  # (B, T, H, W)


def grad_cam(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    *,
    target: int | None = None,
    layers: dict[str, str] | None = None,
    stream: str = "",
) -> CamResult:
    """Grad-CAM heat maps per frame and per stream.

    Args:
        model: a recognizer in any output layout (clip, per-step or multi-stream logits).
        inputs: `{modality: (B, T, C, H, W)}` on the model's device (uint8 RGB is normalised here).
        target: class to explain; None: the fused top-1 class of the first clip.
        layers: `{stream: layer name}`; default `default_layers(model)`.
        stream: score the logit of this output stream only; "" scores the fused logit.

    Returns:
        A `CamResult` whose heat maps are `(B, T, H, W)`, H and W those of the stream's input.
    """
    layers = layers or default_layers(model)
    batch = next(iter(inputs.values())).shape[0]
    x = {m: v.detach().requires_grad_(True) for m, v in as_model_units(inputs).items()}  # frozen weights
    with frozen(model), capture(model, list(layers.values())) as rec:
        out = model(model_input(model, x))
        probs = video_probs(out, getattr(model, "fusion_weights", None)).detach()
        target = int(probs[0].argmax()) if target is None else target
        score = output_value(model, out, Unit(channel=target, stream=stream))
        acts = {s: rec[name][-1] for s, name in layers.items() if rec[name]}
        missing = sorted(set(layers) - set(acts))
        if missing:
            raise ValueError(f"layers {[layers[s] for s in missing]} did not run in the forward pass")
        grads = torch.autograd.grad(score, list(acts.values()), allow_unused=True)
    heat = {}
    for (s, act), grad in zip(acts.items(), grads):
        cam = _cam(act, grad, batch)
        key = s if s in inputs else STREAM_INPUT.get(s, model_modalities(model)[0])
        cam = _upsample(cam, tuple(inputs[key].shape[-2:]))
        heat[s] = (cam / cam.amax().clamp_min(1e-12)).cpu()  # one scale per stream
    return CamResult(heat=heat, target=target, layers=dict(layers), probs=probs.cpu())
