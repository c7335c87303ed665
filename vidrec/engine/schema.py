"""What a training config holds: the `TrainConfig` dataclasses, each field's type and help, and the
checks that need nothing but the fields.

Every field carries its meaning in ``metadata["help"]`` (`iter_fields`; `vidrec.engine.config.config_help`
turns them into the `vidrec train --help` text, so the documentation cannot drift from the code). Values
are checked against the field's type (``Literal`` choices, ints, floats, lists, dicts) and a bad value or
an unknown key raises `ConfigError` naming the dotted field path and what is allowed.

This module knows no task: the tasks (`vidrec.tasks`) read these types, and `vidrec.engine.config`, which
reads a config file, checks ``task`` and ``task_options`` against them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from vidrec.cli import UsageError


class ConfigError(UsageError, ValueError):
    """A config value or key is invalid; the message names the dotted field path."""


def opt(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's keyword
    """A dataclass field with a default (copied for lists/dicts) and its help text."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    format: Literal["list", "ucf101", "hmdb51", "folders", "gestures"] = opt(
        "list",
        "dataset layout: list = data.train_list / data.val_list files; ucf101 / hmdb51 = the official "
        "download unpacked in data.root, read with its split files as they are (train list = training, "
        "test list = validation); folders = data.root/train/<class>/<video> and val/ (or test/), or "
        "data.root/<class>/<video> (training only); gestures = data.root/point_history.csv + labels.csv "
        "(fingertip trajectories rendered as data.size-pixel 16-frame clips, split in contiguous blocks "
        "per class: vidrec.data.gestures)",
    )
    split: int = opt(1, "official split (1, 2 or 3) for data.format ucf101 / hmdb51")
    train_list: str = opt("", "list file of training videos (`relative/path.mp4 label` lines), format=list")
    val_list: str = opt("", "list file of validation videos; empty: no per-epoch validation (format=list)")
    root: str = opt(
        "",
        "the dataset folder; list paths are relative to it (empty: the train list's folder); for "
        "ucf101 it holds UCF-101/ and ucfTrainTestlist/, for hmdb51 the class folders and "
        "testTrainMulti_7030_splits/ (see docs/guides/data.md)",
    )
    classes: str = opt(
        "", "class-names file, one per line; empty: classes.txt beside the train list (format=list)"
    )
    flow_root: str = opt("", "folder of per-video flow files (needed when the model reads flow)")
    flow_length: int = opt(1, "flows stacked per time step for the `flow` modality (two-stream: 10)")
    modalities: list[str] = opt([], "batch keys to load; empty: the model's `modalities` attribute")
    frames: int = opt(16, "frames (time steps) per training clip")
    size: int = opt(112, "square crop size in pixels fed to the model")
    resize: int = opt(128, "short side the frames are resized to at decode time, before cropping")
    frames_root: str = opt("", "folder of `<video_id>/img_00001.jpg` frame folders read instead of videos")
    prepared: str = opt(
        "auto",
        "RGB from a `vidrec prepare` copy: auto = the copy registered in the data root when it is "
        "complete and matches the list (else the originals, with a warning); off = the original videos; "
        "or a copy's folder",
    )
    sampler: Literal["random", "segments", "uniform"] = opt(
        "random",
        "clip sampler: random = `frames` consecutive frames (`stride` apart) from a random start "
        "(centred for validation); segments = one frame per segment (TSN); uniform = evenly spread",
    )
    stride: int | list[int] = opt(
        1,
        "frame stride inside a dense clip; [lo, hi]: a random stride in lo..hi per training clip "
        "(ST-ResNet: [5, 15]), the middle one for validation and eval",
    )
    augment: Literal["crop", "tsn", "resized", "multiscale", "corners"] = opt(
        "crop",
        "training crop: crop = random crop (LRCN); tsn = TSN multi-scale corner crop; resized = "
        "RandomResizedCrop; multiscale = ST-ResNet's base-stream multiScaleRegular (height and width from "
        "{256, 224, 192, 168} independently, 4 corners or centre, resized to data.size); corners = "
        "ST-ResNet stage 1's f25noCtr (a data.size crop whose offset lies in the outer quarter near a "
        "corner, never the centre)",
    )
    flip: Literal["auto", "always", "never"] = opt(
        "auto",
        "random horizontal flip of training clips (negates flow x); auto: always, except for a dataset "
        "folder holding synthetic.json, whose left/right and clockwise/counter-clockwise classes are "
        "mirror images",
    )
    batch_size: int = opt(8, "clips per optimiser micro-step on EACH process")
    workers: int = opt(2, "DataLoader worker processes per training process")
    background: Literal["plain", "textured"] = opt(
        "plain",
        "data.format=gestures: the clips' background, plain grey or a smooth random texture per row "
        "(vidrec.data.gestures.render_clip); frozen ImageNet features learn on plain",
    )
    row_stride: int = opt(
        1,
        "data.format=gestures: use every Nth window of each training / validation block (neighbouring "
        "windows share 15 of their 16 points; benchmarks/prernn_tasks.py uses 16)",
    )
    decode_device: Literal["cpu", "cuda"] = opt(
        "cpu",
        "where training videos are decoded: cpu = PyAV in the DataLoader workers; cuda = the GPU's "
        "hardware decoder through torchcodec (pip install 'vidrec[gpu]'), in the training process "
        "(needs data.workers=0, the classify task and a CUDA device; frames a little different from "
        "the CPU's, see vidrec.io.gpu_decode)",
    )
    plugin: str = opt(
        "",
        "`module:function` returning (train_dataset, val_dataset_or_None, class_names) instead of "
        "list files; the datasets yield the VideoDataset item dicts",
    )


