"""Checkpoints: ONE `.safetensors` file per snapshot, written atomically, never unpickled.

Layout (see docs/contracts.md "vidrec.engine"):

- tensors ``model.<state_dict key>``: the model weights and buffers;
- tensors ``optim.state.<param index>.<key>``: the optimiser's per-parameter state (momentum buffers,
  Adam moments and step counters); non-tensor per-parameter values go to the ``optim_scalars`` JSON;
- tensors ``rng.torch`` (CPU generator ByteTensor) and ``rng.cuda.<device>`` of rank 0, and
  ``rng.rank<r>.torch`` / ``rng.rank<r>.cuda.<device>`` of every other rank of a distributed run;
- header metadata (strings): ``format``, ``config`` (the TrainConfig as JSON), ``class_names``,
  ``epoch`` (the epoch in progress, 0-based), ``step_in_epoch`` (loader batches of that epoch already
  done), ``global_step`` (optimiser steps), ``scheduler``, ``optim_groups`` (param-group hyper-parameters),
  ``rng_numpy``, ``rng_random``, ``rng_ranks`` (the other ranks' numpy / random states), ``sampler``
  (with every rank's sampler position), ``best_metric``, ``metrics``, ``epoch_sums`` (the running sums of
  the epoch in progress, so a mid-epoch resume logs the same epoch row as an uninterrupted run),
  and ``flow`` (method, bound and
  short side of the training flow, for models that read flow: `vidrec predict` recomputes it from them).

Writing goes to a temporary file in the same folder, is fsync'ed and then `os.replace`d over the target,
so a reader (or a resumed run) only ever sees a complete old or complete new file. Temp files that a
killed writer left behind are removed by the next write of the same checkpoint.

Weights from files: `read_weights` (a checkpoint or a plain state dict), `init_weights` (a run's
``model.init_from``), `load_model_state` (strict, naming the keys that did not match).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vidrec.cli import UsageError, input_file
from vidrec.jobs import pid_alive

if TYPE_CHECKING:
    from vidrec.engine.schema import ModelConfig
    from vidrec.models.init import InitReport

FORMAT = "vidrec-checkpoint/1"
# vidrec's own `module:function` model factories (the demo's); a checkpoint may name these.
PACKAGE_FACTORIES = ("vidrec.demo:lrcn_demo", "vidrec.demo:single_frame_demo")
_JSON_KEYS = ("config", "class_names", "scheduler", "optim_groups", "optim_scalars", "sampler", "metrics")


class CheckpointError(UsageError, RuntimeError):
    """A file is not a readable vidrec checkpoint; the message names the path and what to do."""


@dataclass
class Checkpoint:
    """Everything in one checkpoint file, as plain Python / tensors."""

    model: dict[str, torch.Tensor]
    config: dict[str, Any]
    class_names: list[str]
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    optimizer: dict[str, Any] | None = None  # torch `Optimizer.state_dict()` form
    scheduler: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] | None = None  # from `capture_rng()`, rank 0
    rank_rngs: list[dict[str, Any]] = field(default_factory=list)  # ranks 1.. of a distributed run
    sampler: dict[str, Any] = field(default_factory=dict)
    best_metric: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    epoch_sums: dict[str, Any] = field(default_factory=dict)
    flow: dict[str, Any] | None = None  # how the training flow was made (vidrec.engine.inputs.FlowSettings)
    task_state: dict[str, Any] = field(default_factory=dict)  # `Task.state()`: e.g. a vocabulary
    # With a weight average (``optim.ema``), `model` holds the average (what evaluation and inference use)
    # and `trained` the weights the optimiser steps, which resuming needs; None otherwise.
    trained: dict[str, torch.Tensor] | None = None


# ----------------------------------------------------------------------------- RNG states


def capture_rng() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and `random` generator states of this process."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "random": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Set the generator states saved by `capture_rng()`."""
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"][: torch.cuda.device_count()])
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = rng["random"]
    random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------- flattening


