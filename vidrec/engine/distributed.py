"""Distributed data-parallel set-up, launched by `torchrun`.

One machine, many GPUs::

    torchrun --standalone --nproc_per_node 8 -m vidrec.cli train vidrec/configs/lrcn_ucf101_rgb.yaml

Many machines (run the same command on every node; node 0's address is the rendezvous endpoint)::

    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_id lrcn1 --rdzv_backend c10d \
        --rdzv_endpoint node0.example:29400 -m vidrec.cli train vidrec/configs/lrcn_ucf101_rgb.yaml

CPU-only (gloo backend), e.g. for tests::

    python -m torch.distributed.run --nproc_per_node 2 -m vidrec.cli train cfg.yaml runtime.device=cpu

`data.batch_size` is per process, so the global batch is ``batch_size * world_size * accum_steps``.
Each process reads its share of every epoch through a `DistributedSampler` (re-shuffled by
`set_epoch`); only rank 0 logs and writes checkpoints, with barriers around the writes. Checkpoints carry
every rank's generator states (gathered to rank 0), and on resume the ranks compare the checkpoint each
of them sees before loading it, so `out_dir` must be one folder shared by all nodes (docs/guides/training.md,
"Many GPUs and machines", says what is and is not equal to a one-process run).

Devices: `resolve_device` (``auto`` / ``cpu`` / ``cuda``), `use_amp` (bf16 autocast), `with_sync_bn`
(BatchNorm over the global batch, CUDA only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vidrec.engine.schema import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank / world size / local rank from the environment torchrun sets (defaults: one process)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device_type: str, backend: str = "auto") -> DistInfo:
    """Join the process group when launched with WORLD_SIZE > 1; a no-op for one process."""
    info = env_info()
    if not info.enabled or dist.is_initialized():
        return info
    if backend == "auto":
        backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return info


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """`t` summed over ranks (in place, also returned); unchanged for one process."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (`[obj]` for one process)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on at least one rank (so all ranks take the same branch)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    return bool(all_reduce_sum(t).item() > 0)


# ----------------------------------------------------------------------------- devices


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.device=cuda but no CUDA device is available; use runtime.device=cpu")
    return torch.device(name)


def use_amp(amp: str, device: torch.device) -> bool:
    """bf16 autocast: on for CUDA with ``auto``, off on CPU unless ``bf16`` is asked for."""
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


def with_sync_bn(model: nn.Module, *, enabled: bool, device: torch.device) -> nn.Module:
    """`model` with every BatchNorm layer turned into `nn.SyncBatchNorm` when `enabled` (DDP only).

    SyncBatchNorm normalises with the mean / variance of the global batch (all ranks), so BatchNorm
    behaves as in one process with the global batch. torch implements it for CUDA only; on CPU each
    process keeps normalising with its own batch (docs/guides/training.md, "Many GPUs and machines").
    """
    if not enabled:
        return model
    if device.type != "cuda":
        raise ConfigError(
            "runtime.sync_bn: torch's SyncBatchNorm runs on CUDA devices only; on CPU (gloo) each process "
            "normalises with its own batch statistics. Set runtime.sync_bn=false or train on GPUs"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
