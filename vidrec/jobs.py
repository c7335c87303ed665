"""One job per video over a list file or a folder: listing, sharding, and a worker pool with a progress bar.

The machinery behind `vidrec flow` and `vidrec prepare`: both list videos the same way, split them across
machines with `--shard i/n` (or torchrun's RANK / WORLD_SIZE), skip what an earlier run completed, and run
one worker process per core from a forkserver, with a progress bar and a closing list of failures.

A worker function takes a `VideoJob` and returns `(video_id, frames done, bytes written, error or None)`;
it must live at module level (it is pickled by name) and read its settings from what the pool's
initializer stored.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from vidrec.cli import UsageError
from vidrec.interrupt import Interrupted, describe, ignore_in_worker, signum_of
from vidrec.progress import progress

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")
DERIVED_SUFFIXES = (".flow.mkv",)  # `vidrec flow` outputs: never inputs of a folder walk
PREPARED_MANIFEST = "vidrec_prepared.json"  # vidrec.data.prepare.MANIFEST: a folder holding it is a copy

JobResult = tuple[str, int, int, "str | None"]


@dataclass(frozen=True)
class VideoJob:
    """One video to process: its path and its id (path relative to the root, no extension, `/`)."""

    path: str
    video_id: str


def list_jobs(source: Path, root: Path | None = None, *, skip: Sequence[Path] = ()) -> list[VideoJob]:
    """Videos from a list file (`path [label]` lines, `#` comments) or a folder (recursive, by extension).

    A folder walk leaves out the folders in `skip` (the command's own output folder, when it lies inside
    the input) and what `_walk_videos` leaves out, so a re-run never takes its own outputs for input.
    """
    source = Path(source)
    if source.is_dir():
        root = root or source
        paths = sorted(_walk_videos(source, skip))
    elif source.is_file():
        root = root or source.parent
        paths = [_list_path(line, root) for line in source.read_text().splitlines()]
        paths = [p for p in paths if p is not None]
    else:
        raise FileNotFoundError(f"{source}: no such list file or folder of videos")
    return [VideoJob(str(p), video_id(p, root)) for p in paths]


def default_root(source: Path) -> Path:
    """The folder list paths are relative to when no root is given: the folder itself, or the list's."""
    source = Path(source)
    return source if source.is_dir() else source.parent


def _walk_videos(folder: Path, skip: Sequence[Path] = ()):
    """Video files under `folder`, following symlinked folders (datasets are often linked in).

    Each real folder is walked once (a symlink cycle ends there), and these are left out: the `skip`
    folders, prepared copies (folders holding a `vidrec_prepared.json` manifest) and flow videos
    (`*.flow.mkv`), all outputs of vidrec's own commands.
    """
    top = os.path.realpath(folder)
    skipped = {os.path.realpath(p) for p in skip} - {top}  # outputs beside the videos: left out by name
    seen: set[str] = set()
    for parent, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen or real in skipped or (real != top and PREPARED_MANIFEST in files):
            dirs[:] = []  # walked already (a link cycle), or an output: neither it nor its sub-folders
            continue
        seen.add(real)
        dirs.sort()
        for name in files:
            path = Path(parent) / name
            if path.suffix.lower() in VIDEO_EXTS and not name.endswith(DERIVED_SUFFIXES) and path.is_file():
                yield path


def _list_path(line: str, root: Path) -> Path | None:
    parts = line.split("#", 1)[0].split()
    if not parts:
        return None
    if len(parts) > 1 and parts[-1].lstrip("-").isdigit():  # trailing label
        parts = parts[:-1]
    path = Path(" ".join(parts))
    return path if path.is_absolute() else root / path


def video_id(path: Path, root: Path) -> str:
    """`path` relative to `root` without extension, with `/`; symlinks inside `root` are not followed out
    of it (the file name when outside `root`)."""
    path, root = Path(path), Path(root)
    for p, r in ((path, root), (path.absolute(), root.absolute()), (path.resolve(), root.resolve())):
        try:
            return p.relative_to(r).with_suffix("").as_posix()
        except ValueError:
            continue
    return Path(path.name).with_suffix("").as_posix()


class ShardError(UsageError, ValueError):
    """A malformed --shard value."""


def parse_shard(shard: str | None, env: dict | None = None) -> tuple[int, int]:
    """`"i/n"` -> `(i, n)`; without it, torchrun's `RANK`/`WORLD_SIZE`, else `(0, 1)`."""
    env = os.environ if env is None else env
    if shard is None:
        return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    try:
        i, n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise ShardError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if not 0 <= i < n:
        raise ShardError(f"--shard {shard}: need 0 <= i < n")
    return i, n


