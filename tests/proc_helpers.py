"""Real processes in tests: start `vidrec` in its own session, gloo ranks, finish or kill them, and read
/proc to see which processes (DataLoader or pool workers) are still alive. Linux only, like the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _stat(entry: Path) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...); None if gone."""
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _live_pids(field: int, value: int) -> list[int]:
    """Pids of live (not zombie) processes whose stat field `field` (1 ppid, 3 session) is `value`."""
    found = []
    for entry in Path("/proc").iterdir():
        fields = _stat(entry) if entry.name.isdigit() else None
        if fields and int(fields[field]) == value and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    """Live (not zombie) child processes of `pid`."""
    return _live_pids(1, pid)


def session(sid: int) -> list[int]:
    """Pids of the live processes of session `sid` (zombies excluded)."""
    return _live_pids(3, sid)


def alive(pid: int) -> bool:
    fields = _stat(Path(f"/proc/{pid}"))
    return fields is not None and fields[0] != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`cmd` in its own session (so `os.killpg` reaches its workers), stderr captured as text."""
    return subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def launch_train(world: int, argv: Callable[[int], list[str]], env: dict[str, str]) -> list[subprocess.Popen]:
    """`python -m vidrec.cli train ARGV(rank)` as `world` ranks of one gloo group on 127.0.0.1, started by
    hand with the variables torchrun sets (a plain single process when `world` is 1)."""
    port, procs = free_port(), []
    for rank in range(world):
        rank_env = dict(env, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        if world > 1:
            rank_env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
        procs.append(start([sys.executable, "-m", "vidrec.cli", "train", *argv(rank)], rank_env))
    return procs


def kill(procs: list[subprocess.Popen]) -> None:
    """SIGKILL the process group of every process still running, and reap it."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@contextlib.contextmanager
def reaped(*procs: subprocess.Popen) -> Iterator[None]:
    """Whatever the block does, no process of `procs` (nor its workers) outlives it."""
    try:
        yield
    finally:
        kill(list(procs))


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str]]:
    """(exit code, stderr) of every process; all are killed if they have not ended by `timeout`."""
    deadline, out = time.monotonic() + timeout, []
    with reaped(*procs):
        try:
            for p in procs:
                _, err = p.communicate(timeout=max(deadline - time.monotonic(), 1))
                out.append((p.returncode, err))
        except subprocess.TimeoutExpired:
            pytest.fail(f"the processes did not finish within {timeout} s (a deadlock?)")
    return out
