"""Activation maximisation (methods.md 5.4): the objective rises and never decreases at a small step, a
linear unit's optimum is its filter direction, priors along real time, zero gradient below fusion,
determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from viz_tiny import tiny_two_stream

from vidrec.models import get_model
from vidrec.visualize.maximize import (
    MaximizeConfig,
    Regularizer,
    high_frequency_fraction,
    input_gradients,
    maximize,
    tv_space,
    tv_time,
)
from vidrec.visualize.units import Unit

SHAPES = {"rgb": (4, 3, 16, 16), "flow": (4, 4, 16, 16)}


LIGHT = {m: Regularizer(tv_space=0.5) for m in SHAPES}  # the default 100 suits trained nets, not these
OFF = {m: Regularizer(norm=0.0, tv_space=0.0, tv_time=0.0) for m in SHAPES}  # no regulariser at all


def _run(model, unit, *, steps=25, seed=0, prior="fast", optimize=None, **kw):
    kw.setdefault("regularizers", LIGHT)  # tv_time None: set by the prior
    config = MaximizeConfig(steps=steps, prior=prior, **kw)
    return maximize(
        model, unit, shapes=SHAPES, config=config, optimize=optimize, seed=seed, device="cpu", progress=False
    )


def test_objective_rises_for_a_fixed_unit():
    model = tiny_two_stream()
    for unit in (Unit(layer="rgb.conv2", channel=3), Unit(channel=1), Unit(layer="flow.conv1", channel=0)):
        # 25 steps: a larger step than the 200-step default's; the tiny random flow stream needs inputs of a
        # few units to move its fused logit (trained ones take flow on RGB's scale, SCALES["flow"])
        result = _run(model, unit, lr=0.2, scales={"flow": 5.0})
        assert result.objective[-1] > result.objective[0] + 1.0, unit
        assert len(result.objective) == 26 and result.rho > 0


class LinearUnits(nn.Module):
    """Three linear units on a whole RGB clip: logit k = <w_k, x> + b_k."""

    modalities = ("rgb",)

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(int(torch.tensor(shape).prod()), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))  # (B, 3)


def test_linear_unit_recovers_its_filter_direction():
    """methods.md 5.4.4: without regularisers (and without jitter, which rolls the filter), the optimum of
    a linear unit points along its filter w. Adam, per coordinate, goes along sign(w) instead."""
    shape = (2, 3, 8, 8)
    model = LinearUnits(shape)
    w = model.fc.weight[1].detach()

    def cosines(optimizer: str, steps: int) -> tuple[float, float]:
        config = MaximizeConfig(steps=steps, lr=0.5, optimizer=optimizer, jitter=0, regularizers=OFF)
        x = maximize(
            model, Unit(channel=1), shapes={"rgb": shape}, config=config, device="cpu", progress=False
        )
        x = x.inputs["rgb"].flatten()
        return float(F.cosine_similarity(x, w, dim=0)), float(F.cosine_similarity(x, w.sign(), dim=0))

    for steps in (50, 200):
        along_w, _ = cosines("ascent", steps)
        assert along_w > 0.999, (steps, along_w)  # from noise of 0.1 s; 50 steps move >= 5 s (RMS)
    adam_w, adam_sign = cosines("adam", 200)
    assert adam_w < 0.95 and adam_sign > 0.99  # why the default is not Adam


def test_objective_never_decreases_at_a_small_step():
    """methods.md 5.4.1: at a small step the objective a/rho never decreases (no regulariser, no jitter),
    and with regularisers the minimised loss never increases (without jitter both are measured on the
    input that is optimised). Every step, not just the net rise."""
    model = tiny_two_stream()
    for unit in (Unit(channel=1), Unit(layer="flow.conv2", channel=5), Unit(layer="rgb.conv1", channel=2)):
        free = _run(model, unit, steps=30, lr=0.002, jitter=0, regularizers=OFF)
        rises = torch.diff(torch.tensor(free.objective, dtype=torch.float64))
        assert torch.all(rises >= 0), (unit, rises.min())
        assert free.objective[-1] > free.objective[0], unit
        reg = _run(model, unit, steps=30, lr=0.002, jitter=0)  # LIGHT regularisers, slow prior off (fast)
        falls = torch.diff(torch.tensor(reg.loss, dtype=torch.float64))
        assert torch.all(falls <= 0), (unit, falls.max())


def test_optimizer_choice_is_checked():
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        MaximizeConfig(optimizer="sgd")


def test_slow_prior_gives_lower_temporal_variation_than_fast():
    model = tiny_two_stream()
    unit = Unit(layer="flow.conv2", channel=5)
    slow = _run(model, unit, prior="slow", steps=40)
    fast = _run(model, unit, prior="fast", steps=40)
    for m in ("rgb", "flow"):
        x_slow, x_fast = slow.inputs[m][None], fast.inputs[m][None]
        assert tv_time(x_slow, m) < 0.5 * tv_time(x_fast, m), m
    # along the clip's 4 steps: the stacks' L = 2 fields give only the 0 and Nyquist bins
    assert high_frequency_fraction(slow.inputs["flow"], "flow", over="steps") < high_frequency_fraction(
        fast.inputs["flow"], "flow", over="steps"
    )


def test_regularisers_vanish_on_constant_inputs():
    const_space = torch.full((1, 3, 4, 8, 8), 0.7)
    assert float(tv_space(const_space)) == 0.0
    ramp_in_time = torch.arange(3.0)[None, :, None, None, None].expand(1, 3, 4, 8, 8)
    assert float(tv_space(ramp_in_time)) == 0.0 and float(tv_time(ramp_in_time)) > 0
    const_time = torch.randn(1, 1, 4, 8, 8).expand(1, 3, 4, 8, 8)
    assert float(tv_time(const_time, "rgb")) == 0.0 and float(tv_space(const_time)) > 0
    # a flow stack's time runs over its L fields: x/y pairs repeated over the channels is constant
    flow = torch.randn(1, 1, 2, 8, 8).repeat(1, 2, 3, 1, 1)  # (1, T=2, 2L=6, 8, 8)
    assert float(tv_time(flow, "flow")) == 0.0


def test_flow_temporal_variation_runs_along_real_time():
    """Stacks are tau apart: fields of a stack are compared with their neighbours (1 frame), stacks field
    by field (one clip step, as RGB); the last field of a stack is never compared with the next's first."""
    ramp = torch.arange(3.0).repeat_interleave(2)[None, None, :, None, None]  # fields 0, 1, 2 (x = y)
    flow = ramp.expand(1, 4, 6, 8, 8)  # (1, T=4, 2L=6, 8, 8): every stack the same ramp
    assert float(tv_time(flow, "flow")) == 1.0  # within: steps of 1; between stacks: 0; not the 2 -> 0 jump
    steps = torch.arange(4.0)[None, :, None, None, None].expand(1, 4, 6, 8, 8)  # stack t: all fields = t
    assert float(tv_time(steps, "flow")) == 1.0  # constant within a stack, +1 per clip step
    assert float(tv_time(steps, "flow")) == float(tv_time(steps[:, :, :3], "rgb"))  # the same pairs as RGB


