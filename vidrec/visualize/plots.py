"""Training curves and confusion matrices as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_X_KEYS = ("epoch", "step", "iteration")


def read_csv_columns(csv_path: str | Path) -> dict[str, list[float]]:
    """Numeric columns of a CSV log (non-numeric cells become NaN; non-numeric columns are dropped)."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path} has no data rows; train at least one epoch before plotting")
    columns: dict[str, list[float]] = {}
    for name in rows[0]:
        values = [_to_float(r.get(name)) for r in rows]
        if any(not math.isnan(v) for v in values):
            columns[name] = values
    return columns


def _to_float(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _plot_group(ax, x: list[float], columns: dict[str, list[float]], names: list[str], ylabel: str) -> None:
    for name in names:
        y = np.asarray(columns[name], dtype=float)
        ok = ~np.isnan(y)
        ax.plot(np.asarray(x)[ok], y[ok], marker="o", markersize=3, label=name)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if names:
        ax.legend(fontsize=8)


def plot_curves(csv_path: str | Path, out_png: str | Path) -> Path:
    """Loss (left) and accuracy (right) against epoch from a training CSV log.

    Columns whose name contains `loss` go to the left panel; those containing `acc`, `top1` or `top5`
    to the right one. The x axis is `epoch` (or `step`), else the row number.
    """
    columns = read_csv_columns(csv_path)
    x_key = next((k for k in _X_KEYS if k in columns), None)
    x = columns[x_key] if x_key else list(range(1, len(next(iter(columns.values()))) + 1))
    losses = [c for c in columns if "loss" in c.lower()]
    accs = [c for c in columns if any(s in c.lower() for s in ("acc", "top1", "top5"))]
    if not losses and not accs:
        raise ValueError(f"{csv_path} has no loss or accuracy columns (found {sorted(columns)})")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    _plot_group(ax_loss, x, columns, losses, "loss")
    _plot_group(ax_acc, x, columns, accs, "accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel(x_key or "row")
    fig.tight_layout()
    return _save(fig, out_png)


def plot_confusion(
    cm: np.ndarray, class_names: list[str], out_png: str | Path, *, normalize: bool = True, title: str = ""
) -> Path:
    """Confusion matrix `(K, K)` (rows: true class, columns: predicted) with class names on the axes.

    The figure grows with K and the font shrinks, so 101 classes stay legible; cell counts are written
    only when K <= 20.
    """
    cm = np.asarray(cm, dtype=float)
    k = cm.shape[0]
    if cm.shape != (k, k) or len(class_names) != k:
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(class_names)} class names")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    side = min(max(5.0, 0.22 * k + 3), 30.0)
    font = max(4.0, min(10.0, 400 / max(k, 1)))
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(k), class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    if k <= 20:
        for i, j in np.ndindex(k, k):
            if cm[i, j]:
                color = "white" if shown[i, j] > 0.5 * np.nanmax(shown) else "black"
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=font, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, out_png)


def _save(fig, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_timeline(
    centres_s: list[float],
    probs: dict[str, list[float]],
    segments: list[tuple[float, float, str]],
    out_png: str | Path,
    *,
    title: str = "",
) -> Path:
    """Per-window class probabilities over time (one line per class in `probs`, at each window's centre in
    seconds) above the predicted segments `(start_s, end_s, class name)` as labelled bands."""
    fig, (ax, band) = plt.subplots(2, 1, figsize=(8, 3.4), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    colours = {name: f"C{i % 10}" for i, name in enumerate(probs)}
    for name, ys in probs.items():
        ax.plot(centres_s, ys, marker="o", markersize=3, label=name, color=colours[name])
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=9)
    for start, end, name in segments:
        band.axvspan(start, end, color=colours.get(name, "0.6"), alpha=0.6)
        band.text((start + end) / 2, 0.5, name, ha="center", va="center", fontsize=7, clip_on=True)
    band.set_yticks([])
    band.set_xlabel("time (s)")
    fig.tight_layout()
    return _save(fig, out_png)
