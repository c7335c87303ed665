"""`vidrec synth`: write the synthetic temporal-order dataset (see vidrec.data.synthetic)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidrec.cli import UsageError, add_overwrite_argument, output_folder
from vidrec.data.synthetic import CLASSES, make_synthetic_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; resumable)")
    parser.add_argument("--per-class", type=int, default=20, help="videos per class (default 20)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    parser.add_argument("--size", type=int, default=64, help="frame height and width, even (default 64)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--classes", nargs="+", default=list(CLASSES), choices=CLASSES, metavar="NAME",
        help=f"classes to write (default all: {' '.join(CLASSES)})",
    )  # fmt: skip
    add_overwrite_argument(parser, "the lists of a folder that already holds them (videos are kept)")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="share of each class in test.txt")


def run(args: argparse.Namespace) -> int:
    # the lists are rewritten; the videos are kept (same seed and sizes, or refused by the dataset maker)
    output_folder(
        args.out, "dataset list", overwrite=args.overwrite, files=("train.txt", "test.txt", "classes.txt")
    )
    try:
        root = make_synthetic_dataset(
            args.out,
            per_class=args.per_class,
            frames=args.frames,
            size=args.size,
            fps=args.fps,
            seed=args.seed,
            classes=args.classes,
            test_fraction=args.test_fraction,
        )
    except ValueError as err:  # bad sizes / classes, or a folder holding another dataset
        raise UsageError(str(err)) from err
    n_train = len((root / "train.txt").read_text().splitlines())
    n_test = len((root / "test.txt").read_text().splitlines())
    print(f"wrote {root}: {n_train} train + {n_test} test videos, classes in {root / 'classes.txt'}")
    return 0