def test_zero_gradient_into_the_other_stream_below_fusion():
    model = tiny_two_stream()
    x = {m: torch.randn(2, *s) for m, s in SHAPES.items()}
    below = input_gradients(model, Unit(layer="flow.conv2", channel=2), x)
    assert torch.count_nonzero(below["rgb"]) == 0  # exactly zero, not small
    assert torch.count_nonzero(below["flow"]) > 0
    rgb_unit = input_gradients(model, Unit(layer="rgb.conv1", channel=1), x)
    assert torch.count_nonzero(rgb_unit["flow"]) == 0 and torch.count_nonzero(rgb_unit["rgb"]) > 0
    fused = input_gradients(model, Unit(channel=0), x)  # the fused logit sits above the fusion point
    assert torch.count_nonzero(fused["rgb"]) > 0 and torch.count_nonzero(fused["flow"]) > 0


def test_st_resnet_motion_units_send_nothing_to_rgb_but_appearance_units_reach_flow():
    torch.manual_seed(0)
    model = get_model("st_resnet50", num_classes=3, flow_length=1)
    x = {"rgb": torch.randn(1, 2, 3, 32, 32), "flow": torch.randn(1, 2, 2, 32, 32)}
    motion = input_gradients(model, Unit(layer="motion.net.layer2.0", channel=5), x)
    assert torch.count_nonzero(motion["rgb"]) == 0 and torch.count_nonzero(motion["flow"]) > 0
    stem = input_gradients(model, Unit(layer="appearance.net.conv1", channel=5), x)  # below res2a
    assert torch.count_nonzero(stem["flow"]) == 0
    fused = input_gradients(model, Unit(layer="appearance.net.layer2.1", channel=5), x)  # above res2a
    assert torch.count_nonzero(fused["flow"]) > 0 and torch.count_nonzero(fused["rgb"]) > 0