@dataclass
class ModelConfig:
    name: str = opt("lrcn", "registered model name (`vidrec models`) or `module.path:factory`")
    kwargs: dict[str, Any] = opt({}, "keyword arguments for the model builder (num_classes is added)")
    init_from: str | dict[str, str] = opt(
        "",
        "start from trained weights: a checkpoint (or .pth/.safetensors state dict) whose matching tensors "
        "are copied (same key, or same torchvision layer name), or {submodule: checkpoint} per part, e.g. "
        "{appearance: rgb.safetensors, motion: flow.safetensors} for ST-ResNet; the heads start fresh "
        "and the run log lists every tensor that kept its init and why",
    )
    init_heads: bool = opt(False, "with init_from: also copy the classifier heads when their shapes match")


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw"] = opt("sgd", "optimiser")
    lr: float = opt(0.01, "base learning rate (per optimiser step, before schedule and multipliers)")
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool = opt(False, "SGD Nesterov momentum")
    weight_decay: float = opt(5e-4, "weight decay (decoupled for AdamW)")
    betas: list[float] = opt([0.9, 0.999], "AdamW betas")
    lr_mult: dict[str, float] = opt(
        {}, "learning-rate multipliers by parameter-name prefix, e.g. {head: 10}; longest prefix wins"
    )
    model_groups: bool = opt(
        True, "use the model's `param_groups(base_lr)` when it has one and lr_mult is empty"
    )
    clip_grad_norm: float = opt(0.0, "clip the global gradient norm to this value; 0: off")
    accum_steps: int = opt(1, "micro-batches accumulated per optimiser step")
    ema: float = opt(
        0.0,
        "decay of an exponential moving average of the weights, updated after every optimiser step "
        "(the decay at step t is min(ema, (1 + t) / (10 + t)), so the first steps do not linger); "
        "validation, best.safetensors and the weights of last.safetensors are the average; 0: off",
    )


