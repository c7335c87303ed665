"""J, F and frames/s of a segmentation model on DAVIS-layout sequences under a key-frame schedule.

`evaluate_sequences(dff, sequences, schedule)` walks each sequence in order with `DFF.run` (a fixed
interval l = 1 is per-frame inference) on frames resized to a working size, and scores them as the DAVIS
toolkit does: the logits are upsampled (bilinear) to the native size of the masks, compared with the masks
as stored with J and F (`vidrec.engine.seg_metrics`), and each sequence's first and last frame are left
out (``all_frames=True`` keeps them). Frames are decoded, resized and normalised before the clock starts,
and the upsampling and scoring happen outside it, so frames/s measures the model (feature net on key
frames, flow + warp + task net on the others), not JPEG decoding or scoring.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vidrec.data.davis import Sequence, read_image, read_mask, scored_frames
from vidrec.data.transforms import normalize_frames
from vidrec.engine.seg_metrics import JF
from vidrec.models.motion import stack_neighbours, takes_neighbours

__all__ = [
    "SequenceResult",
    "evaluate_sequences",
    "format_table",
    "load_sequence",
    "native_prediction",
    "summarize",
]


@dataclass(frozen=True)
class SequenceResult:
    """One sequence under one schedule."""

    name: str
    J: float
    F: float
    frames: int  # frames run through the model (all of them; `scored` may be fewer)
    keys: int
    seconds: float  # model time over the sequence


def load_sequence(
    seq: Sequence, size: tuple[int, int] | None, *, mask_size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """(frames uint8 (T, 3, H, W) resized to `size` = (H, W), masks uint8 (T, H0, W0) in {0, 1}).

    Masks keep their native size (what DAVIS scores) unless `mask_size` is given (training data); uint8,
    as a cache of native 480p masks in int64 would take 3.3 MB a frame.
    """
    frames = np.stack([read_image(p, size) for p in seq.frames])  # (T, H, W, 3)
    masks = np.stack([read_mask(p, mask_size).astype(np.uint8) for p in seq.masks])
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
    all_frames: bool = False,
) -> list[SequenceResult]:
    """Per-sequence J, F, key frames and model seconds of `dff` (a `vidrec.dff.DFF`) under `schedule`.

    Args:
        size: the working size (H, W) frames are resized to before the model; None: as stored.
        loaded: optional cache {name: `load_sequence` result, native masks} shared between calls.
        all_frames: score the first and last frame of each sequence too (the toolkit leaves them out).
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
        if takes_neighbours(dff):  # a motion cue: each frame with its previous and next, (1, 9, H, W)
            frames = stack_neighbours(frames)
        inputs = [normalize_frames(f[None].to(device)) for f in frames]  # (1, 3, H, W) each
        logits, keys = [], 0
        start = time.perf_counter()
        for out, is_key in dff.run(iter(inputs), schedule):
            logits.append(out)  # (1, K, H, W) at the working size
            keys += bool(is_key)
        seconds = time.perf_counter() - start
        jf = JF()
        for i in scored_frames(len(logits), skip_ends=not all_frames):
            jf.update(seq.name, i, native_prediction(logits[i], masks[i].shape), masks[i])
        score = jf.compute()
        results.append(SequenceResult(seq.name, score["J"], score["F"], len(logits), keys, seconds))
    return results


def native_prediction(logits: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """The argmax mask (H0, W0) of logits (1, K, H, W) upsampled bilinearly to a mask's native `shape`."""
    if logits.shape[-2:] != tuple(shape):
        logits = F.interpolate(logits.float(), size=tuple(shape), mode="bilinear", align_corners=False)
    scores = logits[0]
    # argmax over the class axis, one class map at a time: torch's argmax over the leading (strided) axis of
    # a 480p map takes ~80 ms; this takes ~1. Ties go to the first class, as argmax's do.
    best, label = scores[0], torch.zeros(scores.shape[1:], dtype=torch.int64, device=scores.device)
    for k in range(1, scores.shape[0]):
        label[scores[k] > best] = k
        best = torch.maximum(best, scores[k])
    return label.cpu().numpy()


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
