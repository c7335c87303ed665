"""``vidrec dff``: Deep Feature Flow on video; ``vidrec dff run`` writes a mask overlay (a segment checkpoint)
or the boxes drawn (a detect checkpoint, `vidrec.dff.cli_detect`), key frames marked.

Each ``vidrec dff`` subcommand adds its parser in `SUBCOMMANDS` (name -> (add_arguments, run, help)); the
module-level `add_arguments` / `run` are what `vidrec.cli` calls.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from vidrec.cli import UsageError, add_model_factory_argument, add_overwrite_argument, input_file, output_path
from vidrec.dff import cli_davis
from vidrec.dff.cli_common import MAX_SIZE, add_schedule_arguments, build_dff, dff_tasks, make_schedule

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
KEY_COLOUR = (255, 200, 0)  # RGB: the border of key frames
MASK_COLOUR = np.array([255, 40, 40], dtype=np.float32)  # RGB: the foreground tint


# -- run -----------------------------------------------------------------------------------------------
def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        help="a segment- or detect-task checkpoint (per-frame or DFF model) from `vidrec train`",
    )
    p.add_argument(
        "input", help="a video file, or a folder of frames (.jpg/.png, sorted by name: DAVIS layout)"
    )
    p.add_argument(
        "--out", required=True, help="the overlay (mask or boxes) video to write (.mp4, .mkv, .gif, ...)"
    )
    add_schedule_arguments(p)
    p.add_argument(
        "--flow",
        choices=("learned", "dis", "raft"),
        default=None,
        help="flow source: the model's own learned flow net (default for a DFF checkpoint), DIS "
        "(default for a per-frame checkpoint), or RAFT (weights must be on disk)",
    )
    p.add_argument(
        "--flow-weights",
        default=None,
        metavar="PATH",
        help="--flow learned: a FlowNetLite .safetensors (from pretraining) for a per-frame model; "
        "--flow raft: a RAFT state dict (default: torchvision's file under $TORCH_HOME)",
    )
    p.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="resize frames before the model: one number = the short side, two = H W (default: the "
        "checkpoint's task_options.size when it has one, e.g. the segment task's, else as they are)",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="overlay frame rate (default: the video's; 24 for a frame folder)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--strict", action="store_true", help="stop on a damaged video instead of warning")
    add_overwrite_argument(p, "an existing --out file")
    add_model_factory_argument(p)


def read_input(source: str, *, strict: bool) -> tuple[Iterator[np.ndarray], int, float | None]:
    """(uint8 RGB frames `(H, W, 3)` one by one, their count, fps or None) of a video or a frame folder."""
    path = Path(source)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"frame folder {path} holds no .jpg/.png images; give a video or a frame folder")
        return (_read_image(f) for f in files), len(files), None
    from vidrec.io import VideoReader

    reader = VideoReader(input_file(path, "input video"), strict=strict)
    return iter(reader), reader.meta.num_frames, reader.meta.fps


def _read_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UsageError(f"frame {path} is not a readable image; remove or replace it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frame_size(args: argparse.Namespace, task) -> list[int] | None:
    """`--size` (short side or [H, W]), else the task's ``options.size`` ([H, W]), else None (as they are)."""
    size = args.size if args.size is not None else getattr(getattr(task, "options", None), "size", None)
    if size is None:
        return None
    size = [int(v) for v in size]
    if len(size) not in (1, 2) or min(size) < 16 or max(size) > MAX_SIZE:
        raise UsageError(f"--size takes a short side or H W of 16 to {MAX_SIZE} px each, got {size}")
    return size


