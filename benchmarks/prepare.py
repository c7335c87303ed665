"""Per-epoch read speed after `vidrec prepare` vs the original files (goal: at least 3x).

One epoch = every video read once the way training reads it: a TSN-8 training sample (one random frame in
each of 8 segments) decoded at the training short side (`--resize`), random crop + flip, uint8 out, in one
process with one decoder thread (so videos/s is per core). Three sources, rows interleaved and repeated
(`--repeats`, best round kept, spread shown):

- the original files;
- `vidrec prepare --format video`: H.264, a keyframe every `--gop` frames, no B-frames, at the short side;
- `vidrec prepare --format frames`: a uint8 frame store at the short side, read memory-mapped.

The one-off preparation (all `--workers`) and the disk use are reported beside them. Every prepared item
is checked against the original: the frame store must give the same uint8 clips exactly; the re-encoded
copy must give the same frame count and clips within a few grey levels (it is lossy).

Input: generated UCF101-like sets (320x240, 25 fps: MPEG-4 part 2 with GOP 12 in avi as UCF101's files,
and H.264 with x264's defaults) under `--workdir`, or a folder of real videos with `--files DIR` (e.g.
`../shared/data/msrvtt_sample/videos`). The last line is
`RESULT prepare speedup_video=X speedup_frames=Y` (geometric means over the sets).

Example: python benchmarks/prepare.py --videos 12 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vidrec import benchdocs

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", default="", help="folder of real videos instead of the generated sets")
    p.add_argument("--videos", type=int, default=12, help="generated videos per set (default 12)")
    p.add_argument(
        "--video-frames", type=int, default=175, help="frames per generated video (default 175: 7 s)"
    )
    p.add_argument(
        "--resize", type=int, default=128, help="training short side = prepared short side (default 128)"
    )
    p.add_argument("--crop", type=int, default=112, help="training crop (default 112)")
    p.add_argument("--segments", type=int, default=8, help="TSN segments per clip (default 8)")
    p.add_argument("--gop", type=int, default=8, help="keyframe interval of the re-encoded copy (default 8)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; best kept (default 3)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="prepare workers (default: all cores)"
    )
    p.add_argument("--workdir", default="runs/bench_prepare", help="where inputs and copies are written")
    p.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    return p.parse_args(argv)


def input_sets(args) -> dict[str, Path]:
    """name -> folder of videos."""
    if args.files:
        return {Path(args.files).name: Path(args.files)}
    from train_throughput import make_videos

    work = Path(args.workdir)
    sets = {}
    for codec, name in (
        ("mpeg4", "MPEG-4 avi, GOP 12 (UCF101's format)"),
        ("h264", "H.264 mp4, x264 defaults"),
    ):
        folder = work / f"videos_{codec}"
        make_videos(folder, args.videos, args.video_frames, codec)
        sets[name] = folder
    return sets


def prepare(folder: Path, out: Path, fmt: str, args) -> float:
    """Run `vidrec prepare` afresh; returns its wall seconds."""
    from vidrec.cli import main

    shutil.rmtree(out, ignore_errors=True)
    tic = time.perf_counter()
    cmd = ["prepare", str(folder), "--out", str(out), "--format", fmt, "--short-side", str(args.resize)]
    rc = main([*cmd, "--gop", str(args.gop), "--workers", str(args.workers), "--no-register"])
    if rc != 0:
        raise SystemExit(f"vidrec prepare failed on {folder} ({fmt}), exit code {rc}")
    return time.perf_counter() - tic


def dataset(folder: Path, prepared: Path | None, args):
    from vidrec.data import VideoDataset, VideoRecord, build_sampler, train_transform
    from vidrec.jobs import list_jobs

    jobs = list_jobs(folder)
    records = [VideoRecord(os.path.relpath(j.path, folder), 0, j.video_id) for j in jobs]
    return VideoDataset(
        records,
        root=folder,
        sampler=build_sampler("tsn", num_segments=args.segments, train=True),
        transform=train_transform(args.crop, kind="crop", normalize=False),
        size=args.resize,
        prepared=prepared,
        strict=True,
    )


def epoch_rate(ds, epoch: int) -> float:
    """videos/s of one epoch read in this process."""
    ds.set_epoch(epoch)
    tic = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return len(ds) / (time.perf_counter() - tic)


def check_items(original, copy, *, exact: bool) -> float:
    """Max over items of the mean |difference| of the uint8 clips; asserts equality when `exact`."""
    worst = 0.0
    for i in range(len(original)):
        a, b = original[i]["rgb"], copy[i]["rgb"]
        if a.shape != b.shape:
            raise SystemExit(f"item {i}: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
        diff = (a.float() - b.float()).abs().mean().item()
        if exact and diff != 0:
            raise SystemExit(
                f"item {i}: the frame store differs from decoding the original (mean |d| {diff})"
            )
        worst = max(worst, diff)
    return worst


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run_set(name: str, folder: Path, args) -> dict:
    work = Path(args.workdir) / "copies" / folder.name
    secs = {fmt: prepare(folder, work / fmt, fmt, args) for fmt in ("video", "frames")}
    sources = {"original": None, "video": work / "video", "frames": work / "frames"}
    datasets = {k: dataset(folder, v, args) for k, v in sources.items()}
    for k in ("video", "frames"):
        if datasets[k].prepared is None or len(datasets[k].prepared.files) != len(datasets[k]):
            raise SystemExit(f"{name}: the dataset did not take the {k} copy for every video")
    diff_video = check_items(datasets["original"], datasets["video"], exact=False)
    check_items(datasets["original"], datasets["frames"], exact=True)
    rates = {k: [] for k in sources}
    for r in range(args.repeats):
        for k, ds in datasets.items():
            rates[k].append(epoch_rate(ds, r))
    n = len(datasets["original"])
    return {
        "name": name,
        "videos": n,
        "rates": rates,
        "prepare_s": {k: v / n for k, v in secs.items()},
        "disk": {
            "original": disk_mb(folder),
            "video": disk_mb(work / "video"),
            "frames": disk_mb(work / "frames"),
        },
        "diff_video": diff_video,
    }


def _fmt(samples: list[float]) -> str:
    best = max(samples)
    return f"{best:.1f} ±{(best - min(samples)) / best:.0%}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    results = [run_set(name, folder, args) for name, folder in input_sets(args).items()]
    what = (
        f"per-epoch read speed, videos/s on one core (TSN-{args.segments} training samples at short side "
        f"{args.resize}, crop {args.crop}, uint8), best of {args.repeats} interleaved rounds ± spread"
    )
    print("\n" + what)
    header = ["files", "original", f"GOP-{args.gop} copy", "speedup", "frame store", "speedup",
              f"prepare s/video (copy / store, {args.workers} workers)", "disk MB (original / copy / store)",
              "copy mean abs diff"]  # fmt: skip
    table = ["| " + " | ".join(header) + " |", "|---|---|---|---|---|---|---|---|---|"]
    speed_v, speed_f = [], []
    for r in results:
        best = {k: max(v) for k, v in r["rates"].items()}
        sv, sf = best["video"] / best["original"], best["frames"] / best["original"]
        speed_v.append(sv)
        speed_f.append(sf)
        d, p = r["disk"], r["prepare_s"]
        rates = r["rates"]
        cells = [f"{r['name']} ({r['videos']})", _fmt(rates["original"]), _fmt(rates["video"]),
                 f"**{sv:.2f}x**", _fmt(rates["frames"]), f"**{sf:.2f}x**",
                 f"{p['video']:.2f} / {p['frames']:.2f}",
                 f"{d['original']:.1f} / {d['video']:.1f} / {d['frames']:.1f}",
                 f"{r['diff_video']:.2f}"]  # fmt: skip
        table.append("| " + " | ".join(cells) + " |")
    print("\n".join(table))
    gv = math.exp(np.mean(np.log(speed_v)))
    gf = math.exp(np.mean(np.log(speed_f)))
    print(
        "frame store items equal the originals' exactly; the GOP copy is lossy (mean abs diff in grey levels)"
    )
    result = f"RESULT prepare speedup_video={gv:.2f} speedup_frames={gf:.2f}"
    print(result)
    if args.write_docs:
        text = [
            "## Preparing a dataset once (`benchmarks/prepare.py`)",
            "",
            f"`{benchdocs.command(argv)}`: {what}. The frame store's items equal the originals' exactly;",
            "the GOP copy is lossy (mean abs diff in grey levels).",
            "",
            *table,
            "",
            f"`{result}` (geometric means over the sets). Machine: {benchdocs.machine()}.",
        ]
        benchdocs.write_section("prepare", "\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
