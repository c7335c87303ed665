"""What ``vidrec dff run`` and ``vidrec dff eval`` share: the key-frame schedule arguments and the
checkpoint's model as a `DFF` with the flow source ``--flow`` asks for."""

from __future__ import annotations

import argparse

import torch

from vidrec.cli import UsageError

MAX_SIZE = 8192
"""The largest `--size` side in px `vidrec dff run / eval / eval-davis` take: a typo like 48000 would
otherwise allocate tens of GB for one frame before anything said so."""


def add_schedule_arguments(p: argparse.ArgumentParser) -> None:
    """--interval (--bidirectional: both sides) | --adaptive, with --window, --threshold, --signal,
    --max-gap (read by `make_schedule`); --no-flip-test, --no-largest-object, --no-fresh-motion,
    --fresh-from, --foreground-bias, --propagated-bias, --warp-padding (read by `build_dff`)."""
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--interval",
        type=int,
        default=None,
        metavar="L",
        help="fixed schedule: key frames 0, L, 2L, ... (default 10 unless --adaptive; 1 = per-frame)",
    )
    which.add_argument(
        "--adaptive",
        type=int,
        default=None,
        metavar="BUDGET",
        help="adaptive schedule: a key frame when the signal passes --threshold, at most BUDGET "
        "key frames in any --window frames (default: off; measured, it loses to the fixed interval at "
        "the same key frames, docs/dff.md)",
    )
    p.add_argument(
        "--bidirectional",
        action="store_true",
        help="offline: the key frames of --interval, each frame between two of them blending the features "
        "propagated from both (two flows a frame, outputs up to L - 1 frames late; not for live streams)",
    )
    p.add_argument("--window", type=int, default=20, help="frames the --adaptive budget covers (default 20)")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="--adaptive: new key frame above this signal (feature px for flow, normalised-pixel error for "
        "warp; default 0.5)",
    )
    p.add_argument(
        "--signal",
        choices=("flow", "warp"),
        default="flow",
        help="--adaptive signal: mean flow magnitude or warp photometric error (default flow)",
    )
    p.add_argument(
        "--max-gap",
        type=int,
        default=None,
        help="--adaptive: a key frame after this many frames without one, budget allowing (default: none)",
    )
    p.add_argument(
        "--no-flip-test",
        action="store_true",
        help="key frames without the mirror image a checkpoint's flip_test averages in (half the key-frame "
        "cost, about 1 J point less on DAVIS: docs/guides/segmentation.md)",
    )
    p.add_argument(
        "--no-largest-object",
        action="store_true",
        help="keep every foreground region a checkpoint's largest_object drops but the largest "
        "(docs/guides/segmentation.md)",
    )
    p.add_argument(
        "--no-fresh-motion",
        action="store_true",
        help="propagated frames warp the key frame's motion cue instead of computing their own (a model "
        "with a motion cue computes its own by default: about 10 ms a frame, docs/dff.md)",
    )
    p.add_argument(
        "--fresh-from",
        type=int,
        default=None,
        metavar="D",
        help="a propagated frame D or more frames from its nearest key frame computes its own motion cue, "
        "nearer ones warp the key frame's (default 3; 1: every propagated frame)",
    )
    p.add_argument(
        "--foreground-bias",
        type=float,
        default=None,
        metavar="B",
        help="added to every frame's foreground logits (default: the checkpoint's "
        "model.kwargs.foreground_bias, chosen on a tuning split: docs/guides/segmentation.md)",
    )
    p.add_argument(
        "--warp-padding",
        choices=("border", "zeros"),
        default="border",
        help="what a propagated frame reads where its flow leaves the key frame (content entering the "
        "frame): the nearest edge features (border, the default: measured on held-out sequences, "
        "docs/dff.md) or zeros (the paper's)",
    )
    p.add_argument(
        "--propagated-bias",
        type=float,
        default=None,
        metavar="B",
        help="added to a propagated frame's foreground logits, which warping and blending can leave weaker "
        "than a key frame's (default 0: off; it helped some sequences and cost others, docs/dff.md)",
    )


