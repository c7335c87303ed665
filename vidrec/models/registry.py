"""One flat registry of model builders: `register_model`, `get_model`, `list_models`."""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch.nn as nn

from vidrec.cli import UsageError


class UnknownModelError(UsageError, KeyError):
    """`get_model` was asked for a name that is not registered (a KeyError, for older callers)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(
    fn: Callable | None = None,
    *,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    task: str = "classify",
    paired: bool = False,
):
    """Register a builder under its function name.

    Args:
        fn: the builder (when used as a bare decorator).
        input_shapes: the paper's per-item input shapes `{modality: (T, C, H, W)}` (an image model:
            `(C, H, W)`), stored on the builder as `input_shapes` (used by `vidrec models --flops`).
        task: the `vidrec.tasks` task the model's output is for (``builder.task``): classify models
            return class logits per clip; segment models per-pixel logits (B, K, H, W).
        paired: the model's forward takes two images (key, current), as Deep Feature Flow's does.
    """

    def wrap(builder: Callable) -> Callable:
        if builder.__name__ in _MODELS:
            raise ValueError(f"model {builder.__name__!r} is registered twice")
        builder.input_shapes = input_shapes or {}
        builder.task, builder.paired = task, paired
        _MODELS[builder.__name__] = builder
        return builder

    return wrap(fn) if fn is not None else wrap


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. `get_model("lrcn_mobilenet_v2", num_classes=101)`."""
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=5, cutoff=0.4)
        hint = f" Close matches: {close}." if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} See `vidrec models` for all {len(_MODELS)} names."
        )
    return _MODELS[name](**kwargs)


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder function registered as `name` (raises like `get_model`)."""
    if name not in _MODELS:
        get_model(name)
    return _MODELS[name]


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    return sorted(_MODELS)
