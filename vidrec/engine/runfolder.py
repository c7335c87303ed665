"""The run folder of `vidrec train`: one run at a time, never overwritten by accident, no leftovers.

- `locked(out_dir)`: an exclusive `flock` on ``out_dir/.vidrec.lock`` for the whole run, so a second
  `vidrec train` into the same folder stops at once. The lock goes away with the process, even on SIGKILL
  (a lock file a killed run left behind blocks nothing), and not later: processes forked from the run
  (DataLoader workers, which may outlive it by seconds) do not hold it. A run that ends, also by a stop
  signal, deletes the file.
- `check_fresh(out_dir, resume=..., overwrite=...)`: a folder holding a run is refused unless the run is
  resumed (``--resume``) or ``overwrite=true`` asks to delete its checkpoints and logs first.
- `remove_stale_temps(out_dir)`: temporary checkpoint files a killed write left behind.
- `trim_logs(out_dir, epochs=..., steps=...)`: on resume, drop the CSV rows written after the checkpoint
  (a kill between a row and the next checkpoint would otherwise repeat them).
- `agree_on_checkpoint(path, info, device)`: before a distributed resume, every rank must see the same
  checkpoint file (a run folder not shared between nodes stops the job with `RunFolderNotShared`).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from vidrec.cli import UsageError
from vidrec.engine.distributed import DistInfo, all_gather_objects
from vidrec.engine.schema import ConfigError

RUN_FILES = ("last.safetensors", "best.safetensors", "metrics.csv", "steps.csv")
_DERIVED = ("curves.png", "config.yaml", "tb", "eval")  # deleted with the run files on overwrite
LOCK_NAME = ".vidrec.lock"


class RunFolderError(UsageError, RuntimeError):
    """The run folder is in use by another run, or holds a run this one would overwrite."""


_HELD: set[int] = set()  # descriptors of the locks this process holds


def _close_held_in_child() -> None:
    """After a fork: the child's copies of the lock descriptors are closed (the parent keeps its lock).

    A flock belongs to the open file, which a forked child shares; a DataLoader worker that outlives a
    killed run by seconds would otherwise keep the run folder locked for them.
    """
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


@contextlib.contextmanager
def locked(out_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on `out_dir` (created) for the duration of the block."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fd = _lock(path)
    _HELD.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield out_dir
    finally:
        _HELD.discard(fd)
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding the lock (see `_lock`)
        os.close(fd)  # releases the lock


def _lock(path: Path, tries: int = 10) -> int:
    """A descriptor of `path` holding its exclusive flock; RunFolderError when another process holds it.

    The holder before us deletes the file as it ends: locked after that, our descriptor would name a
    deleted file that a third run does not see. So the lock counts only on the file the path names.
    """
    for _ in range(tries - 1):
        fd = _flock(path)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    return _flock(path)  # a file system without stable inode numbers: the lock as it is


def _flock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunFolderError(
            f"run folder {path.parent} is in use by another vidrec train (pid {holder}); wait for it to "
            "finish or choose another out_dir"
        ) from None
    return fd


def existing_run_files(out_dir: str | Path) -> list[str]:
    """Names of the run files (checkpoints, CSV logs) already in `out_dir`."""
    out_dir = Path(out_dir)
    return [name for name in RUN_FILES if (out_dir / name).exists()]


def check_fresh(out_dir: str | Path, *, resume: str, overwrite: bool) -> None:
    """Refuse to start a fresh run over an existing one; with `overwrite`, delete the old run first."""
    out_dir = Path(out_dir)
    found = existing_run_files(out_dir)
    if not found or resume:
        return
    if not overwrite:
        raise RunFolderError(
            f"out_dir {out_dir} already holds a run ({', '.join(found)}); continue it with --resume, "
            "start afresh with overwrite=true (deletes its checkpoints and logs), or choose another out_dir"
        )
    for name in (*RUN_FILES, *_DERIVED):
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def remove_stale_temps(out_dir: str | Path) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>`` files of interrupted checkpoint writes; returns what was removed."""
    stale = sorted(Path(out_dir).glob(".*.safetensors.tmp-*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def trim_logs(out_dir: str | Path, *, epochs: int, steps: int) -> None:
    """Keep the `metrics.csv` rows of epochs <= `epochs` and the `steps.csv` rows of steps <= `steps`."""
    out_dir = Path(out_dir)
    _trim_csv(out_dir / "metrics.csv", "epoch", epochs)
    _trim_csv(out_dir / "steps.csv", "step", steps)


def _trim_csv(path: Path, key: str, last: int) -> None:
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames or [], list(reader)
    keep = [r for r in rows if _int(r.get(key)) is not None and _int(r.get(key)) <= last]
    if len(keep) == len(rows):
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        writer.writerows(keep)
    os.replace(tmp, path)


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


class RunFolderNotShared(ConfigError):
    """The ranks of a distributed run do not see the same checkpoint to resume from."""


def checkpoint_fingerprint(path: Path) -> tuple[int, str] | None:
    """(size, sha256) of the file at `path`, or None when there is none."""
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        return path.stat().st_size, hashlib.file_digest(fh, "sha256").hexdigest()


def agree_on_checkpoint(path: Path, info: DistInfo, device: torch.device) -> bool:
    """True when every rank sees the same file at `path`, False when none sees one; otherwise every rank
    raises `RunFolderNotShared` naming what each rank sees (a collective: all ranks call it)."""
    seen = all_gather_objects(checkpoint_fingerprint(path))
    if all(s == seen[0] for s in seen):
        return seen[0] is not None
    what = "; ".join(
        f"rank {r}: " + (f"sha256 {s[1][:12]} ({s[0]} bytes)" if s else "no file") for r, s in enumerate(seen)
    )
    raise RunFolderNotShared(
        f"resume: the ranks do not see the same {path} ({what}). Every node must read one shared run folder "
        "(out_dir on a shared file system) or an identical copy of the checkpoint; see "
        "docs/guides/training.md, 'Many GPUs and machines'"
    )