def make_schedule(args: argparse.Namespace):
    from vidrec.dff.schedule import Adaptive, Bidirectional, FixedInterval

    try:
        if getattr(args, "bidirectional", False):
            if args.adaptive is not None:
                raise ValueError("--bidirectional takes the key frames of --interval, not --adaptive")
            return Bidirectional(args.interval if args.interval is not None else 10)
        if args.adaptive is not None:
            return Adaptive(
                budget=args.adaptive,
                window=args.window,
                threshold=args.threshold,
                signal=args.signal,
                max_gap=args.max_gap,
            )
        return FixedInterval(args.interval if args.interval is not None else 10)
    except ValueError as err:
        raise UsageError(f"key-frame schedule: {err}") from None


def build_dff(model: torch.nn.Module, args: argparse.Namespace):
    """The checkpoint's model as a `DFF` with the flow source `--flow` asks for (default: a DFF model's own
    flow net, DIS for a per-frame model); key frames without their mirror image with --no-flip-test;
    every foreground region kept with --no-largest-object;
    propagated frames with their own motion cue when the model has one (`vidrec.dff.model.refreshable`),
    unless --no-fresh-motion; propagated frames' foreground logits raised by --propagated-bias (default
    `vidrec.dff.model.PROPAGATED_BIAS`, 0), every frame's by --foreground-bias (default: the checkpoint's);
    the warp's padding from --warp-padding (default border)."""
    from vidrec.dff.model import PROPAGATED_BIAS, refreshable

    dff = _build_dff(model, args)
    if getattr(args, "no_flip_test", False):
        dff.flip_test = False
    if getattr(args, "no_largest_object", False):
        dff.largest_object = False
    dff.fresh_motion = refreshable(dff) and not getattr(args, "no_fresh_motion", False)
    fresh_from = getattr(args, "fresh_from", None)
    if fresh_from is not None:
        if fresh_from < 1:
            raise UsageError(
                f"--fresh-from takes frames from a key frame, >= 1 (1: every frame), got {fresh_from}"
            )
        dff.fresh_from = fresh_from
    bias = getattr(args, "propagated_bias", None)
    dff.propagated_bias = PROPAGATED_BIAS if bias is None else float(bias)
    fg = getattr(args, "foreground_bias", None)
    if fg is not None:
        dff.foreground_bias = float(fg)
    dff.warp_padding = getattr(args, "warp_padding", None) or dff.warp_padding
    return dff


def _build_dff(model: torch.nn.Module, args: argparse.Namespace):
    from vidrec.dff.flownets import FlowNetLite, make_flow_net
    from vidrec.dff.model import DFF, as_dff

    own = model.flow_net if isinstance(model, DFF) else None
    source = args.flow or ("own" if own is not None else "dis")
    if source == "own" or (source == "learned" and not args.flow_weights and isinstance(own, FlowNetLite)):
        return as_dff(model)
    if source == "learned" and not args.flow_weights:
        raise UsageError(
            f"{args.checkpoint} has no learned flow net; give --flow-weights FILE (a pretrained FlowNetLite) "
            "or choose --flow dis"
        )
    stride = int(getattr(model, "feature_stride", 16))
    flow_net = make_flow_net(source, stride=stride, weights=args.flow_weights)
    try:
        return as_dff(model, flow_net=flow_net.to(args.device).eval())
    except ValueError as err:
        raise UsageError(f"{args.checkpoint}: {err}") from None


def dff_tasks(checkpoint: str) -> tuple[str, ...]:
    """The tasks `dff run` / `dff eval` take for this checkpoint: ``segment``, ``detect``, or a task
    registered outside vidrec (its model's parts are checked by `build_dff`), never another built-in task
    (classify, caption, landmarks), which is refused in one line naming the command to use instead."""
    from vidrec.engine.checkpoint import TASK_COMMANDS, checkpoint_task

    task = checkpoint_task(checkpoint)
    return ("segment", "detect") if task in TASK_COMMANDS else ("segment", "detect", task)
