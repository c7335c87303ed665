"""Self-supervised pretraining of `FlowNetLite` on unlabelled frames (no Flying Chairs offline).

The loss (`vidrec.dff.flownets.photometric_loss`) asks the current frame to equal the key frame warped by the
predicted current -> key flow, plus a smoothness term; pairs are two frames of one clip up to `max_gap`
apart, in either order. Clips are videos (any PyAV-readable file) or folders of frames (.jpg/.png, e.g.
DAVIS ``JPEGImages/480p/<sequence>``), found recursively under a source folder; each is read once,
resized to `size`, and kept in memory as uint8.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from vidrec.data.transforms import normalize_rgb
from vidrec.dff.flownets import FlowNetLite, photometric_loss, save_flownet

__all__ = ["find_clips", "load_clip", "pretrain_flownet", "train_flownet"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".ts")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_clips(source: str | os.PathLike) -> list[Path]:
    """Videos and frame folders under `source` (a video, a frame folder, or a folder of either), sorted."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"frame source {source} does not exist; give a folder of videos or frames")
    clips, folders = [], set()
    for root, _dirs, files in os.walk(source, followlinks=True):  # a folder of symlinks to sequences works
        for name in files:
            suffix = Path(name).suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                clips.append(Path(root) / name)
            elif suffix in IMAGE_SUFFIXES:
                folders.add(Path(root))
    return sorted(clips) + sorted(folders)


def load_clip(path: Path, size: tuple[int, int], *, max_frames: int = 120) -> np.ndarray:
    """Up to `max_frames` frames of a video or frame folder, resized to `size` = (H, W): `(T, H, W, 3)`."""
    h, w = size
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:max_frames]
        frames = [cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files]
    else:
        from vidrec.io import VideoReader

        with VideoReader(path) as reader:
            frames = [f for _, f in zip(range(max_frames), reader, strict=False)]
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def _batch(
    clips: Sequence[np.ndarray], size: int, max_gap: int, rng: random.Random, *, augment: bool
) -> np.ndarray:
    """`size` pairs `(2, B, H, W, 3)` uint8: [key, current], 1..max_gap frames apart; with `augment` in
    either order and flipped left-right half of the time, else the earlier frame is the key."""
    pairs = []
    for _ in range(size):
        clip = clips[rng.randrange(len(clips))]
        gap = rng.randint(1, min(max_gap, len(clip) - 1))
        t = rng.randrange(len(clip) - gap)
        a, b = (clip[t], clip[t + gap]) if not augment or rng.random() < 0.5 else (clip[t + gap], clip[t])
        if augment and rng.random() < 0.5:  # horizontal flip of both frames
            a, b = a[:, ::-1], b[:, ::-1]
        pairs.append((a, b))
    return np.ascontiguousarray(np.stack(pairs, axis=1))


def train_flownet(
    net: FlowNetLite,
    clips: Sequence[np.ndarray],
    *,
    steps: int = 2000,
    batch: int = 8,
    lr: float = 1e-3,
    max_gap: int = 5,
    smooth_weight: float = 0.1,
    seed: int = 0,
    augment: bool = True,
    clip_norm: float = 1.0,
    device: str | torch.device = "cpu",
    show_progress: bool = True,
) -> list[float]:
    """Train `net` in place on pairs from `clips` (uint8 `(T, H, W, 3)` each, T >= 2); the loss per step.

    Adam with a cosine learning-rate decay over `steps` and gradients clipped to norm `clip_norm` (the
    photometric loss has bursts where a flow crosses an edge); `augment` as `_batch`.
    """
    from vidrec.progress import progress

    clips = [c for c in clips if len(c) >= 2]
    if not clips:
        raise ValueError("flow pretraining needs at least one clip of two or more frames")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    losses: list[float] = []
    bar = progress(range(steps), desc="flow pretraining", unit="step", disable=not show_progress)
    for _ in bar:
        pair = _batch(clips, batch, max_gap, rng, augment=augment)  # uint8 (2, B, H, W, 3)
        pair = torch.from_numpy(pair).to(device)
        key, cur = normalize_rgb(pair.permute(0, 1, 4, 2, 3))  # (B, 3, H, W) each
        loss = photometric_loss(net, key, cur, smooth_weight=smooth_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip_norm)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    net.eval()
    return losses


def pretrain_flownet(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: tuple[int, int] = (128, 224),
    max_frames: int = 120,
    stride: int = 16,
    width: int = 16,
    downscale: int | None = None,
    **train_args,
) -> tuple[FlowNetLite, list[float]]:
    """Pretrain a new `FlowNetLite(stride, width, downscale)` on the clips under `source` and save it to
    `out` (`save_flownet`).

    `train_args` go to `train_flownet` (steps, batch, lr, max_gap, smooth_weight, seed, device).
    """
    paths = find_clips(source)
    if not paths:
        raise FileNotFoundError(f"no videos or frame folders under {source}")
    clips = [load_clip(p, size, max_frames=max_frames) for p in paths]
    net = FlowNetLite(stride=stride, width=width, downscale=downscale)
    losses = train_flownet(net, clips, **train_args)
    extra = {"clips": len(clips), "size": list(size), "steps": len(losses), "final_loss": losses[-1]}
    save_flownet(net.cpu(), out, extra=extra)
    return net, losses
