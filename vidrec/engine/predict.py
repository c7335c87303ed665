"""Run a trained recognizer on video files: top-k classes, a per-window timeline, streaming, folders.

Frames are decoded with `vidrec.io.VideoReader` (resized to the training short side while decoding),
centre-cropped to the training size and normalised like training (`Preprocess`). Whole-video prediction
averages the probabilities of K evenly spaced clips (the evaluation protocol with one crop). A recurrent
model with a `step(frame, state)` method (LRCN) can stream: every frame goes through the CNN and one
recurrent step exactly once, the state is carried across windows, so the cost per frame is constant.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import tv_tensors

from vidrec.data.transforms import IMAGENET_MEAN, IMAGENET_STD, test_transform
from vidrec.io import VideoDecodeError, VideoReader
from vidrec.models.outputs import video_probs
from vidrec.progress import progress

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")


@dataclass(frozen=True)
class Preprocess:
    """uint8 frames `(T, H, W, 3)` (already resized to `resize` short side) -> float `(T, 3, size, size)`."""

    resize: int = 128
    size: int = 112
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @classmethod
    def from_config(cls, cfg) -> Preprocess:
        """The evaluation preprocessing of a `TrainConfig` (`data.resize`, `data.size`)."""
        return cls(resize=cfg.data.resize, size=cfg.data.size)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """The data package's single-view test transform (centre crop, [0, 1], normalise)."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
        out = test_transform(self.size, crops=1, mean=self.mean, std=self.std)({"rgb": tv_tensors.Video(x)})
        return out["rgb"].as_subclass(torch.Tensor)  # (T, 3, size, size)


