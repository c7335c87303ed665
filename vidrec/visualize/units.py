"""Units a visualisation looks at, and the model inputs it feeds.

A `Unit` is a channel of a named layer (its spatial mean or one position) or a class logit of the
model's output. Its value is a scalar, averaged over the batch and over time:

- a time-folded per-frame layer `(B*T, C, h, w)`: channel `c`, spatial mean (or position), mean over B*T;
- a 3D layer `(B, C, T, h, w)`: the same over T, h, w;
- vectors `(N, D)` / `(B, T, D)` (LSTM output, Linear): element `c`, mean over the rest;
- the output (`layer=""`): the logit of class `c`, `(B, K)` or per step `(B, T, K)` averaged over steps;
  for multi-stream outputs `{stream: logits}` one stream's logit, or with `stream=""` the fused logit
  (the streams' logits weighted by the model's `fusion_weights`), which sits above the fusion point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from vidrec.visualize.hooks import capture


@dataclass(frozen=True)
class Unit:
    """What to look at.

    Attributes:
        layer: dotted module name (`model.named_modules()`); "" means the model's class output.
        channel: channel of the layer, or class index for the output.
        position: `(i, j)` on the layer's spatial map; None averages over space.
        stream: for multi-stream outputs, the stream whose logit is used; "" fuses the streams.
    """

    layer: str = ""
    channel: int = 0
    position: tuple[int, int] | None = None
    stream: str = ""

    def describe(self) -> str:
        where = "mean" if self.position is None else f"at {self.position}"
        if not self.layer:
            return f"class {self.channel} logit ({self.stream or 'fused'})"
        return f"{self.layer} channel {self.channel} ({where})"


def model_modalities(model: nn.Module) -> tuple[str, ...]:
    """The batch keys a recognizer reads (`("rgb",)` when it does not say)."""
    return tuple(getattr(model, "modalities", ("rgb",)))


def as_model_units(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inputs as the model takes them: a uint8 `rgb` clip (what datasets and `Preprocess` give) is
    converted and normalised like the engine does; float tensors are kept as they are."""
    from vidrec.data.transforms import normalize_rgb

    return {m: normalize_rgb(v) if m == "rgb" and v.dtype == torch.uint8 else v for m, v in x.items()}


def model_input(model: nn.Module, x: dict[str, torch.Tensor]):
    """`{modality: (B, T, C, H, W)}` -> what `model.forward` takes (a tensor for one modality)."""
    mods = model_modalities(model)
    missing = [m for m in mods if m not in x]
    if missing:
        raise ValueError(f"the model reads {list(mods)}; inputs lack {missing}")
    return x[mods[0]] if len(mods) == 1 else {m: x[m] for m in mods}


def _channel_value(act: torch.Tensor, unit: Unit) -> torch.Tensor:
    """Scalar value of `unit.channel` in an activation of any supported layout."""
    if act.dim() in (2, 3):  # (N, D) or (B, T, D)
        return act[..., unit.channel].mean()
    if act.dim() not in (4, 5):
        raise ValueError(f"layer {unit.layer!r} gives a {act.dim()}-D output; units need 2-5-D")
    if not 0 <= unit.channel < act.shape[1]:
        raise ValueError(f"layer {unit.layer!r} has {act.shape[1]} channels; channel {unit.channel} is out")
    fmap = act[:, unit.channel]  # (N, h, w) or (B, T, h, w)
    if unit.position is None:
        return fmap.mean()
    i, j = unit.position
    h, w = fmap.shape[-2:]
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"position {unit.position} is outside layer {unit.layer!r}'s {h}x{w} map")
    return fmap[..., i, j].mean()


def _logit(logits: torch.Tensor, c: int) -> torch.Tensor:
    if not 0 <= c < logits.shape[-1]:
        raise ValueError(f"class {c} is out of range: the model has {logits.shape[-1]} classes")
    return logits[..., c].mean()  # mean over batch (and steps)


def output_value(model: nn.Module, out, unit: Unit) -> torch.Tensor:
    """The class-logit value of `unit` from a model output (tensor or `{stream: logits}`)."""
    if not isinstance(out, dict):
        return _logit(out, unit.channel)
    if unit.stream:
        if unit.stream not in out:
            raise ValueError(f"stream {unit.stream!r} is not an output of the model: {sorted(out)}")
        return _logit(out[unit.stream], unit.channel)
    weights = getattr(model, "fusion_weights", None) or {name: 1.0 for name in out}
    total = sum(weights[name] for name in out)
    return sum(weights[name] * _logit(v, unit.channel) for name, v in out.items()) / total


def unit_value(model: nn.Module, x: dict[str, torch.Tensor], unit: Unit) -> tuple[torch.Tensor, float]:
    """Run the model on `x` and return (the unit's scalar value, the mean |activation| of its layer).

    The second number is the layer's typical magnitude, used as the per-layer normaliser rho.
    """
    if not unit.layer:
        out = model(model_input(model, x))
        value = output_value(model, out, unit)
        logits = torch.cat([v.flatten() for v in out.values()]) if isinstance(out, dict) else out
        return value, float(logits.detach().abs().mean())
    with capture(model, unit.layer) as rec:
        model(model_input(model, x))
    acts = rec[unit.layer]
    if not acts:
        raise ValueError(f"layer {unit.layer!r} did not run in the forward pass")
    act = acts[0] if len(acts) == 1 else torch.cat(acts)
    return _channel_value(act, unit), float(act.detach().abs().mean())
