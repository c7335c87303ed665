"""Classification metrics as pure functions on video-level probabilities.

Every function takes `probs (N, K)` (any scores: only their order matters) and integer `labels (N,)`,
as tensors or arrays, and returns plain Python numbers or NumPy arrays.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check(probs: np.ndarray, labels: np.ndarray) -> None:
    if probs.ndim != 2 or labels.ndim != 1 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"expected probs (N, K) and labels (N,), got {probs.shape} and {labels.shape}")


def topk_accuracy(probs: ArrayLike, labels: ArrayLike, k: int = 1) -> float:
    """Fraction of rows whose label is among the `k` highest scores (ties broken by class index)."""
    p, y = _np(probs), _np(labels).astype(np.int64)
    _check(p, y)
    if len(y) == 0:
        return math.nan
    k = min(k, p.shape[1])
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]  # (N, k)
    return float((top == y[:, None]).any(axis=1).mean())


def confusion_matrix(probs: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """Counts `(K, K)`: row = true class, column = predicted class (arg-max)."""
    p, y = _np(probs), _np(labels).astype(np.int64)
    _check(p, y)
    k = num_classes or p.shape[1]
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, p.argmax(axis=1)), 1)
    return cm


def per_class_accuracy(probs: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """Top-1 accuracy of each true class `(K,)`; NaN for a class with no example."""
    cm = confusion_matrix(probs, labels, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def mean_class_accuracy(probs: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> float:
    """Mean of the per-class accuracies over the classes that have examples."""
    acc = per_class_accuracy(probs, labels, num_classes)
    return float(np.nanmean(acc)) if np.isfinite(acc).any() else math.nan


def nll(probs: ArrayLike, labels: ArrayLike, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the labels under the (averaged) probabilities."""
    p, y = _np(probs).astype(np.float64), _np(labels).astype(np.int64)
    _check(p, y)
    if len(y) == 0:
        return math.nan
    return float(-np.log(np.clip(p[np.arange(len(y)), y], eps, None)).mean())


def pair_accuracy(probs: ArrayLike, labels: ArrayLike, pairs: list[tuple[int, int]]) -> float:
    """Accuracy of telling the two classes of each pair apart, on the examples of those classes.

    For an example of class `a` in pair `(a, b)` the prediction is whichever of `a`, `b` scores higher,
    so chance is 0.5 whatever the other classes do (used for the time-reversal pairs of the demo).
    """
    p, y = _np(probs), _np(labels).astype(np.int64)
    _check(p, y)
    hits, total = 0, 0
    for a, b in pairs:
        for cls, other in ((a, b), (b, a)):
            rows = y == cls
            hits += int((p[rows, cls] > p[rows, other]).sum())
            total += int(rows.sum())
    return hits / total if total else math.nan


def classification_metrics(probs: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> dict:
    """The standard set: `top1`, `top5`, `mean_class_acc`, `per_class_acc` (list, NaN -> None), `loss`."""
    per_class = per_class_accuracy(probs, labels, num_classes)
    return {
        "top1": topk_accuracy(probs, labels, 1),
        "top5": topk_accuracy(probs, labels, 5),
        "mean_class_acc": mean_class_accuracy(probs, labels, num_classes),
        "per_class_acc": [None if math.isnan(a) else float(a) for a in per_class],
        "loss": nll(probs, labels),
        "num_videos": int(len(_np(labels))),
    }
