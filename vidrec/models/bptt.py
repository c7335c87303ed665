"""A recurrent layer's hidden-to-hidden map whose weight gradient is one product per sequence.

Applying a map ``U`` at every time step of a sequence makes autograd compute U's gradient once per
step, ``dU += dY_t^T h_{t-1}``: T products with only B rows each plus T accumulations of a full-size
gradient. For PreRNN's FC layer on MobileNetV2 (U of 1280 x 5120 for an LSTM, B = 16, T = 16) those were
more than half of a training step once the frozen trunk was cached: each step writes and re-reads a
26 MB gradient to add 16 rows' worth to it (memory bound, not compute bound).

`SequenceMap(module)` applies the same map with the same result, but its backward stores each step's
``(dY_t, h_{t-1})`` and computes ``dU = [dY_1 .. dY_T]^T [h_0 .. h_{T-1}]`` once, in one product with
T*B rows, after the last step's backward (autograd runs the node that made the steps' shared token only
once every step has given its gradient). The input gradient ``dY_t U`` is still per step: the recurrence
needs it before the previous step can go on. A 1x1 convolution (the conv PreRNN layer's maps on
MobileNetV2's 2x2 map at 64 px) is applied as that product over pixels: on a map that small the
convolution kernels were several times slower than one matrix product.

Only `nn.Linear` and `nn.Conv2d` without bias (the maps `vidrec.models.prernn.RecurrentLayer` makes) are
supported; anything else, and any call without gradients, uses the module as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def _pointwise(weight: torch.Tensor) -> bool:
    """A Linear's weight or a 1x1 convolution's: a matrix product over rows (pixels)."""
    return weight.dim() == 2 or weight.shape[2:] == (1, 1)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C) -> itself; (B, C, H, W) -> (B*H*W, C): one row per pixel."""
    return x if x.dim() == 2 else x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _unrows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of `_rows` for a tensor shaped like `like` but with ``rows.shape[1]`` channels."""
    if like.dim() == 2:
        return rows
    b, _, h, w = like.shape
    return rows.reshape(b, h, w, -1).permute(0, 3, 1, 2)  # (B, C', H, W), channels-last strides


def _apply(weight: torch.Tensor, x: torch.Tensor, padding: int) -> torch.Tensor:
    if _pointwise(weight):  # a 1x1 conv on a small map runs several times faster as one product
        return _unrows(_rows(x) @ weight.flatten(1).t(), x)
    return F.conv2d(x, weight, padding=padding)


class _Gather(torch.autograd.Function):
    """Forward: a scalar token that every step's product takes as input. Backward (after every step's
    backward, since each of them gave the token a gradient): the weight's gradient from all steps at once."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, pairs: list, padding: int) -> torch.Tensor:
        ctx.pairs, ctx.padding, ctx.shape, ctx.dtype = pairs, padding, weight.shape, weight.dtype
        return weight.new_zeros(())

    @staticmethod
    @once_differentiable
    def backward(ctx, _token_grad: torch.Tensor):
        if not ctx.pairs:
            return None, None, None
        grads = torch.cat([g for g, _ in ctx.pairs])  # (T*B[*H*W], C_out[, H, W])
        inputs = torch.cat([x.to(grads.dtype) for _, x in ctx.pairs])  # (T*B[*H*W], C_in[, H, W])
        ctx.pairs.clear()  # the stored steps are not needed any more (and a retained graph starts afresh)
        if grads.dim() == 2:  # rows: (C_out, C_in) from one product over every step's rows
            weight_grad = (grads.t() @ inputs).reshape(ctx.shape)
        else:
            weight_grad = torch.nn.grad.conv2d_weight(inputs, ctx.shape, grads, padding=ctx.padding)
        return weight_grad.to(ctx.dtype), None, None


class _Step(torch.autograd.Function):
    """``y_t = U h_{t-1}``; backward gives h's gradient now and leaves U's to `_Gather`."""

    @staticmethod
    def forward(ctx, x, weight, token, pairs: list, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.pairs, ctx.padding, ctx.token_dtype = pairs, padding, token.dtype
        return _apply(weight, x, padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        w = weight.to(grad.dtype)
        if _pointwise(weight):
            rows = _rows(grad)  # (B[*H*W], C_out)
            ctx.pairs.append((rows, _rows(x)))
            grad_x = _unrows(rows @ w.flatten(1), x) if ctx.needs_input_grad[0] else None
        else:
            ctx.pairs.append((grad, x))
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = torch.nn.grad.conv2d_input(x.shape, w, grad, padding=ctx.padding)
        return grad_x, None, grad.new_zeros((), dtype=ctx.token_dtype), None, None


class SequenceMap:
    """`module` (a bias-free `nn.Linear` / `nn.Conv2d`) applied at every step of one sequence, its weight's
    gradient computed once for the sequence (see the module docstring). Make one per forward pass."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.padding = module.padding[0] if isinstance(module, nn.Conv2d) else 0
        self.deferred = (
            torch.is_grad_enabled()
            and module.weight.requires_grad
            and _supported(module)
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
        )
        self.pairs: list = []
        self.token = _Gather.apply(module.weight, self.pairs, self.padding) if self.deferred else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.deferred:
            return self.module(x)
        weight = self.module.weight.detach()
        if torch.is_autocast_enabled(x.device.type):  # the dtype autocast would give the plain module
            weight = weight.to(torch.get_autocast_dtype(x.device.type))
            x = x.to(weight.dtype)
        return _Step.apply(x, weight, self.token, self.pairs, self.padding)


def _supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return module.bias is None
    if isinstance(module, nn.Conv2d):
        plain = module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
        same = isinstance(module.padding, tuple) and len(set(module.padding)) == 1
        return plain and same and module.bias is None and module.padding_mode == "zeros"
    return False


__all__ = ["SequenceMap"]
