"""Synthetic videos whose classes only temporal order separates.

Classes come in pairs. A clip of the second class of a pair is the exact time-reversal of a clip drawn
from the same distribution as the first class's clips, so the set of frames of a clip -- and therefore
the distribution of a frame picked at random -- is the same for both classes of a pair. Motion is
periodic with a uniformly random phase (orbits, wrap-around translation, a sawtooth size), so even the
frame at a fixed position has the same distribution in both classes. A single-frame model can only
tell the three pairs apart (chance within a pair), while a model of temporal order can reach 100%.

Pairs: a shape orbiting clockwise / counter-clockwise, moving right / left (wrapping around), and
growing / shrinking; each clip has a random textured background (noise, gradient or stripes), a random
shape (disc, square, diamond), colours, phase and speed, and is encoded as H.264 mp4.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vidrec.io.writer import write_video
from vidrec.progress import progress as progress_bar

__all__ = ["CLASSES", "PAIRS", "make_clip", "make_synthetic_dataset", "render_motion"]

# class name -> (motion kind, played backwards?)
_SPEC: dict[str, tuple[str, bool]] = {
    "orbit_cw": ("orbit", False),
    "orbit_ccw": ("orbit", True),
    "move_right": ("move", False),
    "move_left": ("move", True),
    "grow": ("grow", False),
    "shrink": ("grow", True),
}
CLASSES: tuple[str, ...] = tuple(_SPEC)
PAIRS: tuple[tuple[str, str], ...] = (
    ("orbit_cw", "orbit_ccw"),
    ("move_right", "move_left"),
    ("grow", "shrink"),
)
_META_FILE = "synthetic.json"
_VERSION = 1


def make_clip(name: str, rng: np.random.Generator, *, frames: int = 16, size: int = 64) -> np.ndarray:
    """One random clip of class `name` as uint8 RGB `(T, H, W, 3)` (H = W = size)."""
    if name not in _SPEC:
        raise ValueError(f"unknown synthetic class {name!r}; choose from {list(CLASSES)}")
    kind, backwards = _SPEC[name]
    clip = render_motion(kind, rng, frames=frames, size=size)
    return np.ascontiguousarray(clip[::-1]) if backwards else clip


def render_motion(kind: str, rng: np.random.Generator, *, frames: int = 16, size: int = 64) -> np.ndarray:
    """A forward clip of motion `kind` ("orbit", "move" or "grow"): uint8 `(T, H, W, 3)`."""
    background = _background(rng, size)  # (H, W, 3) float in [0, 1]
    colour = _contrasting_colour(rng, background)
    shape = ("disc", "square", "diamond")[rng.integers(3)]
    centres, radii = _trajectory(kind, rng, frames, size)  # (T, 2) x/y pixels, (T,) pixels
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        alpha = _shape_mask(shape, centres[t], radii[t], size)[..., None]  # (H, W, 1)
        out[t] = np.round((background * (1 - alpha) + colour * alpha) * 255)
    return out


def _trajectory(kind: str, rng: np.random.Generator, frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame shape centre (x, y) and radius, all periodic with a uniform random phase."""
    t = np.arange(frames, dtype=np.float64)
    phase = rng.uniform(0.0, 1.0)
    speed = rng.uniform(0.5, 0.9) / frames  # cycles per frame: at most one cycle per clip
    cycle = phase + speed * t  # (T,)
    if kind == "orbit":
        # image y points down, so an increasing angle turns clockwise on screen
        centre = size / 2 + rng.uniform(-0.05, 0.05, size=2) * size
        orbit = rng.uniform(0.2, 0.3) * size
        angle = 2 * math.pi * cycle
        xy = centre + orbit * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        radii = np.full(frames, rng.uniform(0.08, 0.14) * size)
    elif kind == "move":
        y = rng.uniform(0.25, 0.75) * size
        xy = np.stack([(cycle % 1.0) * size, np.full(frames, y)], axis=1)
        radii = np.full(frames, rng.uniform(0.08, 0.14) * size)
    elif kind == "grow":
        xy = np.tile(size / 2 + rng.uniform(-0.1, 0.1, size=2) * size, (frames, 1))
        radii = (0.05 + 0.25 * (cycle % 1.0)) * size  # sawtooth: grows, then starts small again
    else:
        raise ValueError(f"unknown motion kind {kind!r}; use 'orbit', 'move' or 'grow'")
    return xy, radii


