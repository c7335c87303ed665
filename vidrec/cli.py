"""The `vidrec` command: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the work and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so `vidrec --help` stays fast and a broken optional piece cannot break the rest.

Errors are handled here once for every command (`run_command`): a `UsageError` (bad argument, config,
missing or unreadable input: the user can fix it) prints one line and exits 2; any other exception
prints one line naming its type and exits 1; `--debug` (before or after the command) shows the
traceback instead. A stop signal ends a command through the same path (`main` turns SIGTERM and SIGUSR1,
like Ctrl-C, into `vidrec.interrupt.Interrupted`, a KeyboardInterrupt, so clean-up code runs): one line,
exit 130 for Ctrl-C, 143 for SIGTERM / SIGUSR1. A command raises, it does not print and return codes for
errors.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("vidrec.demo", "train and evaluate LRCN vs a single-frame baseline on a synthetic dataset"),
    "info": ("vidrec.io.cli", "print a video's metadata (fps, frames, duration, size)"),
    "sheet": ("vidrec.io.cli_sheet", "sample frames from a video and write a contact-sheet PNG"),
    "synth": ("vidrec.data.synthetic_cli", "generate the synthetic temporal-order video dataset"),
    "flow": ("vidrec.flow.cli", "extract optical flow for a list or folder of videos"),
    "prepare": ("vidrec.data.prepare_cli", "re-encode a dataset to short GOPs or a uint8 frame store, once"),
    "models": ("vidrec.models.cli", "list registered models with parameters and FLOPs"),
    "train": ("vidrec.engine.cli_train", "train a recognizer from a YAML config"),
    "eval": ("vidrec.engine.cli_eval", "evaluate a checkpoint: K clips x N crops, or LRCN's protocol"),
    "predict": ("vidrec.engine.cli_predict", "run a checkpoint on a video or a folder of videos"),
    "caption": (
        "vidrec.tasks.cli_caption",
        "describe images or videos in a sentence with a caption checkpoint",
    ),
    "export": ("vidrec.engine.cli_export", "export a checkpoint to ONNX or torch.export"),
    "visualize": ("vidrec.visualize.cli", "activation maximisation and Grad-CAM pictures from a checkpoint"),
    "configs": ("vidrec.engine.cli_configs", "list the built-in training configs, or print one"),
    "dff": ("vidrec.dff.cli", "Deep Feature Flow: video segmentation with key frames (run, pretrain-flow)"),
    "weights": ("vidrec.models.cli_weights", "put ImageNet weight files where torchvision looks (offline)"),
    "app": ("vidrec.app.cli", "a local web page and JSON API that run your checkpoints on your own video"),
}


class UsageError(Exception):
    """A usage, config or input error the user can fix: `vidrec` prints its message and exits 2.

    Subclass it (with a builtin base where callers expect one, e.g. ``class ConfigError(UsageError,
    ValueError)``) or raise it directly; the message names the thing and says what to do.
    """


class OutputExistsError(UsageError, FileExistsError):
    """An output exists and ``--overwrite`` was not given (`output_path`); a FileExistsError for library
    callers."""


# OSErrors that mean "the path you gave is wrong" (exit 2) rather than "the run failed" (exit 1)
_USAGE_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)
_OS_HINTS = {
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EEXIST: "choose another path or remove it first",
    errno.ENOSPC: "free disk space or write somewhere else",
    errno.EDQUOT: "free disk space or write somewhere else",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "check its permissions or write somewhere else",
    errno.EPERM: "check its permissions or write somewhere else",
    errno.ENAMETOOLONG: "a name that long is no file; check the list or config that gives it",
}


def input_file(path: str | Path, what: str) -> Path:
    """`path` if it is a regular file; else a UsageError naming `what` (stdin, FIFOs and devices are refused:
    vidrec seeks in its inputs and would hang or read a partial stream)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist; check the path")
    kind = "a folder" if path.is_dir() else "not a regular file (a pipe, stdin or a device)"
    raise UsageError(f"{what} {path} is {kind}; give a regular file")


def output_path(path: str | Path, what: str, *, overwrite: bool, inputs: Iterable = ()) -> Path:
    """`path` checked as an output file, the one check every writing command goes through.

    Refused (UsageError naming the path): an output that is one of `inputs` (the same file, through
    symlinks and hard links), and an existing output unless `overwrite` (the ``--overwrite`` flag).
    """
    path = Path(path)
    for source in inputs:
        if _same_file(path, Path(source)):
            raise UsageError(
                f"{what} {path} is also an input of this command ({source}); write it somewhere else"
            )
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(
            f"{what} {path} already exists; pass --overwrite to replace it, or choose another path"
        )
    return path


