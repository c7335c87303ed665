"""`vidrec.models.bptt.SequenceMap`: a PreRNN layer's hidden-to-hidden weights get the gradient plain
autograd gives them, computed in one product per sequence instead of one per time step."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from vidrec.models.layers import num_steps
from vidrec.models.prernn import RecurrentLayer

B, T = 3, 5


def _layer(kind: str, cell: str, kernel_size: int = 1) -> RecurrentLayer:
    torch.manual_seed(0)
    if kind == "fc":
        base, norm = nn.Linear(6, 8), nn.BatchNorm1d(8)
    else:
        base, norm = nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8)
    layer = RecurrentLayer(base, norm=norm, activation=nn.ReLU6(), cell=cell, kernel_size=kernel_size,
                           hidden_init="small")  # fmt: skip
    return layer.train()


def _input(kind: str) -> torch.Tensor:
    shape = (B * T, 6) if kind == "fc" else (B * T, 6, 3, 3)
    return torch.randn(shape, generator=torch.Generator().manual_seed(1), requires_grad=True)


def _per_step_forward(layer: RecurrentLayer, x: torch.Tensor) -> torch.Tensor:
    """The layer's forward with the modules applied directly at every step (plain autograd)."""
    u = layer.norm(layer.input(x)).unflatten(0, (B, T))
    n = {"rnn": 0, "gru": 2, "lstm": 3}[layer.cell]
    g = torch.cat([u] * n, 2) if n else None
    h = torch.zeros_like(u[:, 0])
    c = torch.zeros_like(h)
    outs = []
    for t in range(T):
        h, c = layer.step(u[:, t], None if g is None else g[:, t], h, c)  # maps=None: the modules
        outs.append(h)
    return torch.stack(outs, 1).flatten(0, 1)


def _grads(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> dict[str, torch.Tensor]:
    layer.zero_grad(set_to_none=True)
    x.grad = None
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters() if p.grad is not None}
    return {**grads, "input": x.grad.clone()}


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize(("kind", "kernel_size"), [("fc", 1), ("conv", 1), ("conv", 3)])
def test_sequence_map_gives_plain_autograds_outputs_and_gradients(kind, kernel_size, cell):
    layer, x = _layer(kind, cell, kernel_size), _input(kind)
    with num_steps(layer, T):
        out = layer(x)
    new = _grads(layer, x, out)
    ref_out = _per_step_forward(layer, x)
    ref = _grads(layer, x, ref_out)
    if kind == "fc" or kernel_size > 1:
        assert torch.equal(out, ref_out)  # the same products, the same outputs
    else:  # a 1x1 conv applied as a matrix product over pixels: the same sums in another order
        torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert new.keys() == ref.keys() and "recurrent.weight" in new
    scale = max(g.abs().max().item() for g in ref.values())  # (a bias before BatchNorm gets ~0: noise)
    for name in ref:
        torch.testing.assert_close(new[name], ref[name], rtol=1e-5, atol=1e-6 * scale, msg=name)


class _CountMM(TorchDispatchMode):
    """Counts matrix products whose result has `shape` (a weight gradient's)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape, self.count = shape, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        products = (torch.ops.aten.mm, torch.ops.aten.addmm)
        if func.overloadpacket in products and tuple(out.shape) == self.shape:
            self.count += 1
        return out


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_hidden_to_hidden_gradient_is_one_product_per_sequence(cell):
    layer, x = _layer("fc", cell), _input("fc")
    with num_steps(layer, T):
        out = layer(x)
    counter = _CountMM(tuple(layer.recurrent.weight.shape))
    with counter:
        out.sum().backward()
    assert layer.recurrent.weight.grad is not None
    assert counter.count == 1  # per-step autograd makes T products of B rows (and T - 1 additions)


def test_bf16_autocast_trains_float32_weights():
    layer, x = _layer("fc", "lstm"), _input("fc")
    with num_steps(layer, T), torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    out.float().sum().backward()
    assert layer.recurrent.weight.grad.dtype == torch.float32
    assert layer.recurrent_gates.weight.grad.abs().sum() > 0


def test_no_gradients_and_frozen_weights_use_the_modules():
    layer, x = _layer("fc", "gru"), _input("fc")
    with num_steps(layer, T), torch.no_grad():
        plain = layer(x)
    layer.recurrent.requires_grad_(False)
    with num_steps(layer, T):
        out = layer(x)
    out.sum().backward()
    assert torch.equal(plain, out.detach())
    assert layer.recurrent.weight.grad is None and layer.recurrent_gates.weight.grad is not None
