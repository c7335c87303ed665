"""DAVIS region similarity J and boundary accuracy F (Perazzi et al., CVPR'16), for binary masks.

- J: the Jaccard index |pred & gt| / |pred | gt| of one frame (1 when both masks are empty).
- F: the boundary F-measure. Each mask's boundary is the 1-pixel map of pixels whose right, lower or
  lower-right neighbour differs (the toolkit's ``seg2bmap``: boundaries offset half a pixel towards the
  origin, the last row / column compared along the edge only). A boundary pixel of one mask is matched
  when the other mask's boundary lies within ``bound_th`` x the image diagonal (rounded up to whole
  pixels; a value >= 1 is taken as pixels), i.e. inside a disk-dilation of the other boundary;
  precision = matched predicted / predicted boundary pixels, recall = matched true / true boundary
  pixels, F = 2PR / (P + R). An empty predicted boundary gives P = 1, an empty true one R = 1.
- A sequence's J (F) is the mean over the frames given to `JF`; the reported J (F) is the mean over
  sequences. J recall (the toolkit's second J statistic) is the fraction of a sequence's frames with
  J > 0.5; `JF.table` / `format_sequence_table` give J mean, J recall and F mean per sequence.
  Which frames, at which size, is the caller's: vidrec's DAVIS evaluation gives each sequence's
  frames but the first and the last, at the native mask size, as the 2016 toolkit scores
  (`vidrec.data.davis.scored_frames`, `vidrec.dff.davis_eval`, the segment task's validation).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import cv2
import numpy as np
import torch


def region_j(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard index of two binary (H, W) masks; 1.0 when both are empty."""
    pred, gt = _binary(pred, gt)
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Bool (H, W) boundary of a binary mask, as the DAVIS toolkit's ``seg2bmap`` draws it."""
    seg = np.asarray(mask).astype(bool)
    east, south, south_east = (np.zeros_like(seg) for _ in range(3))
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    """uint8 (2r+1, 2r+1) kernel of the points with x^2 + y^2 <= r^2 (skimage's ``disk``)."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def tolerance_px(shape: tuple[int, int], bound_th: float = 0.008) -> int:
    """Matching distance in pixels: ``bound_th`` x the diagonal rounded up, or ``bound_th`` itself if >= 1."""
    return int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(*shape))


def boundary_prf(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> tuple[float, float, float]:
    """(F, precision, recall) of the boundaries of two binary (H, W) masks; see the module docstring."""
    pred, gt = _binary(pred, gt)
    kernel = disk(tolerance_px(pred.shape, bound_th))
    pb, gb = boundary_map(pred), boundary_map(gt)
    pred_near = cv2.dilate(pb.astype(np.uint8), kernel) > 0
    gt_near = cv2.dilate(gb.astype(np.uint8), kernel) > 0
    n_pred, n_gt = np.count_nonzero(pb), np.count_nonzero(gb)
    precision = 1.0 if n_pred == 0 else np.count_nonzero(pb & gt_near) / n_pred
    recall = 1.0 if n_gt == 0 else np.count_nonzero(gb & pred_near) / n_gt
    if n_pred == 0 and n_gt > 0:
        recall = 0.0
    if n_gt == 0 and n_pred > 0:
        precision = 0.0
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return f, precision, recall


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Boundary F-measure of two binary (H, W) masks."""
    return boundary_prf(pred, gt, bound_th)[0]


def _binary(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"masks must be (H, W) of one shape, got {pred.shape} and {gt.shape}")
    return pred, gt


RECALL_J = 0.5  # J recall counts the frames scored above this J (DAVIS toolkit)


@dataclass(frozen=True)
class SequenceScore:
    """One sequence's row of the per-sequence table."""

    name: str
    J: float  # mean over its frames
    J_recall: float  # fraction of its frames with J > 0.5
    F: float
    frames: int


def format_sequence_table(rows: list[SequenceScore]) -> str:
    """A markdown table of J mean, J recall and F mean per sequence, with a mean row (means over
    sequences, as DAVIS reports them)."""
    lines = ["| sequence | J mean | J recall | F mean | frames |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.J:.3f} | {r.J_recall:.3f} | {r.F:.3f} | {r.frames} |")
    if rows:
        j, rec, f = (float(np.mean([getattr(r, k) for r in rows])) for k in ("J", "J_recall", "F"))
        lines.append(f"| **mean** | {j:.3f} | {rec:.3f} | {f:.3f} | {sum(r.frames for r in rows)} |")
    return "\n".join(lines)


class JF:
    """Accumulates per-frame J and F by sequence; `compute` averages per sequence, then over sequences.

    Under DDP, `compute(gather=True)` first collects every rank's frames (each frame counted once).
    """

    def __init__(self, bound_th: float = 0.008) -> None:
        self.bound_th = bound_th
        self.frames: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)

    def update(
        self, sequence: str, index: int, pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor
    ):
        """Score one frame: `pred` and `gt` binary (H, W)."""
        pred, gt = _numpy(pred), _numpy(gt)
        self.frames[sequence][int(index)] = (region_j(pred, gt), boundary_f(pred, gt, self.bound_th))

    def per_sequence(self) -> dict[str, tuple[float, float, int]]:
        """{sequence: (mean J, mean F, frames)}, sorted by name."""
        out = {}
        for name in sorted(self.frames):
            scores = np.array(list(self.frames[name].values()))  # (frames, 2)
            out[name] = (float(scores[:, 0].mean()), float(scores[:, 1].mean()), len(scores))
        return out

    def table(self) -> list[SequenceScore]:
        """One `SequenceScore` per sequence (sorted by name): J mean, J recall, F mean, frames."""
        rows = []
        for name in sorted(self.frames):
            scores = np.array(list(self.frames[name].values()))  # (frames, 2)
            j, f = scores[:, 0], scores[:, 1]
            rows.append(
                SequenceScore(name, float(j.mean()), float((j > RECALL_J).mean()), float(f.mean()), len(j))
            )
        return rows

    def compute(self, *, gather: bool = False) -> dict[str, float]:
        """``{"J": ..., "F": ..., "JF": (J + F) / 2}``: means over sequences of the per-sequence means."""
        if gather:
            self._gather()
        seqs = self.per_sequence()
        if not seqs:
            return {"J": float("nan"), "F": float("nan"), "JF": float("nan")}
        j = float(np.mean([v[0] for v in seqs.values()]))
        f = float(np.mean([v[1] for v in seqs.values()]))
        return {"J": j, "F": f, "JF": (j + f) / 2}

    def _gather(self) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, dict(self.frames))
        for part in parts:
            for name, frames in part.items():
                self.frames[name].update(frames)


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