def output_folder(
    folder: str | Path,
    what: str,
    *,
    overwrite: bool,
    files: Iterable[str] = (),
    inputs: Iterable = (),
    sources: Iterable = (),
) -> Path:
    """`folder` checked as an output folder: each of its `files` (names) through `output_path`, and
    never a folder that is or holds one of `sources` (files or folders whose copies it would receive:
    writing the copy there would replace the source). Raises UsageError naming the path."""
    folder = Path(folder)
    for source in sources:
        if _inside(Path(source), folder):
            raise UsageError(
                f"{what} {folder} is or holds the source {source}; its outputs would replace the "
                "source files: write them to a new folder"
            )
    inputs = tuple(inputs)
    for name in files:
        output_path(folder / name, what, overwrite=overwrite, inputs=inputs)
    return folder


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where the names lead
        return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    """True when `path` is `folder` or lies under it, by name or after resolving symlinks (a linked
    folder of sources is written through as well)."""
    for p, f in (
        (Path(os.path.abspath(path)), Path(os.path.abspath(folder))),
        (path.resolve(), folder.resolve()),
    ):
        if p == f or f in p.parents:
            return True
    return False


def add_overwrite_argument(parser: argparse.ArgumentParser, what: str = "an existing output") -> None:
    """`--overwrite`: the one flag that lets a command replace `what` (see `output_path`)."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} (default: refuse)")


def add_model_factory_argument(parser: argparse.ArgumentParser) -> None:
    """`--model-factory`: the only way a checkpoint's own `module:function` model factory gets imported."""
    parser.add_argument(
        "--model-factory",
        default="",
        metavar="MODULE:FUNCTION",
        help="allow the checkpoint's own model factory (a `module:function` that is not a registered model) "
        "to be imported; give it only for a module you trust (default: registered models only)",
    )


def printable(text: str) -> str:
    """`text` safe to print on a terminal: control and format characters (ESC, which starts an escape
    sequence, CR, BEL, newlines, C1 codes, bidi overrides) are shown escaped (``\\x1b``), so a name read
    from a file (a class name in a checkpoint) cannot restyle, hide or rewrite what the screen shows."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def exit_code(err: BaseException) -> int:
    """2 for usage / config / input errors, 1 for runtime failures (see the module docstring)."""
    too_long = isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG  # an over-long field of a list
    return 2 if isinstance(err, (UsageError, *_USAGE_OS_ERRORS)) or too_long else 1


def describe(err: BaseException) -> str:
    """One line for an error: its message, plus what to do for an OSError."""
    if isinstance(err, OSError) and err.errno is not None:
        name = str(err.filename or "")
        name = f"{name[:60]}...({len(name)} characters)...{name[-30:]}" if len(name) > 200 else name
        where = f"{name}: " if name else ""
        hint = _OS_HINTS.get(err.errno)
        return f"{where}{err.strerror or err}" + (f"; {hint}" if hint else "")
    message = printable(" ".join(str(err).split())) or type(err).__name__
    if isinstance(err, UsageError | ValueError | RuntimeError | OSError | LookupError):
        return message.strip("'\"") if isinstance(err, KeyError) else message
    return f"{type(err).__name__}: {message} (an unexpected error; rerun with --debug for the traceback)"


def run_command(command: str, args: argparse.Namespace) -> int:
    """Run a subcommand's `run(args)`, turning exceptions into one line and an exit code."""
    debug = bool(getattr(args, "debug", False))
    try:
        return int(importlib.import_module(COMMANDS[command][0]).run(args) or 0)
    except KeyboardInterrupt as err:
        if debug:
            traceback.print_exc()
        return _interrupted(command, err)
    except Exception as err:  # noqa: BLE001 - the one place every command's errors end up
        if debug:
            traceback.print_exc()
        print(f"vidrec {command}: error: {describe(err)}", file=sys.stderr)
        return exit_code(err)


def _interrupted(command: str, err: KeyboardInterrupt) -> int:
    """Print the line of a command ended by Ctrl-C or a stop signal; its exit code (130 / 143)."""
    from vidrec import interrupt

    line = getattr(err, "line", None)
    line = interrupt.describe(interrupt.signum_of(err)) if line is None else line
    if line:  # "": a rank other than 0 of a training job, which says nothing
        print(f"vidrec {command}: {line}" if command else f"vidrec: {line}", file=sys.stderr, flush=True)
    return getattr(err, "exit_code", 130)


def _add_debug(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show the full traceback of an error"
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with `command`, that subcommand's full parser (imports its module)."""
    parser = argparse.ArgumentParser(
        prog="vidrec",
        description="vidrec: deep video recognition (LRCN, PreRNN, TSN/two-stream, ST-ResNet, DFF).",
        epilog="Run `vidrec COMMAND --help` for a command's options.",
    )
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
            _add_debug(p, argparse.SUPPRESS)  # `vidrec CMD --debug` as well as `vidrec --debug CMD`
    return parser


def main(argv: list[str] | None = None) -> int:
    from vidrec.interrupt import raising

    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    with raising():  # SIGTERM / SIGUSR1 end a command like Ctrl-C: clean-up runs, one line
        try:  # building the parser imports the command's module (torch...): Ctrl-C there is no error
            parser = build_parser(command if command in COMMANDS else None)
            args = parser.parse_args(argv)
        except KeyboardInterrupt as err:
            return _interrupted(command if command in COMMANDS else "", err)
        if args.command is None:
            parser.print_help()
            return 2
        return run_command(args.command, args)


if __name__ == "__main__":
    # `python -m vidrec.cli` (torchrun) runs this file as `__main__`: call the imported module's main so
    # that the UsageError every other module raises is the class `exit_code` checks (exit 2, not 1).
    from vidrec.cli import main as _main

    sys.exit(_main())