def test_deterministic_under_a_seed():
    model = tiny_two_stream()
    unit = Unit(layer="rgb.conv2", channel=1, position=(2, 3))
    a, b = _run(model, unit, seed=7), _run(model, unit, seed=7)
    c = _run(model, unit, seed=8)
    assert a.objective == b.objective
    assert all(torch.equal(a.inputs[m], b.inputs[m]) for m in SHAPES)
    assert not torch.equal(a.inputs["rgb"], c.inputs["rgb"])


def test_only_the_chosen_modality_is_optimised_and_weights_apply():
    model = tiny_two_stream()
    result = _run(model, Unit(channel=2), optimize=("flow",))
    assert torch.count_nonzero(result.inputs["rgb"]) == 0 and torch.count_nonzero(result.inputs["flow"]) > 0
    # alpha = 2: these inputs stay below their scale (|x/s| < 1), where an alpha = 6 norm is negligible
    heavy = MaximizeConfig(
        steps=25, regularizers={**LIGHT, "flow": Regularizer(norm=50.0, alpha=2.0, tv_space=0.5)}
    )
    light = MaximizeConfig(
        steps=25, regularizers={**LIGHT, "flow": Regularizer(norm=0.0, alpha=2.0, tv_space=0.5)}
    )
    shapes = {"rgb": SHAPES["rgb"], "flow": SHAPES["flow"]}
    x_heavy = maximize(model, Unit(channel=2), shapes=shapes, config=heavy, progress=False).inputs["flow"]
    x_light = maximize(model, Unit(channel=2), shapes=shapes, config=light, progress=False).inputs["flow"]
    assert x_heavy.abs().max() < x_light.abs().max()


def test_bad_units_and_shapes_are_clear_errors():
    model = tiny_two_stream()
    with pytest.raises(ValueError, match="no layer 'rgb.nope'"):
        _run(model, Unit(layer="rgb.nope"), steps=1)
    with pytest.raises(ValueError, match="8 channels"):
        _run(model, Unit(layer="rgb.conv1", channel=8), steps=1)
    with pytest.raises(ValueError, match="exactly the model's inputs"):
        maximize(model, Unit(), shapes={"rgb": SHAPES["rgb"]}, progress=False)
    with pytest.raises(ValueError, match="prior"):
        MaximizeConfig(prior="medium")


@pytest.mark.parametrize(
    ("name", "kwargs", "shapes", "units"),
    [
        ("two_stream_mobilenet_v2", {"flow_length": 2}, {"rgb": (1, 3, 32, 32), "flow": (1, 4, 32, 32)},
         [Unit(layer="flow.backbone.net.features.4", channel=1), Unit(layer="rgb.backbone.net.features.3")]),
        ("lrcn_resnet18", {}, {"rgb": (3, 3, 32, 32)}, [Unit(layer="rnn", channel=1), Unit(channel=2)]),
    ],
)  # fmt: skip
def test_registered_models_of_every_output_layout(name, kwargs, shapes, units):
    torch.manual_seed(0)
    model = get_model(name, num_classes=3, **kwargs)  # random weights: per-step LSTM and dict outputs
    for unit in units:
        result = maximize(
            model, unit, shapes=shapes, config=MaximizeConfig(steps=4, jitter=0), progress=False
        )
        assert {m: tuple(v.shape) for m, v in result.inputs.items()} == shapes
        assert result.objective[-1] > result.objective[0]