@dataclass
class ScheduleConfig:
    name: Literal["constant", "step", "multistep", "cosine"] = opt("cosine", "learning-rate schedule")
    epochs: int = opt(10, "training epochs")
    unit: Literal["epoch", "iter"] = opt("epoch", "unit of step_size and milestones")
    step_size: float = opt(10.0, "step schedule: multiply by gamma every step_size units")
    milestones: list[float] = opt([], "multistep schedule: multiply by gamma at each milestone")
    gamma: float = opt(0.1, "decay factor of step / multistep")
    min_lr_factor: float = opt(0.0, "cosine schedule: final lr as a fraction of the base lr")
    warmup_iters: int = opt(0, "linear warm-up length in optimiser steps (per iteration)")
    warmup_start: float = opt(0.01, "warm-up starts at this fraction of the scheduled lr")


@dataclass
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "device; auto: cuda when available, else cpu")
    amp: Literal["auto", "off", "bf16"] = opt("auto", "autocast: auto = bf16 on CUDA, off on CPU")
    channels_last: bool = opt(False, "put the model in channels_last memory format")
    compile: bool = opt(False, "torch.compile the model for training")
    seed: int = opt(0, "seed of torch / numpy / random, data order and worker streams")
    threads: int = opt(
        0,
        "torch CPU threads of each training process; 0: torch's default (one per core). On a busy CPU, 1 "
        "is often several times faster for small models (threads that wait for each other)",
    )
    deterministic: bool = opt(False, "torch.use_deterministic_algorithms (slower; bit-exact reruns on GPU)")
    dist_backend: Literal["auto", "nccl", "gloo"] = opt(
        "auto", "DDP backend; auto: nccl on CUDA, gloo on CPU"
    )
    sync_bn: bool = opt(
        False,
        "DDP on CUDA: BatchNorm statistics over the global batch (torch SyncBatchNorm) instead of each "
        "process's own batch; CUDA only",
    )
    feature_cache: bool = opt(
        True,
        "frozen parts computed once: when the model's leading part is frozen (freeze_cnn, freeze_trunk, "
        "freeze_encoder) and the items are not randomly augmented, its output is computed once per input, "
        "stored in out_dir/feature_cache and reused every epoch (vidrec.engine.feature_cache); false: "
        "computed every epoch",
    )
    feature_cache_mb: int = opt(
        512, "feature cache: most MiB of features each process keeps in memory (the rest is read from disk)"
    )


@dataclass
class TrainConfig:
    """Everything one `vidrec train` run needs."""

    task: str = opt(
        "classify",
        "what the model learns: classify (clip labels), caption (sentences), landmarks (points per "
        "frame), segment (masks per frame); each task's own settings go in task_options",
    )
    task_options: dict[str, Any] = opt(
        {}, "settings of the chosen task (see the task's options in `vidrec train --help`)"
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "data"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "model"})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "optimiser"})
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig, metadata={"help": "schedule"})
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig, metadata={"help": "runtime"})
    out_dir: str = opt(
        "runs/exp", "run folder: checkpoints, metrics.csv, steps.csv, TensorBoard events, plots"
    )
    resume: str = opt(
        "",
        "'' = fresh run, 'auto' = continue from out_dir/last.safetensors if present, or a path; an "
        "action: given on the command line (--resume), never stored or read from a config file",
    )
    overwrite: bool = opt(
        False,
        "start afresh in an out_dir that already holds a run, deleting its checkpoints and logs first "
        "(without it, such a folder is refused unless the run is resumed); an action like resume: "
        "command line only",
    )
    best_dtype: Literal["float32", "float16", "bfloat16"] = opt(
        "float32",
        "dtype of the weights in best.safetensors, which holds weights only (the optimiser, RNG and "
        "sampler state for --resume live in last.safetensors); float16 halves its size",
    )
    ckpt_every_steps: int = opt(0, "also write last.safetensors every N optimiser steps; 0: epoch ends only")
    log_every_steps: int = opt(10, "write a row of steps.csv / TensorBoard every N optimiser steps")
    eval_every: int = opt(1, "validate every N epochs (and after the last)")
    max_steps_per_epoch: int = opt(0, "stop each epoch after N loader batches; 0: the whole epoch")
    progress: bool = opt(True, "show tqdm progress bars")
    tensorboard: bool = opt(True, "write TensorBoard scalars")
    plots: bool = opt(True, "draw loss / accuracy curve PNGs at the end (vidrec.visualize.plots)")


