"""Classification: clip labels, cross-entropy, top-k / mean-class accuracy (the recognizers of LRCN,
PreRNN, two-stream and ST-ResNet).

Data: ``data.format`` list files, the official UCF101 / HMDB51 splits or class folders, read into
`VideoDataset`s (random training clips with augmentation, centred validation clips), or a
``data.plugin`` returning datasets and class names (``data.format: gestures`` is such a built-in
function: `vidrec.data.gestures.config_datasets`). The model's output width is the number of classes;
the class names are stored in every checkpoint. Validation is `vidrec.engine.evaluate.evaluate`
(video-level, views averaged); ``val_top1`` picks ``best.safetensors``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vidrec.cli import UsageError
from vidrec.engine.schema import TrainConfig, check_data_source
from vidrec.tasks.base import Step, Task, register_task


class NoUsableVideosError(UsageError, ValueError):
    """A training / validation / evaluation set has no video whose files exist (fix data.root)."""


@register_task
class Classify(Task):
    """Clip classification; see the module docstring."""

    name = "classify"
    best_metric = "val_top1"
    higher_is_better = True

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        check_data_source(cfg.data)
        self.names: list[str] = []
        self._data: tuple | None = None  # records, or a plug-in's datasets

    def check(self) -> None:
        check_paths(self.cfg)

    def _read(self) -> None:
        """Class names (and the records or the plug-in's datasets): the model's width depends on them."""
        cfg = self.cfg
        if self._data is not None:
            return
        if plugin_of(cfg):  # a `module:function` returning the datasets and class names
            from vidrec.models.build import import_object

            train_ds, val_ds, names = import_object(plugin_of(cfg), "data.plugin")(cfg)
            self._data = (train_ds, val_ds)
        else:
            self._data = read_records(cfg)
            names = self._data[2]
        self.names = list(names)

    def build_model(self, *, weights: bool = True) -> nn.Module:
        from vidrec.models.build import build_model  # imports every model: only when one is built

        if not self.names:
            self._read()
        return build_model(self.cfg.model, num_classes=len(self.names), weights=weights)

    def modalities(self, model: nn.Module | None = None) -> tuple[str, ...]:
        return tuple(self.cfg.data.modalities) or tuple(getattr(_inner(model), "modalities", ("rgb",)))

    def datasets(
        self, model: nn.Module, log: Callable[[str], None] | None = None
    ) -> tuple[Dataset, Dataset | None]:
        cfg = self.cfg
        self._read()
        if plugin_of(cfg):
            train_ds, val_ds = self._data
        else:
            train_ds, val_ds = list_datasets(cfg, self._data, self.modalities(model))
        self.missing = drop_missing_videos(cfg, train_ds, "training set", log)
        self.missing += drop_missing_videos(cfg, val_ds, "validation set", log) if val_ds is not None else []
        return train_ds, val_ds

    def class_names(self) -> list[str]:
        return list(self.names)

    def load_state(self, state: dict[str, Any], *, class_names: list[str] = ()) -> None:
        # never read again from the list files the stored config names: inference reads the checkpoint only
        if not class_names:
            raise ValueError("it holds no class names (metadata class_names is empty)")
        self.names = list(class_names)

    def training_step(self, model: nn.Module, batch: dict, device: torch.device) -> Step:
        from vidrec.engine.evaluate import model_inputs
        from vidrec.models.outputs import classification_loss, video_probs

        x, _ = model_inputs(batch, self.modalities(model), device)
        labels = torch.as_tensor(batch["label"]).to(device, non_blocking=True)
        out = model(x)
        loss = classification_loss(out, labels)
        correct = float((video_probs(out).detach().argmax(dim=1) == labels).sum())
        return Step(loss=loss, items=len(labels), sums={"correct": correct})

    def train_metrics(self, sums: dict[str, float], items: int) -> dict[str, float]:
        return {"train_top1": sums.get("correct", 0.0) / max(items, 1)}

    def validate(
        self, model: nn.Module, loader: DataLoader, *, device: torch.device, amp: bool, progress: bool
    ) -> dict[str, Any]:
        from vidrec.engine.evaluate import evaluate

        m = evaluate(model, loader, device=device, amp=amp, progress=progress)
        return {
            "val_loss": m.metrics["loss"],
            "val_top1": m.metrics["top1"],
            "val_top5": m.metrics.get("top5"),
            "val_mean_class_acc": m.metrics.get("mean_class_acc"),
            "val_skipped": list(m.skipped),
        }


def _inner(model: nn.Module | None) -> nn.Module | None:
    """The plain module inside torch.compile / DDP wrappers (for its `modalities`)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


# ----------------------------------------------------------------------------- data


def plugin_of(cfg: TrainConfig) -> str:
    """``data.plugin``, or the built-in one of ``data.format`` (gestures: `vidrec.data.gestures`), or ""."""
    from vidrec.data.layouts import BUILTIN_PLUGINS

    return cfg.data.plugin or BUILTIN_PLUGINS.get(cfg.data.format, "")


def check_paths(cfg: TrainConfig) -> None:
    """Fail before any model is built when a list file, the data root or the class file is missing."""
    data = cfg.data
    needed = [] if data.plugin or data.format != "list" else [("data.train_list", data.train_list)]
    needed += [("data.val_list", data.val_list)] if data.val_list else []
    needed += [("data.root", data.root)] if data.root else []
    needed += [("data.classes", data.classes)] if data.classes else []
    needed += [("data.flow_root", data.flow_root)] if data.flow_root else []
    needed += [("data.frames_root", data.frames_root)] if data.frames_root else []
    needed += [("data.prepared", data.prepared)] if data.prepared not in ("auto", "off", "") else []
    needed += [("resume", cfg.resume)] if cfg.resume not in ("", "auto") else []
    init = cfg.model.init_from
    init = init if isinstance(init, dict) else ({"": init} if init else {})
    needed += [(f"model.init_from{'.' + k if k else ''}", v) for k, v in init.items()]
    for name, path in needed:
        if not Path(path).exists():
            raise FileNotFoundError(
                f"{name}: {path} does not exist; fix the path in the config or override it"
            )


def data_root(cfg: TrainConfig) -> Path:
    """The folder record paths are relative to: ``data.root``, else the train list's folder."""
    return Path(cfg.data.root) if cfg.data.root else Path(cfg.data.train_list).parent


def read_records(cfg: TrainConfig) -> tuple[list, list | None, list[str]]:
    """(train records, val records or None, class names) of ``data.format`` (cheap: no decoding)."""
    from vidrec.data import read_list_file
    from vidrec.data.layouts import split_records

    d, root = cfg.data, data_root(cfg)
    if d.format != "list":
        train, names = split_records(d.format, root, split=d.split, train=True)
        val = split_records(d.format, root, split=d.split, train=False)
        return train, None if val is None else relabel(*val, names, source=f"{root} (validation)"), names
    train, names = read_list_file(d.train_list, root=root, classes=d.classes or None)
    val = read_list_file(d.val_list, root=root, classes=names)[0] if d.val_list else None
    return train, val, names


def relabel(records: list, names: list[str], to_names: list[str], *, source: str) -> list:
    """`records` labelled by `names` re-labelled by `to_names` (e.g. validation folders missing a class)."""
    if names == to_names:
        return records
    index = {n: i for i, n in enumerate(to_names)}
    unknown = sorted({names[r.label] for r in records} - set(index))
    if unknown:
        raise ValueError(f"{source}: classes {unknown[:5]} are not among the {len(to_names)} trained classes")
    return [dataclasses.replace(r, label=index[names[r.label]]) for r in records]


def stride_option(stride: int | list[int]) -> int | tuple[int, int]:
    """``data.stride`` as the samplers take it: an int, or a (lo, hi) range drawn per training clip."""
    return tuple(stride) if isinstance(stride, list) else stride


def list_datasets(
    cfg: TrainConfig, records: tuple, modalities: tuple[str, ...]
) -> tuple[Dataset, Dataset | None]:
    """`VideoDataset`s of the records: random training clips and augmentation, centred validation clips.

    RGB leaves the workers as uint8; `model_inputs` normalises it on the device.
    """
    from vidrec.data import VideoDataset, build_sampler, test_transform, train_transform

    d = cfg.data
    name = {"random": "dense", "segments": "tsn", "uniform": "uniform"}[d.sampler]  # vidrec.data's names
    options = {"tsn": {"num_segments": d.frames}, "uniform": {"num": d.frames}}
    options["dense"] = {"clip_len": d.frames, "stride": stride_option(d.stride)}
    root = data_root(cfg)
    flip = d.flip == "always" or (d.flip == "auto" and not (root / "synthetic.json").is_file())
    common = {
        "root": root,
        "modalities": modalities,
        "flow_root": d.flow_root or None,
        "frames_root": d.frames_root or None,
        "prepared": None if d.prepared == "off" else d.prepared,
        "size": d.resize,
        "flow_length": d.flow_length,
        "seed": cfg.runtime.seed,
        "decode_device": d.decode_device,
    }
    train = VideoDataset(
        records[0],
        sampler=build_sampler(name, train=True, **options[name]),
        transform=train_transform(d.size, kind=d.augment, flip=flip, normalize=False),  # uint8 RGB
        **common,
    )
    val = None
    if records[1] is not None:
        val = VideoDataset(
            records[1],
            sampler=build_sampler(name, train=False, **options[name]),
            transform=test_transform(d.size, normalize=False),
            **common,
        )
    return train, val


def build_datasets(
    cfg: TrainConfig, modalities: tuple[str, ...]
) -> tuple[Dataset, Dataset | None, list[str]]:
    """(training dataset, validation dataset or None, class names) exactly as `train` builds them."""
    if plugin_of(cfg):
        from vidrec.models.build import import_object

        return import_object(plugin_of(cfg), "data.plugin")(cfg)
    records = read_records(cfg)
    return (*list_datasets(cfg, records, modalities), records[2])


def drop_missing_videos(
    cfg: TrainConfig, dataset: Dataset, what: str, log: Callable[[str], None] | None = None
) -> list[str]:
    """Drop the listed videos whose files are absent (`VideoDataset.drop_missing`) and say how many
    through `log`.

    Raises `NoUsableVideosError` (one line: what `data.root` / `data.flow_root` must hold) when none is left.
    """
    if not hasattr(dataset, "drop_missing"):  # a plug-in's own dataset
        return []
    total = len(dataset)
    missing = dataset.drop_missing()
    if len(dataset) == 0:
        raise NoUsableVideosError(no_usable_videos(cfg, what, total, missing, dataset.skipped))
    if missing and log is not None:
        log(f"{what}: {len(missing)} of {total} listed videos are missing and skipped "
                    f"(first: {missing[0]})")  # fmt: skip
    return missing


def no_usable_videos(cfg: TrainConfig, what: str, total: int, missing: list[str], reasons: dict) -> str:
    """The one-line error for a split without a usable video."""
    from vidrec.data.layouts import root_help

    d = cfg.data
    source = f"data.format={d.format} split {d.split}" if d.format != "list" else (
        d.train_list if what.startswith("training") else d.val_list
    )  # fmt: skip
    if total == 0:
        return f"{what}: {source} lists no videos; check the split files under data.root={data_root(cfg)}"
    first = missing[0]
    if "flow" in reasons.get(first, ""):
        how = f"vidrec flow {data_root(cfg)} --out {d.flow_root}"
        return (f"{what}: none of the {total} videos has flow under data.flow_root={d.flow_root} "
                f"(first: {reasons[first]}); extract it with `{how}`")  # fmt: skip
    return (f"{what}: none of the {total} videos listed by {source} exists under data.root={data_root(cfg)} "
            f"(first: {first}); data.root must hold {root_help(d.format)}")  # fmt: skip
