"""``vidrec dff train`` and ``vidrec dff eval``: DFF training on DAVIS through the one engine, and J / F /
frames/s of a checkpoint on DAVIS-layout sequences under a key-frame schedule (a detect checkpoint: box
AP and frames/s on a video's frames, `vidrec.dff.cli_detect`).

- ``vidrec dff train [CONFIG] [key=value ...]`` is ``vidrec train`` with the built-in ``dff_davis`` config
  by default (DFF end to end on (key, current) pairs; ``data.root=...`` points at the DAVIS folder and
  ``model.init_from=...`` at a per-frame ``segment_davis`` run's best.safetensors).
- ``vidrec dff eval CHECKPOINT DAVIS_ROOT`` walks each sequence (default: the fixed validation split) with
  ``--interval L`` or ``--adaptive BUDGET`` and prints a per-sequence table of J, F, key frames, frames/s,
  scored as the DAVIS toolkit does: predictions upsampled to the native mask size, each sequence's first
  and last frame left out (``--all-frames`` keeps them).
"""

from __future__ import annotations

import argparse

from vidrec.cli import UsageError, add_model_factory_argument
from vidrec.dff.cli_common import MAX_SIZE, add_schedule_arguments, build_dff, dff_tasks, make_schedule


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from vidrec.engine import cli_train

    cli_train.add_arguments(p)
    p.description = (
        "`vidrec train` with the built-in dff_davis config unless CONFIG names another: Deep Feature Flow "
        "trained end to end on DAVIS (key, current) pairs, e.g. `vidrec dff train data.root=DAVIS "
        "model.init_from=runs/segment_davis/last.safetensors`"
    )


def run_train(args: argparse.Namespace) -> int:
    from vidrec.engine.cli_train import run

    return run(args, default_config="dff_davis")


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        help="a segment- or detect-task checkpoint (per-frame or DFF model) from `vidrec train`",
    )
    p.add_argument(
        "root",
        help="segment: a DAVIS-layout folder (JPEGImages/480p/<seq>, Annotations/480p/<seq>); detect: a "
        "video, or a folder holding one",
    )
    p.add_argument(
        "--gt",
        default=None,
        metavar="FILE",
        help="detect: the MOT ground truth of the video (default: gt.txt beside it)",
    )
    p.add_argument(
        "--frames",
        default=None,
        metavar="C-D",
        help="detect: the frames to score, 1-based, inclusive (default: the checkpoint's val_frames)",
    )
    p.add_argument(
        "--sequences",
        nargs="+",
        default=None,
        metavar="NAME",
        help="sequence names, or one text file listing them (default: the fixed validation split of "
        "vidrec.data.davis, the 4 sequences breakdance, cows, horsejump-high, scooter-black)",
    )
    add_schedule_arguments(p)
    p.add_argument(
        "--flow",
        choices=("learned", "dis", "raft"),
        default=None,
        help="flow source (default: a DFF checkpoint's own flow net, DIS for a per-frame one)",
    )
    p.add_argument(
        "--flow-weights",
        default=None,
        metavar="PATH",
        help="--flow learned: a FlowNetLite .safetensors; --flow raft: a RAFT state dict",
    )
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="working frame size the model sees (default: the checkpoint's task_options.size); "
        "predictions are upsampled to the native mask size and scored there",
    )
    p.add_argument(
        "--all-frames",
        action="store_true",
        help="score every frame (default: leave out each sequence's first and last, as the DAVIS-2016 "
        "toolkit does)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_model_factory_argument(p)


def run_eval(args: argparse.Namespace) -> int:
    from vidrec.cli import input_file
    from vidrec.data.davis import find_sequences, split_names
    from vidrec.dff.davis_eval import evaluate_sequences, format_table
    from vidrec.engine.checkpoint import load_task
    from vidrec.tasks.segment import sequence_names

    ckpt = input_file(args.checkpoint, "checkpoint")
    model, task = load_task(ckpt, args.device, factory=args.model_factory, tasks=dff_tasks(ckpt))
    if task.name == "detect":  # box AP on a video's frames instead of J / F on DAVIS
        from vidrec.dff import cli_detect

        return cli_detect.evaluate(args, model, task, make_schedule(args))
    names = sequence_names(args.sequences) if args.sequences else split_names("val")
    sequences = find_sequences(args.root, names)
    schedule = make_schedule(args)
    dff = build_dff(model, args).eval()
    size = args.size or getattr(getattr(task, "options", None), "size", None)
    if size is not None and (len(size) != 2 or min(size) < 16 or max(size) > MAX_SIZE):
        raise UsageError(f"--size takes H W of 16 to {MAX_SIZE} px each, got {size}")
    results = evaluate_sequences(
        dff,
        sequences,
        schedule,
        size=tuple(size) if size else None,
        device=args.device,
        all_frames=args.all_frames,
    )
    scored = "every frame" if args.all_frames else "first and last frames left out"
    print(
        f"{ckpt}: {schedule}, flow {type(dff.flow_net).__name__}, frames {size or 'as stored'}; "
        f"scored at the native mask size, {scored}"
    )
    print(format_table(results))
    return 0
