"""`vidrec predict CKPT VIDEO|FOLDER|LIVE`: top-k classes, a per-window timeline, streaming, or a CSV.

With --timeline / --stream each window's line is printed (and flushed) as soon as the window has been
seen, followed by its latency; the source may be live (a growing file with --follow, `-` for stdin, a
camera device, a URL). Ctrl-C stops cleanly with a one-line summary (exit code 130; SIGTERM: 143).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

from vidrec import interrupt
from vidrec.cli import (
    UsageError,
    add_model_factory_argument,
    add_overwrite_argument,
    input_file,
    output_path,
    printable,
)
from vidrec.engine.inputs import FlowSettings, flow_settings_from, stored_flow_settings
from vidrec.engine.predict import (
    Preprocess,
    frame_source,
    list_videos,
    predict_folder,
    predict_video,
    stream_windows,
    topk,
)

PREDICT_TASKS = (
    "classify",
    "landmarks",
    "detect",
)  # class scores, or points / boxes drawn on the video (`--out`)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .safetensors checkpoint written by `vidrec train`")
    parser.add_argument(
        "video",
        help="a video file, a folder of videos (then --out is required), or for --timeline/--stream a "
        "live source: - (stdin), a camera device (/dev/video0) or a URL (rtsp://, http://, udp://...)",
    )
    parser.add_argument("--topk", type=int, default=5, help="how many classes to print (default 5)")
    parser.add_argument(
        "--clips", type=int, default=5, help="evenly spaced clips averaged per video (default 5)"
    )
    parser.add_argument(
        "--frames", type=int, default=0, help="frames per clip; 0: the training clip length (default 0)"
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="one prediction per window, printed as soon as the window has been seen (default off)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="timeline by streaming: a recurrent model (LRCN) steps once per frame with its state carried "
        "over; any other model (flow, two-stream) runs on each window as it completes, as --timeline "
        "(default off)",
    )
    parser.add_argument("--window", type=float, default=16, help="timeline window length (default 16)")
    parser.add_argument("--stride", type=float, default=8, help="timeline window stride (default 8)")
    parser.add_argument(
        "--unit",
        choices=["frames", "seconds"],
        default="frames",
        help="unit of --window/--stride (default frames)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="the file is still being written: wait for new frames at its end (default off)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        help="seconds without new data after which a followed file or a URL ends (default 10)",
    )
    parser.add_argument(
        "--input-format",
        default=None,
        help="FFmpeg demuxer of a live source, e.g. mpegts, v4l2, avfoundation (default: guessed; "
        "v4l2 for /dev/video*)",
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=0.0,
        help="frame rate for --unit seconds when the source does not state one (default 0: the "
        "source's rate, else 25)",
    )
    parser.add_argument(
        "--out",
        default="",
        help="CSV file for a folder of videos, one row per video; for a checkpoint whose task draws its "
        "predictions (task=landmarks) and one video: the video to draw them on (required then; its "
        "points also go to <out stem>.landmarks.json), or a .json file for the points only (default none)",
    )
    parser.add_argument(
        "--detector",
        choices=["haar", "dlib", "none"],
        default="haar",
        help="landmarks: the face detector that finds the face in every frame: haar (OpenCV's bundled "
        "cascade), dlib (dlib's frontal face detector; pip install 'vidrec[dlib]') or none (crop around "
        "the previous window's predicted points) (default haar)",
    )
    parser.add_argument(
        "--face-box",
        default="",
        metavar="LEFT,TOP,RIGHT,BOTTOM",
        help="landmarks: a fixed face rectangle in frame pixels for every frame, instead of a detector "
        "(default none)",
    )
    parser.add_argument(
        "--box-smoothing",
        type=float,
        default=0.5,
        help="landmarks: weight of the previous window's face box in the next one, in [0, 1) (default 0.5)",
    )
    add_model_factory_argument(parser)
    add_overwrite_argument(parser)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--flow-method",
        default="",
        help="flow models: method to compute flow with (default: the one stored in the checkpoint, "
        "i.e. the training flow's; checkpoints without it: dis)",
    )
    parser.add_argument(
        "--flow-short-side",
        type=int,
        default=-1,
        help="flow models: short side frames are resized to before the flow, 0 = native "
        "(default -1: the one stored in the checkpoint)",
    )


def _frames(value: float, unit: str, fps: float, name: str) -> int:
    n = round(value * fps) if unit == "seconds" else round(value)
    if n < 1:
        raise UsageError(f"--{name} {value} {unit} is less than one frame")
    return n


def _source_fps(args) -> float:
    """The rate --unit seconds converts with: --fps, else the source's own (opened once), else 25."""
    if args.fps > 0 or args.unit == "frames":
        return args.fps or 25.0
    from vidrec.io.live import LiveReader, is_live_source

    if is_live_source(args.video) or args.follow:
        raise UsageError(f"--unit seconds on the live source {args.video}: give its frame rate with --fps")
    with LiveReader(args.video) as reader:
        return reader.fps or 25.0


