"""Initialise a model from another model's trained weights: LRCN stage (a) -> (b), ST-ResNet from TSN streams.

`init_from(model, state)` copies every tensor of `state` that matches a tensor of `model` and reports
what it skipped and why. Keys match when they are equal, or else when their torchvision part is: vidrec
keeps each torchvision network intact under an attribute `net`, so `backbone.net.features.0.weight` (a
single-frame model), `encoder.backbone.net.features.0.weight` (LRCN) and `net.features.0.weight` (a bare
`Backbone`, an ST-ResNet stream) all name torchvision's `features.0.weight`. A tail is used only when
exactly one tensor of `state` has it, so a two-stream source never feeds one stream with the other's.

The heads (every `nn.Linear` with `model.num_classes` outputs: LRCN's per-step classifier, fc8, a
ResNet's fc) are never copied unless `keep_heads=True`: they keep their fresh initialisation, as the
recipes start the next stage with a new classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

__all__ = ["InitReport", "head_keys", "init_from", "torchvision_tail"]


@dataclass
class InitReport:
    """What `init_from` did: loaded keys, and skipped keys with their reason."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # model key -> why it kept its init
    unused: list[str] = field(default_factory=list)  # source keys nothing took

    def summary(self) -> str:
        """A few lines for the run log: counts, then every skipped key with its reason."""
        lines = [
            f"init_from {self.source}: loaded {len(self.loaded)} tensors, kept the init of "
            f"{len(self.skipped)}, {len(self.unused)} tensors of the source unused"
        ]
        lines += [f"  kept init: {k} ({why})" for k, why in sorted(self.skipped.items())]
        if self.unused:
            shown = ", ".join(self.unused[:12]) + (" ..." if len(self.unused) > 12 else "")
            lines.append(f"  unused in the source: {shown}")
        return "\n".join(lines)


def torchvision_tail(key: str) -> str | None:
    """The part of `key` after its last `net.` path component (None when it has none)."""
    parts = key.split(".")
    idx = [i for i, p in enumerate(parts[:-1]) if p == "net"]
    return ".".join(parts[idx[-1] + 1 :]) if idx else None


def head_keys(model: nn.Module, num_classes: int | None = None) -> set[str]:
    """State-dict keys of the classifier heads: `nn.Linear`s with `num_classes` (default
    `model.num_classes`) outputs."""
    k = num_classes if num_classes is not None else getattr(model, "num_classes", None)
    keys = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == k:
            keys |= {f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)}
    return keys


def _by_tail(state: dict[str, torch.Tensor]) -> dict[str, str | None]:
    """tail -> source key, or None when several source keys share the tail (ambiguous)."""
    out: dict[str, str | None] = {}
    for key in state:
        tail = torchvision_tail(key)
        if tail is not None:
            out[tail] = None if tail in out else key
    return out


def init_from(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: str = "state dict",
    keep_heads: bool = False,
    num_classes: int | None = None,
) -> InitReport:
    """Copy every matching tensor of `state` into `model` (in place); see the module docstring.

    `num_classes` identifies the heads when `model` is a part without that attribute (an ST-ResNet stream).
    """
    report = InitReport(source=source)
    own = model.state_dict()
    heads = set() if keep_heads else head_keys(model, num_classes)
    tails, used, new = _by_tail(state), set(), {}
    for key, tensor in own.items():
        src = key if key in state else tails.get(torchvision_tail(key) or "")
        if key in heads:
            report.skipped[key] = "classifier head: starts fresh (keep_heads=False)"
        elif src is None:
            ambiguous = torchvision_tail(key) in tails
            report.skipped[key] = "several source tensors match" if ambiguous else "not in the source"
        elif state[src].shape != tensor.shape:
            report.skipped[key] = f"shape {tuple(state[src].shape)} in the source vs {tuple(tensor.shape)}"
        else:
            new[key] = state[src]
            report.loaded.append(key)
        if src is not None:
            used.add(src)
    model.load_state_dict({**own, **new}, strict=True)
    report.unused = sorted(set(state) - used)
    return report
