"""Frozen parts computed once: a model's frozen leading part run once per item and reused every epoch.

When a model's first layers are frozen (a captioner's CNN with ``freeze_cnn``, a PreRNN trunk with
``freeze_trunk``, an LRCN encoder with ``freeze_encoder``) and an item's frames are the same every epoch,
recomputing those layers each epoch is wasted work: on a 2-core CPU it is most of an epoch. `vidrec train`
instead computes them once per item (the first epoch's "building the feature cache" bar), stores the
result in the run folder and feeds the rest of the model from there.

The model side, a small protocol (`vidrec.models.captioner.Captioner`, `vidrec.models.prernn.PreRNN`,
`vidrec.models.lrcn.LRCN` implement it):

- ``frozen_prefix() -> nn.Module | None``: the frozen leading part, normalised frames ``(N, C, H, W)`` ->
  per-frame features ``(N, ...)``, in eval mode under ``model.train()``; None when nothing is frozen;
- ``prefix_cached: bool``: while True (`reading_features`), the model's forward takes those features
  ``(B, T, ...)`` in place of the frames ``(B, T, C, H, W)``, and computes the same outputs.

The data side: a dataset whose items' frames are deterministic gives

- ``input_key(index) -> str``: everything the item's frames depend on (the input's content -- the file's
  bytes hashed, or the row's values -- and the transform that makes frames of it);
- ``item_meta(index) -> dict``: the item without its ``rgb`` frames (labels, captions, ids), cheap.

A dataset without them, or one whose ``deterministic`` attribute is False (random crops, flips, clip
starts: every epoch sees other frames), is not cached, and the run says so once.

Storage: ``RUN/feature_cache/<fingerprint>/<key>.safetensors``, one file per distinct input, written
atomically; the fingerprint hashes the frozen weights and the prefix's structure, the file name hashes
the fingerprint and `input_key`, so a changed file, transform or frozen weight makes new keys and old
entries are simply never read. Every process keeps an LRU of at most ``runtime.feature_cache_mb`` of
features in memory and reads the rest from the files (loader workers included). A file that cannot be
read is recomputed with a one-line warning. Under DDP each rank builds its share of the missing keys and
all ranks wait at a barrier (the run folder is shared, as for checkpoints); resume finds the files there.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vidrec.data.transforms import normalize_rgb
from vidrec.engine import distributed as D
from vidrec.progress import progress

FOLDER = "feature_cache"
INPUT = "rgb"  # the batch key the frozen prefix reads (uint8 frames, normalised with ImageNet statistics)


def frozen_prefix(model: nn.Module) -> nn.Module | None:
    """The model's frozen leading part (see the module docstring), or None."""
    get = getattr(model, "frozen_prefix", None)
    return get() if callable(get) else None


def is_cacheable(dataset: Dataset | None) -> bool:
    """True when `dataset` says what its items' frames depend on (`input_key`, `item_meta`) and does not
    say that they change from epoch to epoch (``deterministic = False``)."""
    return (
        dataset is not None
        and callable(getattr(dataset, "input_key", None))
        and callable(getattr(dataset, "item_meta", None))
        and getattr(dataset, "deterministic", True)
    )


def weights_hash(module: nn.Module) -> str:
    """sha256 of `module`'s structure and every tensor of its state (names, dtypes, shapes, values)."""
    h = hashlib.sha256(repr(module).encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@contextmanager
def reading_features(model: nn.Module) -> Iterator[None]:
    """The model reads its frozen prefix's output in place of frames for the duration of the block."""
    model.prefix_cached = True
    try:
        yield
    finally:
        model.prefix_cached = False


@contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    """`module` in eval mode (frozen BatchNorm statistics, no dropout), its modes restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def compute(prefix: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames ``(B, T, C, H, W)`` -> the prefix's features ``(B, T, ...)``, float32."""
    device = next(prefix.parameters(), torch.empty(0)).device
    x = normalize_rgb(frames.to(device))
    with _eval(prefix):
        f = prefix(rearrange(x, "b t c h w -> (b t) c h w"))  # (B*T, ...)
    return rearrange(f.float(), "(b t) ... -> b t ...", b=frames.shape[0])


class FeatureStore:
    """Features by input key: an in-memory LRU of at most `max_bytes` over one file per key in `folder`."""

    def __init__(self, folder: Path, *, max_bytes: int) -> None:
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.bytes = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.safetensors"

    def has(self, key: str) -> bool:
        return key in self.memory or self.path(key).is_file()

    def get(self, key: str) -> torch.Tensor | None:
        """The features of `key`, or None when absent or unreadable (then warned once and deleted)."""
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            features = load_file(path)["features"]
        except Exception as err:  # a truncated or damaged file: computed again, never a crash
            warnings.warn(f"{path}: unreadable feature-cache file ({err}); computing it again", stacklevel=2)
            path.unlink(missing_ok=True)
            return None
        self._remember(key, features)
        return features

    def put(self, key: str, features: torch.Tensor) -> None:
        """Write `features` (atomically: a temporary file renamed) and remember them."""
        features = features.detach().cpu().contiguous()
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"features": features}, str(tmp))
        os.replace(tmp, path)
        self._remember(key, features)

    def _remember(self, key: str, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if size > self.max_bytes:
            return
        self.memory[key] = features
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.memory.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()


class CachedInputs(Dataset):
    """`dataset`'s items with their ``rgb`` frames replaced by the frozen prefix's features ``(T, ...)``.

    Features come from the cache's store; an entry no rank wrote (a file that was damaged or deleted) is
    computed here with the prefix (a CPU copy in loader workers) and written back.
    """

    def __init__(self, dataset: Dataset, cache: FeatureCache) -> None:
        self.dataset, self.cache = dataset, cache

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> Any:
        key, store = self.dataset.input_key(index), self.cache.store
        features = store.get(key)
        if features is not None:
            return {**self.dataset.item_meta(index), INPUT: features}
        item = self.dataset[index]
        if not isinstance(item, dict) or INPUT not in item:  # an unreadable input: skipped as uncached
            return item
        features = compute(self.cache.local_prefix, item[INPUT][None])[0]
        store.put(key, features)
        return {**item, INPUT: features}


class FeatureCache:
    """The frozen prefix of one run, the datasets it serves and their `FeatureStore`.

    `plan` decides and wraps the datasets (before the loaders exist); `prepare` builds the missing
    entries once the weights are final (after resume or ``init_from``), before the first epoch.
    """

    def __init__(self, prefix: nn.Module, root: Path, *, max_bytes: int) -> None:
        self.prefix, self.root = prefix, Path(root)
        self.store = FeatureStore(self.root, max_bytes=max_bytes)
        self.datasets: list[Dataset] = []
        self.local_prefix = prefix  # the copy that loader workers run on the CPU (see `prepare`)

    def wrap(self, dataset: Dataset | None) -> CachedInputs | None:
        if dataset is None:
            return None
        self.datasets.append(dataset)
        return CachedInputs(dataset, self)

    def prepare(
        self,
        *,
        info: D.DistInfo,
        batch_size: int,
        workers: int,
        show_progress: bool,
        log: Callable[[str], None],
    ) -> None:
        """The store's folder from the frozen weights as they are now, then `build`."""
        self.store.folder = self.root / weights_hash(self.prefix)[:16]
        on_cpu = next(self.prefix.parameters()).device.type == "cpu"
        self.local_prefix = self.prefix if on_cpu else copy.deepcopy(self.prefix).cpu()
        build(
            self.datasets, self.store, self.prefix, info=info, batch_size=batch_size, workers=workers,
            show_progress=show_progress, log=log,
        )  # fmt: skip


class _Pending(Dataset):
    """(key, item) of the inputs still to compute, for a loader whose workers read and decode them."""

    def __init__(self, todo: list[tuple[str, Dataset, int]]) -> None:
        self.todo = todo

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int) -> tuple[str, Any]:
        key, dataset, index = self.todo[i]
        return key, dataset[index]


