"""Landmarks: 68-point face alignment per frame (PreRNN's sequential face alignment, methods.md 2).

Data: ``data.root`` holds videos with ``<stem>.landmarks.json`` beside them (`vidrec.data.landmarks`),
split by video (or, for one video or with ``task_options.split=blocks``, into contiguous frame blocks);
clips of ``data.frames`` frames, face crops of ``data.size`` pixels around each frame's true points
(``task_options.margin``), the box jittered in training (``jitter_scale``, ``jitter_shift``: one draw per
clip).

Model: any vidrec model built with ``num_classes = 68 * 2``; its per-step output `(B, T, 136)` (single-frame
CNN, LRCN, PreRNN, the RNN baselines) is read as `(B, T, 68, 2)` coordinates in crop units, centred:
``points / size - 0.5``. A model with one output per clip `(B, 136)` is accepted only for 1-frame clips.

Loss: L1 (or L2) between predicted and true centred coordinates, mean over points, frames and clips.

Metrics (all in image pixels, i.e. the crop's points mapped back through its box):
- NME: per frame, the mean point-to-point error over the 68 points divided by the inter-ocular distance
  (outer eye corners 36-45, as 300VW reports) -- ``val_nme``, which picks ``best.safetensors``, lower is
  better -- or by the inter-pupil distance (eye centres) -- ``val_nme_ip``;
- the cumulative error distribution (CED) of the per-frame inter-ocular NME and its area up to 0.08,
  normalised to 1 (``val_auc08``; exact: the mean of ``max(0, 0.08 - e) / 0.08`` over frames), and the
  failure rate (``val_fail08``: frames with NME > 0.08);
- jitter: the frame-to-frame motion of the predicted points minus that of the true points, as a
  normalised error: mean over consecutive frame pairs t, t+1 inside a clip and over points of
  ``|(p̂[t+1] - p̂[t]) - (p[t+1] - p[t])| / d_io[t]`` (``val_jitter``); 0 for predictions that move exactly
  as the truth does, whatever their constant offset. ``val_motion`` is the predictions' own mean motion
  per frame (same units), beside the truth's ``val_true_motion``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vidrec.data.landmarks import (
    NUM_POINTS,
    Box,
    CropSettings,
    FaceTrack,
    LandmarkClips,
    LandmarksError,
    box_from_points,
    crop_face,
    find_videos,
    inter_ocular,
    inter_pupil,
    landmarks_file,
    load_tracks,
    read_track,
    split_tracks,
)
from vidrec.engine.schema import TrainConfig, opt
from vidrec.tasks.base import Step, Task, register_task

AUC_LIMIT = 0.08


@dataclass
class LandmarksOptions:
    """Options of task=landmarks (see `vidrec.tasks.landmarks`)."""

    val_fraction: float = opt(
        0.25, "share of the videos (sorted by name) kept for validation; one video: its last frames"
    )
    split: Literal["video", "blocks"] = opt(
        "video",
        "video: whole videos validate; blocks: every video's last val_fraction of frames validates (a "
        "clip-long gap before it); one video always splits in blocks",
    )
    margin: float = opt(1.3, "face box side = margin x the longer side of the points' bounding box")
    jitter_scale: float = opt(0.1, "training box scale jitter: a factor in [1 - x, 1 + x] per clip")
    jitter_shift: float = opt(0.05, "training box shift jitter: up to x box sides in x and y per clip")
    loss: Literal["l1", "l2"] = opt("l1", "l1 or l2 on centred crop coordinates (points / size - 0.5)")


@register_task
class Landmarks(Task):
    """68-point landmark regression per frame; see the module docstring."""

    name = "landmarks"
    Options = LandmarksOptions
    best_metric = "val_nme"
    higher_is_better = False

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        o, d = self.options, cfg.data
        self.crop = CropSettings(d.frames, d.size, o.margin, o.jitter_scale, o.jitter_shift)
        self.last_errors: np.ndarray | None = None  # per-frame NME of the last validation (report's CED)

    # -- data --------------------------------------------------------------------------------------
    def check(self) -> None:
        if not self.cfg.data.root:
            raise FileNotFoundError("data.root: task=landmarks needs a folder of videos with .landmarks.json")
        find_videos(self.cfg.data.root)  # raises a one-line error naming the folder

    def datasets(
        self, model: nn.Module, log: Callable[[str], None] | None = None
    ) -> tuple[Dataset, Dataset | None]:
        tracks = load_tracks(find_videos(self.cfg.data.root), log=log)
        train, val = split_tracks(
            tracks, val_fraction=self.options.val_fraction, gap=self.crop.frames, by=self.options.split
        )
        if log is not None:
            log(f"landmarks: {len(train)} training / {len(val)} validation tracks of {len(tracks)} videos")
        seed = self.cfg.runtime.seed
        train_clips = LandmarkClips(train, self.crop, train=True, seed=seed)
        if not len(train_clips):
            raise LandmarksError(no_clip_reason(train, self.crop.frames))
        return train_clips, LandmarkClips(val, self.crop, train=False, seed=seed)

    # -- model and state ---------------------------------------------------------------------------
    def build_model(self, *, weights: bool = True) -> nn.Module:
        from vidrec.models.build import build_model  # imports every model: only when one is built

        return build_model(self.cfg.model, num_classes=NUM_POINTS * 2, weights=weights)

    def state(self) -> dict[str, Any]:
        c = self.crop
        return {"points": NUM_POINTS, "frames": c.frames, "size": c.size, "margin": c.margin}

    def load_state(self, state: dict[str, Any], *, class_names: list[str] = ()) -> None:
        if state:
            self.crop = CropSettings(state["frames"], state["size"], state["margin"], 0.0, 0.0)

    # -- training and validation -------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: dict, device: torch.device) -> Step:
        pred = self.predict(model, batch["rgb"], device)  # (B, T, 68, 2) centred crop units
        target = batch["points"].to(device) / self.crop.size - 0.5
        loss = coord_loss(pred.float(), target, kind=self.options.loss)
        nme = frame_nme(pred.detach().float(), target, inter_ocular)  # box scale cancels
        return Step(loss=loss, items=len(target), sums={"nme": float(nme.sum()), "frames": nme.numel()})

    def train_metrics(self, sums: dict[str, float], items: int) -> dict[str, float]:
        return {"train_nme": sums.get("nme", 0.0) / max(sums.get("frames", 0.0), 1.0)}

    def predict(self, model: nn.Module, rgb: torch.Tensor, device: torch.device) -> torch.Tensor:
        """uint8 crops `(B, T, 3, S, S)` -> points `(B, T, 68, 2)` in centred crop units."""
        from vidrec.engine.evaluate import model_inputs

        x, _ = model_inputs({"rgb": rgb}, ("rgb",), device)
        return per_step_points(model(x), rgb.shape[1])

    @torch.no_grad()
    def validate(
        self, model: nn.Module, loader: DataLoader, *, device: torch.device, amp: bool, progress: bool
    ) -> dict[str, Any]:
        from vidrec.engine import distributed as D
        from vidrec.engine.evaluate import _autocast
        from vidrec.progress import progress as bar

        model.eval()
        parts, skipped = [], []
        for batch in bar(loader, desc="validate", disable=not progress):
            skipped += batch.get("skipped", [])
            if self.is_empty(batch):
                continue
            with _autocast(device, amp):
                pred = self.predict(model, batch["rgb"], device).float().cpu()
            loss = coord_loss(pred, batch["points"] / self.crop.size - 0.5, kind=self.options.loss)
            image = to_image(pred, batch["box"])  # (B, T, 68, 2) pixels
            parts.append((float(loss) * len(pred), image.numpy(), batch["truth"].numpy()))
        parts = [p for rank in D.all_gather_objects(parts) for p in rank] if D.is_dist() else parts
        skipped = [s for rank in D.all_gather_objects(skipped) for s in rank] if D.is_dist() else skipped
        model.train()
        if not parts:
            return {"val_skipped": skipped}
        pred, truth = np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
        m = landmark_metrics(pred, truth)
        self.last_errors = m.pop("errors")
        return {"val_loss": sum(p[0] for p in parts) / len(pred), **m, "val_skipped": sorted(set(skipped))}

    def report(self, out_dir: Path, history: list[dict[str, Any]]) -> None:
        """``ced.png``: the cumulative error curve of the last validation's per-frame NME."""
        if self.last_errors is not None:
            plot_ced({"model": self.last_errors}, Path(out_dir) / "ced.png")

    # -- prediction on a whole video (vidrec predict) ----------------------------------------------
    draws_predictions = True

    def draw_predictions(
        self,
        model: nn.Module,
        video: Path,
        out: Path,
        *,
        device: torch.device,
        progress: bool,
        overwrite: bool,
    ) -> str:
        """Track the face through `video`, draw the points on every frame into `out` (a video) and write
        them to ``<out stem>.landmarks.json``; returns a one-line summary."""
        from vidrec.cli import output_path
        from vidrec.io import probe, read_frames, write_video

        points_file = output_path(landmarks_file(out), "the points file of --out", overwrite=overwrite)
        points = track_video(model, video, self.crop, device=device, progress=progress)
        frames = read_frames(video, range(len(points)))  # (F, H, W, 3)
        write_video(out, np.stack([draw_points(f, p) for f, p in zip(frames, points, strict=True)]),
                    probe(video).fps or 25.0)  # fmt: skip
        meta = {"video": str(video), "points": "68 [x, y] image pixels per frame (predicted by vidrec)"}
        tmp = points_file.with_name(points_file.name + ".tmp")
        tmp.write_text(json.dumps({**meta, "landmarks": np.round(points, 2).tolist()}))
        tmp.replace(points_file)
        return f"drew {len(points)} frames of 68 points -> {out} (points: {points_file})"


