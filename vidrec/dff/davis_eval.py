"""J, F and frames/s of a segmentation model on DAVIS-layout sequences under a key-frame schedule.

`evaluate_sequences(dff, sequences, schedule)` walks each sequence in order with `DFF.run` (a fixed
interval l = 1 is per-frame inference), keeps the predicted masks and scores them afterwards with DAVIS J
and F (`vidrec.engine.seg_metrics`). Frames are decoded, resized and normalised before the clock starts, so
frames/s measures the model (feature net on key frames, flow + warp + task net on the others) and the
argmax, not JPEG decoding or scoring.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from vidrec.data.davis import Sequence, read_image, read_mask
from vidrec.data.transforms import normalize_rgb
from vidrec.engine.seg_metrics import JF

__all__ = ["SequenceResult", "evaluate_sequences", "format_table", "load_sequence", "summarize"]


@dataclass(frozen=True)
class SequenceResult:
    """One sequence under one schedule."""

    name: str
    J: float
    F: float
    frames: int
    keys: int
    seconds: float  # model time over the sequence


def load_sequence(seq: Sequence, size: tuple[int, int] | None) -> tuple[torch.Tensor, np.ndarray]:
    """(frames uint8 (T, 3, H, W), masks int64 (T, H, W)) of a sequence, resized to `size` = (H, W)."""
    frames = np.stack([read_image(p, size) for p in seq.frames])  # (T, H, W, 3)
    masks = np.stack([read_mask(p, size) for p in seq.masks])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), masks


def evaluate_sequences(
    dff: torch.nn.Module,
    sequences: list[Sequence],
    schedule,
    *,
    size: tuple[int, int] | None = (240, 432),
    device: str | torch.device = "cpu",
    progress: bool = True,
    loaded: dict[str, tuple[torch.Tensor, np.ndarray]] | None = None,
) -> list[SequenceResult]:
    """Per-sequence J, F, key frames and model seconds of `dff` (a `vidrec.dff.DFF`) under `schedule`.

    `loaded`: optional cache {name: `load_sequence` result} shared between calls (benchmarks).
    """
    from vidrec.progress import progress as bar

    device = torch.device(device)
    results = []
    for seq in bar(sequences, desc=f"eval ({schedule})", disable=not progress, leave=False):
        if loaded is not None and seq.name in loaded:
            frames, masks = loaded[seq.name]
        else:
            frames, masks = load_sequence(seq, size)
            if loaded is not None:
                loaded[seq.name] = (frames, masks)
        inputs = [normalize_rgb(f[None].to(device)) for f in frames]  # (1, 3, H, W) each
        preds, keys = [], 0
        start = time.perf_counter()
        for out, is_key in dff.run(iter(inputs), schedule):
            preds.append(out[0].argmax(dim=0).cpu())  # (H, W)
            keys += bool(is_key)
        seconds = time.perf_counter() - start
        jf = JF()
        for i, (pred, gt) in enumerate(zip(preds, masks, strict=True)):
            jf.update(seq.name, i, pred.numpy(), gt)
        score = jf.compute()
        results.append(SequenceResult(seq.name, score["J"], score["F"], len(preds), keys, seconds))
    return results


def summarize(results: list[SequenceResult]) -> dict[str, float]:
    """J and F averaged over sequences, frames/s over all frames, key frames and the key-frame rate."""
    frames = sum(r.frames for r in results)
    keys = sum(r.keys for r in results)
    return {
        "J": float(np.mean([r.J for r in results])),
        "F": float(np.mean([r.F for r in results])),
        "fps": frames / max(sum(r.seconds for r in results), 1e-9),
        "frames": frames,
        "keys": keys,
        "key_rate": keys / max(frames, 1),
    }


def format_table(results: list[SequenceResult]) -> str:
    """A per-sequence table with a mean row."""
    lines = [f"{'sequence':20s} {'J':>6s} {'F':>6s} {'frames':>6s} {'keys':>5s} {'frames/s':>8s}"]
    for r in results:
        lines.append(
            f"{r.name:20s} {r.J:6.3f} {r.F:6.3f} {r.frames:6d} {r.keys:5d} {r.frames / r.seconds:8.2f}"
        )
    s = summarize(results)
    lines.append(f"{'mean':20s} {s['J']:6.3f} {s['F']:6.3f} {s['frames']:6d} {s['keys']:5d} {s['fps']:8.2f}")
    return "\n".join(lines)