# ----------------------------------------------------------------------------- type checking


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + str(list(typing.get_args(tp)))
    return getattr(tp, "__name__", None) if typing.get_origin(tp) is None else str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """`value` checked (and lightly converted: int -> float, tuple -> list) against type `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            hint = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{path}: {value!r} is not one of {list(args)}{extra}")
        return value
    if origin in (types.UnionType, typing.Union):
        for arm in args:
            try:
                return _coerce(value, arm, path)
            except ConfigError:
                pass
        raise ConfigError(f"{path}: {value!r} is not {' or '.join(_type_name(a) for a in args)}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list of {_type_name(args[0])}, got {value!r}")
        return [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping {{key: {_type_name(args[1])}}}, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{path}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, tp, path)


def _coerce_scalar(value: Any, tp: type, path: str) -> Any:
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """An instance of dataclass `cls` from a mapping; unknown keys and bad values raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    known = _fields(cls)
    kwargs = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in known:
            hint = difflib.get_close_matches(str(key), list(known), n=1)
            extra = f"; did you mean {prefix}{hint[0]}?" if hint else ""
            raise ConfigError(f"{path}: unknown key; allowed keys: {sorted(known)}{extra}")
        _, tp = known[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{path}.")
        else:
            kwargs[key] = _coerce(value, tp, path)
    return cls(**kwargs)


def build_section(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """An instance of dataclass `cls` from a mapping whose keys live under `prefix` (e.g. a task's
    ``task_options.``); unknown keys and bad values raise `ConfigError` naming ``prefix + key``."""
    return _build(cls, raw, prefix)


# What one `vidrec train` command does to its out_dir, not a setting of the run: never stored (a run's
# config.yaml replayed as it is must not delete or take over that run) and never read from a config file.
ACTIONS = ("resume", "overwrite")


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The nested plain-data form of `cfg` (YAML/JSON serialisable), as runs store it: without the
    `ACTIONS` (``resume``, ``overwrite``)."""
    raw = dataclasses.asdict(cfg)
    for name in ACTIONS:
        del raw[name]
    return raw


# ----------------------------------------------------------------------------- checks


def _check(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{path}: {message}")


def check_fields(cfg: TrainConfig) -> None:
    """Cross-field and range checks of the engine's own fields; raises ConfigError naming the field.

    The task and its ``task_options`` are checked by `vidrec.engine.config.validate` (it knows the tasks).
    """
    _check(cfg.optim.lr > 0, "optim.lr", f"must be > 0, got {cfg.optim.lr}")
    _check(cfg.optim.accum_steps >= 1, "optim.accum_steps", "must be >= 1")
    _check(cfg.optim.clip_grad_norm >= 0, "optim.clip_grad_norm", "must be >= 0 (0 = off)")
    _check(0 <= cfg.optim.ema < 1, "optim.ema", f"must be in [0, 1) (0: off), got {cfg.optim.ema}")
    _check(len(cfg.optim.betas) == 2, "optim.betas", f"needs 2 values, got {cfg.optim.betas}")
    _check(all(m >= 0 for m in cfg.optim.lr_mult.values()), "optim.lr_mult", "multipliers must be >= 0")
    _check(cfg.schedule.epochs >= 1, "schedule.epochs", "must be >= 1")
    _check(cfg.schedule.warmup_iters >= 0, "schedule.warmup_iters", "must be >= 0")
    _check(cfg.schedule.step_size > 0, "schedule.step_size", "must be > 0")
    _check(0 < cfg.schedule.gamma <= 1, "schedule.gamma", f"must be in (0, 1], got {cfg.schedule.gamma}")
    _check(
        0 <= cfg.schedule.min_lr_factor <= 1,
        "schedule.min_lr_factor",
        f"must be in [0, 1], got {cfg.schedule.min_lr_factor}",
    )
    _check(
        0 <= cfg.schedule.warmup_start <= 1,
        "schedule.warmup_start",
        f"must be in [0, 1], got {cfg.schedule.warmup_start}",
    )
    _check(all(m >= 0 for m in cfg.schedule.milestones), "schedule.milestones", "must be >= 0")
    _check(
        cfg.schedule.milestones == sorted(cfg.schedule.milestones),
        "schedule.milestones",
        "must be increasing",
    )
    for name in ("batch_size", "frames", "size", "flow_length", "row_stride"):
        _check(getattr(cfg.data, name) >= 1, f"data.{name}", "must be >= 1")
    _check(cfg.runtime.feature_cache_mb >= 0, "runtime.feature_cache_mb", "must be >= 0")
    _check(cfg.runtime.threads >= 0, "runtime.threads", "must be >= 0 (0: torch's default)")
    stride = cfg.data.stride
    lo_hi = stride if isinstance(stride, list) else [stride, stride]
    _check(
        len(lo_hi) == 2 and 1 <= lo_hi[0] <= lo_hi[1],
        "data.stride",
        f"must be an int >= 1 or a range [lo, hi] with 1 <= lo <= hi, got {stride}",
    )
    _check(cfg.data.workers >= 0, "data.workers", "must be >= 0")
    if cfg.data.decode_device == "cuda":  # CUDA tensors cannot come out of forked DataLoader workers
        _check(cfg.data.workers == 0, "data.workers", "must be 0 with data.decode_device=cuda (GPU decodes)")
        _check(cfg.runtime.device != "cpu", "data.decode_device", "cuda needs runtime.device auto or cuda")
        _check(cfg.task == "classify", "data.decode_device", "cuda decodes the classify task's videos only")
    allowed = {"rgb", "flow", "flow3"}
    bad = [m for m in cfg.data.modalities if m not in allowed]
    _check(not bad, "data.modalities", f"{bad} not in {sorted(allowed)}")
    _check(bool(cfg.model.name), "model.name", "required")
    _check(
        "num_classes" not in cfg.model.kwargs,
        "model.kwargs.num_classes",
        "is set from the class list (data.classes / the list file); remove it",
    )
    for name in ("ckpt_every_steps", "log_every_steps", "max_steps_per_epoch"):
        _check(getattr(cfg, name) >= 0, name, "must be >= 0")
    _check(cfg.eval_every >= 1, "eval_every", "must be >= 1")


def check_data_source(data: DataConfig) -> None:
    """The list / dataset-layout fields a video classification run needs (the classify task calls it)."""
    if data.plugin:
        return
    if data.format == "list":
        _check(bool(data.train_list), "data.train_list", "required with data.format=list (or data.plugin)")
        return
    _check(bool(data.root), "data.root", f"required with data.format={data.format} (the dataset folder)")
    _check(data.split in (1, 2, 3), "data.split", f"must be 1, 2 or 3, got {data.split}")
    for name in ("train_list", "val_list", "classes"):
        _check(
            not getattr(data, name),
            f"data.{name}",
            f"only for data.format=list; data.format={data.format} reads its own split files",
        )


def iter_fields(cls: type = TrainConfig, prefix: str = "") -> typing.Iterator[tuple[str, str, Any, str]]:
    """(dotted name, type, default, help) of every leaf field, in declaration order."""
    for name, (f, tp) in _fields(cls).items():
        if dataclasses.is_dataclass(tp):
            yield from iter_fields(tp, f"{prefix}{name}.")
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        yield f"{prefix}{name}", _type_name(tp), default, f.metadata.get("help", "")