def _flatten(ckpt: Checkpoint) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    # clone: safetensors refuses tensors that share storage (tied weights) or are non-contiguous
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in ckpt.model.items()}
    for k, v in (ckpt.trained or {}).items():
        tensors[f"trained.{k}"] = v.detach().cpu().contiguous().clone()
    groups, scalars = [], {}
    if ckpt.optimizer is not None:
        for idx, state in ckpt.optimizer["state"].items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.state.{idx}.{key}"] = value.detach().cpu().contiguous().clone()
                else:
                    scalars[f"{idx}.{key}"] = value
        groups = ckpt.optimizer["param_groups"]
    meta = {
        "format": FORMAT,
        "epoch": str(ckpt.epoch),
        "step_in_epoch": str(ckpt.step_in_epoch),
        "global_step": str(ckpt.global_step),
        "best_metric": json.dumps(ckpt.best_metric),
        "has_optimizer": json.dumps(ckpt.optimizer is not None),
        "optim_groups": json.dumps(groups),
        "optim_scalars": json.dumps(scalars),
        **{
            k: json.dumps(getattr(ckpt, k))
            for k in ("config", "class_names", "scheduler", "sampler", "metrics", "epoch_sums", "task_state")
        },
    }
    if ckpt.flow is not None:
        meta["flow"] = json.dumps(ckpt.flow)
    if ckpt.rng is not None:
        tensors.update(_rng_tensors("rng.", ckpt.rng))
        meta["rng_numpy"], meta["rng_random"] = json.dumps(ckpt.rng["numpy"]), json.dumps(ckpt.rng["random"])
    for rank, rng in enumerate(ckpt.rank_rngs, start=1):
        tensors.update(_rng_tensors(f"rng.rank{rank}.", rng))
    meta["rng_ranks"] = json.dumps([{"numpy": r["numpy"], "random": r["random"]} for r in ckpt.rank_rngs])
    return tensors, meta


def _rng_tensors(prefix: str, rng: dict[str, Any]) -> dict[str, torch.Tensor]:
    tensors = {f"{prefix}torch": rng["torch"].clone()}
    for i, state in enumerate(rng["cuda"]):
        tensors[f"{prefix}cuda.{i}"] = state.cpu().clone()
    return tensors


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, Any] | None:
    if not json.loads(meta.get("has_optimizer", "false")):
        return None
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim.state."):
            idx, key = name[len("optim.state.") :].split(".", 1)
            state.setdefault(int(idx), {})[key] = value
    for name, value in json.loads(meta["optim_scalars"]).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": json.loads(meta["optim_groups"])}


def _rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, Any] | None:
    if "rng.torch" not in tensors:
        return None
    return _rng_from("rng.", tensors, json.loads(meta["rng_numpy"]), json.loads(meta["rng_random"]))


