"""Datasets from the engine's data configuration (`vidrec.engine.config.DataConfig`).

Training: the configured sampler (`random`: `data.frames` consecutive frames `data.stride` apart from a
random start; `segments`: TSN, one frame per segment; `uniform`: jittered evenly spaced frames), frames
decoded at short side `data.resize`, then a TSN multi-scale corner crop to `data.size` and a random flip.
Validation: the same sampler in test mode (centred / evenly spaced) and a centre crop.

Horizontal flips are turned off for the synthetic temporal-order dataset (a folder holding
`synthetic.json`), whose move-left/right and clockwise/counter-clockwise classes a mirror image would swap;
a config may also set `flip` explicitly when its dataclass has that field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidrec.data.dataset import VideoDataset
from vidrec.data.records import read_class_names, read_list_file
from vidrec.data.samplers import Sampler, build_sampler
from vidrec.data.transforms import test_transform, train_transform

__all__ = ["datasets_from_config", "sampler_from_config"]


def sampler_from_config(data: Any, *, train: bool) -> Sampler:
    """The clip sampler named by `data.sampler` with `data.frames` / `data.stride`."""
    if data.sampler == "random":
        return build_sampler("dense", clip_len=data.frames, stride=data.stride, train=train)
    if data.sampler == "segments":
        return build_sampler("tsn", num_segments=data.frames, train=train)
    if data.sampler == "uniform":
        return build_sampler("uniform", num=data.frames, train=train)
    raise ValueError(f"data.sampler: {data.sampler!r} is not one of ['random', 'segments', 'uniform']")


def datasets_from_config(
    data: Any, *, modalities: tuple[str, ...], seed: int = 0
) -> tuple[VideoDataset, VideoDataset | None, list[str]]:
    """(training dataset, validation dataset or None, class names) from list files."""
    train_list = Path(data.train_list)
    root = Path(data.root) if data.root else train_list.parent
    classes = read_class_names(data.classes) if data.classes else None
    train_records, names = read_list_file(train_list, root=root, classes=classes)
    flip = getattr(data, "flip", None)
    flip = not (root / "synthetic.json").is_file() if flip is None else bool(flip)
    common = {
        "root": root,
        "modalities": tuple(modalities),
        "flow_root": data.flow_root or None,
        "size": data.resize or None,
        "seed": seed,
    }
    train_ds = VideoDataset(
        train_records,
        sampler=sampler_from_config(data, train=True),
        transform=train_transform(data.size, kind="tsn", flip=flip),
        **common,
    )
    if not data.val_list:
        return train_ds, None, names
    val_records, _ = read_list_file(data.val_list, root=root, classes=names)
    val_ds = VideoDataset(
        val_records,
        sampler=sampler_from_config(data, train=False),
        transform=test_transform(data.size, crops=1),
        **common,
    )
    return train_ds, val_ds, names
