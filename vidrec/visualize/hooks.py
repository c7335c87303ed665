"""Forward hooks as context managers: the handles are removed when the block ends, errors included."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
import torch.nn as nn


def _first_tensor(output) -> torch.Tensor:
    """A module's output tensor; recurrent layers return `(output, state)`, so take the first item."""
    while isinstance(output, tuple | list):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the hooked module returned {type(output).__name__}, not a tensor")
    return output


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path `name`, or a ValueError listing a few valid names."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = [n for n in names if n.startswith(name.rsplit(".", 1)[0])][:8] or names[-8:]
        raise ValueError(
            f"model {type(model).__name__} has no layer {name!r}; e.g. {close} "
            "(all names: [n for n, _ in model.named_modules()])"
        ) from None


@contextmanager
def capture(model: nn.Module, layers: str | list[str]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record the outputs of named layers during forward passes inside the block.

    Yields a dict `{layer name: [output tensor per call]}` (a layer run once per forward, e.g. a
    per-frame CNN layer on the time-folded `(B*T, C, h, w)` batch, has one entry per forward). The
    recorded tensors stay in the autograd graph, so `torch.autograd.grad(score, tensor)` works.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    records: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with ExitStack() as stack:
        for name in names:
            module = get_layer(model, name)

            def hook(_module, _inputs, output, _name=name) -> None:
                records[_name].append(_first_tensor(output))

            stack.callback(module.register_forward_hook(hook).remove)
        yield records


def hook_count(model: nn.Module) -> int:
    """The number of forward hooks registered on `model` and its submodules (0 after `capture`)."""
    return sum(len(m._forward_hooks) for m in model.modules())
