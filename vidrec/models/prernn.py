"""PreRNN (Yang, Molchanov, Kautz, CVPR'18): turn a layer of a pre-trained CNN into a recurrent layer.

`convert_to_recurrent(model, "classifier.0", cell="gru")` replaces a named `nn.Linear` / `nn.Conv2d`
by a `RecurrentLayer` that keeps the pre-trained weights (the same tensors) as input-to-hidden,
with u_t = BN(W_x * x_t + b) (BN, if it follows the layer, moves onto the u_t path) and:

- rnn:  h_t = λ(u_t + U h_{t-1})
- gru:  z, r = σ(g_t + U_{z,r} h_{t-1} + b_{z,r});  h~ = λ(u_t + U_h (r ⊙ h_{t-1}));
        h_t = (1-z) h_{t-1} + z h~
- lstm: i, o = σ(g_t + U_{i,o} h_{t-1} + b_{i,o});  f = σ(-g_t + U_f h_{t-1} + b_f);
        c_t = f c_{t-1} + i λ(u_t + U_g h_{t-1});  h_t = o λ(c_t)

λ is the layer's own activation (ReLU/ReLU6, or identity if none follows). The gate input g_t is u_t
("shared", SIH) or a per-gate copy of W_x, b followed by the same BatchNorm as u_t ("per_gate", MIH:
copying is our assumption, the paper's recipe was not retrieved). At initialisation U = 0.
The LSTM's forget gate reads -g_t (`GATE_INPUT_SIGN`; our choice, the paper's gate equations were not
retrieved): a unit that fires strongly forgets rather than integrates, so at the start the cell does not
accumulate a static input over time (with +g_t, f = σ(u_t - 4) -> 1 on strongly active units and c_t grew
to i λ(u_t) / (1 - f): 0.09-0.25 relative logit error on MobileNetV2's last layer by step 2, on a clip
that does not move).

Gate start (methods.md 2.4, property 1), `start=`:
- "trainable" (default): finite gate biases `b = ±TRAINABLE_GATE_BIAS` (4: GRU z, LSTM i and o at +4, LSTM f
  at -4, GRU r at 0). Every gate parameter gets a gradient on the first step (σ'(4) ≈ 0.018), and the
  first output stays close to the CNN: for a ReLU/ReLU6 layer the output is non-zero only where u_t >= 0,
  and there the gates are >= σ(4) = 0.982, so the first step is the CNN's output scaled per unit by a
  factor in [0.982, 1] (GRU: z) or [0.965, 1] (LSTM: i·o). It stays close at every later step: on a
  static input the GRU's h_t = (1 - (1 - z)^t) λ(u_t) only moves towards the CNN's output, and the LSTM's
  f = σ(-u_t - 4) <= σ(-4) = 0.018 wherever the unit fires (λ(u_t) > 0; elsewhere c stays 0), so c_t stays
  within [0.982, 1.018] λ(u_t) and h_t within [0.965, 1.018] λ(u_t). The recurrence comes in through
  U h_{t-1} and the gates, which is what training is there to learn.
- "exact": b = ±EXACT_GATE_BIAS (1e4) saturates the sigmoids exactly in float32 (σ(±1e4) is exactly 1/0):
  GRU z ≡ 1; LSTM i ≡ 1, f ≡ 0, o ≡ 1, so c_t = λ(u_t) and h_t = λ(λ(u_t)) = λ(u_t) for the idempotent λ used
  here: bit-for-bit the pre-trained CNN at init. Saturated gates pass no gradient, so they stay saturated
  and GRU/LSTM train like the vanilla cell: use it for the equivalence property only.
`gate_bias=` overrides the magnitude of either start.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypedDict, Unpack

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from vidrec.models.backbones import Backbone, set_submodule
from vidrec.models.bptt import SequenceMap
from vidrec.models.layers import TimeAware, num_steps
from vidrec.models.lrcn import LRCN, FeatureEncoder
from vidrec.models.registry import register_model

EXACT_GATE_BIAS = 1e4  # saturates σ exactly in float32: the CNN bit for bit, gates never learn
TRAINABLE_GATE_BIAS = 4.0  # σ(4) = 0.982, σ'(4) = 0.018: close to the CNN and gates that learn
GATE_BIAS = {"trainable": TRAINABLE_GATE_BIAS, "exact": EXACT_GATE_BIAS}
N_GATES = {"rnn": 0, "gru": 2, "lstm": 3}
# the sign with which each gate reads g_t: LSTM f reads -g_t so that a strongly active unit forgets and a
# static input is not integrated at the start (module doc); the other gates read +g_t
GATE_INPUT_SIGN = {"gru": (1.0, 1.0), "lstm": (1.0, -1.0, 1.0)}  # z, r  /  i, f, o
IDEMPOTENT = (nn.ReLU, nn.ReLU6)


def _recurrent_map(layer: nn.Module, width: int, out: int, kernel_size: int) -> nn.Module:
    if isinstance(layer, nn.Linear):
        return nn.Linear(width, out, bias=False)
    return nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2, bias=False)  # stride 1, "same"


def _init_recurrent(module: nn.Module, how: str, *, candidate: bool) -> None:
    if how == "pytorch":  # PyTorch's own default for the layer type (a fresh, traditional RNN)
        module.reset_parameters()
        return
    w = module.weight
    with torch.no_grad():
        w.zero_()
        if how == "small":
            w.uniform_(-0.01, 0.01)
        elif how == "identity" and candidate:  # IRNN-style; gates stay at zero
            centre = tuple(k // 2 for k in w.shape[2:])
            w[(slice(None), slice(None), *centre)] = torch.eye(w.shape[0])


class RecurrentLayer(TimeAware):
    """A pre-trained layer made recurrent; takes and returns time-folded `(B*T, ...)` tensors.

    Args:
        layer: the pre-trained `nn.Linear` or `nn.Conv2d` (kept as `self.input`, weights untouched).
        norm: the BatchNorm that followed it (applied to u_t only) or None.
        activation: λ, an idempotent activation (ReLU/ReLU6) or None for identity.
        cell: "rnn", "gru" or "lstm".
        input_weights: "shared" (gates read u_t) or "per_gate" (each gate gets a copy of W_x, b).
        hidden_init: "zeros" (starts as the CNN), "identity" (IRNN), "small" (U(-0.01, 0.01)) or
            "pytorch" (the layer type's default init; the traditional-RNN baseline).
        kernel_size: of the conv hidden-to-hidden maps.
        start: "trainable" (finite gate biases; gates learn) or "exact" (saturated: the CNN bit for bit).
        gate_bias: magnitude of the gate biases; None: the `start`'s (4 or 1e4).
    """

    def __init__(
        self,
        layer: nn.Linear | nn.Conv2d,
        *,
        norm: nn.Module | None = None,
        activation: nn.Module | None = None,
        cell: str = "rnn",
        input_weights: str = "shared",
        hidden_init: str = "zeros",
        kernel_size: int = 3,
        start: str = "trainable",
        gate_bias: float | None = None,
    ) -> None:
        super().__init__()
        _check_choice("cell", cell, N_GATES)
        _check_choice("start", start, GATE_BIAS)
        gate_bias = GATE_BIAS[start] if gate_bias is None else float(gate_bias)
        _check_choice("input_weights", input_weights, ("shared", "per_gate"))
        _check_choice("hidden_init", hidden_init, ("zeros", "identity", "small", "pytorch"))
        if activation is not None and not isinstance(activation, IDEMPOTENT):
            raise ValueError(f"activation {activation} is not idempotent; PreRNN supports ReLU/ReLU6 here")
        self.input, self.cell = layer, cell
        self.norm = norm if norm is not None else nn.Identity()
        self.act = activation if activation is not None else nn.Identity()
        width = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
        n = N_GATES[cell]
        self.start = start
        self.recurrent = _recurrent_map(layer, width, width, kernel_size)  # U (candidate / vanilla)
        _init_recurrent(self.recurrent, hidden_init, candidate=True)
        self.recurrent_gates = _recurrent_map(layer, width, n * width, kernel_size) if n else None
        self.gate_input = _gate_copy(layer, n) if n and input_weights == "per_gate" else None
        if n:
            _init_recurrent(self.recurrent_gates, hidden_init, candidate=False)
            signs = {"gru": [1.0, 0.0], "lstm": [1.0, -1.0, 1.0]}[cell]  # z, r  /  i, f, o
            self.gate_bias = nn.Parameter(torch.tensor(signs).repeat_interleave(width) * gate_bias)
            input_sign = torch.tensor(GATE_INPUT_SIGN[cell]).repeat_interleave(width)  # (n*C,)
            self.register_buffer("gate_input_sign", input_sign, persistent=False)  # a constant, not state

    def _gates(self, g_t: torch.Tensor, h: torch.Tensor, recurrent_gates=None) -> tuple[torch.Tensor, ...]:
        recurrent_gates = recurrent_gates or self.recurrent_gates
        shape = (1, -1, *([1] * (h.dim() - 2)))  # (1, n*C[, 1, 1])
        sign = self.gate_input_sign.view(shape)
        pre = sign * g_t + recurrent_gates(h) + self.gate_bias.view(shape)  # (B, n*C, ...)
        return pre.sigmoid().chunk(N_GATES[self.cell], dim=1)

    def step(
        self,
        u_t: torch.Tensor,
        g_t: torch.Tensor | None,
        h: torch.Tensor,
        c: torch.Tensor,
        maps: tuple | None = None,
    ):
        """One time step on (B, C, ...) tensors -> (h_t, c_t). `maps`: (U, U_gates) as `forward` applies
        them over a sequence (`SequenceMap`); None: the modules themselves."""
        recurrent, recurrent_gates = maps or (self.recurrent, self.recurrent_gates)
        if self.cell == "rnn":
            return self.act(u_t + recurrent(h)), c
        if self.cell == "gru":
            z, r = self._gates(g_t, h, recurrent_gates)
            cand = self.act(u_t + recurrent(r * h))
            return (1 - z) * h + z * cand, c
        i, f, o = self._gates(g_t, h, recurrent_gates)
        c = f * c + i * self.act(u_t + recurrent(h))
        return o * self.act(c), c

    def _gate_inputs(self, x: torch.Tensor, u_folded: torch.Tensor, n: int) -> torch.Tensor:
        """g_t for the n gates, (B*T, n*C, ...): u_t repeated (SIH) or BN(per-gate copy) (MIH)."""
        if self.gate_input is None:
            return torch.cat([u_folded] * n, 1)
        parts = self.gate_input(x).chunk(n, dim=1)  # n x (B*T, C, ...)
        return torch.cat([_same_norm(self.norm, part) for part in parts], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B*T, C_in[, H, W]) -> (B*T, C[, h, w]); h_0 = c_0 = 0 for every clip."""
        b, _ = self.unfold_size(x.shape[0])
        u_folded = self.norm(self.input(x))  # (B*T, C, ...)
        u = rearrange(u_folded, "(b t) ... -> b t ...", b=b)  # (B, T, C, ...)
        n = N_GATES[self.cell]
        g = None
        if n:
            g = self._gate_inputs(x, u_folded, n)  # (B*T, n*C, ...)
            g = rearrange(g, "(b t) ... -> b t ...", b=b)  # (B, T, n*C, ...)
        h = torch.zeros_like(u[:, 0])  # (B, C, ...)
        c = torch.zeros_like(h)
        # U's gradient in one product over the sequence, not one per step (vidrec.models.bptt)
        maps = (SequenceMap(self.recurrent), SequenceMap(self.recurrent_gates) if n else None)
        outs = []
        for t in range(u.shape[1]):
            h, c = self.step(u[:, t], None if g is None else g[:, t], h, c, maps)
            outs.append(h)
        return rearrange(torch.stack(outs, 1), "b t ... -> (b t) ...")  # (B*T, C, ...)


def _same_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`norm` (the u_t path's BatchNorm) applied to `x` without touching its running statistics.

    Training mode normalises with `x`'s batch statistics, eval mode with the running ones, exactly as
    `norm(x)` would, and the affine weights are the shared ones; only u_t's pass updates the statistics.
    """
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
        return norm(x)
    batch_stats = norm.training or not norm.track_running_stats
    return F.batch_norm(
        x, None if batch_stats else norm.running_mean, None if batch_stats else norm.running_var,
        norm.weight, norm.bias, batch_stats, 0.0, norm.eps,
    )  # fmt: skip


def _check_choice(field: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r}; choose from {sorted(allowed)}")


def _gate_copy(layer: nn.Module, n: int) -> nn.Module:
    """A layer with n*C outputs whose weights (and bias) are n copies of W_x (and b)."""
    new = copy.deepcopy(layer)
    new.weight = nn.Parameter(layer.weight.detach().repeat(n, *([1] * (layer.weight.dim() - 1))))
    if layer.bias is not None:
        new.bias = nn.Parameter(layer.bias.detach().repeat(n))
    if isinstance(new, nn.Linear):
        new.out_features *= n
    else:
        new.out_channels *= n
    return new


def _followers(model: nn.Module, name: str) -> tuple[nn.Module | None, nn.Module | None]:
    """Find (and detach from the model) the BN and activation that follow layer `name`.

    In an `nn.Sequential` the next siblings are inspected (BN, then ReLU/ReLU6) and replaced by
    Identity. In a torchvision ResNet block `convN` is followed by `bnN` (replaced by Identity) and, for
    all but the block's last conv, by the shared `relu`, which is left in place: ReLU is idempotent.
    """
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    norm = act = None
    if isinstance(parent, nn.Sequential):
        names = list(parent._modules)
        rest = names[names.index(leaf) + 1 :]
        if rest and isinstance(parent._modules[rest[0]], nn.modules.batchnorm._BatchNorm):
            norm, rest = parent._modules[rest[0]], rest[1:]
            parent._modules[names[names.index(leaf) + 1]] = nn.Identity()
        if rest and isinstance(parent._modules[rest[0]], IDEMPOTENT):
            act, parent._modules[rest[0]] = parent._modules[rest[0]], nn.Identity()
        return norm, act
    if leaf.startswith("conv") and leaf[4:].isdigit():
        k = int(leaf[4:])
        if isinstance(getattr(parent, f"bn{k}", None), nn.modules.batchnorm._BatchNorm):
            norm = getattr(parent, f"bn{k}")
            setattr(parent, f"bn{k}", nn.Identity())
        if hasattr(parent, f"conv{k + 1}") and isinstance(getattr(parent, "relu", None), IDEMPOTENT):
            act = nn.ReLU()
    return norm, act


def convert_to_recurrent(
    model: nn.Module,
    layer_name: str,
    *,
    cell: str = "rnn",
    input_weights: str = "shared",
    hidden_init: str = "zeros",
    kernel_size: int = 3,
    start: str = "trainable",
    gate_bias: float | None = None,
) -> RecurrentLayer:
    """Replace `model.<layer_name>` (an `nn.Linear` or `nn.Conv2d`) by a `RecurrentLayer`, in place.

    The model must then be called on time-folded frames `(B*T, C, H, W)` inside `num_steps(model, T)`
    (or wrapped in `PreRNN`, which does both). Returns the new layer.
    """
    layer = model.get_submodule(layer_name)
    if not isinstance(layer, nn.Linear | nn.Conv2d):
        raise TypeError(f"{layer_name} is a {type(layer).__name__}; PreRNN converts nn.Linear or nn.Conv2d")
    norm, act = _followers(model, layer_name)
    rec = RecurrentLayer(
        layer, norm=norm, activation=act, cell=cell, input_weights=input_weights,
        hidden_init=hidden_init, kernel_size=kernel_size, start=start, gate_bias=gate_bias,
    )  # fmt: skip
    set_submodule(model, layer_name, rec)
    return rec


class PreRNN(nn.Module):
    """A CNN with recurrent layer(s) run on clips: (B, T, C, H, W) -> per-step logits (B, T, K).

    Every non-recurrent layer runs on time folded into batch; only `RecurrentLayer`s step in time.
    """

    def __init__(
        self, *, net: nn.Module, num_classes: int, modality: str = "rgb", frozen: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        if not any(isinstance(m, RecurrentLayer) for m in net.modules()):
            raise ValueError("net has no RecurrentLayer; call convert_to_recurrent on it first")
        self.net, self.num_classes, self.modalities = net, num_classes, (modality,)
        self.frozen = tuple(frozen)  # names in `net` of the frozen trunk (no gradients, eval mode)
        for name in self.frozen:
            net.get_submodule(name).requires_grad_(False)
        self.prefix_cached = False  # True: inputs are `frozen_prefix`'s output (vidrec.engine.feature_cache)

    def _prefix_blocks(self) -> int:
        """How many leading blocks of ``net.features`` are frozen whole (0: none, or no ``features``)."""
        features, frozen = getattr(self.net, "features", None), set(self.frozen)
        if not isinstance(features, nn.Sequential):
            return 0
        for i, block in enumerate(features):
            leaves = [f"features.{i}.{n}".rstrip(".") for n, m in block.named_modules() if _is_leaf(m)]
            if not leaves or not all(name in frozen for name in leaves):
                return i
        return 0  # every block frozen: nothing recurrent left in `features`, not a trunk we can split

    def frozen_prefix(self) -> nn.Module | None:
        """The frozen trunk as a module, frames ``(N, C, H, W)`` -> maps ``(N, C', H', W')``: the leading
        blocks of ``net.features`` (torchvision's MobileNetV2, VGG, AlexNet) that are frozen whole; None
        when the trunk is not frozen."""
        k = self._prefix_blocks()
        return self.net.features[:k] if k else None

    def train(self, mode: bool = True) -> PreRNN:
        super().train(mode)
        for name in self.frozen:  # frozen BatchNorms keep their statistics
            self.net.get_submodule(name).eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``(B, T, C, H, W)`` (or, while `prefix_cached`, the frozen trunk's maps) -> ``(B, T, K)``."""
        b, t = x.shape[:2]
        with num_steps(self.net, t), self._after_prefix():
            logits = self.net(rearrange(x, "b t ... -> (b t) ..."))  # (B*T, K)
        return rearrange(logits, "(b t) k -> b t k", b=b)  # (B, T, K)

    @contextmanager
    def _after_prefix(self) -> Iterator[None]:
        """While `prefix_cached`: ``net.features`` without its frozen leading blocks (their output is the
        input), so the net's own forward runs the rest; restored after."""
        k = self._prefix_blocks() if self.prefix_cached else 0
        if not k:
            yield
            return
        features = self.net.features
        self.net.features = nn.Sequential(*list(features)[k:])
        try:
            yield
        finally:
            self.net.features = features


def _is_leaf(module: nn.Module) -> bool:
    return not any(True for _ in module.children())


def trunk_before(net: nn.Module, layer: str) -> tuple[str, ...]:
    """Names of the leaf modules of `net` registered before `layer` (the trunk feeding it).

    Registration order is the forward order in torchvision's VGG, AlexNet, MobileNetV2 and ResNet.
    """
    names = []
    for name, module in net.named_modules():
        if name == layer or name.startswith(layer + "."):
            return tuple(names)
        if name and not any(True for _ in module.children()):
            names.append(name)
    raise ValueError(f"layer {layer!r} is not in the network")


def refresh_(rec: RecurrentLayer, *, init: str = "pytorch") -> RecurrentLayer:
    """Make `rec` a fresh recurrent layer of the same shape (the traditional-RNN baseline), in place.

    init "pytorch": every map (input, per-gate inputs, hidden-to-hidden) and the BatchNorm get PyTorch's
    default initialisation, the gate biases 0. init "lrcn": weights U(-0.01, 0.01) and biases 0 (LRCN's
    release). Nothing pre-trained is left in the layer; the shape and the equations are PreRNN's.
    """
    _check_choice("init", init, ("pytorch", "lrcn"))
    with torch.no_grad():
        for module in (rec.input, rec.gate_input, rec.recurrent, rec.recurrent_gates):
            if module is None:
                continue
            module.reset_parameters()
            if init == "lrcn":
                module.weight.uniform_(-0.01, 0.01)
                if module.bias is not None:
                    module.bias.zero_()
        if hasattr(rec.norm, "reset_parameters"):
            rec.norm.reset_parameters()  # the pre-trained statistics belong to the old weights
        if hasattr(rec, "gate_bias"):
            rec.gate_bias.zero_()
    return rec


def _in_chans(modality: str, flow_length: int) -> int:
    _check_choice("modality", modality, ("rgb", "flow"))
    return 3 if modality == "rgb" else 2 * flow_length


class PreRNNOptions(TypedDict, total=False):
    """Options shared by the `prernn_*` builders (see `RecurrentLayer`)."""

    input_weights: str  # "shared" (SIH) | "per_gate" (MIH)
    hidden_init: str  # "zeros" | "identity" | "small"
    kernel_size: int  # of conv hidden-to-hidden maps
    start: str  # "trainable" (default: gates learn) | "exact" (saturated gates: the CNN bit for bit)
    gate_bias: float  # gate bias magnitude (default: 4 trainable, 1e4 exact)
    modality: str  # "rgb" | "flow"
    flow_length: int  # L: a flow input has 2L channels
    freeze_trunk: bool  # no gradients (and eval-mode BN) for the layers before the recurrent one


def build_prernn(
    arch: str,
    layer: str,
    cell: str,
    *,
    num_classes: int,
    pretrained: bool | str,
    modality: str = "rgb",
    flow_length: int = 10,
    freeze_trunk: bool = False,
    fresh: str | None = None,
    **convert,
) -> PreRNN:
    """Backbone (ImageNet head replaced by `num_classes`) with `layer` made recurrent.

    `fresh` ("pytorch" / "lrcn") re-initialises the recurrent layer (`refresh_`): the traditional-RNN
    baseline of the same width at the same place; `freeze_trunk` freezes every layer before it.
    """
    in_chans = _in_chans(modality, flow_length)
    backbone = Backbone(arch, pretrained=pretrained, in_chans=in_chans, num_classes=num_classes)
    rec = convert_to_recurrent(backbone.net, layer, cell=cell, **convert)
    if fresh is not None:
        refresh_(rec, init=fresh)
    frozen = trunk_before(backbone.net, layer) if freeze_trunk else ()
    return PreRNN(net=backbone.net, num_classes=num_classes, modality=modality, frozen=frozen)


def build_rnn_baseline(
    arch: str,
    layer: str,
    cell: str,
    *,
    num_classes: int,
    pretrained: bool | str,
    init: str = "pytorch",
    freeze_trunk: bool = False,
    modality: str = "rgb",
    flow_length: int = 10,
    kernel_size: int = 3,
) -> PreRNN:
    """The "traditional RNN" baseline of PreRNN, like for like: the same (pre-trained) backbone with a
    FRESH RNN/GRU/LSTM of the replaced layer's width at `layer` (any registered arch, any Linear/Conv2d).

    Same equations, place, width and downstream layers as `build_prernn`; only the recurrent layer's
    initialisation differs: `init="pytorch"` (PyTorch's defaults, gate biases 0; the PreRNN paper's
    baseline init was not retrieved) or "lrcn" (U(-0.01, 0.01), biases 0). Gates read separate fresh
    input weights (as nn.GRU/nn.LSTM do). `freeze_trunk=True` trains only the RNN and the layers after it.
    """
    return build_prernn(
        arch, layer, cell, num_classes=num_classes, pretrained=pretrained, modality=modality,
        flow_length=flow_length, freeze_trunk=freeze_trunk, fresh=init, kernel_size=kernel_size,
        input_weights="shared" if cell == "rnn" else "per_gate", hidden_init="pytorch",
    )  # fmt: skip


_PRERNN_INPUT = {"rgb": (16, 3, 224, 224)}  # sequence length not in the retrieved sources: our default


@register_model(input_shapes=_PRERNN_INPUT)
def prernn_gru_fc_vgg16(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    layer: str = "classifier.0",
    **options: Unpack[PreRNNOptions],
) -> PreRNN:
    """PreRNN (Yang et al., CVPR'18), GRU at VGG-16 fc6 (`classifier.3`: fc7); logits (B, T, K)."""
    return build_prernn("vgg16", layer, "gru", num_classes=num_classes, pretrained=pretrained, **options)


@register_model(input_shapes=_PRERNN_INPUT)
def prernn_lstm_fc_vgg16(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    layer: str = "classifier.0",
    **options: Unpack[PreRNNOptions],
) -> PreRNN:
    """PreRNN (Yang et al., CVPR'18), LSTM at VGG-16 fc6 (`classifier.3`: fc7); logits (B, T, K)."""
    return build_prernn("vgg16", layer, "lstm", num_classes=num_classes, pretrained=pretrained, **options)


@register_model(input_shapes=_PRERNN_INPUT)
def prernn_rnn_conv_mobilenet_v2(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    layer: str = "features.18.0",
    **options: Unpack[PreRNNOptions],
) -> PreRNN:
    """PreRNN (Yang et al., CVPR'18), vanilla RNN at MobileNetV2's last conv (1x1, BN, ReLU6)."""
    return build_prernn(
        "mobilenet_v2", layer, "rnn", num_classes=num_classes, pretrained=pretrained, **options
    )


@register_model(input_shapes=_PRERNN_INPUT)
def prernn_lstm_conv_mobilenet_v2(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    layer: str = "features.18.0",
    **options: Unpack[PreRNNOptions],
) -> PreRNN:
    """PreRNN (Yang et al., CVPR'18), conv LSTM at MobileNetV2's last conv (1x1, BN, ReLU6)."""
    return build_prernn(
        "mobilenet_v2", layer, "lstm", num_classes=num_classes, pretrained=pretrained, **options
    )


@register_model(input_shapes=_PRERNN_INPUT)
def prernn_gru_conv_resnet18(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    layer: str = "layer4.1.conv1",
    **options: Unpack[PreRNNOptions],
) -> PreRNN:
    """PreRNN (Yang et al., CVPR'18), conv GRU at ResNet-18's last-stage conv (layer4.1.conv1, bn1, ReLU)."""
    return build_prernn("resnet18", layer, "gru", num_classes=num_classes, pretrained=pretrained, **options)


@register_model(input_shapes=_PRERNN_INPUT)
def rnn_baseline_mobilenet_v2(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    cell: str = "lstm",
    hidden_size: int = 512,
    num_layers: int = 1,
    freeze_backbone: bool = True,
    dropout: float = 0.5,
    modality: str = "rgb",
    flow_length: int = 10,
) -> LRCN:
    """An LRCN-style RNN baseline: a fresh RNN/GRU/LSTM (PyTorch's default init) on frozen (or tuned)
    pooled MobileNetV2 features; per-step logits (B, T, K). The like-for-like baseline of a PreRNN model
    (same layer, same width) is `build_rnn_baseline` / the `rnn_baseline_{fc,conv}_*` builders."""
    rnn_cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
    _check_choice("cell", cell, rnn_cls)
    backbone = Backbone(
        "mobilenet_v2", pretrained=pretrained, in_chans=_in_chans(modality, flow_length), num_classes=0
    )
    rnn = rnn_cls[cell](backbone.feature_dim, hidden_size, num_layers=num_layers, batch_first=True)
    return LRCN(
        encoder=FeatureEncoder(backbone), rnn=rnn, head=nn.Linear(hidden_size, num_classes),
        modality=modality, dropout=dropout, freeze_encoder=freeze_backbone,
    )  # fmt: skip


@register_model(input_shapes=_PRERNN_INPUT)
def rnn_baseline_fc_vgg16(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    cell: str = "lstm",
    layer: str = "classifier.0",
    init: str = "pytorch",
    freeze_trunk: bool = False,
) -> PreRNN:
    """Traditional-RNN baseline for `prernn_*_fc_vgg16`: a fresh RNN/GRU/LSTM of 4096 units at fc6."""
    return build_rnn_baseline(
        "vgg16", layer, cell, num_classes=num_classes, pretrained=pretrained, init=init,
        freeze_trunk=freeze_trunk,
    )  # fmt: skip


@register_model(input_shapes=_PRERNN_INPUT)
def rnn_baseline_conv_mobilenet_v2(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    cell: str = "lstm",
    layer: str = "features.18.0",
    init: str = "pytorch",
    freeze_trunk: bool = False,
    kernel_size: int = 3,
) -> PreRNN:
    """Traditional-RNN baseline for `prernn_*_conv_mobilenet_v2`: a fresh conv RNN/GRU/LSTM, last conv."""
    return build_rnn_baseline(
        "mobilenet_v2", layer, cell, num_classes=num_classes, pretrained=pretrained, init=init,
        freeze_trunk=freeze_trunk, kernel_size=kernel_size,
    )  # fmt: skip


@register_model(input_shapes=_PRERNN_INPUT)
def rnn_baseline_conv_resnet18(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    cell: str = "gru",
    layer: str = "layer4.1.conv1",
    init: str = "pytorch",
    freeze_trunk: bool = False,
) -> PreRNN:
    """Traditional-RNN baseline for `prernn_gru_conv_resnet18`: a fresh conv GRU at layer4.1.conv1."""
    return build_rnn_baseline(
        "resnet18", layer, cell, num_classes=num_classes, pretrained=pretrained, init=init,
        freeze_trunk=freeze_trunk,
    )  # fmt: skip


@register_model(input_shapes=_PRERNN_INPUT)
def prernn_gru_conv_mobilenet_v2(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    layer: str = "features.18.0",
    **options: Unpack[PreRNNOptions],
) -> PreRNN:
    """PreRNN (Yang et al., CVPR'18), conv GRU at MobileNetV2's last conv (1x1, BN, ReLU6)."""
    return build_prernn(
        "mobilenet_v2", layer, "gru", num_classes=num_classes, pretrained=pretrained, **options
    )


def pooled_last_layer(net: nn.Module) -> str:
    """Make torchvision MobileNetV2's last conv block (1x1 conv 320->1280, BN, ReLU6) a fully connected
    layer on globally pooled features, in place; returns the new Linear's name (``features.18.2``).

    ``features.18`` becomes pool -> flatten -> Linear (the conv's weights) -> BatchNorm1d (its BN) ->
    ReLU6 -> a 1x1 map, so the classifier reads it unchanged. Pooling before the layer instead of after
    it changes the output only through ReLU6 (the conv and BN are affine and commute with the mean).
    """
    block = net.features[18]
    conv, bn, act = block[0], block[1], block[2]
    linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
    norm = nn.BatchNorm1d(bn.num_features, eps=bn.eps, momentum=bn.momentum)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))  # (1280, 320)
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    norm.load_state_dict(bn.state_dict())
    net.features[18] = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), linear, norm, act, nn.Unflatten(1, (conv.out_channels, 1, 1))
    )
    return "features.18.2"


