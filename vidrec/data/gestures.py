"""Hand-gesture trajectories (point_history.csv) as clips and as coordinate sequences.

The format is Kazuhito00/hand-gesture-recognition-using-mediapipe's ``point_history.csv``: one row per
sliding window, ``class_id, x_0, y_0, ..., x_15, y_15``, the 16 fingertip points relative to the first
one and divided by the camera image's width (x) and height (y); ``labels.csv`` beside it names the
classes, one per line (Stop, Clockwise, Counter Clockwise, Move). Rows are ordered by class and by time
and consecutive rows of one recording overlap in 15 of their 16 points, so a random split leaks: use
`split_blocks`.

- `read_point_history(path)` -> labels `(N,)` int64, points `(N, T=16, 2)` float32 (as stored).
- `render_clip(points, size=, background=, seed=)` -> uint8 `(T, H, W, 3)`: the fingertip as a soft
  blob on a plain or textured background, no trail: one frame shows where the finger is, not where it
  goes. A clip and its time reversal hold the same frames, so only temporal models can tell clockwise
  from counter-clockwise.
- `GestureDataset(csv, indices, form="clip" | "points")` yields vidrec's item dict: ``rgb`` uint8
  `(T, 3, H, W)` (every vidrec RGB model reads it) or ``points`` float32 `(T, 2)` (sequence models), with
  ``label`` and ``video_id`` (``"<file>:<row>"``). The same row gives the same clip, always.
- `split_blocks(labels, val_fraction=, gap=)`: per class, the last `val_fraction` of its rows (the latest
  recordings) validate, the first rows train, and `gap` rows between them are dropped, so no window on
  one side shares a point with a window on the other.
- `config_datasets(cfg)`: ``data.format: gestures`` for `vidrec train` (``data.root`` holds the CSVs).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from vidrec.textfiles import csv_errors, text_stream

if TYPE_CHECKING:
    from vidrec.engine.schema import TrainConfig

__all__ = [
    "GestureDataset",
    "config_datasets",
    "read_gesture_labels",
    "read_point_history",
    "render_clip",
    "split_blocks",
    "stored_background",
]

STEPS = 16  # points per row
SOURCE_SIZE = (960.0, 540.0)  # camera image (width, height) the points were divided by (1/960, 1/540 steps)
VIEW = 200.0  # source pixels the rendered frame spans (a typical circle gesture is about 100 px wide)
VAL_FRACTION = 0.2  # last fifth of each class's rows validates
GAP = STEPS  # rows dropped between the training and validation blocks (>= 16: no shared point)
RENDER_VERSION = (
    1  # part of every cached clip's key (`GestureDataset.input_key`): bump when rendering changes
)


def read_point_history(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels `(N,)` int64, points `(N, 16, 2)` float32) of a point_history.csv file.

    Raises `ValueError` naming the file and the line when a row is not ``class, 32 numbers`` (NaN and
    infinite coordinates included: they would render an empty or undefined clip).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such point-history file (class id + 16 (x, y) per row)")
    labels, points = [], []
    with (
        text_stream(path, "point-history file") as f,
        csv_errors(csv.reader(f), path, "point-history file") as rows,
    ):
        for line_no, row in enumerate(rows, 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 1 + 2 * STEPS:
                raise ValueError(f"{path}:{line_no}: {len(row)} columns, expected {1 + 2 * STEPS} "
                                 f"(class id and 16 x, y pairs)")  # fmt: skip
            try:
                labels.append(int(row[0]))
                points.append([float(v) for v in row[1:]])
            except ValueError as err:
                raise ValueError(f"{path}:{line_no}: not a number ({err})") from None
            if not np.isfinite(points[-1]).all():
                bad = next(v.strip() for v in row[1:] if not np.isfinite(float(v)))
                raise ValueError(f"{path}:{line_no}: coordinate {bad!r} is not a finite number; fix or "
                                 "delete this row")  # fmt: skip
    if not labels:
        raise ValueError(f"{path}: no rows")
    return np.asarray(labels, np.int64), np.asarray(points, np.float32).reshape(-1, STEPS, 2)


def read_gesture_labels(path: str | Path) -> list[str]:
    """Class names of a labels.csv (one per line, first column), index = class id."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no labels file (one class name per line)")
    with text_stream(path, "labels file") as f, csv_errors(csv.reader(f), path, "labels file") as rows:
        return [row[0].strip() for row in rows if row and row[0].strip()]


