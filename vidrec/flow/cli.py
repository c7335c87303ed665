"""`vidrec flow`: extract optical flow for a list file or a folder of videos, in parallel, resumably.

Each video becomes `<out>/<video_id>.flow.mkv` + `.flow.json` (lossless FFV1, the default), or
`<out>/<video_id>.flow.npy` (`--format npy`), or a folder `<out>/<video_id>/x_00001.jpg, y_00001.jpg, ...`
(`--format denseflow`). `<video_id>` is the video's path relative to the input folder (or `--root`)
without its extension, the same id the datasets give a video under `data.root`, so
`vidrec flow DATA_ROOT --out FLOW` pairs with `data.root=DATA_ROOT data.flow_root=FLOW`. The projected
disk use is printed before the work starts. Outputs are written atomically and complete outputs are
skipped, so a killed run is simply started again. `--shard i/n` (or torchrun's
RANK/WORLD_SIZE) splits the videos across machines. A video that cannot be decoded is listed in the
closing summary; the exit code is non-zero for failures only with `--strict`.

Example: vidrec flow data/ucf101/list.txt --root data/ucf101 --out data/ucf101_flow --workers 16
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from vidrec.cli import add_overwrite_argument, output_path
from vidrec.flow.estimators import METHODS
from vidrec.flow.storage import DEFAULT_FORMAT, FORMATS
from vidrec.jobs import VIDEO_EXTS, ShardError, VideoJob, list_jobs, parse_shard, run_pool, shard_jobs

__all__ = [
    "VIDEO_EXTS",
    "FlowJob",
    "ShardError",
    "add_arguments",
    "list_jobs",
    "parse_shard",
    "projected_bytes",
    "run",
    "shard_jobs",
]

# The listing / sharding / pool machinery is shared with `vidrec prepare` (vidrec.jobs).
FlowJob = VideoJob


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="list file (`path [label]` lines) or a folder of videos")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder list paths are relative to (default: the list file's folder / the input folder)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (required)")
    parser.add_argument("--method", choices=METHODS, default="dis", help="flow method (default dis, tuned)")
    parser.add_argument("--bound", type=float, default=20.0, help="quantisation bound in px (default 20)")
    parser.add_argument(
        "--short-side",
        type=int,
        default=256,
        help="shrink frames whose short side is larger to this short side; smaller videos keep their "
        "native size (never upscaled unless --upscale); 0 = always native (default 256)",
    )
    parser.add_argument(
        "--upscale",
        action="store_true",
        help="also enlarge videos smaller than --short-side to it (default off)",
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=DEFAULT_FORMAT,
        help="store: ffv1 = lossless FFV1 video per video (compact, exact codes; the default), npy = raw "
        "uint8 array (~15x larger, fastest to read), denseflow = x_/y_ JPEG folders (lossy)",
    )
    parser.add_argument(
        "--shard", default=None, help="i/n: process only shard i of n (default: torchrun rank)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with code 1 when any video fails (default off)"
    )
    parser.add_argument(
        "--raft-weights", default="DEFAULT", help="RAFT state-dict path (default: torchvision cache)"
    )
    parser.add_argument(
        "--raft-model", choices=("small", "large"), default="small", help="RAFT variant (default small)"
    )
    parser.add_argument("--device", default=None, help="RAFT device (default: cuda if present, else cpu)")
    add_overwrite_argument(parser, "complete flow made with another --method or --bound")


def flow_short_side(short_side: int, height: int, width: int, *, upscale: bool = False) -> int | None:
    """The short side a `height x width` video is resized to before flow; None keeps its native size.

    Videos are only shrunk: a smaller video keeps its size unless `upscale` (enlarging adds no motion
    detail and costs quadratically more flow computation and storage).
    """
    if short_side <= 0 or (min(height, width) <= short_side and not upscale):
        return None
    return short_side


# -- worker side ----------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(method: str, opts: dict, settings: dict) -> None:
    import cv2

    from vidrec.flow.estimators import FlowEstimator

    cv2.setNumThreads(1)  # one process per core: no nested thread pools
    if method == "raft":
        import torch

        torch.set_num_threads(1)
    _WORKER.update(settings, estimator=FlowEstimator(method, **opts))


def _process(job: FlowJob) -> tuple[str, int, int, str | None]:
    """Extract and store one video; returns (video_id, flow frames, bytes written, error or None)."""
    from vidrec.flow import storage
    from vidrec.io import VideoDecodeError, probe

    w = _WORKER
    try:
        storage.remove_stale_temps(w["out"], job.video_id)
        meta = probe(job.path)
        short_side = flow_short_side(w["short_side"], meta.height, meta.width, upscale=w["upscale"])
        q = storage.flow_video(job.path, short_side=short_side, bound=w["bound"], estimator=w["estimator"])
        data = storage.save_flow(
            w["out"], job.video_id, q, bound=w["bound"], method=w["method"], fps=meta.fps, format=w["format"]
        )
        return job.video_id, len(q), _disk_bytes(data), None
    except (VideoDecodeError, OSError, ValueError) as e:
        return job.video_id, 0, 0, f"{type(e).__name__}: {e}"


def _disk_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size


# -- disk use ----------------------------------------------------------------------------------------------
# Stored bytes per uint8 flow value (2 per pixel per flow frame), about, on real DIS flow at a 256 short
# side: measured by benchmarks/flow_store.py (ffv1 and JPEG depend on the content; npy is exact).
BYTES_PER_VALUE = {"npy": 1.0, "ffv1": 0.066, "denseflow": 0.055}


def projected_bytes(
    jobs: list[FlowJob], *, short_side: int, fmt: str, sample: int = 32, upscale: bool = False
) -> tuple[float, int]:
    """(bytes the outputs of `jobs` will take, about; how many video headers the estimate read).

    Reads the container headers of up to `sample` videos spread over the list (frame count and size,
    no decoding) and scales their mean to all jobs.
    """
    if not jobs:
        return 0.0, 0
    step = max(1, len(jobs) // sample)
    values = [
        v for v in (_flow_values(j.path, short_side, upscale) for j in jobs[::step][:sample]) if v is not None
    ]
    if not values:
        return 0.0, 0
    return sum(values) / len(values) * len(jobs) * BYTES_PER_VALUE[fmt], len(values)


def _flow_values(path: str, short_side: int, upscale: bool = False) -> int | None:
    """(frames - 1) x H x W x 2 of a video at the flow's size, from its header; None if unreadable."""
    import av

    from vidrec.io.video import output_size

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            seconds = float(stream.duration * stream.time_base) if stream.duration else 0.0
            frames = stream.frames or int(seconds * float(stream.average_rate or 0))
            size = flow_short_side(short_side, stream.height, stream.width, upscale=upscale)
            h, w = output_size(size, height=stream.height, width=stream.width)
    except (OSError, ValueError, TypeError, IndexError, av.error.FFmpegError):
        return None
    return max(frames - 1, 0) * h * w * 2


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def _print_projection(todo: list[FlowJob], args: argparse.Namespace) -> None:
    total, read = projected_bytes(todo, short_side=args.short_side, fmt=args.format, upscale=args.upscale)
    if not read:
        return
    raw = total / BYTES_PER_VALUE[args.format]
    other = "" if args.format == "npy" else f"; npy would take {_human(raw)}"
    line = f"projected disk use: about {_human(total)} ({args.format}{other}), from {read} video headers"
    existing = next((p for p in (args.out, *args.out.parents) if p.exists()), None)
    free = shutil.disk_usage(existing).free if existing is not None else None
    print(line + (f"; {_human(free)} free" if free is not None else ""))
    if free is not None and total > free:
        print(f"vidrec flow: warning: that is more than the free space under {existing}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from vidrec.flow.storage import flow_paths, is_complete

    index, count = parse_shard(args.shard)
    jobs = shard_jobs(list_jobs(args.input, args.root, skip=[args.out]), index, count)
    todo = [j for j in jobs if not is_complete(args.out, j.video_id, bound=args.bound, method=args.method)]
    done_before = len(jobs) - len(todo)
    for job in todo:  # complete with other settings: replaced only with --overwrite
        if is_complete(args.out, job.video_id):
            made = f"flow of {job.video_id} (made with another --method or --bound)"
            output_path(flow_paths(args.out, job.video_id)[1], made, overwrite=args.overwrite)
    print(f"vidrec flow: shard {index}/{count}: {len(jobs)} videos, {done_before} already complete, "
          f"{len(todo)} to do with {args.method} on {args.workers} workers -> {args.out}")  # fmt: skip
    _print_projection(todo, args)
    if args.method == "raft" and todo:  # here, not as a broken worker pool
        from vidrec.flow.raft_weights import RaftWeightsMissing, require_raft_weights

        try:
            require_raft_weights(args.raft_model, args.raft_weights or "DEFAULT")
        except RaftWeightsMissing as e:
            print(f"vidrec flow: error: {e}", file=sys.stderr)
            return 2
        from vidrec.flow.raft import load_raft_weights

        load_raft_weights(args.raft_model, args.raft_weights or "DEFAULT")  # a bad file: one line, here
    opts = (
        {"model": args.raft_model, "weights": args.raft_weights, "device": args.device}
        if args.method == "raft"
        else {}
    )
    settings = {"out": str(args.out), "short_side": args.short_side, "bound": args.bound,
                "format": args.format, "method": args.method, "upscale": args.upscale}  # fmt: skip
    failures, frames, written = _run_jobs(todo, args.workers, (args.method, opts, settings))
    print(f"done: {len(todo) - len(failures)} extracted, {done_before} skipped, {len(failures)} failed")
    if frames:
        per100 = _human(written / frames * 100)
        print(f"wrote {_human(written)} ({per100} per 100 flow frames, {args.format})")
    for video_id, reason in failures:
        print(f"  FAILED {video_id}: {reason}")
    return 1 if failures and args.strict else 0


def _run_jobs(todo: list[FlowJob], workers: int, init: tuple) -> tuple[list[tuple[str, str]], int, int]:
    """Run the jobs; returns (sorted failures, flow frames written, bytes written). Ctrl-C or SIGTERM stops
    them at once and removes the temp files of the videos in progress (`run_pool`)."""
    from vidrec.flow.storage import remove_stale_temps

    out = init[2]["out"]
    preload = ["vidrec.flow.cli", "vidrec.flow.estimators", "vidrec.flow.storage"]
    return run_pool(todo, _process, workers=workers, initializer=_init_worker, initargs=init, preload=preload,
                    cleanup=lambda job: remove_stale_temps(out, job.video_id))  # fmt: skip
