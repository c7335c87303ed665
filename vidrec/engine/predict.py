"""Run a trained recognizer on videos: top-k classes, a per-window timeline, streaming, folders.

Frames are decoded with `vidrec.io` (resized to the training short side while decoding) and
centre-cropped to the training size as uint8 (`Preprocess`); the float conversion and normalisation run on
the model's device (`Preprocess.normalize`, i.e. `vidrec.data.transforms.normalize_rgb`), as in training.
Whole-video prediction averages the probabilities of K evenly spaced clips (the evaluation protocol with
one crop).

Timelines stream: `frame_source` turns a file or a live source (growing file, stdin pipe, camera, URL;
see `vidrec.io.live`) into `StreamFrame`s one at a time, and `stream_windows` yields each window's
prediction as soon as its last frame has arrived, with its latency, keeping only the last window of
frames in memory. A recurrent model with a `step(frame, state)` method (LRCN) can run with
``recurrent=True``: every frame goes through the CNN and one recurrent step exactly once, the state is
carried across windows, so the cost per frame is constant. `frame_source` is where a modality-specific
source (e.g. flow computed on the fly) plugs in: anything yielding `StreamFrame`s works.

Flow and two-stream models: `Preprocess` carries the flow settings the checkpoint stores (method, bound,
short side of the training flow) and `vidrec.engine.inputs.VideoInputs` computes the same flow in-process
for the frames a clip needs (whole video) or for each frame as it is decoded (`flow_frames`, timelines).
"""

from __future__ import annotations

import csv
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import tv_tensors

from vidrec.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_rgb, test_transform
from vidrec.engine.inputs import FlowSettings, VideoInputs
from vidrec.io import VideoDecodeError, VideoReader
from vidrec.models.outputs import video_probs
from vidrec.progress import progress

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")


@dataclass(frozen=True)
class Preprocess:
    """uint8 frames `(T, H, W, 3)` (already resized to `resize` short side) -> uint8 `(T, 3, size, size)`.

    `normalize` turns that into the model's float input where the model is (mean/std as in training).
    """

    resize: int = 128
    size: int = 112
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    modalities: tuple[str, ...] = ("rgb",)  # what `open` / `frame_source` make (flow computed in-process)
    flow: FlowSettings | None = None  # how the training flow was made (flow and two-stream models)
    flow_length: int = 1

    @classmethod
    def from_config(
        cls, cfg, *, modalities: tuple[str, ...] = ("rgb",), flow: FlowSettings | None = None
    ) -> Preprocess:
        """The evaluation preprocessing of a `TrainConfig` (`data.resize`, `data.size`, `data.flow_length`)
        for a model reading `modalities`, with the checkpoint's flow settings."""
        d = cfg.data
        mods = tuple(d.modalities) or tuple(modalities)
        return cls(resize=d.resize, size=d.size, modalities=mods, flow=flow, flow_length=d.flow_length)

    @property
    def reads_flow(self) -> bool:
        return "flow" in self.modalities or "flow3" in self.modalities

    def open(self, path: str | Path) -> VideoInputs:
        """The video's `VideoInputs`: random access to clips of every modality, or `steps()` in order."""
        return VideoInputs(
            path, modalities=self.modalities, resize=self.resize, size=self.size, flow=self.flow,
            flow_length=self.flow_length,
        )  # fmt: skip

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """The data package's single-view test transform without normalisation: a uint8 centre crop."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
        out = test_transform(self.size, crops=1, normalize=False)({"rgb": tv_tensors.Video(x)})
        return out["rgb"].as_subclass(torch.Tensor)  # (T, 3, size, size) uint8

    def normalize(self, x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """uint8 RGB `(..., 3, H, W)` -> normalised float32 on `device` (moved as uint8: 4x fewer bytes);
        a float tensor is taken as the model's input already and only moved."""
        return normalize_rgb(x.to(device), mean=self.mean, std=self.std)