def resize(frame: np.ndarray, size: list[int] | None) -> np.ndarray:
    """`frame` (H, W, 3) with its short side `size[0]`, or exactly `size` = [H, W]; unchanged for None."""
    if not size:
        return frame
    h, w = frame.shape[:2]
    if len(size) == 1:
        scale = size[0] / min(h, w)
        size = [round(h * scale), round(w * scale)]
    if [h, w] == size:
        return frame
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def to_input(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 `(H, W, 3)` -> ImageNet-normalised float `(1, 3, H, W)` on `device`."""
    from vidrec.data.transforms import normalize_rgb

    x = torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1)[None]
    return normalize_rgb(x)


def foreground(out: torch.Tensor) -> np.ndarray:
    """Bool mask `(H, W)` from task output `(1, K, H, W)`: logit > 0 for K = 1, else argmax != 0."""
    mask = out[0, 0] > 0 if out.shape[1] == 1 else out[0].argmax(dim=0) != 0
    return mask.cpu().numpy()


def overlay(frame: np.ndarray, mask: np.ndarray, *, is_key: bool, index: int) -> np.ndarray:
    """The frame with the mask tinted in, its number, and a border plus "KEY" on key frames."""
    out = frame.astype(np.float32)
    out[mask] = 0.5 * out[mask] + 0.5 * MASK_COLOUR
    out = out.round().astype(np.uint8)
    label = f"{index}" + (" KEY" if is_key else "")
    cv2.putText(
        out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, KEY_COLOUR if is_key else (255, 255, 255), 1
    )
    if is_key:
        t = max(2, min(out.shape[:2]) // 60)
        out[:t], out[-t:], out[:, :t], out[:, -t:] = KEY_COLOUR, KEY_COLOUR, KEY_COLOUR, KEY_COLOUR
    return out


@dataclass(frozen=True)
class DffRun:
    """What `dff_run` did: the overlay written, frames and key frames, and the speeds it measured."""

    out: Path
    frames: int
    keys: int
    schedule: str
    flow: str  # the flow net's class name
    dff_fps: float  # frames/s of decoding + DFF
    overall_fps: float  # frames/s with drawing and encoding

    def summary(self) -> str:
        return (
            f"{self.frames} frames, {self.keys} key frames ({self.schedule}), flow {self.flow}: "
            f"{self.dff_fps:.1f} frames/s (decoding + DFF), {self.overall_fps:.1f} frames/s overall "
            "(with drawing and encoding)"
        )


def run_dff(args: argparse.Namespace) -> int:
    result = dff_run(args)
    print(f"wrote {result.out}")
    print(result.summary())
    return 0


def dff_run(args: argparse.Namespace) -> DffRun:
    """`vidrec dff run` with the arguments `add_run_arguments` parses: the overlay video, key frames marked
    (`vidrec app` parses its settings the same way and calls this)."""
    from vidrec.engine.checkpoint import load_task
    from vidrec.io import VideoWriter

    ckpt = input_file(args.checkpoint, "checkpoint")
    out_path = output_path(args.out, "overlay video", overwrite=args.overwrite, inputs=(ckpt, args.input))
    if not Path(args.input).exists():
        raise UsageError(f"input {args.input} does not exist; give a video file or a frame folder")
    schedule = make_schedule(args)
    device = torch.device(args.device)
    model, task = load_task(ckpt, device, factory=args.model_factory, tasks=dff_tasks(ckpt))
    if task.name == "detect":  # boxes drawn instead of a mask
        from vidrec.dff import cli_detect

        n, keys, flow, dff_fps, overall_fps = cli_detect.run(args, model, task, schedule, out_path)
        return DffRun(out_path, n, keys, str(schedule), flow, dff_fps, overall_fps)
    dff = build_dff(model, args).eval()
    size = frame_size(args, task)
    frames, total, fps = read_input(args.input, strict=args.strict)
    frames = (resize(f, size) for f in frames)
    start = time.perf_counter()
    # The overlay is encoded as it is drawn: memory stays constant however long the video.
    with VideoWriter(out_path, fps=args.fps or fps or 24.0) as writer:
        n, keys, spent = walk(dff, frames, schedule, device=device, total=total, write=writer.write)
        if n == 0:  # the writer drops its temporary file
            raise UsageError(f"input {args.input} has no frames")
    wall = time.perf_counter() - start
    flow = type(dff.flow_net).__name__
    return DffRun(out_path, n, keys, str(schedule), flow, n / max(spent, 1e-9), n / wall)


def walk(
    dff,
    frames: Iterator[np.ndarray],
    schedule,
    *,
    device: torch.device,
    total: int | None,
    write: Callable[[np.ndarray], None],
) -> tuple[int, int, float]:
    """Run `dff` over uint8 frames with a progress bar, handing each overlay frame to `write` as soon as it
    is drawn (none is kept): (frames, key frames, seconds spent decoding and in DFF -- not drawing or
    writing)."""
    from vidrec.models.motion import stream_neighbours, takes_neighbours
    from vidrec.progress import progress

    kept: deque[np.ndarray] = deque()  # frames read but not drawn yet, oldest first, for their overlays
    inputs: Iterator[torch.Tensor] = (to_input(f, device) for f in _keep(frames, kept))
    if takes_neighbours(dff):  # a motion cue: each frame with its previous and next (one frame read ahead)
        inputs = stream_neighbours(inputs)
    count, keys, spent = 0, 0, 0.0
    with progress(total=total, desc="dff run", unit="frame") as bar:
        tick = time.perf_counter()
        for index, (out, is_key) in enumerate(dff.run(inputs, schedule)):
            spent += time.perf_counter() - tick
            write(overlay(kept.popleft(), foreground(out), is_key=is_key, index=index))
            count, keys = count + 1, keys + is_key
            bar.update(1)
            tick = time.perf_counter()
    return count, keys, spent


def _keep(frames: Iterator[np.ndarray], kept: deque[np.ndarray]) -> Iterator[np.ndarray]:
    """Pass frames through, remembering each until its overlay is drawn."""
    for f in frames:
        kept.append(f)
        yield f


# -- pretrain-flow ---------------------------------------------------------------------------------------
def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="unlabelled frames: a folder of videos and/or frame folders (searched "
                   "recursively, e.g. DAVIS JPEGImages/480p), or one video")  # fmt: skip
    p.add_argument("--out", required=True, help="the FlowNetLite weights to write (.safetensors)")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    p.add_argument("--batch", type=int, default=8, help="frame pairs per step (default 8)")
    p.add_argument("--size", type=int, nargs=2, default=[128, 224], metavar=("H", "W"),
                   help="frames are resized to H W once, on loading (default 128 224)")  # fmt: skip
    p.add_argument("--max-frames", type=int, default=120, help="frames read per clip (default 120)")
    p.add_argument("--max-gap", type=int, default=5, help="pairs are 1..max-gap frames apart (default 5)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, cosine decay (default 1e-3)")
    p.add_argument("--smooth", type=float, default=0.1, help="smoothness weight of the loss (default 0.1)")
    p.add_argument("--stride", type=int, choices=(8, 16, 32), default=16,
                   help="flow output stride: the feature net's (default 16)")  # fmt: skip
    p.add_argument("--width", type=int, default=16, help="channels of the first level (default 16)")
    p.add_argument("--downscale", type=int, choices=(1, 2, 4, 8), default=None,
                   help="the pair's pooling before the net (default stride / 4; 4 at stride 8 for the "
                   "detector: the pair at 1/4, flow on the stride-8 grid)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_overwrite_argument(p, "an existing --out file")


def run_pretrain(args: argparse.Namespace) -> int:
    from vidrec.dff.pretrain import pretrain_flownet

    out = output_path(args.out, "flow-net weights", overwrite=args.overwrite, inputs=(args.source,))
    if not Path(args.source).exists():
        raise UsageError(f"frame source {args.source} does not exist; give a folder of videos or frames")
    if min(args.steps, args.batch, args.max_gap, args.max_frames - 1) < 1 or min(args.size) < 32:
        raise UsageError("--steps, --batch, --max-gap must be >= 1, --max-frames >= 2 and --size >= 32 px")
    if args.downscale is not None and args.stride % (2 * args.downscale):
        raise UsageError(
            f"--downscale {args.downscale} is too coarse for --stride {args.stride}: 2 x downscale must "
            "divide the stride"
        )
    start = time.perf_counter()
    _, losses = pretrain_flownet(
        args.source, out, size=tuple(args.size), max_frames=args.max_frames, stride=args.stride,
        width=args.width, downscale=args.downscale, steps=args.steps, batch=args.batch, lr=args.lr,
        max_gap=args.max_gap, smooth_weight=args.smooth, seed=args.seed, device=args.device,
    )  # fmt: skip
    head, tail = np.mean(losses[: max(1, len(losses) // 10)]), np.mean(losses[-max(1, len(losses) // 10) :])
    print(f"loss {head:.4f} -> {tail:.4f} (first / last tenth of {len(losses)} steps), "
          f"{time.perf_counter() - start:.0f} s; wrote {out}")  # fmt: skip
    return 0


# -- the `vidrec dff` command --------------------------------------------------------------------------
SUBCOMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "run": (
        add_run_arguments,
        run_dff,
        "run a segment or detect checkpoint on a video with key frames: overlay video, frames/s",
    ),
    "pretrain-flow": (
        add_pretrain_arguments,
        run_pretrain,
        "pretrain the light flow net self-supervised on unlabelled frames (photometric + smoothness)",
    ),
    "train": (
        cli_davis.add_train_arguments,
        cli_davis.run_train,
        "`vidrec train` with the dff_davis config: DFF end to end on DAVIS (key, current) pairs",
    ),
    "eval": (
        cli_davis.add_eval_arguments,
        cli_davis.run_eval,
        "J, F and frames/s of a segment checkpoint on DAVIS-layout sequences, or box AP and frames/s of a "
        "detect checkpoint on a video's frames, at a key interval / adaptive budget",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dff_command", metavar="SUBCOMMAND", required=True)
    for name, (add, _run, help_text) in SUBCOMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    return SUBCOMMANDS[args.dff_command][1](args)