@dataclass(frozen=True)
class WindowPrediction:
    """Probabilities of one timeline window `[start, end)` (frames and seconds)."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    probs: torch.Tensor  # (K,)


def topk(probs: torch.Tensor, class_names: list[str], k: int = 5) -> list[tuple[str, float]]:
    """The `k` best `(class name, probability)` pairs of `probs (K,)`."""
    scores, idx = probs.topk(min(k, len(probs)))
    return [(class_names[i], float(s)) for s, i in zip(scores.tolist(), idx.tolist())]


def _check_rgb(model: nn.Module) -> None:
    modalities = tuple(getattr(model, "modalities", ("rgb",)))
    if modalities != ("rgb",):
        raise ValueError(
            f"predict runs models that read RGB only; this one reads {modalities} "
            "(compute flow with `vidrec flow` and evaluate with `vidrec eval` instead)"
        )


@torch.no_grad()
def clip_probs(model: nn.Module, clips: torch.Tensor, fusion_weights: dict | None = None) -> torch.Tensor:
    """Mean probabilities `(K,)` over clips `(V, T, C, H, W)`."""
    out = model(clips.to(next(model.parameters()).device))
    return video_probs(out, fusion_weights or getattr(model, "fusion_weights", None)).mean(0).cpu()


def clip_starts(num_frames: int, frames: int, clips: int) -> list[int]:
    """Start indices of `clips` evenly spaced windows of `frames` frames (clamped inside the video)."""
    last = max(num_frames - frames, 0)
    return sorted({round(i * last / max(clips - 1, 1)) for i in range(clips)}) if clips > 1 else [last // 2]


def _window_indices(start: int, frames: int, num_frames: int) -> list[int]:
    return [min(start + i, num_frames - 1) for i in range(frames)]  # short videos repeat the last frame


def predict_video(
    model: nn.Module, path: str | Path, *, preprocess: Preprocess, frames: int, clips: int = 5
) -> torch.Tensor:
    """Video-level probabilities `(K,)`: the mean over `clips` evenly spaced clips of `frames` frames."""
    _check_rgb(model)
    with VideoReader(path, size=preprocess.resize) as reader:
        n = reader.meta.num_frames
        batch = [
            preprocess(reader.get_frames(_window_indices(s, frames, n)))
            for s in clip_starts(n, frames, clips)
        ]
    return clip_probs(model, torch.stack(batch))  # (V, T, C, H, W) -> (K,)


def _windows(num_frames: int, window: int, stride: int) -> list[tuple[int, int]]:
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be at least one frame")
    starts = range(0, max(num_frames - window, 0) + 1, stride)
    return [(s, min(s + window, num_frames)) for s in starts]


def timeline(
    model: nn.Module, path: str | Path, *, preprocess: Preprocess, window: int, stride: int
) -> list[WindowPrediction]:
    """One prediction per window of `window` frames every `stride` frames (each window run afresh)."""
    _check_rgb(model)
    with VideoReader(path, size=preprocess.resize) as reader:
        times, n = reader.frame_times(), reader.meta.num_frames
        end_time = _end_time(times, reader.meta.fps)
        out = []
        for s, e in progress(_windows(n, window, stride), desc="timeline", leave=False):
            probs = clip_probs(model, preprocess(reader.get_frames(range(s, e)))[None])
            out.append(WindowPrediction(s, e, float(times[s]), _time_at(times, e, end_time), probs))
    return out


def _end_time(times: np.ndarray, fps: float) -> float:
    return float(times[-1]) + (1.0 / fps if fps else 0.0)


def _time_at(times: np.ndarray, index: int, end_time: float) -> float:
    return float(times[index]) if index < len(times) else end_time


@torch.no_grad()
def stream_step_probs(model: nn.Module, frames: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
    """Feed frames `(T, C, H, W)` one at a time through `model.step`; per-step probabilities `(T, K)`."""
    if not hasattr(model, "step"):
        raise TypeError(
            f"{type(model).__name__} has no step(frame, state) method; use a recurrent model (LRCN)"
        )
    device = next(model.parameters()).device
    probs = []
    for frame in frames:
        logits, state = model.step(frame[None].to(device), state)  # (1, K)
        probs.append(logits.float().softmax(-1)[0].cpu())
    return torch.stack(probs), state


def stream_timeline(
    model: nn.Module, path: str | Path, *, preprocess: Preprocess, window: int, stride: int
) -> list[WindowPrediction]:
    """Streaming timeline for recurrent models: every frame decoded and stepped once, state never reset.

    A window's probabilities are the mean of the per-step softmaxes inside it; with a recurrent state
    carried from the start of the video they reflect everything seen so far.
    """
    _check_rgb(model)
    with VideoReader(path, size=preprocess.resize) as reader:
        times, n = reader.frame_times(), reader.meta.num_frames
        end_time = _end_time(times, reader.meta.fps)
        state, steps = None, []
        for frame in progress(reader, total=n, desc="stream", leave=False):
            p, state = stream_step_probs(model, preprocess(frame[None]), state)
            steps.append(p[0])
    steps = torch.stack(steps)  # (N, K)
    return [
        WindowPrediction(s, e, float(times[s]), _time_at(times, e, end_time), steps[s:e].mean(0))
        for s, e in _windows(len(steps), window, stride)
    ]


def list_videos(folder: str | Path) -> list[Path]:
    """Video files under `folder` (recursive), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def predict_folder(
    model: nn.Module,
    paths: list[Path],
    out_csv: str | Path,
    *,
    class_names: list[str],
    preprocess: Preprocess,
    frames: int,
    clips: int = 5,
    k: int = 5,
) -> tuple[int, list[tuple[str, str]]]:
    """Predict every video into a CSV (one row per video); unreadable ones get their error and no scores.

    Returns `(number predicted, [(path, error), ...])`.
    """
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[str, str]] = []
    with open(out_csv, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "top1", "score", f"top{k}", "error"])
        for path in progress(paths, desc="predict", unit="video"):
            try:
                probs = predict_video(model, path, preprocess=preprocess, frames=frames, clips=clips)
            except (VideoDecodeError, OSError, RuntimeError) as err:
                failed.append((str(path), str(err)))
                writer.writerow([str(path), "", "", "", str(err)])
                continue
            best = topk(probs, class_names, k)
            ranked = ";".join(f"{name}:{score:.4f}" for name, score in best)
            writer.writerow([str(path), best[0][0], f"{best[0][1]:.6f}", ranked, ""])
    return len(paths) - len(failed), failed