@register_model(input_shapes=_PRERNN_INPUT)
def prernn_fc_mobilenet_v2(
    *,
    num_classes: int,
    pretrained: bool | str = False,
    cell: str = "lstm",
    fresh: str | None = None,
    **options: Unpack[PreRNNOptions],
) -> PreRNN:
    """PreRNN's FC variant on MobileNetV2: its last layer (the 1x1 conv 320->1280 + BN + ReLU6) applied
    as a fully connected layer to the pooled features (`pooled_last_layer`) and made an RNN/GRU/LSTM
    (`cell`) with 1280x1280 hidden-to-hidden maps. `fresh` ("pytorch" / "lrcn") re-initialises that
    layer: the like-for-like traditional RNN. Per-step logits (B, T, K)."""
    modality = options.pop("modality", "rgb")
    flow_length = options.pop("flow_length", 10)
    freeze_trunk = options.pop("freeze_trunk", False)
    backbone = Backbone(
        "mobilenet_v2",
        pretrained=pretrained,
        in_chans=_in_chans(modality, flow_length),
        num_classes=num_classes,
    )
    layer = pooled_last_layer(backbone.net)
    if fresh is not None:
        options = {"input_weights": "shared" if cell == "rnn" else "per_gate", "hidden_init": "pytorch"}
    rec = convert_to_recurrent(backbone.net, layer, cell=cell, **options)
    if fresh is not None:
        refresh_(rec, init=fresh)
    frozen = trunk_before(backbone.net, layer) if freeze_trunk else ()
    return PreRNN(net=backbone.net, num_classes=num_classes, modality=modality, frozen=frozen)
