"""`vidrec info VIDEO...`: print each video's metadata."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from vidrec.io.errors import VideoDecodeError
from vidrec.io.video import probe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the metadata of one or more videos: codec, size, frame rate, frame count (counted from "
        "the packets, not trusted from the header) and duration. Unreadable files are reported and "
        "make the command exit with status 1."
    )
    parser.epilog = "Example: vidrec info clips/*.mp4 --json"
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (mp4, avi, mkv, webm, gif)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line, not a table")


def run(args: argparse.Namespace) -> int:
    failed = 0
    if not args.json:
        print(f"{'codec':<8} {'size':>9} {'fps':>7} {'frames':>7} {'seconds':>8}  path")
    for path in args.videos:
        try:
            meta = probe(path)
        except VideoDecodeError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps(dataclasses.asdict(meta)))
        else:
            size = f"{meta.width}x{meta.height}"
            row = f"{meta.codec:<8} {size:>9} {meta.fps:>7.3f} {meta.num_frames:>7d} {meta.duration:>8.2f}"
            print(f"{row}  {path}")
    return 1 if failed else 0
