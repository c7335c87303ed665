"""Space-time activation maximisation (Feichtenhofer, Pinz, Wildes, Zisserman: "What have we learned in
deep representations for action recognition?", CVPR'18 / "Deep Insights", IJCV'19).

From noise, gradient ascent on the model's input(s) x = (x^a, x^m) maximises

    a_unit(x) / rho  -  sum_m R_m(x^m),
    R(x) = l_alpha * mean|x/s|^alpha + l_s * TV_s(x/s) + l_t * TV_t(x/s)

(Mahendran & Vedaldi's natural pre-image regulariser plus a temporal term). `s` is the modality's
value scale (its typical |value| as the model takes it: RGB ImageNet-normalised, flow on RGB's scale,
`vidrec.data.transforms.NORMALIZATION`), rho the layer's mean |activation| at the start.
TV_s = mean over (t, i, j) of ((dx)^2 + (dy)^2)^(beta/2); TV_t = mean of (x_{t+1} - x_t)^2 along real
time (`tv_time`: for a flow stack within its L consecutive fields, and between stacks field by field).
The "slow" prior (large l_t) asks for temporally smooth inputs, "fast" (l_t = 0) allows rapid change;
a unit whose optimum stays the same under both is speed invariant. Jitter rolls the input by a random
shift every step (the same shift for every modality, so the streams stay registered). A modality not
being optimised is held at zero (the mean image / no motion). Runs are deterministic under `seed`.

Optimiser (`MaximizeConfig.optimizer`): "ascent" (default, the papers' gradient ascent) steps along the
gradient with respect to z = x / s, scaled per input so that its largest value moves by the step size,
which decays linearly from `lr` to 0 over the run. Each step keeps the gradient's direction, so without
regularisers a linear unit's optimum points along its filter w, and at a small step the objective never
decreases (methods.md 5.4.1, 5.4.4). "adam" normalises each coordinate by its own gradient history, which
bends the direction towards sign(w) (cos(x, w) = 0.87 for a random linear unit at any number of steps);
it stays available as an option.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
from einops import rearrange

from vidrec.progress import progress as progress_bar
from vidrec.visualize.units import Unit, as_model_units, model_modalities, unit_value

# typical |value| of each modality's model input (flow: 5 px / FLOW_PX_SCALE, vidrec.data.transforms)
SCALES = {"rgb": 2.5, "flow": 0.55, "flow3": 1.0}
PRIORS = {"slow": 100.0, "fast": 0.0}  # lambda_t of the temporal priors
OPTIMIZERS = ("ascent", "adam")


@dataclass(frozen=True)
class Regularizer:
    """One modality's regulariser weights (all terms are means, so they do not grow with the size)."""

    norm: float = 0.05  # lambda_alpha, weight of mean |x/s|^alpha
    alpha: float = 6.0
    tv_space: float = 100.0  # lambda_s
    beta: float = 2.0
    tv_time: float | None = None  # lambda_t; None: taken from the prior


@dataclass(frozen=True)
class MaximizeConfig:
    """Optimisation settings of `maximize`.

    Attributes:
        steps: optimisation steps.
        lr: step size in units of each modality's scale `s` (ascent: the largest change of a value in the
            first step, decaying linearly to 0 by the last).
        optimizer: "ascent" (gradient ascent with a normalised step; keeps the gradient's direction) or
            "adam" (per-coordinate steps; its optimum of a linear unit points along sign(w), not w).
        prior: "slow" or "fast": the temporal-variation weight used where a Regularizer leaves it None.
        jitter: largest random shift in pixels per step (0: off).
        init_std: standard deviation of the starting noise, in units of `s`.
        regularizers: per-modality weights; missing modalities use `Regularizer()`.
        modality_weights: multiplies each modality's whole regulariser (e.g. `{"flow": 2.0}`).
        scales: per-modality value scale `s`; missing ones use `SCALES`.
    """

    steps: int = 200
    lr: float = 0.05
    optimizer: str = "ascent"
    prior: str = "slow"
    jitter: int = 2
    init_std: float = 0.1
    regularizers: dict[str, Regularizer] = field(default_factory=dict)
    modality_weights: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"prior={self.prior!r}; choose from {sorted(PRIORS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; choose from {list(OPTIMIZERS)}")
        if self.steps < 0 or self.lr <= 0 or self.jitter < 0 or self.init_std < 0:
            raise ValueError("steps, jitter and init_std must be >= 0 and lr > 0")

    def regularizer(self, modality: str) -> Regularizer:
        reg = self.regularizers.get(modality, Regularizer())
        return reg if reg.tv_time is not None else replace(reg, tv_time=PRIORS[self.prior])

    def scale(self, modality: str) -> float:
        return self.scales.get(modality, SCALES.get(modality, 1.0))


