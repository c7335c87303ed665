"""`vidrec flow`: extract optical flow for a list file or a folder of videos, in parallel, resumably.

Each video becomes `<out>/<video_id>.flow.npy` + `.flow.json` (or, with `--format denseflow`, a folder
`<out>/<video_id>/x_00001.jpg, y_00001.jpg, ...` + the JSON). Outputs are written atomically and
complete outputs are skipped, so a killed run is simply started again. `--shard i/n` (or torchrun's
RANK/WORLD_SIZE) splits the videos across machines. A video that cannot be decoded is listed in the
closing summary; the exit code is non-zero for failures only with `--strict`.

Example: vidrec flow data/ucf101/list.txt --root data/ucf101 --out data/ucf101_flow --workers 16
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from vidrec.cli import UsageError
from vidrec.flow.estimators import METHODS
from vidrec.progress import progress

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")


@dataclass(frozen=True)
class FlowJob:
    """One video to process."""

    path: str
    video_id: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="list file (`path [label]` lines) or a folder of videos")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder list paths are relative to (default: the list file's folder / the input folder)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--method", choices=METHODS, default="dis", help="flow method (default dis, tuned)")
    parser.add_argument("--bound", type=float, default=20.0, help="quantisation bound in px (default 20)")
    parser.add_argument(
        "--short-side", type=int, default=256, help="resize frames to this short side; 0 = native"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument(
        "--format", choices=("npy", "denseflow"), default="npy", help="output layout (default npy)"
    )
    parser.add_argument(
        "--shard", default=None, help="i/n: process only shard i of n (default: torchrun rank)"
    )
    parser.add_argument("--strict", action="store_true", help="exit with code 1 when any video fails")
    parser.add_argument(
        "--raft-weights", default="DEFAULT", help="RAFT state-dict path (default: torchvision cache)"
    )
    parser.add_argument("--raft-model", choices=("small", "large"), default="small")
    parser.add_argument("--device", default=None, help="RAFT device (default: cuda if present)")


def list_jobs(source: Path, root: Path | None = None) -> list[FlowJob]:
    """Videos from a list file (`path [label]` lines, `#` comments) or a folder (recursive, by extension)."""
    if source.is_dir():
        root = root or source
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())
    elif source.is_file():
        root = root or source.parent
        paths = [_list_path(line, root) for line in source.read_text().splitlines()]
        paths = [p for p in paths if p is not None]
    else:
        raise FileNotFoundError(f"{source}: no such list file or folder of videos")
    return [FlowJob(str(p), _video_id(p, root)) for p in paths]


def _list_path(line: str, root: Path) -> Path | None:
    parts = line.split("#", 1)[0].split()
    if not parts:
        return None
    if len(parts) > 1 and parts[-1].lstrip("-").isdigit():  # trailing label
        parts = parts[:-1]
    path = Path(" ".join(parts))
    return path if path.is_absolute() else root / path


def _video_id(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("").as_posix()


class ShardError(UsageError, ValueError):
    """A malformed --shard value."""


def parse_shard(shard: str | None, env: dict | None = None) -> tuple[int, int]:
    """`"i/n"` -> `(i, n)`; without it, torchrun's `RANK`/`WORLD_SIZE`, else `(0, 1)`."""
    env = os.environ if env is None else env
    if shard is None:
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    try:
        i, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise ShardError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if not 0 <= i < n:
        raise ShardError(f"--shard {shard}: need 0 <= i < n")
    return i, n


def shard_jobs(jobs: list[FlowJob], index: int, count: int) -> list[FlowJob]:
    """Every `count`-th job by sorted video id, starting at `index` (shards are disjoint and cover all)."""
    return sorted(jobs, key=lambda j: j.video_id)[index::count]


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


def _process(job: FlowJob) -> tuple[str, int, str | None]:
    """Extract and store one video; returns (video_id, flow frames, error or None)."""
    from vidrec.flow import storage
    from vidrec.io import VideoDecodeError, probe

    w = _WORKER
    try:
        storage.remove_stale_temps(w["out"], job.video_id)
        q = storage.flow_video(
            job.path, short_side=w["short_side"], bound=w["bound"], estimator=w["estimator"]
        )
        save = storage.save_flow_denseflow if w["format"] == "denseflow" else storage.save_flow
        fps = probe(job.path).fps
        save(w["out"], job.video_id, q, bound=w["bound"], method=w["method"], fps=fps)
        return job.video_id, len(q), None
    except (VideoDecodeError, OSError, ValueError) as e:
        return job.video_id, 0, f"{type(e).__name__}: {e}"


def run(args: argparse.Namespace) -> int:
    from vidrec.flow.storage import is_complete

    index, count = parse_shard(args.shard)
    jobs = shard_jobs(list_jobs(args.input, args.root), index, count)
    todo = [j for j in jobs if not is_complete(args.out, j.video_id, bound=args.bound, method=args.method)]
    done_before = len(jobs) - len(todo)
    print(f"vidrec flow: shard {index}/{count}: {len(jobs)} videos, {done_before} already complete, "
          f"{len(todo)} to do with {args.method} on {args.workers} workers -> {args.out}")  # fmt: skip
    if args.method == "raft" and todo:  # here, not as a broken worker pool
        from vidrec.flow.estimators import RaftWeightsMissing, require_raft_weights

        try:
            require_raft_weights(args.raft_model, args.raft_weights or "DEFAULT")
        except RaftWeightsMissing as e:
            print(f"vidrec flow: error: {e}", file=sys.stderr)
            return 2
    opts = (
        {"model": args.raft_model, "weights": args.raft_weights, "device": args.device}
        if args.method == "raft"
        else {}
    )
    settings = {"out": str(args.out), "short_side": args.short_side, "bound": args.bound,
                "format": args.format, "method": args.method}  # fmt: skip
    failures = _run_jobs(todo, args.workers, (args.method, opts, settings))
    print(f"done: {len(todo) - len(failures)} extracted, {done_before} skipped, {len(failures)} failed")
    for video_id, reason in failures:
        print(f"  FAILED {video_id}: {reason}")
    return 1 if failures and args.strict else 0


def _run_jobs(todo: list[FlowJob], workers: int, init: tuple) -> list[tuple[str, str]]:
    failures, frames, start = [], 0, time.perf_counter()
    bar = progress(total=len(todo), unit="video", dynamic_ncols=True)

    def record(video_id: str, n: int, err: str | None) -> None:
        nonlocal frames
        frames += n
        if err:
            failures.append((video_id, err))
        bar.set_postfix_str(f"{frames / max(time.perf_counter() - start, 1e-9):.1f} frames/s", refresh=False)
        bar.update()

    if workers <= 1 or len(todo) <= 1:
        _init_worker(*init)
        for job in todo:
            record(*_process(job))
    else:
        # Workers come from a forkserver, never forked from this process: a fork of a process whose
        # OpenCV or swscale thread pools have run hangs in the child as soon as it touches them.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["vidrec.flow.cli", "vidrec.flow.estimators", "vidrec.flow.storage"])
        n = min(workers, len(todo))
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
            for fut in as_completed([pool.submit(_process, j) for j in todo]):
                record(*fut.result())
    bar.close()
    return sorted(failures)
