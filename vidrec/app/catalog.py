"""The checkpoints `vidrec app` serves, by name: found in the files and folders it was given.

A visitor or a script names a checkpoint from this list and nothing else, so no path they send is ever
opened; each model is built by `vidrec.engine.checkpoint.load_task` with no ``--model-factory``: only
registered models (and vidrec's own demo factories) load, and a checkpoint naming other code is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vidrec.cli import UsageError


class UnknownCheckpoint(UsageError, LookupError):
    """A name that is not one of the served checkpoints."""


@dataclass(frozen=True)
class Entry:
    """One served checkpoint: its name on the page, its file and the task its config names."""

    name: str
    path: Path
    task: str


def find_checkpoints(sources: Iterable[str | Path]) -> list[Entry]:
    """vidrec checkpoints among `sources`: files, or folders searched recursively (other .safetensors files,
    such as flow-net weights, and temporary files are skipped). Names are paths relative to the folder's
    parent (``demo/lrcn/best.safetensors``), unique."""
    from vidrec.engine.checkpoint import CheckpointError, checkpoint_task

    entries: dict[str, Entry] = {}
    for source in sources:
        source = Path(source)
        if not source.exists():
            raise UsageError(f"checkpoint source {source} does not exist; give a runs folder or a checkpoint")
        files = [source] if source.is_file() else sorted(source.rglob("*.safetensors"))
        for path in files:
            if path.name.startswith("."):
                continue
            try:
                task = checkpoint_task(path)
            except CheckpointError:
                continue  # not a vidrec checkpoint (e.g. FlowNetLite weights)
            name = path.relative_to(source.parent).as_posix()
            while name in entries:
                name = f"{name} ({len(entries)})"
            entries[name] = Entry(name, path, task)
    return list(entries.values())


class Catalog:
    """The served checkpoints and their loaded models (each built once, on first use)."""

    def __init__(self, entries: list[Entry], *, device: str = "cpu") -> None:
        self.entries = {e.name: e for e in entries}
        self.device = device
        self._models: dict[str, tuple] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_sources(cls, sources: Iterable[str | Path], *, device: str = "cpu") -> Catalog:
        sources = list(sources)
        entries = find_checkpoints(sources)
        if not entries:
            where = ", ".join(str(s) for s in sources)
            raise UsageError(f"no vidrec checkpoint under {where}; run `make demo` (then `vidrec app "
                             "runs/demo`) or give a .safetensors file that `vidrec train` wrote")  # fmt: skip
        return cls(entries, device=device)

    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> Entry:
        if name not in self.entries:
            shown = ", ".join(list(self.entries)[:8])
            raise UnknownCheckpoint(f"checkpoint {name!r} is not one this app serves; choose one of: {shown}")
        return self.entries[name]

    def model(self, name: str):
        """`(model.eval(), task)` of a served checkpoint, loaded once (registered models only)."""
        from vidrec.engine.checkpoint import load_task

        entry = self.get(name)
        with self._lock:
            if name not in self._models:
                self._models[name] = load_task(entry.path, self.device)
            return self._models[name]