@dataclass(frozen=True)
class WindowPrediction:
    """Probabilities of one timeline window `[start, end)` (frames and seconds)."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    probs: torch.Tensor  # (K,)
    latency_s: float = 0.0  # from the arrival of the window's last frame to this prediction


def topk(probs: torch.Tensor, class_names: list[str], k: int = 5) -> list[tuple[str, float]]:
    """The `k` best `(class name, probability)` pairs of `probs (K,)`."""
    scores, idx = probs.topk(min(k, len(probs)))
    return [(class_names[i], float(s)) for s, i in zip(scores.tolist(), idx.tolist())]


def _check_inputs(model: nn.Module, preprocess: Preprocess) -> None:
    needed = set(getattr(model, "modalities", ("rgb",)))
    if not needed <= set(preprocess.modalities):
        raise ValueError(
            f"the model reads {sorted(needed)} but the preprocessing makes {list(preprocess.modalities)}; "
            "build it with Preprocess.from_config(cfg, modalities=model.modalities, flow=...)"
        )


def model_input(clips: dict[str, torch.Tensor], modalities: tuple[str, ...]):
    """What `model.forward` takes: the tensor of its one modality, or the dict when it reads several."""
    return clips[modalities[0]] if len(modalities) == 1 else {m: clips[m] for m in modalities}


@torch.no_grad()
def clip_probs(
    model: nn.Module,
    clips: torch.Tensor | dict[str, torch.Tensor],
    fusion_weights: dict | None = None,
    *,
    preprocess: Preprocess | None = None,
) -> torch.Tensor:
    """Mean probabilities `(K,)` over clips `(V, T, C, H, W)`: uint8 frames (normalised on the model's
    device by `preprocess`, default ImageNet statistics) or the model's float input."""
    out = model(_to_model(clips, next(model.parameters()).device, preprocess))
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
    """Video-level probabilities `(K,)`: the mean over `clips` evenly spaced clips of `frames` steps (a
    step is a frame, with its flow stack for flow models)."""
    _check_inputs(model, preprocess)
    modalities = tuple(getattr(model, "modalities", ("rgb",)))
    with preprocess.open(path) as video:
        n = _usable(video, path)
        views = [video.clip(_window_indices(s, frames, n)) for s in clip_starts(n, frames, clips)]
    batch = {m: torch.stack([v[m] for v in views]) for m in modalities}  # (V, T, C, H, W) each
    return clip_probs(model, model_input(batch, modalities), preprocess=preprocess)  # -> (K,)


def _usable(video: VideoInputs, path) -> int:
    n = video.num_starts
    if n < 1:
        raise VideoDecodeError(path, f"too few frames ({video.meta.num_frames}) for a flow stack")
    return n


def _check_window(window: int, stride: int) -> None:
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be at least one frame")


# ----------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class StreamFrame:
    """One frame of a stream, ready for the model.

    Attributes:
        index: 0-based frame number.
        time_s: presentation time in seconds from the first frame.
        arrived: `time.perf_counter()` when the frame was decoded (window latency counts from here).
        x: the model input of this frame: `(C, H, W)`, or `{modality: (C, H, W)}` for multi-stream models.
        duration_s: how long the frame is shown (the end time of a window ending with it).
    """

    index: int
    time_s: float
    arrived: float
    x: torch.Tensor | dict[str, torch.Tensor]
    duration_s: float = 0.0