def shard_jobs(jobs: list[VideoJob], index: int, count: int) -> list[VideoJob]:
    """Every `count`-th job by sorted video id, starting at `index` (shards are disjoint and cover all)."""
    return sorted(jobs, key=lambda j: j.video_id)[index::count]


def _worker_init(parent_pid: int, initializer: Callable[..., None], *initargs) -> None:
    """A pool worker's initializer: stop signals ignored (the parent ends the pool, see `run_pool`),
    `_die_with(parent_pid)`, then the job's own initializer."""
    ignore_in_worker()
    _die_with(parent_pid)
    initializer(*initargs)


def _die_with(pid: int) -> None:
    """Exit this worker as soon as process `pid` (the command that started the pool) is gone.

    A SIGKILLed parent cannot shut its pool down; the forkserver exits with it, but the workers (its
    children) would finish their videos, still writing, and then wait forever. A daemon thread waits on
    a pidfd of the parent (polls where pidfds are missing) and ends the process; half-written outputs are
    temp files that the next run removes.
    """

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(1)
        except (AttributeError, OSError):  # no pidfd (old kernel / not Linux): poll
            while pid_alive(pid):
                time.sleep(0.5)
            os._exit(1)
        select.select([fd], [], [])  # readable once the process has exited
        os._exit(1)

    threading.Thread(target=watch, name="vidrec-parent-watch", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def run_pool(
    todo: Sequence[VideoJob],
    process: Callable[[VideoJob], JobResult],
    *,
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple,
    preload: Sequence[str] = (),
    desc: str | None = None,
    cleanup: Callable[[VideoJob], None] | None = None,
) -> tuple[list[tuple[str, str]], int, int]:
    """Run `process` on every job, `workers` processes at a time.

    Returns `(sorted [(video_id, error)], frames done, bytes written)`.

    One worker (or one job) runs in this process. Otherwise workers come from a forkserver, never forked
    from this process: a fork of a process whose OpenCV or swscale thread pools have run hangs in the
    child as soon as it touches them. `preload` names modules the forkserver imports once. Workers exit
    when this process dies, even by SIGKILL (`_die_with`).

    Ctrl-C or a stop signal (`vidrec.interrupt`) ends the pool at once: the jobs not started are dropped,
    the workers are killed, `cleanup(job)` removes the partial files of the jobs that were running, and
    `Interrupted` says how far the pool got (the caller may record that, then let it propagate).
    """
    failures, frames, written, start = [], 0, 0, time.perf_counter()
    bar = progress(total=len(todo), unit="video", desc=desc, dynamic_ncols=True)

    def record(vid: str, n: int, size: int, err: str | None) -> None:
        nonlocal frames, written
        frames, written = frames + n, written + size
        if err:
            failures.append((vid, err))
        bar.set_postfix_str(f"{frames / max(time.perf_counter() - start, 1e-9):.1f} frames/s", refresh=False)
        bar.update()

    stopped: list[VideoJob] = []  # the jobs running when a stop signal came
    try:
        if workers <= 1 or len(todo) <= 1:
            initializer(*initargs)
            for job in todo:
                stopped = [job]
                record(*process(job))
            stopped = []
        else:
            _run_workers(todo, process, record, stopped, workers, initializer, initargs, preload)
    except KeyboardInterrupt as err:
        bar.close()
        for job in stopped:
            if cleanup is not None:
                cleanup(job)
        signum = signum_of(err)
        line = (
            f"{describe(signum)} after {bar.n} of {len(todo)} videos ({len(stopped)} in progress stopped, "
            "their partial files removed); run the same command again to continue"
        )
        raise Interrupted(signum, line) from None
    bar.close()
    return sorted(failures), frames, written


def _run_workers(todo, process, record, stopped: list, workers, initializer, initargs, preload) -> None:
    """`run_pool` with worker processes; on KeyboardInterrupt, kills them and fills `stopped` first."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    n = min(workers, len(todo))
    initargs = (os.getpid(), initializer, *initargs)  # workers die with this process
    pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_worker_init, initargs=initargs)
    futures, interrupted = {}, False
    try:
        futures = {pool.submit(process, job): job for job in todo}
        for fut in as_completed(futures):
            record(*fut.result())
    except KeyboardInterrupt:
        interrupted = True
        # No public way to end a pool's workers before Python 3.14 (`kill_workers`); shutdown forgets them.
        # They ignore the stop signals (`_worker_init`), and a job cannot be stopped politely half-way:
        # SIGKILL, then clean up.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)  # the jobs not started are dropped
        stopped += [job for fut, job in futures.items() if fut.running()]
        for proc in procs:
            with contextlib.suppress(OSError, ValueError):
                proc.kill()
        for proc in procs:  # gone before their partial files are removed
            with contextlib.suppress(OSError, ValueError, AssertionError):
                proc.join(timeout=10)
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
