"""``vidrec dff run`` and ``vidrec dff eval`` for a detect-task checkpoint (`vidrec.tasks.detect`).

- ``vidrec dff run CHECKPOINT VIDEO --out drawn.mp4`` walks the video with the key-frame schedule and
  writes it with the boxes drawn (key frames marked), frame by frame: memory stays constant.
- ``vidrec dff eval CHECKPOINT VIDEO --gt gt.txt --frames C-D`` walks frames C-D (1-based, inclusive;
  default: the checkpoint's ``val_frames``) and prints box AP@0.5, AP@[.5:.95] (`BoxAP`, COCO's scoring,
  conf-0 boxes as ignore regions) and frames/s of the model alone (frames decoded and resized first).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vidrec.cli import UsageError
from vidrec.engine.schema import ConfigError


def build_detect_dff(model: torch.nn.Module, args: argparse.Namespace):
    """The checkpoint's detector as a `PyramidDFF` with the flow source `--flow` asks for (default: a DFF
    model's own flow net, DIS for a per-frame detector)."""
    from vidrec.dff.detect import PyramidDFF, as_pyramid_dff
    from vidrec.dff.flownets import FlowNetLite, make_flow_net

    own = model.flow_net if isinstance(model, PyramidDFF) else None
    source = args.flow or ("own" if own is not None else "dis")
    if source == "own" or (source == "learned" and not args.flow_weights and isinstance(own, FlowNetLite)):
        return as_pyramid_dff(model)
    if source == "learned" and not args.flow_weights:
        raise UsageError(
            f"{args.checkpoint} has no learned flow net; give --flow-weights FILE (a pretrained FlowNetLite "
            "at stride 8) or choose --flow dis"
        )
    flow_net = make_flow_net(source, stride=8, weights=args.flow_weights)
    try:
        return as_pyramid_dff(model, flow_net=flow_net.to(args.device).eval())
    except ValueError as err:
        raise UsageError(f"{args.checkpoint}: {err}") from None


def run(
    args: argparse.Namespace, model, task, schedule, out_path: Path
) -> tuple[int, int, str, float, float]:
    """``vidrec dff run`` on a detect checkpoint: the boxes drawn on every frame of the input; (frames, key
    frames, flow net name, frames/s of decoding + DFF, frames/s overall) for `vidrec.dff.cli.DffRun`."""
    from vidrec.tasks.detect import draw_video

    dff = build_detect_dff(model, args).eval()
    size = [int(v) for v in (args.size or task.options.size)]
    if len(size) != 2 or min(size) < 32:
        raise UsageError(f"--size for a detect checkpoint takes H W of at least 32 px each, got {size}")
    start = time.perf_counter()
    try:
        n, keys, fps = draw_video(
            dff,
            Path(args.input),
            out_path,
            schedule,
            size=size,
            device=torch.device(args.device),
            fps=args.fps,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    wall = time.perf_counter() - start
    return n, keys, type(dff.flow_net).__name__, fps, n / wall


def evaluate(args: argparse.Namespace, model, task, schedule) -> int:
    """``vidrec dff eval`` on a detect checkpoint: AP and frames/s over a frame range of one video."""
    from vidrec.data.mot import MotFormatError, find_gt, load_frames, parse_frames, read_mot
    from vidrec.data.transforms import normalize_rgb
    from vidrec.engine.det_metrics import BoxAP
    from vidrec.tasks.detect import find_video, frame_count, frame_shape

    try:
        video = find_video(args.root)
    except ConfigError as err:
        raise UsageError(str(err).replace("data.root", "video")) from None
    gt_path = Path(args.gt) if args.gt else find_gt(video)
    if gt_path is None or not gt_path.is_file():
        raise UsageError(
            f"--gt: {gt_path or 'no gt.txt beside ' + str(video)}: give the MOT ground truth file"
        )
    from vidrec.io import probe

    num, (height, width) = frame_count(video), frame_shape(video, probe)
    spec = args.frames or task.options.val_frames
    if not spec or spec.lower() == "none":
        raise UsageError("--frames: give the frames to score, C-D (1-based, inclusive), never trained on")
    try:
        gt = read_mot(gt_path, num_frames=num, height=height, width=width)
        frames = parse_frames(spec, num_frames=num, what="--frames")
    except (MotFormatError, ValueError) as err:
        raise UsageError(str(err)) from None
    if frames.stop > gt.last_frame + 1:
        raise UsageError(f"--frames {spec}: frames after {gt.last_frame + 1} have no boxes in {gt_path}")
    size = args.size or list(task.options.size)
    if len(size) != 2 or min(size) < 32:
        raise UsageError(f"--size takes H W of at least 32 px each, got {size}")
    dff = build_detect_dff(model, args).eval()
    images = load_frames(video, frames, (size[0], size[1]))
    inputs = [normalize_rgb(torch.from_numpy(f).permute(2, 0, 1)[None].to(args.device)) for f in images]
    scale = [size[1] / width, size[0] / height] * 2
    ap, keys = BoxAP(), 0
    start = time.perf_counter()
    for index, (dets, is_key) in zip(frames, dff.run(iter(inputs), schedule), strict=True):
        boxes, ignore = (torch.from_numpy(a) * torch.tensor(scale) for a in gt.frame(index))
        ap.update(index, dets[0]["boxes"], dets[0]["scores"], boxes, ignore)
        keys += is_key
    fps = len(inputs) / (time.perf_counter() - start)
    scores = ap.compute()
    print(
        f"{args.checkpoint}: {video.name} frames {spec} at {size[0]}x{size[1]}, {schedule}, flow "
        f"{type(dff.flow_net).__name__}; boxes {gt_path.name}, conf-0 boxes as ignore regions"
    )
    print(
        f"AP@0.5 {scores['AP50']:.3f}  AP@[.5:.95] {scores['AP']:.3f}  AP@0.75 {scores['AP75']:.3f}  "
        f"{keys}/{len(inputs)} key frames  {fps:.2f} frames/s (model alone)"
    )
    return 0