def rgb_frames(source: str | Path, *, preprocess: Preprocess, **live_options) -> Iterator[StreamFrame]:
    """`StreamFrame`s of a video file or a live source, one at a time.

    A finished file is read with `VideoReader` (display rotation applied, exact timestamps); a live
    source (``-``, a device, a URL, or ``follow=True``) with `vidrec.io.live.LiveReader`, which takes
    `live_options` (``follow``, ``idle_timeout``, ``input_format``, ``options``).
    """
    from vidrec.io.live import LiveReader, is_live_source

    if is_live_source(str(source)) or live_options.get("follow"):
        with LiveReader(source, size=preprocess.resize, **live_options) as live:
            step = 1.0 / live.fps if live.fps else 0.0
            for f in live:
                yield StreamFrame(f.index, f.time_s, f.arrived, preprocess(f.rgb[None])[0], step)
        return
    with VideoReader(source, size=preprocess.resize) as reader:
        times = reader.frame_times()
        ends = np.append(times[1:], _end_time(times, reader.meta.fps))
        for i, rgb in enumerate(reader):
            arrived = time.perf_counter()  # decoded: latency counts preprocessing and the model from here
            x = preprocess(rgb[None])[0]
            yield StreamFrame(i, float(times[i]), arrived, x, float(ends[i] - times[i]))


def flow_frames(source: str | Path, *, preprocess: Preprocess, **live_options) -> Iterator[StreamFrame]:
    """`StreamFrame`s of a flow or two-stream model: step i holds flows i..i+L-1 (and RGB frame i), each
    frame decoded and each flow computed once, as the frames arrive. Video files only."""
    from vidrec.cli import UsageError
    from vidrec.io.live import is_live_source

    if is_live_source(str(source)) or live_options.get("follow"):
        raise UsageError(f"{source}: flow and two-stream models predict video files, not live sources")
    modalities = preprocess.modalities
    with preprocess.open(source) as video:
        times = video.frame_times()
        ends = np.append(times[1:], _end_time(times, video.meta.fps))
        for i, clip in video.steps():  # {m: (1, C, H, W)}
            arrived = time.perf_counter()
            x = {m: clip[m][0] for m in modalities}
            x = x if len(x) > 1 else x[modalities[0]]
            yield StreamFrame(i, float(times[i]), arrived, x, float(ends[i] - times[i]))


def _end_time(times: np.ndarray, fps: float) -> float:
    return float(times[-1]) + (1.0 / fps if fps else 0.0)


def frame_source(
    model: nn.Module, source: str | Path, *, preprocess: Preprocess, **live_options
) -> Iterator[StreamFrame]:
    """The frames `model` reads from `source`: the plug-in point for each input modality.

    RGB models get `rgb_frames`; flow and two-stream models `flow_frames` (flow computed on the fly).
    """
    _check_inputs(model, preprocess)
    if preprocess.reads_flow:
        return flow_frames(source, preprocess=preprocess, **live_options)
    return rgb_frames(source, preprocess=preprocess, **live_options)


def _stack(xs: list) -> torch.Tensor | dict[str, torch.Tensor]:
    """Frame inputs -> one clip `(1, T, C, H, W)` (or a dict of them)."""
    if isinstance(xs[0], dict):
        return {k: torch.stack([x[k] for x in xs])[None] for k in xs[0]}
    return torch.stack(xs)[None]


def _to_model(x, device: torch.device, preprocess: Preprocess | None = None):
    """Inputs on the model's device; uint8 RGB (a tensor, or a dict's "rgb") normalised there."""
    pre = preprocess or Preprocess()
    if isinstance(x, dict):
        return {k: pre.normalize(v, device) if k == "rgb" else v.to(device) for k, v in x.items()}
    return pre.normalize(x, device)


@torch.no_grad()
def _window_probs(model: nn.Module, frames: list[StreamFrame], preprocess: Preprocess | None) -> torch.Tensor:
    """Probabilities `(K,)` of the model run afresh on one window of frames."""
    out = model(_to_model(_stack([f.x for f in frames]), next(model.parameters()).device, preprocess))
    return video_probs(out, getattr(model, "fusion_weights", None))[0].cpu()


def _emit(frames: list[StreamFrame], probs: torch.Tensor) -> WindowPrediction:
    first, last = frames[0], frames[-1]
    end_s = last.time_s + last.duration_s
    latency = time.perf_counter() - last.arrived
    return WindowPrediction(first.index, last.index + 1, first.time_s, end_s, probs, latency)