@dataclass
class MaxResult:
    """Optimised inputs `{modality: (T, C, H, W)}` (model units, CPU) and the objective per step."""

    inputs: dict[str, torch.Tensor]
    objective: list[float]  # a/rho before each step, and after the last one
    loss: list[float]  # the minimised loss (-objective + regularisers) before each step
    rho: float
    unit: Unit


# ----------------------------------------------------------------------------- regularisers


def flow_fields(x: torch.Tensor) -> torch.Tensor:
    """A flow input `(B, T, 2L, H, W)` -> `(B, T, L, 2, H, W)`: stack t's field l (x/y interleaved)."""
    return rearrange(x, "b t (l xy) h w -> b t l xy h w", xy=2)


def norm_alpha(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """mean |x|^alpha: keeps values in range."""
    return x.abs().pow(alpha).mean()


def tv_space(x: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Spatial total variation of `(..., H, W)`: mean of ((dx)^2 + (dy)^2)^(beta/2); 0 on constant images."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2)).pow(beta / 2).mean()


def _mean_sq_step(x: torch.Tensor, dim: int) -> torch.Tensor:
    """mean of (x_{k+1} - x_k)^2 along `dim`; 0 when it has fewer than 2 entries."""
    if x.shape[dim] < 2:
        return x.new_zeros(())
    return torch.diff(x, dim=dim).pow(2).mean()


def tv_time(x: torch.Tensor, modality: str = "rgb") -> torch.Tensor:
    """Temporal variation of `(B, T, C, H, W)` along real time; 0 on inputs constant in time.

    RGB (and flow3): mean of (x_{t+1} - x_t)^2 over the clip's steps. A flow input is T stacks of L
    fields: the fields of a stack are consecutive frames, but the stacks are one clip step (tau frames)
    apart, so joining them into T*L "steps" would difference the last field of one stack against the
    first of the next as if they were one frame apart (tau is not known here; with tau < L stacks even
    overlap). So flow gets two terms: the mean of (f_{t,l+1} - f_{t,l})^2 within each stack (1 frame
    apart) plus the mean of (f_{t+1,l} - f_{t,l})^2 between stacks field by field (one clip step apart,
    exactly the pairs RGB's term compares).
    """
    if modality != "flow":
        return _mean_sq_step(x, 1)
    fields = flow_fields(x)  # (B, T, L, 2, H, W)
    return _mean_sq_step(fields, 2) + _mean_sq_step(fields, 1)


def regularize(x: torch.Tensor, modality: str, reg: Regularizer, scale: float) -> torch.Tensor:
    """R(x) for one modality's input `(B, T, C, H, W)` in model units."""
    z = x / scale
    total = reg.norm * norm_alpha(z, reg.alpha) + reg.tv_space * tv_space(z, reg.beta)
    return total + (reg.tv_time or 0.0) * tv_time(z, modality)


def temporal_spectrum(
    x: torch.Tensor, modality: str = "rgb", over: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(frequencies in cycles per step `(F,)`, power `(F,)`): the DFT along time of `(T, C, H, W)` or
    `(B, T, C, H, W)`, averaged over the other axes (bin 0 is the mean).

    A DFT needs evenly spaced samples, so a flow input (T stacks of L fields, `tv_time`) is transformed
    `over` "fields" (a stack's L consecutive fields, 1 frame apart, averaged over the stacks) or "steps"
    (the clip's T steps, field by field, as RGB); "auto": fields when L > 1, else steps. RGB: steps.
    """
    if over not in ("auto", "fields", "steps"):
        raise ValueError(f"over={over!r}; choose from 'auto', 'fields', 'steps'")
    x = (x[None] if x.dim() == 4 else x).double()
    if modality == "flow" and (over == "fields" or (over == "auto" and x.shape[2] > 2)):
        seq = rearrange(flow_fields(x), "b t l xy h w -> (b t) l xy h w")  # (B*T, L, 2, H, W)
    else:
        seq = x  # (B, T, C, H, W); flow field by field: its channels are the fields
    power = torch.fft.rfft(seq, dim=1).abs().pow(2).mean(dim=(0, 2, 3, 4))  # (n//2+1,)
    return torch.fft.rfftfreq(seq.shape[1]), power


def changing_energy_fraction(x: torch.Tensor, modality: str = "rgb", over: str = "auto") -> float:
    """The share of the input's energy at non-zero temporal frequencies (0: constant in time)."""
    _, power = temporal_spectrum(x, modality, over)
    return float(power[1:].sum() / power.sum().clamp_min(1e-30))


def high_frequency_fraction(
    x: torch.Tensor, modality: str = "rgb", cutoff: float = 0.25, over: str = "auto"
) -> float:
    """Of the energy that changes over time, the share above `cutoff` cycles per step (0.5 = Nyquist)."""
    freqs, power = temporal_spectrum(x, modality, over)
    moving = power[1:].sum().clamp_min(1e-30)
    return float(power[freqs > cutoff].sum() / moving)


# ----------------------------------------------------------------------------- optimisation


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode with no parameter gradients for the block; restored afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" -> cuda when available, else cpu."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _jitter(x: dict[str, torch.Tensor], shift: tuple[int, int]) -> dict[str, torch.Tensor]:
    if shift == (0, 0):
        return x
    return {m: torch.roll(v, shifts=shift, dims=(-2, -1)) for m, v in x.items()}


def _start(shapes, optimize, config: MaximizeConfig, gen: torch.Generator, device) -> dict[str, torch.Tensor]:
    x = {}
    for m, shape in shapes.items():
        noise = torch.randn((1, *shape), generator=gen) * config.init_std * config.scale(m)
        x[m] = (noise if m in optimize else torch.zeros_like(noise)).to(device)  # (1, T, C, H, W)
        x[m].requires_grad_(m in optimize)
    return x


def _grad(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x) if x.grad is None else x.grad  # None: no path from x to the loss


def _ascent_step(
    x: dict[str, torch.Tensor], optimize: tuple[str, ...], lr: float, config: MaximizeConfig
) -> None:
    """One normalised gradient step on the loss, per input, in z = x / s: z -= lr * g_z / max|g_z|.

    Dividing by a scalar keeps the gradient's direction. The max norm bounds every value's change by `lr`
    (in units of s); an RMS norm would put the whole step into the few values a sharp term (the
    alpha-norm's z^5) singles out, which then jump by lr * sqrt(N) and blow up. Each input is normalised
    on its own (a positive per-input scale, so still an ascent direction) so that RGB and flow both move,
    as under Adam. A normalised step keeps its size near an optimum, so `maximize` decays `lr` to 0.
    """
    with torch.no_grad():
        for m in optimize:
            g_z = _grad(x[m]) * config.scale(m)  # dz = dx / s, so d loss / dz = s * d loss / dx
            x[m].grad = None
            peak = g_z.abs().max()
            if peak > 0:  # 0: a flat point, nothing to follow
                x[m].sub_(lr * config.scale(m) * g_z / peak)


def _total_reg(x: dict[str, torch.Tensor], optimize: tuple[str, ...], config: MaximizeConfig) -> torch.Tensor:
    terms = [
        config.modality_weights.get(m, 1.0) * regularize(x[m], m, config.regularizer(m), config.scale(m))
        for m in optimize
    ]
    return torch.stack(terms).sum()


def maximize(
    model: nn.Module,
    unit: Unit,
    *,
    shapes: dict[str, tuple[int, int, int, int]],
    config: MaximizeConfig | None = None,
    optimize: tuple[str, ...] | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> MaxResult:
    """Optimise the input(s) of `model` to maximise `unit`.

    Args:
        model: any vidrec recognizer (its `modalities` say which inputs it reads).
        unit: the channel or class logit to maximise.
        shapes: per-modality input shape `(T, C, H, W)` for every modality the model reads.
        config: optimisation settings (defaults: 200 normalised gradient-ascent steps, slow prior).
        optimize: the modalities to optimise (default all; the others stay zero).
        seed: seeds the starting noise and the jitter; the same seed gives the same result.
        device: "auto" (GPU when present), "cpu", "cuda", ...
        progress: show a progress bar (lines off a terminal).

    Returns:
        A `MaxResult` with the inputs `(T, C, H, W)` on CPU and the objective history.
    """
    config = config or MaximizeConfig()
    mods = model_modalities(model)
    if set(shapes) != set(mods):
        raise ValueError(f"shapes must give (T, C, H, W) for exactly the model's inputs {list(mods)}")
    optimize = tuple(optimize or mods)
    if not set(optimize) <= set(mods):
        raise ValueError(f"optimize={list(optimize)} names inputs the model does not read ({list(mods)})")
    device = resolve_device(device)
    gen = torch.Generator().manual_seed(seed)
    with frozen(model):
        model.to(device)
        x = _start(shapes, optimize, config, gen, device)
        adam = None
        if config.optimizer == "adam":
            adam = torch.optim.Adam([{"params": [x[m]], "lr": config.lr * config.scale(m)} for m in optimize])
        objective, losses, rho = [], [], None
        for step in progress_bar(
            range(config.steps), desc=f"maximise {unit.describe()}", disable=not progress
        ):
            shift = tuple(torch.randint(-config.jitter, config.jitter + 1, (2,), generator=gen).tolist())
            value, layer_scale = unit_value(model, _jitter(x, shift), unit)
            rho = rho or max(layer_scale, 1e-6)  # per-layer normaliser, fixed at the start
            loss = -value / rho + _total_reg(x, optimize, config)
            loss.backward()
            if adam is None:
                lr = config.lr * (1 - step / config.steps)  # linear decay: converges instead of dithering
                _ascent_step(x, optimize, lr, config)
            else:
                adam.step()
                adam.zero_grad()
            objective.append(value.detach().item() / rho)
            losses.append(loss.detach().item())
        with torch.no_grad():
            value, layer_scale = unit_value(model, x, unit)
        rho = rho or max(layer_scale, 1e-6)
        objective.append(float(value) / rho)
    inputs = {m: v.detach()[0].cpu() for m, v in x.items()}
    return MaxResult(inputs=inputs, objective=objective, loss=losses, rho=rho, unit=unit)


def input_gradients(model: nn.Module, unit: Unit, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """d unit / d input for every modality (`(B, T, C, H, W)` each); an input the unit does not depend
    on gets an all-zero tensor (autograd finds no path from it), as for units below a fusion point."""
    with frozen(model):
        x = {m: v.detach().clone().requires_grad_(True) for m, v in as_model_units(inputs).items()}
        value, _ = unit_value(model, x, unit)
        grads = torch.autograd.grad(value, list(x.values()), allow_unused=True)
    return {m: torch.zeros_like(x[m]) if g is None else g for m, g in zip(x, grads)}


def objective_rise(result: MaxResult) -> float:
    """Final minus initial objective (a/rho); positive when the optimisation increased the unit."""
    return result.objective[-1] - result.objective[0]


__all__ = [
    "OPTIMIZERS", "PRIORS", "SCALES", "MaxResult", "MaximizeConfig", "Regularizer",
    "changing_energy_fraction", "flow_fields", "frozen", "high_frequency_fraction",
    "input_gradients", "maximize", "norm_alpha", "objective_rise", "regularize", "temporal_spectrum",
    "tv_space", "tv_time",
]  # fmt: skip
