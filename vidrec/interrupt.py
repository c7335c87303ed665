"""Stop signals end a command cleanly instead of killing it.

The stop signals are SIGINT (Ctrl-C), SIGTERM (what SLURM, Kubernetes, systemd and most schedulers send
some seconds before they kill a job) and SIGUSR1 (SLURM's warning before the time limit, with
``#SBATCH --signal=USR1@120``). They are taken in two ways:

- `raising()`, around every `vidrec` command (`vidrec.cli.main`): each stop signal raises `Interrupted`, a
  `KeyboardInterrupt`, so the clean-up that runs on Ctrl-C (``finally`` blocks, ``except
  KeyboardInterrupt``) also runs for SIGTERM; the command prints one line and exits 130 for SIGINT, 143
  for SIGTERM and SIGUSR1.
- `StopRequest`, around the training loop: a signal only sets a flag, which the loop reads at each
  optimiser-step boundary (`StopRequest.check`). Under torch.distributed the ranks all-reduce the flag
  (MAX) there, so every rank stops after the same step and the checkpoint rank 0 writes is consistent.
  A second signal raises `Interrupted` at once.

Worker processes (DataLoader workers, the pool of `vidrec flow` / `vidrec prepare`) call
`ignore_in_worker()`: Ctrl-C in a terminal signals the whole process group, and a worker that died on it
would break its pool; the command that started the workers ends them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def exit_code(signum: int) -> int:
    """130 for SIGINT (Ctrl-C), 143 (the shell's code for SIGTERM) for the other stop signals."""
    return 130 if signum == signal.SIGINT else 143


def describe(signum: int) -> str:
    """``interrupted`` for Ctrl-C, ``stopped by SIGTERM`` (or the signal's name) otherwise."""
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def signum_of(err: BaseException) -> int:
    """The stop signal behind `err`: its own for `Interrupted`, SIGINT for a plain KeyboardInterrupt."""
    return getattr(err, "signum", signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """A stop signal ended the command.

    Attributes:
        signum: the signal.
        line: what `vidrec` prints after ``vidrec COMMAND:``; None: `describe(signum)`; ``""``: nothing
            (e.g. the ranks other than 0 of a training job).
        agreed: raised by `StopRequest.check`, at a step boundary where every rank stopped together.
    """

    def __init__(self, signum: int = signal.SIGINT, line: str | None = None, *, agreed: bool = False) -> None:
        super().__init__(describe(signum) if line is None else line)
        self.signum, self.line, self.agreed = signum, line, agreed

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


@contextlib.contextmanager
def _handling(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """`handler` for every stop signal during the block (main thread only); the previous ones after.

    A signal this process ignores stays ignored (``nohup``, or a job a shell started in the background).
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set them
        yield
        return
    before = {}
    try:
        for signum in STOP_SIGNALS:
            old = signal.getsignal(signum)
            if old is not signal.SIG_IGN:
                before[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in before.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def raising() -> contextlib.AbstractContextManager[None]:
    """During the block each stop signal raises `Interrupted` (as Ctrl-C raises KeyboardInterrupt)."""
    return _handling(_raise)


class StopRequest:
    """Records a stop signal for the loop to act on at its next step boundary; a second one raises now.

    Example:
        >>> with StopRequest() as stop:
        ...     for batch in loader:
        ...         step(batch)
        ...         stop.check(device)  # raises Interrupted(agreed=True) once any rank got a signal
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._handlers: contextlib.AbstractContextManager[None] | None = None

    def __enter__(self) -> StopRequest:
        self._handlers = _handling(self._record)
        self._handlers.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._handlers is not None:
            self._handlers.__exit__(*exc)
            self._handlers = None

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # asked twice: stop at once
            raise Interrupted(signum)
        self.signum = signum

    def check(self, device=None) -> None:
        """Raise `Interrupted` (``agreed=True``) when a stop signal reached this process or, under
        torch.distributed, any rank; a collective there (every rank calls it at the same points).

        `device`: where the flag is all-reduced (the process group's device: cuda for NCCL).
        """
        signum = self.signum or 0
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            import torch

            flag = torch.tensor([signum], dtype=torch.int64, device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signum = int(flag.item())
        if signum:
            raise Interrupted(signum, agreed=True)


def ignore_in_worker(*_: object) -> None:
    """In a worker process: ignore the stop signals (its parent ends it; see the module docstring)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
