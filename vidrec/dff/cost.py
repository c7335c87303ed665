"""What a key frame and a propagated frame of Deep Feature Flow cost, part by part (methods.md 4.4, 4.7.6).

(For detection, `vidrec.dff.detect.cost_steps` splits a `PyramidDFF` the same way: feature net, head and
post-processing on a key frame; flow, scale field, warp, head and post-processing on the others.)

A key frame runs the feature net, the task net and the upsampling of its output; a propagated (non-key)
frame runs the flow net, the scale field, the warp, the bias field when the model has one, its own motion
cue when the model has ``fresh_motion`` (`vidrec.dff.model.DFF`: DIS, the camera fits and the cue's branch),
the task net and the upsampling. `part_costs` runs
each part alone on a (key, current) pair, as `vidrec.dff.model.DFF.run` runs it, and returns its FLOPs
(`torch.utils.flop_counter.FlopCounterMode`: convolutions and matrix products; the warp's `grid_sample`,
the bilinear resizing and OpenCV's DIS count 0, their cost shows in the wall time) and its median wall
time. From the two paths' totals:

- the FLOP ratio ``r = cost(key) / cost(non-key)`` (methods.md 4.4: ``[O(N_feat) + O(N_task)] /
  [O(F) + O(S) + O(W) + O(N_task)]``), and
- the amortised speed-up of a key interval l, ``s(l) = l / (1 + (l - 1) / r)``: a window of l frames (one
  key frame, l - 1 propagated) costs ``cost(key) + (l - 1) cost(non-key) = l cost(key) / s(l)``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vidrec.dff.warp import warp

__all__ = [
    "KEY_PARTS",
    "NON_KEY_PARTS",
    "PartCost",
    "amortised_speed_up",
    "count_flops",
    "flop_ratio",
    "part_costs",
    "path_totals",
]

KEY_PARTS = ("feature net", "task net", "upsampling")
NON_KEY_PARTS = ("flow", "scale field", "warp", "task net", "upsampling")  # + "bias field" after the warp
# when the model has B (`vidrec.dff.model.BiasField`), + "motion cue" after that with ``fresh_motion``


@dataclass(frozen=True)
class PartCost:
    """One part of one path: its FLOPs and median wall time (ms; NaN when not timed)."""

    path: str  # "key" or "non-key"
    part: str
    flops: int
    ms: float


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs `FlopCounterMode` counts while `fn()` runs without autograd."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn()
    return int(counter.get_total_flops())


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` in ms after one warm-up call (CUDA work is waited for)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times = []
    with torch.inference_mode():
        fn()
        sync()
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def _steps(dff, key_img: torch.Tensor, cur_img: torch.Tensor) -> dict[tuple[str, str], Callable[[], object]]:
    """Each part of both paths as a call on the inputs that part gets in `DFF.run`."""
    size = tuple(cur_img.shape[-2:])
    fresh = bool(getattr(dff, "fresh_motion", False))
    with torch.inference_mode():
        feat = dff.key_features(key_img)  # (1, C, h, w): cached on the key frame
        if fresh:  # what is warped is the appearance part; the task net takes the sum (`DFF.task`)
            feat = feat["appearance"]
        grid = tuple(feat.shape[-2:])
        flow, scale_in = dff.estimate_flow(key_img, cur_img, grid)
        scale = dff.scale_field(scale_in, grid)
        warped = warp(feat, flow, scale)
        bias = dff.bias(scale_in, grid) if getattr(dff, "bias_field", None) is not None else None
        out = dff.task(warped if bias is None else warped + bias, propagated=True)  # (1, K, h, w)
    steps = {
        ("key", "feature net"): lambda: dff.key_features(key_img),
        ("key", "task net"): lambda: dff.task(feat),
        ("key", "upsampling"): lambda: dff.upsample_to(out, size),
        ("non-key", "flow"): lambda: dff.estimate_flow(key_img, cur_img, grid),
        ("non-key", "scale field"): lambda: dff.scale_field(scale_in, grid),
        ("non-key", "warp"): lambda: warp(feat, flow, scale),
    }
    if bias is not None:
        steps[("non-key", "bias field")] = lambda: dff.bias(scale_in, grid) + warped
    if fresh:
        steps[("non-key", "motion cue")] = lambda: dff.fresh_motion_map(cur_img, grid) + warped
    steps[("non-key", "task net")] = lambda: dff.task(warped, propagated=True)
    steps[("non-key", "upsampling")] = lambda: dff.upsample_to(out, size)
    return steps


def part_costs(
    dff,
    key_img: torch.Tensor,
    cur_img: torch.Tensor,
    *,
    repeats: int = 5,
    timed: bool = True,
    steps: Callable[..., dict[tuple[str, str], Callable[[], object]]] = _steps,
) -> list[PartCost]:
    """FLOPs and median wall time of every part of the key and non-key paths of `dff` (a `DFF`, in eval).

    Args:
        key_img, cur_img: one (key, current) pair `(1, 3, H, W)`, normalised as the feature net takes it.
        repeats: timed calls per part (after one warm-up); the wall time uses torch's current threads.
        timed: False: FLOPs only (ms NaN).
        steps: ``(dff, key_img, cur_img) -> {(path, part): call}``, each part as its path runs it; the
            default splits a `DFF` in `KEY_PARTS` / `NON_KEY_PARTS` (`vidrec.dff.detect.cost_steps`
            splits a `PyramidDFF`).
    """
    costs = []
    for (path, part), fn in steps(dff, key_img, cur_img).items():
        ms = _median_ms(fn, repeats) if timed else float("nan")
        costs.append(PartCost(path, part, count_flops(fn), ms))
    return costs


def path_totals(costs: list[PartCost]) -> dict[str, PartCost]:
    """{"key": ..., "non-key": ...}: FLOPs and ms summed over each path's parts."""
    return {
        path: PartCost(
            path,
            "total",
            sum(c.flops for c in costs if c.path == path),
            sum(c.ms for c in costs if c.path == path),
        )
        for path in ("key", "non-key")
    }


def flop_ratio(costs: list[PartCost], *, wall: bool = False) -> float:
    """r = cost(key) / cost(non-key) in FLOPs (or in wall time with `wall`); inf for a free non-key path."""
    key, other = path_totals(costs).values()
    key, other = (key.ms, other.ms) if wall else (key.flops, other.flops)
    return key / other if other > 0 else float("inf")


def amortised_speed_up(interval: int, r: float) -> float:
    """s(l) = l / (1 + (l - 1) / r): the per-frame cost over DFF's mean cost per frame at key interval l."""
    return interval / (1 + (interval - 1) / r)