def _print_timeline(video: str, args, model, preprocess, class_names) -> int:
    fps = _source_fps(args)
    window = _frames(args.window, args.unit, fps, "window")
    stride = _frames(args.stride, args.unit, fps, "stride")
    live = {"follow": args.follow, "idle_timeout": args.idle_timeout, "input_format": args.input_format}
    frames = frame_source(model, video, preprocess=preprocess, **live)
    recurrent = args.stream and hasattr(model, "step")  # other models stream window by window
    windows = stream_windows(
        model, frames, window=window, stride=stride, recurrent=recurrent, preprocess=preprocess
    )
    latencies: list[float] = []
    try:
        for w in windows:
            best = ", ".join(
                f"{printable(name)} {score:.3f}" for name, score in topk(w.probs, class_names, args.topk)
            )
            print(
                f"{w.start_s:8.2f}s-{w.end_s:8.2f}s  frames {w.start_frame:5d}-{w.end_frame:5d}  "
                f"{best}  ({w.latency_s * 1000:.0f} ms)",
                flush=True,
            )
            latencies.append(w.latency_s)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM / SIGUSR1 (vidrec.interrupt)
        windows.close()  # closes the frame source and the container
        signum = interrupt.signum_of(err)
        how = "stopped by Ctrl-C" if signum == signal.SIGINT else interrupt.describe(signum)
        _summary(latencies, how=how)
        return interrupt.exit_code(signum)
    _summary(latencies, how="end of stream")
    return 0


def _summary(latencies: list[float], *, how: str) -> None:
    if not latencies:
        print(f"{how}: no window completed", file=sys.stderr, flush=True)
        return
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"{how}: {len(ms)} windows, latency median {ms[len(ms) // 2]:.0f} ms, max {ms[-1]:.0f} ms",
        file=sys.stderr,
        flush=True,
    )


def flow_settings(args: argparse.Namespace, cfg, modalities: tuple[str, ...]) -> FlowSettings | None:
    """The flow a flow model was trained on: stored in the checkpoint (or read from its flow files'
    JSON), with --flow-method / --flow-short-side applied; None for RGB-only models."""
    from dataclasses import replace

    from vidrec.engine.checkpoint import read_header

    if not {"flow", "flow3"} & set(cfg.data.modalities or modalities):
        return None
    flow = stored_flow_settings(read_header(args.checkpoint))
    root = Path(cfg.data.flow_root) if cfg.data.flow_root else None
    if flow is None and root is not None and root.is_dir():
        first = sorted(root.rglob("*.flow.json"))[:1]
        flow = flow_settings_from(root, [p.relative_to(root).as_posix()[: -len(".flow.json")] for p in first])
    if flow is None:
        print("note: the checkpoint does not say how its flow was made; using dis at the native size "
              "(set --flow-method / --flow-short-side to match `vidrec flow`)", file=sys.stderr)  # fmt: skip
        flow = FlowSettings()
    if args.flow_method:
        flow = replace(flow, method=args.flow_method)
    return replace(flow, short_side=args.flow_short_side) if args.flow_short_side >= 0 else flow


