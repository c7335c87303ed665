"""`vidrec info VIDEO|FOLDER|LIST...`: metadata of videos; `--check` decodes them all and reports damage."""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from vidrec.io.errors import VideoDamageWarning, VideoDecodeError
from vidrec.io.video import VideoMeta, VideoReader
from vidrec.progress import progress

VIDEO_EXTS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".gif",
    ".flv",
    ".wmv",
    ".3gp",
)
LIST_EXTS = (".txt", ".csv", ".lst", ".list")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the metadata of videos: codec, size as displayed, frame rate (the real average for "
        "variable-rate files), frame count (counted from the packets as a player shows them, not "
        "trusted from the header) and duration. Truncation is found from the header without decoding. "
        "With --check every frame is decoded, so damaged data is found too: run it on a dataset before "
        "a long training run. Exit status 1 when any video is unreadable, truncated or (with --check) "
        "damaged; the failures are listed at the end."
    )
    parser.epilog = "Examples: vidrec info clips/*.mp4 --json;  vidrec info --check data/UCF101/ --workers 8"
    parser.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO",
        help="video files (mp4, avi, mkv, webm, mov, gif...), folders (searched recursively by extension) "
        f"or list files ({', '.join(LIST_EXTS)}: one path per line, optional label after it, paths "
        "relative to the list's folder)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per line, not a table")
    parser.add_argument(
        "--check", action="store_true", help="decode every frame of every video and report damage (slower)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes for --check, one video each at a time (default: 0 = one per CPU core)",
    )
    parser.add_argument(
        "--keep-orientation",
        action="store_true",
        help="report the stored frame size, ignoring the display rotation (default: as displayed)",
    )


@dataclass
class Report:
    """What `inspect_video` found about one file: `meta` None when it cannot be read at all."""

    path: str
    meta: VideoMeta | None
    problems: list[str]
    checked: bool


def inspect_video(path: str, *, check: bool = False, autorotate: bool = True) -> Report:
    """Metadata and defects of one video; with `check`, every frame is decoded (`VideoReader.verify`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VideoDamageWarning)  # reported in the table instead
            with VideoReader(path, threads=1, autorotate=autorotate) as reader:
                problems = reader.verify() if check else list(reader.meta.problems)
                return Report(path, reader.meta, problems, check)
    except VideoDecodeError as e:
        return Report(path, None, [e.reason], check)


def list_videos(sources: list[str]) -> list[str]:
    """Expand folders (recursive, by extension) and list files; other paths are kept as given."""
    out = []
    for source in map(Path, sources):
        if source.is_dir():
            out += sorted(str(p) for p in source.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())
        elif source.suffix.lower() in LIST_EXTS and source.is_file():
            out += _list_file(source)
        else:
            out.append(str(source))
    return out


def _list_file(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        field = line.split("#", 1)[0].replace(",", " ").split()
        if not field or field[0].lower() in ("path", "video", "filename"):  # blank, comment or CSV header
            continue
        video = Path(field[0])
        out.append(str(video if video.is_absolute() else path.parent / video))
    return out


def _inspect_all(paths: list[str], *, check: bool, autorotate: bool, workers: int):
    """Reports in input order, with a progress bar when decoding."""
    bar = progress(total=len(paths), desc="checking", unit="video", disable=not check or len(paths) < 2)
    if not check or workers == 1 or len(paths) < 2:
        for path in paths:
            yield inspect_video(path, check=check, autorotate=autorotate)
            bar.update()
    else:
        context = multiprocessing.get_context("forkserver")  # no fork of a process holding decoder threads
        with ProcessPoolExecutor(min(workers, len(paths)), mp_context=context) as pool:
            jobs = [pool.submit(inspect_video, p, check=True, autorotate=autorotate) for p in paths]
            for job in jobs:
                yield job.result()
                bar.update()
    bar.close()


def run(args: argparse.Namespace) -> int:
    from vidrec.cli import UsageError

    paths = list_videos(args.videos)
    if not paths:
        raise UsageError(
            f"no videos found in {' '.join(args.videos)}; give video files, folders or list files"
        )
    workers = args.workers or os.cpu_count() or 1
    failed: list[Report] = []
    if not args.json:
        status = "  status" if args.check else ""
        tqdm.write(f"{'codec':<8} {'size':>9} {'fps':>7} {'frames':>7} {'seconds':>8}{status}  path")
    for report in _inspect_all(
        paths, check=args.check, autorotate=not args.keep_orientation, workers=workers
    ):
        if report.problems:
            failed.append(report)
        tqdm.write(_json(report) if args.json else _row(report))
    if failed:
        print(f"\n{len(failed)} of {len(paths)} videos failed:", file=sys.stderr)
        for report in failed:
            print(f"  {report.path}: {'; '.join(report.problems)}", file=sys.stderr)
    elif args.check:
        print(f"\nall {len(paths)} videos decode completely", file=sys.stderr)
    return 1 if failed else 0


def _row(report: Report) -> str:
    status = ("  " + ("ok" if not report.problems else "DAMAGED").ljust(7)) if report.checked else ""
    meta = report.meta
    if meta is None:
        return f"{'-':<8} {'-':>9} {'-':>7} {'-':>7} {'-':>8}{status}  {report.path}  (unreadable)"
    size = f"{meta.width}x{meta.height}"
    row = f"{meta.codec:<8} {size:>9} {meta.fps:>7.3f} {meta.num_frames:>7d} {meta.duration:>8.2f}{status}"
    note = "  (truncated)" if meta.truncated else ""
    return f"{row}  {report.path}{note}"


def _json(report: Report) -> str:
    record = dataclasses.asdict(report.meta) if report.meta is not None else {"path": report.path}
    record["problems"] = report.problems
    if report.checked:
        record["ok"] = not report.problems
    return json.dumps(record)