# ----------------------------------------------------------------------------- model outputs, loss


def per_step_points(out: torch.Tensor, frames: int) -> torch.Tensor:
    """A model's output `(B, T, 136)` (or `(B, 136)` for T = 1) as points `(B, T, 68, 2)`."""
    if isinstance(out, dict):
        raise ValueError(
            "task=landmarks needs a one-stream model with per-step outputs, not a multi-stream one"
        )
    if out.dim() == 2 and frames == 1:
        out = out[:, None]
    if out.dim() != 3 or out.shape[1] != frames or out.shape[2] != NUM_POINTS * 2:
        raise ValueError(
            f"task=landmarks reads per-step outputs (B, {frames}, {NUM_POINTS * 2}); the model gave "
            f"{tuple(out.shape)}: use a per-frame or per-step model (single_frame_*, lrcn_*, prernn_*, "
            "rnn_baseline_*) or data.frames=1"
        )
    return out.reshape(*out.shape[:2], NUM_POINTS, 2)


def coord_loss(pred: torch.Tensor, target: torch.Tensor, *, kind: str) -> torch.Tensor:
    """L1 or L2 (squared) error between centred coordinates, mean over everything."""
    return F.l1_loss(pred, target) if kind == "l1" else F.mse_loss(pred, target)


def to_image(pred: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Centred crop units `(B, T, 68, 2)` -> image pixels through each frame's box `(B, T, 3)` (x0, y0, S)."""
    side = box[..., 2:3, None]  # (B, T, 1, 1)
    return (pred + 0.5) * side + box[..., None, :2]


# ----------------------------------------------------------------------------- metrics


def frame_nme(pred: Any, truth: Any, norm: Callable = inter_ocular) -> Any:
    """Per-frame NME `(...)` of points `(..., 68, 2)`: mean point error / `norm(truth)` (numpy or torch)."""
    diff = pred - truth
    err = (
        torch.linalg.vector_norm(diff, dim=-1)
        if isinstance(diff, torch.Tensor)
        else np.linalg.norm(diff, axis=-1)
    )
    return err.mean(-1) / norm(truth)


def auc(errors: np.ndarray, limit: float = AUC_LIMIT) -> float:
    """Area under the cumulative error distribution of `errors` from 0 to `limit`, divided by `limit`
    (1 = every error is 0). Exact: the CED is a step function, so the area is mean(max(0, limit - e))."""
    e = np.asarray(errors, dtype=np.float64).ravel()
    return float(np.clip(limit - e, 0.0, None).mean() / limit)


def ced(errors: np.ndarray, limit: float = AUC_LIMIT, num: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, fraction of frames with error <= threshold) for plotting."""
    x = np.linspace(0.0, limit, num)
    e = np.sort(np.asarray(errors, dtype=np.float64).ravel())
    return x, np.searchsorted(e, x, side="right") / max(len(e), 1)


def jitter(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over consecutive frames and points of |motion(pred) - motion(truth)| / inter-ocular distance,
    for clips `(N, T, 68, 2)` (image pixels); NaN for one-frame clips."""
    if pred.shape[1] < 2:
        return math.nan
    d = np.diff(pred, axis=1) - np.diff(truth, axis=1)  # (N, T-1, 68, 2)
    return float((np.linalg.norm(d, axis=-1).mean(-1) / inter_ocular(truth[:, :-1])).mean())


def motion(points: np.ndarray, truth: np.ndarray) -> float:
    """Mean frame-to-frame point motion of `points` `(N, T, 68, 2)` / the truth's inter-ocular distance."""
    if points.shape[1] < 2:
        return math.nan
    return float(
        (np.linalg.norm(np.diff(points, axis=1), axis=-1).mean(-1) / inter_ocular(truth[:, :-1])).mean()
    )


def landmark_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """The ``val_*`` metrics of clips `(N, T, 68, 2)` in image pixels (module docstring), plus ``errors``:
    the per-frame inter-ocular NME (flat)."""
    errors = frame_nme(pred, truth, inter_ocular).ravel()
    return {
        "val_nme": float(errors.mean()),
        "val_nme_ip": float(frame_nme(pred, truth, inter_pupil).mean()),
        "val_auc08": auc(errors),
        "val_fail08": float((errors > AUC_LIMIT).mean()),
        "val_jitter": jitter(pred, truth),
        "val_motion": motion(pred, truth),
        "val_true_motion": motion(truth, truth),
        "errors": errors,
    }


def plot_ced(curves: dict[str, np.ndarray], path: Path, *, limit: float = AUC_LIMIT) -> Path:
    """One CED line per name of `curves` (per-frame NME), AUC@limit in the legend; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, errors in curves.items():
        x, y = ced(errors, limit)
        ax.plot(x, y, label=f"{name} (AUC@{limit:g} {auc(errors, limit):.3f})")
    ax.set(xlabel="NME (inter-ocular)", ylabel="fraction of frames", xlim=(0, limit), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- tracking a whole video


def no_clip_reason(tracks: list[FaceTrack], frames: int) -> str:
    """Why `tracks` give no training clip: how many of their frames lack points, and why."""
    total = sum(len(t) for t in tracks)
    missing = sum(int(np.isnan(t.points).any(axis=(1, 2)).sum()) for t in tracks)
    nan = sum(t.nan_frames for t in tracks)
    return (
        f"task=landmarks: no training clip: none of the {len(tracks)} training tracks has {frames} "
        f"consecutive frames with points (data.frames={frames}); {missing} of their {total} frames have "
        f"none ({nan} for NaN coordinates, {missing - nan} null); lower data.frames or fix the landmark files"
    )


def first_box(video: Path, margin: float, height: int, width: int) -> Box:
    """Where the face starts: the first annotated frame's points of ``<stem>.landmarks.json`` when it
    exists, else the centred square of the frame's short side (a face-centred video)."""
    path = landmarks_file(video)
    if path.is_file():
        points = read_track(video).points
        ok = np.flatnonzero(~np.isnan(points).any(axis=(1, 2)))
        if len(ok):
            return box_from_points(points[ok[0]], margin=margin)
    side = float(min(height, width))
    return Box((width - side) / 2, (height - side) / 2, side)


def _windows(video: Path, frames: int) -> Iterator[np.ndarray]:
    """`frames`-frame windows `(t, H, W, 3)` of `video`, in order (the last may be shorter)."""
    from vidrec.io import VideoReader

    with VideoReader(video) as reader:
        n = reader.meta.num_frames
        for start in range(0, n, frames):
            yield reader.get_frames(list(range(start, min(start + frames, n))))


@torch.no_grad()
def track_video(
    model: nn.Module, video: Path, crop: CropSettings, *, device: torch.device, progress: bool = False
) -> np.ndarray:
    """Predicted points `(F, 68, 2)` (image pixels) of every frame of `video`.

    Windows of ``crop.frames`` frames go through the model as one clip (a fresh state per window); every
    frame of a window is cropped with the box of the previous window's last prediction (tracking), the first
    window with `first_box`.
    """
    from vidrec.io import probe
    from vidrec.progress import progress as bar

    meta = probe(video)
    box = first_box(video, crop.margin, meta.height, meta.width)
    out = []
    total = math.ceil(meta.num_frames / crop.frames)
    windows = bar(_windows(video, crop.frames), total=total, desc="landmarks", disable=not progress)
    for window in windows:
        crops = np.stack([crop_face(f, box, crop.size) for f in window])  # (t, S, S, 3)
        rgb = torch.from_numpy(crops).permute(0, 3, 1, 2)[None]  # (1, t, 3, S, S)
        pred = per_step_points(model(_model_input(rgb, device)), len(window))[0].float().cpu().numpy()
        image = (pred + 0.5) * box.side + np.array([box.x0, box.y0], dtype=np.float32)  # (t, 68, 2)
        out.append(image)
        box = box_from_points(image[-1], margin=crop.margin)
    return np.concatenate(out)


def _model_input(rgb: torch.Tensor, device: torch.device) -> torch.Tensor:
    from vidrec.engine.evaluate import model_inputs

    return model_inputs({"rgb": rgb}, ("rgb",), device)[0]


def draw_points(
    frame: np.ndarray, points: np.ndarray, *, color: tuple[int, int, int] = (0, 255, 0)
) -> np.ndarray:
    """A copy of `frame` `(H, W, 3)` uint8 RGB with each of `points` `(68, 2)` drawn as a dot."""
    import cv2

    out = np.ascontiguousarray(frame).copy()
    radius = max(1, round(min(frame.shape[:2]) / 160))
    for x, y in points:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(out, (round(float(x)), round(float(y))), radius, color, -1, lineType=cv2.LINE_AA)
    return out
