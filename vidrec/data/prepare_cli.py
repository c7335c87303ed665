"""`vidrec prepare`: a one-off preparation of a dataset's videos for fast training reads.

Re-encodes every video of a list file or folder to short-GOP H.264 (`--format video`, the default) or
decodes it once into a uint8 frame store (`--format frames`), optionally at a smaller short side, with
one worker per core, a progress bar, atomic per-video outputs (a killed run resumes where it stopped) and
`--shard i/n` across machines, like `vidrec flow`. It then writes the manifest `<out>/vidrec_prepared.json`
and registers the copy in the source root (`<root>/.vidrec_prepared.json`), where datasets on that root
find it by themselves once it is complete (see `vidrec.data.prepare`).

Example: vidrec prepare data/ucf101/trainlist01.txt --out data/ucf101_gop8 --short-side 128
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path

from vidrec.cli import UsageError, output_folder
from vidrec.data.prepare import (
    FORMATS,
    MANIFEST,
    PrepareSettings,
    is_prepared,
    prepare_video,
    read_manifest,
    register,
    remove_partial,
    write_manifest,
)
from vidrec.jobs import VideoJob, default_root, list_jobs, parse_shard, run_pool, shard_jobs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="list file (`path [label]` lines) or a folder of videos")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder list paths are relative to, the root datasets are pointed at "
        "(default: the list file's folder / the input folder)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder of the prepared copy")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="video",
        help="video: short-GOP H.264 mp4 per video (small, lossy); frames: a uint8 (N, H, W, 3) .npy per "
        "video, exact at the training decode size but N*H*W*3 bytes a video (default video)",
    )
    parser.add_argument(
        "--short-side",
        type=int,
        default=0,
        help="scale to this short side (use the training data.resize or more); 0 = native (default 0)",
    )
    parser.add_argument("--gop", type=int, default=8, help="video: keyframe every N frames (default 8)")
    parser.add_argument(
        "--crf", type=int, default=18, help="video: x264 quality, lower = better (default 18)"
    )
    parser.add_argument("--preset", default="veryfast", help="video: x264 preset (default veryfast)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument(
        "--shard", default=None, help="i/n: process only shard i of n (default: torchrun rank, else all)"
    )
    parser.add_argument("--strict", action="store_true", help="exit with code 1 when any video fails")
    parser.add_argument(
        "--no-register",
        action="store_true",
        help="do not name the copy in <root>/.vidrec_prepared.json (datasets then need "
        "data.prepared=OUT / VideoDataset(prepared=OUT) to use it)",
    )


_WORKER: dict = {}


def _init_worker(out: str, settings: dict) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core
    _WORKER.update(out=out, settings=PrepareSettings(**settings))


def _process(job: VideoJob) -> tuple[str, int, int, str | None]:
    """Prepare one video; returns (video_id, frames, bytes written, error or None)."""
    from vidrec.io import VideoDecodeError

    out, settings = _WORKER["out"], _WORKER["settings"]
    try:
        frames = prepare_video(job.path, out, job.video_id, settings)
        size = (Path(out) / settings.output_name(job.video_id)).stat().st_size
        return job.video_id, frames, size, None
    except (VideoDecodeError, OSError, ValueError) as e:
        return job.video_id, 0, 0, f"{type(e).__name__}: {e}"


class PrepareError(UsageError, ValueError):
    """Settings that cannot be used (bad values, or an output folder holding another kind of copy)."""


def _settings(args: argparse.Namespace) -> PrepareSettings:
    try:
        return PrepareSettings(args.format, args.short_side, args.gop, args.crf, args.preset)
    except ValueError as err:
        raise PrepareError(str(err)) from None


def _check_out(out: Path, settings: PrepareSettings) -> None:
    manifest = read_manifest(out)
    if manifest and manifest.get("settings") != asdict(settings):
        raise PrepareError(
            f"{out} holds a copy prepared with {manifest.get('settings')}, not {asdict(settings)}; "
            "choose another --out (or delete that folder) instead of mixing them"
        )


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    root = args.root or default_root(args.input)
    jobs = list_jobs(args.input, root, skip=[args.out])
    index, count = parse_shard(args.shard)
    # the copy keeps the sources' names: in their own folder it would replace them
    output_folder(args.out, "--out", overwrite=False, sources=[j.path for j in jobs])
    _check_out(args.out, settings)
    mine = shard_jobs(jobs, index, count)
    todo = [j for j in mine if not is_prepared(args.out, j.video_id, j.path, settings)]
    print(f"vidrec prepare: shard {index}/{count}: {len(mine)} videos, {len(mine) - len(todo)} already "
          f"prepared, {len(todo)} to do ({settings.format}, short side {settings.short_side or 'native'}) "
          f"on {args.workers} workers -> {args.out}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    sources = [(j.path, j.video_id) for j in jobs]
    try:
        failures, frames, written = run_pool(
            todo,
            _process,
            workers=args.workers,
            initializer=_init_worker,
            initargs=(str(args.out), asdict(settings)),
            preload=["vidrec.data.prepare_cli"],
            desc="prepare",
            cleanup=lambda job: remove_partial(args.out, job.video_id, settings),
        )
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: the manifest still records what is done (incomplete)
        write_manifest(args.out, sources, root, settings)
        raise
    manifest = write_manifest(args.out, sources, root, settings)
    print(
        f"done: {len(todo) - len(failures)} prepared, {len(mine) - len(todo)} skipped, {len(failures)} failed"
    )
    if frames:
        print(f"wrote {written / 1e6:.1f} MB ({written / frames / 1e3:.1f} kB a frame, {settings.format})")
    for video_id, reason in failures:
        print(f"  FAILED {video_id}: {reason} (datasets read the original)")
    _announce(args, root, manifest)
    return 1 if failures and args.strict else 0


def _announce(args: argparse.Namespace, root: Path, manifest: dict) -> None:
    where = args.out / MANIFEST
    if not manifest["complete"]:
        print(f"{where}: {manifest['pending']} videos of the input still to prepare (other shards?); "
              "datasets use the copy once a run finds it complete")  # fmt: skip
    if args.no_register:
        print(f"not registered: use data.prepared={args.out} (VideoDataset(prepared=...)) to read it")
        return
    try:
        registry = register(root, args.out)
    except OSError as err:
        print(f"could not register the copy in {root} ({err}); use data.prepared={args.out} to read it")
        return
    print(f"registered in {registry}: datasets on {root} read the copy once it is complete")