def stream_windows(
    model: nn.Module,
    frames: Iterable[StreamFrame],
    *,
    window: int,
    stride: int,
    recurrent: bool = False,
    preprocess: Preprocess | None = None,
) -> Iterator[WindowPrediction]:
    """Predictions of windows `[s, s + window)`, `s = 0, stride, ...`, each yielded as soon as its last
    frame has arrived. Memory is constant: only the last `window` frames (or per-step outputs) are kept.

    Args:
        frames: `StreamFrame`s in order (a live source never ends; stop iterating to stop).
        recurrent: feed every frame once through ``model.step`` carrying the state from the first
            frame on; a window's probabilities are the mean of its per-step softmaxes. Otherwise each
            window is one clip run afresh.
        preprocess: normalises uint8 RGB frames on the model's device (default: ImageNet statistics).

    A stream shorter than `window` frames yields one window over all of it at its end.
    """
    _check_window(window, stride)
    if recurrent and not hasattr(model, "step"):
        raise TypeError(
            f"{type(model).__name__} has no step(frame, state) method; use a recurrent model (LRCN)"
        )
    recent: deque[StreamFrame] = deque(maxlen=window)
    steps: deque[torch.Tensor] = deque(maxlen=window)
    state, emitted = None, False
    for f in frames:
        recent.append(f)
        if recurrent:
            p, state = stream_step_probs(model, _stack([f.x])[0], state, preprocess=preprocess)
            steps.append(p[0])
        start = f.index + 1 - window
        if start >= 0 and start % stride == 0:
            probs = (
                torch.stack(list(steps)).mean(0)
                if recurrent
                else _window_probs(model, list(recent), preprocess)
            )
            emitted = True
            yield _emit(list(recent), probs)
    if not emitted and recent:
        probs = (
            torch.stack(list(steps)).mean(0) if recurrent else _window_probs(model, list(recent), preprocess)
        )
        yield _emit(list(recent), probs)


def timeline(
    model: nn.Module, path: str | Path, *, preprocess: Preprocess, window: int, stride: int
) -> list[WindowPrediction]:
    """One prediction per window of `window` frames every `stride` frames (each window run afresh)."""
    frames = frame_source(model, path, preprocess=preprocess)
    return list(stream_windows(model, frames, window=window, stride=stride, preprocess=preprocess))


@torch.no_grad()
def stream_step_probs(
    model: nn.Module, frames: torch.Tensor, state=None, *, preprocess: Preprocess | None = None
) -> tuple[torch.Tensor, object]:
    """Feed frames `(T, C, H, W)` one at a time through `model.step`; per-step probabilities `(T, K)`.

    Frames are the model's float input, or uint8 that `preprocess.normalize` turns into it on the device.
    """
    if not hasattr(model, "step"):
        raise TypeError(
            f"{type(model).__name__} has no step(frame, state) method; use a recurrent model (LRCN)"
        )
    device = next(model.parameters()).device
    frames = _to_model(frames, device, preprocess)
    probs = []
    for frame in frames:
        logits, state = model.step(frame[None], state)  # (1, K)
        probs.append(logits.float().softmax(-1)[0].cpu())
    return torch.stack(probs), state


def stream_timeline(
    model: nn.Module, path: str | Path, *, preprocess: Preprocess, window: int, stride: int
) -> list[WindowPrediction]:
    """Streaming timeline for recurrent models: every frame decoded and stepped once, state never reset.

    A window's probabilities are the mean of the per-step softmaxes inside it; with a recurrent state
    carried from the start of the video they reflect everything seen so far.
    """
    frames = frame_source(model, path, preprocess=preprocess)
    return list(
        stream_windows(model, frames, window=window, stride=stride, recurrent=True, preprocess=preprocess)
    )


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
