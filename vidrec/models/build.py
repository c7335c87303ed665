"""A run's model from its config: `build_model` (a registry name or a user's ``module:factory``).

Only a model name the user typed in their own config reaches `import_object`; a config stored in a
checkpoint is checked first (`vidrec.engine.checkpoint.load_for_inference` refuses a ``module:factory``
the caller did not name), so a file never makes vidrec import code.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from torch import nn

from vidrec.models.registry import get_builder

if TYPE_CHECKING:
    from vidrec.engine.schema import ModelConfig


def import_object(spec: str, field_name: str) -> Any:
    """The attribute named by ``module.path:attr`` (a model factory, a data plug-in); a failed import
    raises ValueError naming `field_name`."""
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"{field_name}: cannot import {spec!r} ({err}); is the module on PYTHONPATH?"
        ) from err


def build_model(model_cfg: ModelConfig, num_classes: int, *, weights: bool = True) -> nn.Module:
    """The recognizer named by ``model_cfg.name`` (registry name or ``module:factory``).

    The builder gets ``num_classes=`` plus ``model_cfg.kwargs``. ``weights=False`` passes
    ``pretrained=False`` to a builder that takes it (the caller loads a checkpoint over the model, so
    reading ImageNet files would be wasted and is not wanted).
    """
    if ":" in model_cfg.name:
        builder = import_object(model_cfg.name, "model.name")
    else:
        builder = get_builder(model_cfg.name)  # importing vidrec.models registered every builder
    kwargs = {**model_cfg.kwargs, "num_classes": num_classes}
    if not weights and "pretrained" in inspect.signature(builder).parameters:
        kwargs["pretrained"] = False
    return builder(**kwargs)
