"""`vidrec sheet VIDEO --out sheet.png`: a contact sheet of frames sampled from a video."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from vidrec.cli import add_overwrite_argument, output_path
from vidrec.data.samplers import tsn_segments
from vidrec.io.errors import VideoDecodeError
from vidrec.io.video import VideoReader

SAMPLERS = ("uniform", "random", "consecutive")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Sample N frames from a video and write a contact-sheet PNG: a grid of thumbnails, each "
        "captioned with its frame index and timestamp. Handy to check what a model sees from a clip."
    )
    parser.epilog = "Example: vidrec sheet v_ApplyEyeMakeup_g01_c01.avi --out sheet.png --frames 8"
    parser.add_argument("video", metavar="VIDEO", help="video file to sample")
    parser.add_argument("--out", required=True, type=Path, help="output PNG path")
    parser.add_argument("--frames", type=int, default=8, help="number of frames to show (default: 8)")
    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="uniform",
        help="uniform: centre of N equal segments, as tsn_segments at test time; random: one random frame "
        "per segment, as in TSN training; consecutive: N frames from the middle (default: uniform)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sampler (default: 0)")
    parser.add_argument("--columns", type=int, default=4, help="thumbnails per row (default: 4)")
    parser.add_argument("--size", type=int, default=160, help="thumbnail short side in pixels (default: 160)")
    parser.add_argument(
        "--keep-orientation",
        action="store_true",
        help="show frames as stored, ignoring the display rotation of phone videos (default: as displayed)",
    )
    add_overwrite_argument(parser, "an existing --out file")


def sample_indices(num_frames: int, count: int, sampler: str, *, seed: int = 0) -> list[int]:
    """Frame indices for the sheet: exactly what `vidrec.data.tsn_segments` picks (TSN, Wang et al.
    2016), at test time for "uniform" and in training for "random", so the sheet shows what a model sees."""
    if count <= 0:
        raise ValueError(f"--frames must be positive, got {count}")
    if sampler == "consecutive":
        start = max(0, (num_frames - count) // 2)
        return [min(start + i, num_frames - 1) for i in range(count)]
    rng = np.random.default_rng(seed)
    clip = tsn_segments(num_frames, rng, num_segments=count, train=sampler == "random")[0]
    return list(clip.indices)


def write_sheet(frames: np.ndarray, captions: list[str], out: Path, *, columns: int, title: str) -> Path:
    """Write thumbnails `(N, H, W, 3)` uint8 with captions as a grid PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, h, w, _ = frames.shape
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    figsize = (cols * 2.2 * w / max(h, w) + 0.2, rows * 2.4)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, frame, caption in zip(axes.flat, frames, captions):
        ax.imshow(frame)
        ax.set_title(caption, fontsize=8, y=-0.16)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def run(args: argparse.Namespace) -> int:
    output_path(args.out, "--out", overwrite=args.overwrite, inputs=(args.video,))  # before decoding
    try:
        with VideoReader(args.video, size=args.size, autorotate=not args.keep_orientation) as reader:
            indices = sample_indices(len(reader), args.frames, args.sampler, seed=args.seed)
            frames = reader.get_frames(indices)
            times = reader.frame_times()
            meta = reader.meta
    except (VideoDecodeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    captions = [f"#{i}  {times[i]:.2f}s" for i in indices]
    title = f"{Path(args.video).name}: {meta.num_frames} frames, {meta.fps:.2f} fps, {args.sampler} sampling"
    write_sheet(frames, captions, args.out, columns=args.columns, title=title)
    print(f"wrote {args.out} ({len(indices)} frames: {indices})")
    return 0