def _rank_rngs(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> list[dict[str, Any]]:
    states = json.loads(meta.get("rng_ranks", "[]"))
    return [
        _rng_from(f"rng.rank{rank}.", tensors, s["numpy"], s["random"])
        for rank, s in enumerate(states, start=1)
    ]


def _rng_from(prefix: str, tensors: dict[str, torch.Tensor], numpy_state, random_state) -> dict[str, Any]:
    n_cuda = len([k for k in tensors if k.startswith(f"{prefix}cuda.")])
    return {
        "torch": tensors[f"{prefix}torch"],
        "cuda": [tensors[f"{prefix}cuda.{i}"] for i in range(n_cuda)],
        "numpy": numpy_state,
        "random": random_state,
    }


# ----------------------------------------------------------------------------- files


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write `ckpt` to `path` atomically (temp file in the same folder + fsync + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path)
    tensors, meta = _flatten(ckpt)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def remove_dead_temps(path: str | Path) -> list[Path]:
    """Delete the temp files of `path` (``.<name>.tmp-<pid>``) whose writer process is gone (killed
    mid-write); a live writer's temp file is left alone. Returns the removed paths."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _fsync_dir(folder: Path) -> None:
    try:  # makes the rename itself durable; not supported on every platform / filesystem
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_safetensors(path: Path) -> None:
    """Refuse anything that is not a safetensors file before a parser touches it."""
    try:
        input_file(path, "checkpoint")
    except UsageError as err:  # missing, a folder, stdin or a pipe
        raise CheckpointError(str(err)) from None
    with open(path, "rb") as fh:
        head = fh.read(9)  # pragma: no mutate (reading more is the same check, only slower)
    # u64 header length, then the JSON header; a `{` at byte 8 means the 8 length bytes are all there
    header_len = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and 0 < header_len <= path.stat().st_size - 8:
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise CheckpointError(
            f"{path} is a pickled PyTorch file (.pth/.pt), not a .safetensors checkpoint; vidrec never "
            "unpickles checkpoints because unpickling can run arbitrary code. Convert trusted weights with "
            "safetensors.torch.save_file(torch.load(f, weights_only=True), 'x.safetensors')."
        )
    raise CheckpointError(f"{path} is not a .safetensors file (bad header); was it truncated?")


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the header metadata of a safetensors file (checked not to be a pickle)."""
    path = Path(path)
    _check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err


def read_header(path: str | Path) -> dict[str, str]:
    """The header metadata of a safetensors file, without reading its tensors."""
    path = Path(path)
    _check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return dict(fh.metadata() or {})
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (no unpickling); metadata that is missing, not
    JSON or of the wrong type raises CheckpointError naming the field."""
    tensors, meta = read_tensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a vidrec checkpoint (format {meta.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    trained = {k[len("trained.") :]: v for k, v in tensors.items() if k.startswith("trained.")}
    read = _MetaReader(path, meta)
    try:
        optimizer, rng, rank_rngs = (
            _optimizer_state(tensors, meta), _rng_state(tensors, meta), _rank_rngs(tensors, meta)
        )  # fmt: skip
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: its optimiser or RNG state is damaged ({err}); {_DAMAGED}") from None
    return Checkpoint(
        model=model,
        config=read.json("config", dict),
        class_names=read.names(),
        epoch=read.count("epoch"),
        step_in_epoch=read.count("step_in_epoch"),
        global_step=read.count("global_step"),
        optimizer=optimizer,
        scheduler=read.json("scheduler", dict, {}),
        rng=rng,
        rank_rngs=rank_rngs,
        sampler=read.json("sampler", dict, {}),
        best_metric=read.json("best_metric", (int, float, type(None)), None),
        metrics=read.json("metrics", dict, {}),
        epoch_sums=read.json("epoch_sums", dict, {}),
        flow=read.json("flow", dict, None),
        task_state=read.json("task_state", dict, {}),
        trained=trained or None,
    )


_REQUIRED = object()


class _MetaReader:
    """Typed fields of a checkpoint's header metadata; a bad one raises CheckpointError naming it."""

    def __init__(self, path: str | Path, meta: dict[str, str]) -> None:
        self.path, self.meta = path, meta

    def json(self, key: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
        if key not in self.meta:
            if default is _REQUIRED:
                raise CheckpointError(f"{self.path}: its metadata has no {key!r}; {_DAMAGED}")
            return default
        try:
            value = json.loads(self.meta[key])
        except json.JSONDecodeError as err:
            raise CheckpointError(
                f"{self.path}: metadata {key!r} is not valid JSON ({err.msg}); {_DAMAGED}"
            ) from None
        if not isinstance(value, kind) and not (value is None and default is None):
            raise CheckpointError(f"{self.path}: metadata {key!r} is a {type(value).__name__}; {_DAMAGED}")
        return value

    def count(self, key: str) -> int:
        value = self.meta.get(key, "(missing)")
        if not value.isdigit():
            raise CheckpointError(f"{self.path}: metadata {key!r} is {value!r}, not a count; {_DAMAGED}")
        return int(value)

    def names(self) -> list[str]:
        names = self.json("class_names", list)
        if not all(isinstance(n, str) for n in names):
            raise CheckpointError(f"{self.path}: metadata 'class_names' is not a list of names; {_DAMAGED}")
        return names


_DAMAGED = "the file was damaged or edited; use the checkpoint vidrec train wrote"
MAX_SIDE = 4096  # px: the largest frame or crop side a stored `size` may ask for (8K video is 4320 high)
MAX_FRAMES = 4096  # frames per clip a stored `frames` may ask for


def check_stored_sizes(ckpt: Checkpoint, source: str) -> None:
    """Refuse stored sizes outside sane bounds: `size` ([H, W] or a side) and `frames` of the task state and
    of the config's ``task_options``. A crafted or damaged file asking for 60,000 px frames would otherwise
    hang inference allocating them.

    Raises:
        CheckpointError: naming the file, the field and the bounds.
    """
    options = ckpt.config.get("task_options") if isinstance(ckpt.config, dict) else None
    for where, stored in (("task_state", ckpt.task_state), ("task_options", options)):
        if not isinstance(stored, dict):
            continue
        for key, high in (("size", MAX_SIDE), ("frames", MAX_FRAMES)):
            value = stored.get(key)
            values = value if isinstance(value, list) else [value]
            if value is not None and not all(_whole(v) and 1 <= v <= high for v in values):
                raise CheckpointError(f"{source}: {where}.{key} = {value!r} is outside 1..{high}; {_DAMAGED}")


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load_for_inference(
    path: str | Path, device: str | torch.device = "cpu", *, factory: str = "", tasks: tuple[str, ...] = ()
) -> tuple[torch.nn.Module, Any, list[str]]:
    """Rebuild the model from the checkpoint's stored config, task state and weights.

    A checkpoint is data: the model it names must be a registered one (or one of vidrec's own
    `PACKAGE_FACTORIES`); a ``module:function`` factory stored in it is imported only when the caller
    names the same factory in `factory` (the `--model-factory` option). The stored ``data.plugin`` is
    cleared, so nothing the file names ever runs. The builder gets ``pretrained=False`` and the task
    takes its class names or vocabulary from the checkpoint: inference reads this file and nothing else
    (no ImageNet file, no pretrained path, no captions or list file the stored config names).

    Args:
        tasks: the tasks the caller can use (e.g. ``("classify",)``); a checkpoint of another task is
            refused before its model is built. Empty: any.

    Returns:
        ``(model.eval() on device, TrainConfig, class_names)``; `load_task` also gives the task.
    """
    model, task = load_task(path, device, factory=factory, tasks=tasks)
    return model, task.cfg, task.class_names()


# which command takes a checkpoint of each task, for the message that refuses the wrong kind
TASK_COMMANDS = {
    "classify": "vidrec predict, eval, export or visualize",
    "caption": "vidrec caption",
    "landmarks": "vidrec predict",
    "segment": "vidrec dff run or dff eval",
    "detect": "vidrec predict, dff run or dff eval",
}


def checkpoint_task(path: str | Path) -> str:
    """The ``task`` of the checkpoint's stored config, read from its header (no tensors)."""
    meta = read_header(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a vidrec checkpoint (format {meta.get('format')!r})"
        )
    task = _MetaReader(path, meta).json("config", dict).get("task", "classify")
    if not isinstance(task, str):
        raise CheckpointError(f"{path}: its stored config's task is {task!r}, not a name; {_DAMAGED}")
    return task


def require_task(path: str | Path, tasks: tuple[str, ...], user: str = "this command") -> str:
    """The checkpoint's task when it is one of `tasks`; else CheckpointError naming both and what to run."""
    task = checkpoint_task(path)
    if tasks and task not in tasks:
        wanted = " or ".join(f"`task: {t}`" for t in tasks)
        use = f" (use {TASK_COMMANDS[task]})" if task in TASK_COMMANDS else ""
        raise CheckpointError(f"{path} is a `task: {task}` checkpoint; {user} needs a {wanted} one{use}")
    return task


def load_task(
    path: str | Path, device: str | torch.device = "cpu", *, factory: str = "", tasks: tuple[str, ...] = ()
) -> tuple[Any, Any]:
    """``(model.eval() on device, its vidrec.tasks.Task with the stored state)``; see `load_for_inference`.

    The task holds the config (``task.cfg``) and what the checkpoint stored beside the weights (class
    names, a vocabulary), so inference needs nothing but this file.
    """
    import dataclasses

    from vidrec.engine.config import config_from_dict
    from vidrec.tasks import make_task

    require_task(path, tasks)  # before the tensors are read
    ckpt = load_checkpoint(path)
    check_stored_sizes(ckpt, str(path))
    try:
        stored = config_from_dict(ckpt.config)
        cfg = dataclasses.replace(stored, data=dataclasses.replace(stored.data, plugin=""))
        name = cfg.model.name
        if ":" in name and name != factory and name not in PACKAGE_FACTORIES:
            raise CheckpointError(
                f"{path} names the model factory {name!r}, which is not a registered model; vidrec never "
                f"imports code a checkpoint names. If you trust that module, pass --model-factory {name}"
            )
        task = make_task(stored)  # checked as it was trained; it never calls the stored plug-in
        task.cfg = cfg
        task.load_state(ckpt.task_state, class_names=list(ckpt.class_names))
        model = task.build_model(weights=False)
    except (ValueError, TypeError, KeyError) as err:  # a bad stored config (ConfigError) or task state;
        # TypeError: model.kwargs the builder does not take
        raise CheckpointError(f"{path}: {err}; {_DAMAGED}") from None
    try:
        load_model_state(model, ckpt.model, source=str(path))
    except CheckpointError as err:  # e.g. class_names edited: the head it sizes no longer fits the weights
        names = task.class_names()
        raise CheckpointError(
            f"{err} (its metadata lists {len(names)} class names)" if names else str(err)
        ) from None
    return model.to(device).eval(), task


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Model tensors of a vidrec checkpoint, or a plain `.pth` / `.safetensors` state dict (never
    unpickling anything but tensors)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        _check_safetensors(path)
        with safe_open(str(path), framework="pt") as fh:
            is_checkpoint = (fh.metadata() or {}).get("format") == FORMAT
        if is_checkpoint:
            return load_checkpoint(path).model
    from vidrec.models.backbones import read_state_dict

    return read_state_dict(path)


def init_weights(
    model: torch.nn.Module, model_cfg: ModelConfig, *, log: Callable[[str], None] | None = None
) -> list[InitReport]:
    """Apply ``model.init_from`` (see `vidrec.models.init`); returns the `InitReport`s.

    A path initialises the whole model; ``{submodule: path}`` each named part. A source of which nothing
    matched is an error (it is the wrong file, not a partial match).
    """
    from vidrec.models.init import init_from  # imports every model: only when a run initialises one

    spec = model_cfg.init_from
    parts = spec if isinstance(spec, dict) else {"": spec}
    reports = []
    for name, path in parts.items():
        try:
            target = model.get_submodule(name) if name else model
        except AttributeError as err:
            raise ValueError(f"model.init_from: the model has no part {name!r} ({err})") from None
        report = init_from(
            target, read_weights(path), source=str(path), keep_heads=model_cfg.init_heads,
            num_classes=getattr(model, "num_classes", None),
        )  # fmt: skip
        if not report.loaded:
            raise ValueError(
                f"model.init_from{'.' + name if name else ''}: no tensor of {path} matches the model "
                f"({len(report.unused)} source tensors, e.g. {report.unused[:3]}); is it the right file?"
            )
        if log is not None:
            log(report.summary())
        reports.append(report)
    return reports


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Strict `load_state_dict` whose error names the missing / unexpected keys and the source."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a shape differs: e.g. class_names lists more classes than the head has
        sizes = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise CheckpointError(
            f"{source} does not match the model its metadata describes: {'; '.join(sizes[:3]) or err}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source} does not match the model: missing {result.missing_keys[:10]}, "
            f"unexpected {result.unexpected_keys[:10]}"
        )
