"""Seeded, resumable data loading for `vidrec.engine.train`.

Data order comes from a `DistributedSampler` seeded with ``runtime.seed + epoch`` (also for one process);
`ResumableSampler` can start an epoch part-way through. Every item is produced under torch / numpy /
random generators seeded from ``(seed, epoch, index)`` (`EpochSeeded`), so its random crop / flip / clip
start do not depend on which worker made it or on which items came before. Evaluation shards the items
over the ranks without padding (`ShardSampler`).

Batches leave the workers as uint8 RGB (4x fewer bytes than float) in pinned memory when the device is
CUDA, so the trainer's ``.to(device, non_blocking=True)`` (`vidrec.engine.evaluate.model_inputs`) is an
asynchronous copy, and they are normalised on the device. With ``data.decode_device=cuda`` the GPU decodes
(`vidrec.io.gpu_decode`) in the training process: items are already CUDA tensors, nothing is pinned.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from vidrec.data import collate_skip
from vidrec.engine.distributed import DistInfo
from vidrec.engine.schema import ConfigError, TrainConfig
from vidrec.interrupt import ignore_in_worker


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, numpy's global generator and torch's."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: numpy / random from the worker's torch seed (set by the loader); stop
    signals are left to the trainer, which ends its workers (`vidrec.interrupt`)."""
    ignore_in_worker()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class EpochSeeded(Dataset):
    """Wraps a dataset so item `i` of epoch `e` is made under generators seeded from (seed, e, i).

    The caller's torch / numpy / random states are restored afterwards, so reading items in the main
    process (``workers=0``) does not disturb the model's random streams.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item_seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        np_state, py_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(item_seed)
            np.random.seed(item_seed)
            random.seed(item_seed)
            try:
                return self.dataset[index]
            finally:
                np.random.set_state(np_state)
                random.setstate(py_state)


class ResumableSampler(Sampler[int]):
    """A `DistributedSampler` (also for one process) whose epoch can start part-way through."""

    def __init__(self, dataset: Dataset, *, world_size: int, rank: int, seed: int, shuffle: bool = True):
        self.inner = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Order of `epoch` (seed + epoch), skipping its first `start` indices of this rank."""
        self.inner.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.inner)[self.start :])

    def __len__(self) -> int:
        return len(self.inner) - self.start


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: every item on exactly one rank (no padding); for evaluation."""

    def __init__(self, dataset: Dataset, *, world_size: int, rank: int) -> None:
        self.indices = list(range(rank, len(dataset), world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def check_decode_device(cfg: TrainConfig) -> None:
    """Raise ConfigError (one line: what is missing, how to bring it) when ``data.decode_device=cuda``
    cannot run here; before any model or dataset is built."""
    if cfg.data.decode_device == "cuda":
        from vidrec.io.gpu_decode import cuda_decoding_problem

        problem = cuda_decoding_problem()
        if problem is not None:
            raise ConfigError(f"data.decode_device=cuda: {problem}")


def make_loaders(
    cfg: TrainConfig,
    train_ds: Dataset,
    val_ds: Dataset | None,
    info: DistInfo,
    collate: Callable[[list[Any]], Any] = collate_skip,
    *,
    device: torch.device | None = None,
) -> tuple[DataLoader, ResumableSampler, DataLoader | None]:
    """(train loader, its ResumableSampler, val loader or None); `collate`: the task's.

    Batches are pinned when `device` (the training device; None: CUDA when available) is CUDA and the
    CPU decodes, so their copies to the device are asynchronous.
    """
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_ds = EpochSeeded(train_ds, cfg.runtime.seed)
    sampler = ResumableSampler(train_ds, world_size=info.world_size, rank=info.rank, seed=cfg.runtime.seed)
    common = {"num_workers": cfg.data.workers, "collate_fn": collate, "worker_init_fn": seed_worker}
    common["pin_memory"] = device.type == "cuda" and cfg.data.decode_device == "cpu"
    train = DataLoader(
        train_ds,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        drop_last=True,
        generator=torch.Generator(),
        **common,
    )
    val = None
    if val_ds is not None:
        val_ds = EpochSeeded(val_ds, cfg.runtime.seed)  # the same views every epoch and on every rank
        val_sampler = ShardSampler(val_ds, world_size=info.world_size, rank=info.rank)
        val = DataLoader(val_ds, batch_size=cfg.data.batch_size, sampler=val_sampler, **common)
    return train, sampler, val