def split_blocks(
    labels: np.ndarray, *, val_fraction: float = VAL_FRACTION, gap: int = GAP
) -> tuple[np.ndarray, np.ndarray]:
    """(train row indices, validation row indices): contiguous blocks per class, in file order.

    For each class, its rows in file (time) order: the first ``(1 - val_fraction)`` train, the last
    ``val_fraction`` validate, and the `gap` rows just before the validation block are left out, so a
    window on one side never overlaps one on the other (rows are windows shifted by one point).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    train, val = [], []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        n_val = max(1, round(len(rows) * val_fraction))
        n_train = len(rows) - n_val - gap
        if n_train < 1:
            raise ValueError(f"class {c}: {len(rows)} rows are too few for a {gap}-row gap and a split")
        train.append(rows[:n_train])
        val.append(rows[len(rows) - n_val :])
    return np.concatenate(train), np.concatenate(val)


def trajectory_pixels(points: np.ndarray, size: int) -> np.ndarray:
    """`(T, 2)` relative points -> `(T, 2)` (x, y) pixel centres in a `size` frame.

    Back to camera pixels, centred on the middle of the trajectory's bounding box (a property of the
    whole path, the same for the path and its time reversal), scaled so `VIEW` camera pixels fill the frame.
    """
    cam = points.astype(np.float64) * np.asarray(SOURCE_SIZE)  # (T, 2) camera pixels
    centre = (cam.min(0) + cam.max(0)) / 2
    return (cam - centre) * (size / VIEW) + (size - 1) / 2


def _background(size: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """float32 `(H, W, 3)` in [0, 1]: a plain grey or a smooth random texture (bilinear-upsampled noise)."""
    if kind == "plain":
        return np.full((size, size, 3), 0.45, np.float32)
    coarse = rng.uniform(0.2, 0.7, (6, 6, 3)).astype(np.float32)
    grid = torch.from_numpy(coarse).permute(2, 0, 1)[None]  # (1, 3, 6, 6)
    smooth = torch.nn.functional.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)
    fine = rng.normal(0.0, 0.03, (size, size, 3)).astype(np.float32)
    return np.clip(smooth[0].permute(1, 2, 0).numpy() + fine, 0.0, 1.0)


def render_clip(
    points: np.ndarray,
    *,
    size: int = 64,
    background: Literal["plain", "textured"] = "textured",
    seed: int = 0,
    radius: float | None = None,
) -> np.ndarray:
    """uint8 `(T, H, W, 3)`: one frame per point, the fingertip as a Gaussian blob, no trail.

    The background (fixed over the clip) depends only on `seed`; the blob (radius `size / 16` by
    default, a warm skin-like colour) only on its own point, so frame t depends on point t alone.
    """
    if not np.isfinite(points).all():
        raise ValueError("render_clip: the points hold NaN or infinite coordinates; nothing to draw there")
    rng = np.random.default_rng(seed)
    back = _background(size, background, rng)  # (H, W, 3)
    colour = np.asarray([0.95, 0.75, 0.6], np.float32)
    sigma = (radius or size / 16) / 1.5
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = []
    for x, y in trajectory_pixels(points, size):
        alpha = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))[..., None]  # (H, W, 1)
        frames.append(back * (1 - alpha) + colour * alpha)
    return (np.stack(frames) * 255 + 0.5).astype(np.uint8)  # (T, H, W, 3)


class GestureDataset(Dataset):
    """Rows of a point_history.csv as vidrec items (see the module docstring).

    Args:
        source: the CSV path, or ``(labels, points)`` arrays as `read_point_history` returns them.
        indices: the rows to use (e.g. one side of `split_blocks`); None: all.
        form: "clip" -> ``rgb`` uint8 `(T, 3, H, W)`; "points" -> ``points`` float32 `(T, 2)`.
        size: frame side in pixels (64-112 is what the benchmarks use).
        background: "plain" or "textured" (a texture per row, seeded by `seed` and the row number).
        seed: base seed of the backgrounds; the same (seed, row) always renders the same clip.
    """

    def __init__(
        self,
        source: str | Path | tuple[np.ndarray, np.ndarray],
        *,
        indices: np.ndarray | list[int] | None = None,
        form: Literal["clip", "points"] = "clip",
        size: int = 64,
        background: Literal["plain", "textured"] = "textured",
        seed: int = 0,
    ) -> None:
        if form not in ("clip", "points"):
            raise ValueError(f"form={form!r}; choose 'clip' or 'points'")
        if background not in ("plain", "textured"):
            raise ValueError(f"background={background!r}; choose 'plain' or 'textured'")
        if isinstance(source, str | Path):
            self.name = Path(source).name
            self.labels, self.points = read_point_history(source)
        else:
            self.name = "rows"
            self.labels, self.points = (np.asarray(a) for a in source)
            bad = np.flatnonzero(~np.isfinite(self.points.reshape(len(self.points), -1)).all(axis=1))
            if len(bad):
                raise ValueError(f"rows {bad[:5].tolist()} hold NaN or infinite coordinates; drop them")
        self.rows = np.arange(len(self.labels)) if indices is None else np.asarray(indices, np.int64)
        self.form, self.size, self.background, self.seed = form, size, background, seed

    def __len__(self) -> int:
        return len(self.rows)

    def clip(self, row: int) -> np.ndarray:
        """uint8 `(T, H, W, 3)` of file row `row` (not a dataset index)."""
        seed = self._texture_seed(row)
        return render_clip(self.points[row], size=self.size, background=self.background, seed=seed)

    def input_key(self, index: int) -> str:
        """What the item's frames depend on: the row's points, the clip size, the background and (textured)
        its seed; `vidrec.engine.feature_cache` keys the frozen features with it."""
        row = int(self.rows[index])
        digest = hashlib.sha256(np.ascontiguousarray(self.points[row], np.float32).tobytes()).hexdigest()
        texture = f" texture_seed={self._texture_seed(row)}" if self.background == "textured" else ""
        look = f"size={self.size} background={self.background}{texture}"
        return f"gesture clip v{RENDER_VERSION} points={digest} {look}"

    def item_meta(self, index: int) -> dict[str, Any]:
        """The item without its frames (label and id)."""
        row = int(self.rows[index])
        return {"label": int(self.labels[row]), "video_id": f"{self.name}:{row}"}

    def _texture_seed(self, row: int) -> int:
        return int(np.random.SeedSequence([self.seed, int(row)]).generate_state(1)[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = int(self.rows[index])
        item = self.item_meta(index)
        if self.form == "points":
            item["points"] = torch.from_numpy(np.ascontiguousarray(self.points[row], np.float32))  # (T, 2)
        else:
            item["rgb"] = torch.from_numpy(self.clip(row)).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)
        return item


def stored_background(config: dict[str, Any]) -> str:
    """The background a checkpoint's stored config rendered its clips on: ``data.background``, or
    ``textured`` for checkpoints written before that field existed (the clips were textured then)."""
    return str((config.get("data") or {}).get("background", "textured"))


def config_datasets(cfg: TrainConfig) -> tuple[GestureDataset, GestureDataset, list[str]]:
    """``data.format: gestures``: (train, validation, class names) from ``data.root``'s
    point_history.csv and labels.csv, split by `split_blocks`, clips of ``data.size`` pixels.

    ``data.background`` (plain / textured) is the clips' background; ``data.row_stride`` keeps every Nth
    window of each side. ``data.frames`` must be 16 (a row holds 16 points); the clips are not augmented
    (a horizontal flip would turn clockwise into counter-clockwise), so a frozen trunk's features are
    computed once (`vidrec.engine.feature_cache`).
    """
    from vidrec.engine.schema import ConfigError

    root = Path(cfg.data.root)
    if cfg.data.frames != STEPS:
        raise ConfigError(
            f"data.frames: data.format=gestures gives {STEPS}-frame clips; set data.frames={STEPS}"
        )
    for name in ("point_history.csv", "labels.csv"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"data.root={root} has no {name}; data.format=gestures needs "
                                    "point_history.csv and labels.csv there")  # fmt: skip
    labels, points = read_point_history(root / "point_history.csv")
    names = read_gesture_labels(root / "labels.csv")
    if labels.min() < 0 or labels.max() >= len(names):
        raise ValueError(f"{root / 'point_history.csv'}: class ids {labels.min()}..{labels.max()} "
                         f"but labels.csv names {len(names)} classes")  # fmt: skip
    train_rows, val_rows = split_blocks(labels)
    stride = cfg.data.row_stride
    train_rows, val_rows = train_rows[::stride], val_rows[::stride]
    common = {"size": cfg.data.size, "background": cfg.data.background, "seed": cfg.runtime.seed}
    train = GestureDataset((labels, points), indices=train_rows, **common)
    val = GestureDataset((labels, points), indices=val_rows, **common)
    train.name = val.name = "point_history.csv"
    return train, val, names
