"""The `vidrec` command: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the work and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so `vidrec --help` stays fast and a broken optional piece cannot break the rest.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("vidrec.demo", "train and evaluate LRCN vs a single-frame baseline on a synthetic dataset"),
    "info": ("vidrec.io.cli", "print a video's metadata (fps, frames, duration, size)"),
    "sheet": ("vidrec.io.cli_sheet", "sample frames from a video and write a contact-sheet PNG"),
    "synth": ("vidrec.data.synthetic_cli", "generate the synthetic temporal-order video dataset"),
    "flow": ("vidrec.flow.cli", "extract optical flow for a list or folder of videos"),
    "models": ("vidrec.models.cli", "list registered models with parameters and FLOPs"),
    "train": ("vidrec.engine.cli_train", "train a recognizer from a YAML config"),
    "eval": ("vidrec.engine.cli_eval", "evaluate a checkpoint with the K-clip x N-crop protocol"),
    "predict": ("vidrec.engine.cli_predict", "run a checkpoint on a video or a folder of videos"),
    "export": ("vidrec.engine.cli_export", "export a checkpoint to ONNX or torch.export"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with `command`, that subcommand's full parser (imports its module)."""
    parser = argparse.ArgumentParser(
        prog="vidrec",
        description="vidrec: deep video recognition (LRCN, PreRNN, two-stream, ST-ResNet, DFF).",
        epilog="Run `vidrec COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
