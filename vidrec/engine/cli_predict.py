"""`vidrec predict CKPT VIDEO|FOLDER`: top-k classes, a per-window timeline, streaming, or a CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidrec.cli import UsageError, input_file, output_path
from vidrec.engine.predict import (
    Preprocess,
    list_videos,
    predict_folder,
    predict_video,
    stream_timeline,
    timeline,
    topk,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .safetensors checkpoint written by `vidrec train`")
    parser.add_argument("video", help="a video file, or a folder of videos (then --out is required)")
    parser.add_argument("--topk", type=int, default=5, help="how many classes to print (default 5)")
    parser.add_argument(
        "--clips", type=int, default=5, help="evenly spaced clips averaged per video (default 5)"
    )
    parser.add_argument("--frames", type=int, default=0, help="frames per clip; 0: the training clip length")
    parser.add_argument("--timeline", action="store_true", help="one prediction per window, with timestamps")
    parser.add_argument(
        "--stream", action="store_true", help="timeline by streaming a recurrent model (LRCN)"
    )
    parser.add_argument("--window", type=float, default=16, help="timeline window length (default 16)")
    parser.add_argument("--stride", type=float, default=8, help="timeline window stride (default 8)")
    parser.add_argument(
        "--unit", choices=["frames", "seconds"], default="frames", help="unit of --window/--stride"
    )
    parser.add_argument("--out", default="", help="CSV file for a folder of videos (one row per video)")
    parser.add_argument(
        "--model-factory",
        default="",
        metavar="MODULE:FUNCTION",
        help="allow the checkpoint's own model factory (a `module:function` that is not a registered model) "
        "to be imported; give it only for a module you trust (default: registered models only)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output (default: refuse)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")


def _frames(value: float, unit: str, fps: float, name: str) -> int:
    n = round(value * fps) if unit == "seconds" else round(value)
    if n < 1:
        raise UsageError(f"--{name} {value} {unit} is less than one frame")
    return n


def _print_timeline(video: str, args, model, preprocess, class_names) -> None:
    from vidrec.io import probe

    fps = probe(video).fps or 25.0
    window = _frames(args.window, args.unit, fps, "window")
    stride = _frames(args.stride, args.unit, fps, "stride")
    run = stream_timeline if args.stream else timeline
    if args.stream and not hasattr(model, "step"):
        raise UsageError(
            f"--stream needs a recurrent model with a step() method; {type(model).__name__} has none"
        )
    for w in run(model, video, preprocess=preprocess, window=window, stride=stride):
        best = ", ".join(f"{name} {score:.3f}" for name, score in topk(w.probs, class_names, args.topk))
        print(f"{w.start_s:8.2f}s-{w.end_s:8.2f}s  frames {w.start_frame:5d}-{w.end_frame:5d}  {best}")


def run(args: argparse.Namespace) -> int:
    from vidrec.engine.checkpoint import load_for_inference

    target = Path(args.video)  # checked first: a wrong path should not cost a model build
    if not target.is_dir():
        input_file(target, "video")
    elif not args.out:
        raise UsageError(f"{target} is a folder: give --out preds.csv for the per-video predictions")
    else:
        output_path(args.out, "--out", overwrite=args.overwrite, inputs=(args.checkpoint,))
    model, cfg, class_names = load_for_inference(args.checkpoint, args.device, factory=args.model_factory)
    preprocess = Preprocess.from_config(cfg)
    frames = args.frames or cfg.data.frames
    if target.is_dir():
        n_ok, failed = predict_folder(
            model, list_videos(target), args.out, class_names=class_names, preprocess=preprocess,
            frames=frames, clips=args.clips, k=args.topk,
        )  # fmt: skip
        print(f"predicted {n_ok} videos -> {args.out}")
        for path, err in failed:
            print(f"skipped {path}: {err}")
        return 0
    if args.timeline or args.stream:
        _print_timeline(str(target), args, model, preprocess, class_names)
        return 0
    probs = predict_video(model, target, preprocess=preprocess, frames=frames, clips=args.clips)
    for name, score in topk(probs, class_names, args.topk):
        print(f"{score:.4f}  {name}")
    return 0
