"""Turning model inputs and heat maps into pictures: frames, animations (GIF/MP4), contact sheets.

Model inputs are `(T, C, H, W)` float tensors in model units: RGB normalised with the ImageNet mean/std,
flow stacks `(T, 2L, H, W)` in pixels (x/y interleaved). Pictures are uint8 RGB `(N, H, W, 3)`.
Every writer refuses to replace an existing file unless `overwrite=True`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from einops import rearrange

from vidrec.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vidrec.io import write_video
from vidrec.visualize.flowviz import draw_arrows, flow_to_colour


def check_new(path: str | Path, overwrite: bool = False) -> Path:
    """`path` as a Path; raises FileExistsError (`vidrec.cli.OutputExistsError`) when it exists and
    `overwrite` is False."""
    from vidrec.cli import output_path

    return output_path(path, "output", overwrite=overwrite)


def rgb_frames(
    x: torch.Tensor,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    stretch: bool = False,
) -> np.ndarray:
    """RGB input `(T, 3, H, W)` (normalised) -> uint8 `(T, H, W, 3)`.

    `stretch` maps the clip's 1st..99th percentile to 0..255 (for optimised inputs, whose values
    leave the natural range) unless that range is flat; otherwise the normalisation is undone and
    values clipped to [0, 1].
    """
    img = x.detach().float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    img = rearrange(img, "t c h w -> t h w c").numpy()
    flat = float(np.ptp(img.reshape(-1, 3), axis=0).max()) < 1e-3  # e.g. an input the unit never saw
    if stretch and not flat:
        lo, hi = np.percentile(img, [1, 99])
        img = (img - lo) / max(hi - lo, 1e-8)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def flow_fields(x: torch.Tensor) -> np.ndarray:
    """Flow input `(T, 2L, H, W)` -> the T*L fields in time order, float `(T*L, H, W, 2)` (x, y)."""
    return rearrange(x.detach().float().cpu(), "t (l xy) h w -> (t l) h w xy", xy=2).numpy()


def flow_colour_frames(fields: np.ndarray, *, max_mag: float | None = None) -> np.ndarray:
    """Fields `(N, H, W, 2)` -> Middlebury colours `(N, H, W, 3)` on one shared scale (the 99th
    percentile of the clip's magnitudes unless `max_mag` is given)."""
    if max_mag is None:
        max_mag = float(np.percentile(np.hypot(fields[..., 0], fields[..., 1]), 99)) or 1.0
    return np.stack([flow_to_colour(f, max_mag=max_mag) for f in fields])


def flow_arrow_frames(fields: np.ndarray, *, step: int = 8, upscale: int = 4) -> np.ndarray:
    """Fields `(N, H, W, 2)` -> arrows (one per `step` input pixels) over the colour coding, drawn at
    `upscale` x the size; the clip's 99th-percentile magnitude is drawn about one grid cell long."""
    colours = enlarge(flow_colour_frames(fields), upscale)
    big = np.repeat(np.repeat(fields, upscale, axis=1), upscale, axis=2) * upscale  # (N, uH, uW, 2)
    p99 = float(np.percentile(np.hypot(fields[..., 0], fields[..., 1]), 99)) * upscale
    scale = 0.9 * step * upscale / max(p99, 1e-6)
    return np.stack([draw_arrows(f, c, step=step * upscale, scale=scale) for f, c in zip(big, colours)])


def overlay(frames: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Heat maps `(T, H, W)` in [0, 1] as a jet colour map blended over frames `(T, H, W, 3)`."""
    if frames.shape[:3] != heat.shape:
        raise ValueError(f"frames {frames.shape[:3]} and heat maps {heat.shape} differ")
    out = []
    for frame, h in zip(frames, np.asarray(heat, dtype=np.float32)):
        jet = cv2.applyColorMap((np.clip(h, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        weight = alpha * np.clip(h, 0, 1)[..., None] ** 0.5  # cold areas stay close to the frame
        out.append((frame * (1 - weight) + jet * weight).round().astype(np.uint8))
    return np.stack(out)


def enlarge(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of `(N, H, W, 3)` by an integer factor (small inputs stay crisp)."""
    factor = max(1, int(factor))
    return np.repeat(np.repeat(frames, factor, axis=1), factor, axis=2) if factor > 1 else frames


def display_factor(height: int, width: int, target: int = 192) -> int:
    """An integer zoom that brings the shorter side near `target` pixels."""
    return max(1, round(target / max(1, min(height, width))))


def save_animation(frames: np.ndarray, path: str | Path, *, fps: float = 4, overwrite: bool = False) -> Path:
    """Write `(N, H, W, 3)` uint8 frames as an animated GIF or an MP4 (from the extension)."""
    path = check_new(path, overwrite)
    frames = np.ascontiguousarray(frames)
    if path.suffix.lower() != ".gif" and (frames.shape[1] % 2 or frames.shape[2] % 2):
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)))
    return write_video(path, frames, fps, crf=18 if path.suffix.lower() == ".mp4" else None)


def contact_sheet(
    rows: Sequence[tuple[str, np.ndarray]],
    path: str | Path,
    *,
    title: str = "",
    captions: Sequence[str] | None = None,
    overwrite: bool = False,
    max_columns: int = 16,
) -> Path:
    """A PNG grid: one labelled row per `(label, frames (N, H, W, 3))`, columns captioned (e.g. t=0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = check_new(path, overwrite)
    cols = min(max_columns, max(len(f) for _, f in rows))
    figsize = (1.3 * cols + 1.2, 1.45 * len(rows) + 0.5)
    fig, axes = plt.subplots(len(rows), cols, figsize=figsize, squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(frames):
                ax.imshow(frames[c], interpolation="nearest")
            else:
                ax.axis("off")
            if r == 0 and captions is not None and c < len(captions):
                ax.set_title(captions[c], fontsize=7)
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_objective(history: Sequence[float], path: str | Path, *, title: str = "", overwrite: bool = False):
    """The objective a/rho against the Adam step as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = check_new(path, overwrite)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(len(history)), history)
    ax.set_xlabel("Adam step")
    ax.set_ylabel("unit activation / rho")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
