"""`vidrec configs [NAME]`: the training configs shipped in the package, by name.

`vidrec train NAME key=value ...` runs one directly (`vidrec train lrcn_ucf101_rgb data.root=/data/UCF101`);
`vidrec configs NAME > my.yaml` prints one to start your own from.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("name", nargs="?", default="", help="print this config's YAML (default: list all)")


def _summary(text: str) -> str:
    """The first comment line of a config file (its one-line description)."""
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def run(args: argparse.Namespace) -> int:
    from vidrec.engine.config import builtin_configs, resolve_config

    if args.name:
        print(resolve_config(args.name).read_text(), end="")
        return 0
    configs = builtin_configs()
    width = max(map(len, configs), default=0)
    for name, path in configs.items():
        print(f"{name:{width}s}  {_summary(path.read_text())}")
    print(f"\n(in {next(iter(configs.values())).parent}; run one with `vidrec train NAME key=value ...`)")
    return 0