def build(
    datasets: list[Dataset],
    store: FeatureStore,
    prefix: nn.Module,
    *,
    info: D.DistInfo,
    batch_size: int,
    workers: int,
    show_progress: bool,
    log: Callable[[str], None],
) -> int:
    """Compute the features of every distinct input of `datasets` that `store` lacks; returns how many
    this rank computed. Each rank takes every world_size-th missing key, then all ranks meet at a barrier."""
    keys: dict[str, tuple[Dataset, int]] = {}
    for ds in datasets:
        for index in range(len(ds)):
            keys.setdefault(ds.input_key(index), (ds, index))
    ordered = sorted(keys)
    missing = [k for k in ordered if not store.path(k).is_file()]
    mine = [(k, *keys[k]) for k in missing[info.rank :: info.world_size]]
    if not missing:
        log(f"feature cache: all {len(ordered)} inputs' frozen features found in {store.folder}")
    else:
        log(f"feature cache: building the frozen part's features of {len(missing)} of {len(ordered)} "
            f"inputs once (first epoch only) in {store.folder}")  # fmt: skip
    loader = DataLoader(_Pending(mine), batch_size=batch_size, num_workers=workers, collate_fn=list)
    done = 0
    for batch in progress(loader, desc="building the feature cache", unit="batch", disable=not show_progress):
        good = [(k, item) for k, item in batch if isinstance(item, dict) and INPUT in item]
        for shape in {tuple(item[INPUT].shape) for _, item in good}:  # items of one shape stack
            group = [(k, item) for k, item in good if tuple(item[INPUT].shape) == shape]
            features = compute(prefix, torch.stack([item[INPUT] for _, item in group]))
            for (k, _), f in zip(group, features, strict=True):
                store.put(k, f)
            done += len(group)
    D.barrier()
    return done


def plan(
    cfg: Any, model: nn.Module, train_ds: Dataset, val_ds: Dataset | None, *, log: Callable[[str], None]
) -> tuple[Dataset, Dataset | None, FeatureCache | None]:
    """(train, val, cache): the datasets wrapped in `CachedInputs` of a new `FeatureCache` when
    ``runtime.feature_cache`` is on, the model has a frozen prefix and every item is deterministic; else
    the datasets as they were and None (randomly augmented items are said once in `log`)."""
    prefix = frozen_prefix(model) if cfg.runtime.feature_cache else None
    if prefix is None:
        return train_ds, val_ds, None
    for ds in (train_ds, val_ds):  # the model reads features in validation too: both sets or none
        if ds is not None and not is_cacheable(ds):
            log(f"feature cache off: the items of {type(ds).__name__} are randomly augmented or do not say "
                "what their frames depend on, so the frozen part runs every epoch")  # fmt: skip
            return train_ds, val_ds, None
    cache = FeatureCache(prefix, Path(cfg.out_dir) / FOLDER, max_bytes=cfg.runtime.feature_cache_mb << 20)
    return cache.wrap(train_ds), cache.wrap(val_ds), cache


__all__ = [
    "CachedInputs",
    "FeatureCache",
    "FeatureStore",
    "build",
    "compute",
    "frozen_prefix",
    "is_cacheable",
    "plan",
    "reading_features",
    "weights_hash",
]