def _shape_mask(shape: str, centre: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape, wrapping around the image borders."""
    coords = np.arange(size, dtype=np.float64) + 0.5
    dx = (coords[None, :] - centre[0] + size / 2) % size - size / 2  # (1, W)
    dy = (coords[:, None] - centre[1] + size / 2) % size - size / 2  # (H, 1)
    if shape == "disc":
        dist = np.sqrt(dx**2 + dy**2)
    elif shape == "square":
        dist = np.maximum(np.abs(dx), np.abs(dy))
    else:
        dist = (np.abs(dx) + np.abs(dy)) / 1.3
    return np.clip(radius - dist + 0.5, 0.0, 1.0)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random static texture: smooth noise, a linear gradient or stripes, mixing two colours."""
    c1, c2 = rng.uniform(0.0, 1.0, size=(2, 3))
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    theta = rng.uniform(0, 2 * math.pi)
    proj = xx * math.cos(theta) + yy * math.sin(theta)  # (H, W)
    if kind == 0:
        grid = rng.uniform(0.0, 1.0, size=(rng.integers(3, 9),) * 2).astype(np.float32)
        mix = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        mix += rng.normal(0.0, 0.05, size=(size, size))
    elif kind == 1:
        mix = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-6)
    else:
        mix = 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(2, 6) * proj + rng.uniform(0, 2 * math.pi))
    mix = np.clip(mix, 0.0, 1.0)[..., None]
    return c1 * (1 - mix) + c2 * mix


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour, pushed away from the background's mean so the shape stays visible."""
    colour = rng.uniform(0.0, 1.0, size=3)
    mean = background.reshape(-1, 3).mean(axis=0)
    if np.abs(colour - mean).max() < 0.4:
        colour = np.where(mean > 0.5, colour * 0.3, 0.7 + colour * 0.3)
    return colour


def make_synthetic_dataset(
    root: str | Path,
    *,
    per_class: int = 20,
    frames: int = 16,
    size: int = 64,
    fps: float = 25,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
    test_fraction: float = 0.25,
    progress: bool = True,
) -> Path:
    """Write the synthetic dataset to `root` and return `root`.

    Layout: `root/<class>/<class>_<i>.mp4`, `root/classes.txt` (one name per line, line number = label),
    `root/train.txt` and `root/test.txt` (`<class>/<file>.mp4 <label>` lines, labels 0-based), and
    `root/synthetic.json` (the parameters). Each video's content depends only on (seed, class, index),
    so the output is deterministic; existing videos are kept (files are written atomically, so an existing
    file is complete), which makes an interrupted run resumable.

    Raises:
        ValueError: an unknown class, bad sizes, or `root` holding a dataset made with other parameters.
    """
    root = Path(root)
    classes = list(classes)
    _check_args(classes, per_class, frames, size, test_fraction)
    params = {"version": _VERSION, "frames": frames, "size": size, "fps": fps, "seed": seed}
    _check_existing(root, params)
    root.mkdir(parents=True, exist_ok=True)
    n_test = min(per_class - 1, max(1, round(per_class * test_fraction))) if per_class > 1 else 0
    train, test = [], []
    jobs = [(c, i) for c in range(len(classes)) for i in range(per_class)]
    for c, i in progress_bar(jobs, desc=f"synthetic videos -> {root}", disable=not progress, unit="video"):
        rel = f"{classes[c]}/{classes[c]}_{i:04d}.mp4"
        if not (root / rel).is_file():
            rng = np.random.default_rng([seed, CLASSES.index(classes[c]), i])
            clip = make_clip(classes[c], rng, frames=frames, size=size)
            write_video(root / rel, clip, fps, crf=18, deterministic=True)
        (test if i >= per_class - n_test else train).append(f"{rel} {c}\n")
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    (root / "train.txt").write_text("".join(train))
    (root / "test.txt").write_text("".join(test))
    (root / _META_FILE).write_text(json.dumps(params) + "\n")
    return root


def _check_args(classes: list[str], per_class: int, frames: int, size: int, test_fraction: float) -> None:
    unknown = [c for c in classes if c not in _SPEC]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {list(CLASSES)}, got {classes}")
    if per_class < 1 or frames < 2 or size < 16 or size % 2:
        raise ValueError(
            f"need per_class >= 1, frames >= 2 and an even size >= 16; got per_class={per_class}, "
            f"frames={frames}, size={size}"
        )
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")


def _check_existing(root: Path, params: dict) -> None:
    meta = root / _META_FILE
    if meta.is_file() and json.loads(meta.read_text()) != params:
        raise ValueError(
            f"{root} already holds a synthetic dataset made with {meta.read_text().strip()}, "
            f"not {json.dumps(params)}; use another folder or delete this one"
        )
