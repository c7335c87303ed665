"""Box average precision as COCO scores it, through pycocotools' `COCOeval` (no re-implementation).

`BoxAP` collects, per frame, the detections (boxes, scores) and the ground truth (boxes, ignore regions),
all ``x1 y1 x2 y2`` in one pixel frame, and `compute()` gives AP@0.5, AP@0.75 and AP@[.5:.95] (COCO's
101-point interpolated precision, up to 100 detections a frame, one class).

Ignore regions (MOTChallenge's conf 0) go in as COCO *crowd* boxes (``iscrowd=1``): COCOeval counts them
as neither positives to find nor false positives, and a detection that overlaps one -- its intersection
over the **detection's** area (COCO's crowd IoU) at least the IoU threshold -- is ignored, not counted
against the detector. A frame with no ground truth is a valid negative: every detection on it is a false
positive.

Under DDP, ``compute(gather=True)`` first collects every rank's frames (each frame counted once).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

__all__ = ["BoxAP"]


def _numpy(x, cols: int | None = None) -> np.ndarray:
    arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)
    return arr.reshape(-1, cols) if cols else arr.reshape(-1)


class BoxAP:
    """Accumulates detections and ground truth per frame; `compute` runs COCOeval once."""

    def __init__(self) -> None:
        self.frames: dict[int, tuple[np.ndarray, ...]] = {}

    def update(self, frame: int, boxes, scores, gt_boxes, ignore=None) -> None:
        """One frame: detections `boxes` `(N, 4)` with `scores` `(N,)`, ground truth `gt_boxes` `(M, 4)`
        and optional ignore regions `(K, 4)`, all x1 y1 x2 y2 pixels."""
        ignore = np.zeros((0, 4), np.float32) if ignore is None else _numpy(ignore, 4)
        self.frames[int(frame)] = (_numpy(boxes, 4), _numpy(scores), _numpy(gt_boxes, 4), ignore)

    def __len__(self) -> int:
        return len(self.frames)

    def _gather(self) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self.frames)
        for part in parts:
            self.frames.update(part)

    def evaluate(self, *, gather: bool = False):
        """The finished `COCOeval` (None without frames); ``.eval["precision"]`` holds the PR curves."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if gather:
            self._gather()
        if not self.frames:
            return None
        images, anns, dets = [], [], []
        for frame, (boxes, scores, gt, ignore) in sorted(self.frames.items()):
            images.append({"id": frame})
            for box, crowd in [(b, 0) for b in gt] + [(b, 1) for b in ignore]:
                w, h = float(box[2] - box[0]), float(box[3] - box[1])
                anns.append({"id": len(anns) + 1, "image_id": frame, "category_id": 1, "iscrowd": crowd,
                             "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h})  # fmt: skip
            for box, score in zip(boxes, scores, strict=True):
                w, h = float(box[2] - box[0]), float(box[3] - box[1])
                dets.append({"image_id": frame, "category_id": 1, "score": float(score),
                             "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h})  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            gt_coco = COCO()
            gt_coco.dataset = {
                "images": images,
                "annotations": anns,
                "categories": [{"id": 1, "name": "object"}],
            }
            gt_coco.createIndex()
            dt_coco = gt_coco.loadRes(dets) if dets else COCO()
            if not dets:
                dt_coco.dataset = {
                    "images": images,
                    "annotations": [],
                    "categories": gt_coco.dataset["categories"],
                }
                dt_coco.createIndex()
            ev = COCOeval(gt_coco, dt_coco, "bbox")
            ev.params.areaRng, ev.params.areaRngLbl = (
                [[0, 1e10]],
                ["all"],
            )  # one size range: small people count
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev

    def compute(self, *, gather: bool = False) -> dict[str, float]:
        """``{"AP50", "AP75", "AP"}`` (AP = mean over IoU .5:.05:.95); NaN without frames or positives."""
        ev = self.evaluate(gather=gather)
        if ev is None:
            return {"AP50": float("nan"), "AP75": float("nan"), "AP": float("nan")}
        return {"AP": _ap(ev), "AP50": _ap(ev, 0.5), "AP75": _ap(ev, 0.75)}


def _ap(ev, iou: float | None = None) -> float:
    """Mean precision over recall points (and IoUs) where defined; NaN when there is no positive."""
    p = ev.eval["precision"]  # (T IoUs, R recalls, K classes, A areas, M max-dets)
    if iou is not None:
        p = p[np.isclose(ev.params.iouThrs, iou)]
    p = p[..., 0, -1]  # the one class, all areas, 100 detections
    p = p[p > -1]
    return float(p.mean()) if p.size else float("nan")


def pr_curve(ev, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(recall points `(101,)`, interpolated precision `(101,)`, -1 -> 0) at IoU `iou` from a `COCOeval`."""
    p = ev.eval["precision"][np.isclose(ev.params.iouThrs, iou)][0, :, 0, 0, -1]
    return np.asarray(ev.params.recThrs), np.where(p < 0, 0.0, p)