def _draw(args: argparse.Namespace, model, task, target: Path, live: bool) -> int:
    """A task that draws its predictions (landmarks): one video in, the drawn video (--out) out."""
    import torch

    if live or target.is_dir() or args.timeline or args.stream:
        raise UsageError(f"a task={task.name} checkpoint predicts one video file at a time (no folder, live "
                         "source, --timeline or --stream)")  # fmt: skip
    if not args.out:
        raise UsageError(f"task={task.name}: give --out drawn.mp4, the video to draw the predictions on")
    out = output_path(args.out, "--out", overwrite=args.overwrite, inputs=(args.checkpoint, args.video))
    options = {}  # the task's own flags (Task.draw_predictions' `options`)
    if task.name == "landmarks":
        options = {
            "detector": args.detector,
            "face_box": _face_box(args.face_box),
            "box_smoothing": args.box_smoothing,
        }
    line = task.draw_predictions(
        model,
        target,
        out,
        device=torch.device(args.device),
        progress=True,
        overwrite=args.overwrite,
        **options,
    )
    print(line)
    return 0


def _face_box(text: str) -> tuple[float, float, float, float] | None:
    """--face-box LEFT,TOP,RIGHT,BOTTOM as four numbers (None when not given)."""
    if not text:
        return None
    try:
        left, top, right, bottom = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--face-box {text}: give four numbers LEFT,TOP,RIGHT,BOTTOM in pixels") from None
    if not all(math.isfinite(v) for v in (left, top, right, bottom)) or right <= left or bottom <= top:
        raise UsageError(f"--face-box {text}: RIGHT must exceed LEFT and BOTTOM exceed TOP (finite pixels)")
    return left, top, right, bottom


def run(args: argparse.Namespace) -> int:
    from vidrec.engine.checkpoint import load_task
    from vidrec.io.live import is_live_source

    target = Path(args.video)  # checked first: a wrong path should not cost a model build
    live = is_live_source(args.video) or args.follow
    if live and not (args.timeline or args.stream):
        raise UsageError(f"{args.video} is a live source: predict it with --timeline or --stream")
    if args.follow:
        input_file(target, "followed video")  # a file (still being written) must exist
    elif live:
        pass  # stdin, a device or a URL: LiveReader reports what it cannot open
    elif not target.is_dir():
        input_file(target, "video")
    elif not args.out:
        raise UsageError(f"{target} is a folder: give --out preds.csv for the per-video predictions")
    else:
        output_path(args.out, "--out", overwrite=args.overwrite, inputs=(args.checkpoint,))
    _face_box(args.face_box)  # landmarks flags checked before the model is built
    if not 0 <= args.box_smoothing < 1:
        raise UsageError(f"--box-smoothing {args.box_smoothing}: give a weight in [0, 1)")
    model, task = load_task(args.checkpoint, args.device, factory=args.model_factory, tasks=PREDICT_TASKS)
    if task.draws_predictions:
        return _draw(args, model, task, target, live)
    cfg, class_names = task.cfg, task.class_names()
    modalities = tuple(getattr(model, "modalities", ("rgb",)))
    flow = flow_settings(args, cfg, modalities)
    preprocess = Preprocess.from_config(cfg, modalities=modalities, flow=flow)
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
        return _print_timeline(args.video, args, model, preprocess, class_names)
    probs = predict_video(model, target, preprocess=preprocess, frames=frames, clips=args.clips)
    for name, score in topk(probs, class_names, args.topk):
        print(f"{score:.4f}  {printable(name)}")
    return 0
