"""Landmarks: 68-point face alignment per frame (PreRNN's sequential face alignment, methods.md 2).

Data: ``data.root`` holds videos with ``<stem>.landmarks.json`` beside them (`vidrec.data.landmarks`),
split by video (or, for one video or with ``task_options.split=blocks``, into contiguous frame blocks);
clips of ``data.frames`` frames, face crops of ``data.size`` pixels around each frame's true points or
(``task_options.box=detector``) its stored face rectangle (``task_options.margin``), the box jittered in
training (``jitter_scale``, ``jitter_shift``: one draw per clip). With ``jitter_versions = N`` the training
clips are the same every epoch (every ``clip_stride`` frames, N fixed jitters per track), so a frozen
trunk (``freeze_trunk``) is computed once per crop and cached (`vidrec.engine.feature_cache`).

Model: any vidrec model built with ``num_classes = 68 * 2``; its per-step output `(B, T, 136)` (single-frame
CNN, LRCN, PreRNN, the RNN baselines) is read as `(B, T, 68, 2)` coordinates in crop units, centred:
``points / size - 0.5``. A model with one output per clip `(B, 136)` is accepted only for 1-frame clips.
It starts from the training split's mean shape (`mean_shape_start`: its last 136-wide Linear gets zero
weights and the mean target as bias; the mean is stored in the checkpoint's task state, ``mean_shape``).

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

Prediction on any video (`vidrec predict`): `vidrec.tasks.landmarks_video` finds the face with a detector
(`vidrec.data.face_detect`), tracks its box from window to window and reports the frames without a face.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
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
    CropSettings,
    FaceTrack,
    LandmarkClips,
    LandmarksError,
    face_boxes,
    find_videos,
    inter_ocular,
    inter_pupil,
    landmarks_file,
    load_tracks,
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
    box: Literal["points", "detector"] = opt(
        "points",
        "points: the crop box is a square around each frame's true points; detector: around the face "
        "rectangle stored in the json's 'boxes' (does not move with the jaw; vidrec predict maps its "
        "detector to the same convention)",
    )
    margin: float = opt(1.3, "face box side = margin x the longer side of the points' box (or rectangle)")
    jitter_scale: float = opt(0.1, "training box scale jitter: a factor in [1 - x, 1 + x] per clip")
    jitter_shift: float = opt(0.05, "training box shift jitter: up to x box sides in x and y per clip")
    loss: Literal["l1", "l2"] = opt("l1", "l1 or l2 on centred crop coordinates (points / size - 0.5)")
    jitter_versions: int = opt(
        0,
        "0: a fresh box jitter per training clip and epoch; N: N fixed jitter versions per video, the same "
        "clips every epoch, so a frozen trunk's features are computed once and cached",
    )
    clip_stride: int = opt(4, "with jitter_versions: a training clip starts every clip_stride frames")


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
        self.crop = CropSettings(
            d.frames, d.size, o.margin, o.jitter_scale, o.jitter_shift, box=o.box,
            versions=max(o.jitter_versions, 0), stride=max(o.clip_stride, 1),
        )  # fmt: skip
        self.last_errors: np.ndarray | None = None  # per-frame NME of the last validation (report's CED)
        self.mean_shape: np.ndarray | None = None  # (68, 2) mean training target (`build_model`)
        self._data: tuple[list[FaceTrack], list[FaceTrack], list[str], int] | None = None

    # -- data --------------------------------------------------------------------------------------
    def check(self) -> None:
        if not self.cfg.data.root:
            raise FileNotFoundError("data.root: task=landmarks needs a folder of videos with .landmarks.json")
        find_videos(self.cfg.data.root)  # raises a one-line error naming the folder

    def datasets(
        self, model: nn.Module, log: Callable[[str], None] | None = None
    ) -> tuple[Dataset, Dataset | None]:
        train, val, lines, videos = self._read()
        say = log or (lambda m: warnings.warn(m, RuntimeWarning, stacklevel=3))
        for line in lines:
            say(line)
        if log is not None:
            log(f"landmarks: {len(train)} training / {len(val)} validation tracks of {videos} videos")
        seed = self.cfg.runtime.seed
        train_clips = LandmarkClips(train, self.crop, train=True, seed=seed)
        if not len(train_clips):
            raise LandmarksError(no_clip_reason(train, self.crop.frames))
        return train_clips, LandmarkClips(val, self.crop, train=False, seed=seed)

    def _read(self) -> tuple[list[FaceTrack], list[FaceTrack], list[str], int]:
        """(training tracks, validation tracks, lines about left-out frames and videos, number of videos),
        read once."""
        if self._data is None:
            lines: list[str] = []
            tracks = load_tracks(find_videos(self.cfg.data.root), log=lines.append)
            o = self.options
            train, val = split_tracks(tracks, val_fraction=o.val_fraction, gap=self.crop.frames, by=o.split)
            self._data = (train, val, lines, len(tracks))
        return self._data

    # -- model and state ---------------------------------------------------------------------------
    def build_model(self, *, weights: bool = True) -> nn.Module:
        """The model with a 136-wide head that starts from the mean training shape (`mean_shape_start`):
        the mean of the training split's targets, read from the data for a new run (``weights=True``) and
        stored in the checkpoint's task state; a loaded checkpoint's weights replace the start."""
        from vidrec.models.build import build_model  # imports every model: only when one is built

        if self.mean_shape is None and weights:
            self.mean_shape = mean_shape(self._read()[0], self.crop.margin, box=self.crop.box)
        model = build_model(self.cfg.model, num_classes=NUM_POINTS * 2, weights=weights)
        if self.mean_shape is not None:
            mean_shape_start(model, self.mean_shape)
        return model

    def state(self) -> dict[str, Any]:
        c = self.crop
        state = {"points": NUM_POINTS, "frames": c.frames, "size": c.size, "margin": c.margin, "box": c.box}
        if self.mean_shape is not None:  # the head's starting point: data, 136 numbers
            state["mean_shape"] = np.round(self.mean_shape, 6).ravel().tolist()
        return state

    def load_state(self, state: dict[str, Any], *, class_names: list[str] = ()) -> None:
        if state:
            box = state.get("box", "points")  # checkpoints written before the field: points
            if box not in ("points", "detector"):
                raise ValueError(f"task_state.box is {box!r}, not 'points' or 'detector'")
            self.crop = CropSettings(state["frames"], state["size"], state["margin"], 0.0, 0.0, box=box)
            if state.get("mean_shape") is not None:
                self.mean_shape = _stored_shape(state["mean_shape"])

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
        detector: str = "haar",
        face_box: tuple[float, float, float, float] | None = None,
        box_smoothing: float = 0.5,
    ) -> str:
        """Find and track the face through `video` (`vidrec.tasks.landmarks_video`), write the points to
        ``<out stem>.landmarks.json`` and the video with them drawn to `out` -- or, when `out` is a
        ``.json`` file, the points only; returns a one-line summary that names the frames without a face.

        Args:
            detector: ``haar`` (OpenCV), ``dlib`` or ``none`` (crop around the previous window's points).
            face_box: a fixed face rectangle ``(left, top, right, bottom)`` for every frame, instead of a
                detector.
            box_smoothing: weight of the previous window's box in the next one, in [0, 1).
        """
        from vidrec.cli import UsageError, output_path
        from vidrec.data.face_detect import DLIB_CALIBRATION, BoxTracker, FixedBox, get_detector, relative_to
        from vidrec.tasks.landmarks_video import landmarks_on_video

        if not 0 <= box_smoothing < 1:
            raise UsageError(f"--box-smoothing {box_smoothing}: give a weight in [0, 1)")
        points_only = out.suffix.lower() == ".json"
        points_file = out if points_only else landmarks_file(out)
        points_file = output_path(points_file, "the points file of --out", overwrite=overwrite)
        tracker, name = None, detector
        if face_box is not None:
            finder, name = FixedBox(face_box), "fixed box"
        elif detector != "none":
            finder = get_detector(detector)
        if name != "none":
            calibration = finder.calibration
            if self.crop.box == "detector" and face_box is None:  # trained on dlib's rectangles
                calibration = relative_to(calibration, DLIB_CALIBRATION)
            tracker = BoxTracker(finder, calibration, self.crop.margin, box_smoothing)
        model.eval()
        return landmarks_on_video(
            lambda rgb: self.predict(model, rgb, device), video, self.crop, points_file=points_file,
            overlay=None if points_only else out, tracker=tracker, detector=name, progress=progress,
        )  # fmt: skip


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


def mean_shape(tracks: list[FaceTrack], margin: float, *, box: str = "points") -> np.ndarray:
    """The mean target `(68, 2)` of every frame with points in `tracks`, in the head's centred crop units
    (``points / size - 0.5`` in the unjittered box of `face_boxes` with `box`, whatever the crop size)."""
    shapes = []
    for track in tracks:
        ok = np.flatnonzero(~np.isnan(track.points).any(axis=(1, 2)))
        for k, b in zip(ok, face_boxes(track, margin=margin, source=box, frames=ok), strict=True):
            shapes.append((track.points[k] - [b.x0, b.y0]) / b.side - 0.5)
    if not shapes:
        raise LandmarksError(f"task=landmarks: the {len(tracks)} training tracks have no frame with points")
    return np.mean(shapes, axis=0).astype(np.float32)


def _stored_shape(values: Any) -> np.ndarray:
    """A checkpoint's ``mean_shape`` (136 finite numbers) as `(68, 2)`; anything else raises ValueError."""
    try:
        shape = np.asarray(values, dtype=np.float32).reshape(NUM_POINTS, 2)
    except (ValueError, TypeError):
        shape = None
    if shape is None or not np.isfinite(shape).all():
        raise ValueError(f"task_state.mean_shape is not {NUM_POINTS * 2} finite numbers")
    return shape


@torch.no_grad()
def mean_shape_start(model: nn.Module, shape: np.ndarray) -> nn.Linear:
    """Start `model` at `shape` `(68, 2)`: its last Linear of 136 outputs gets zero weights and the shape as
    bias, so it predicts the mean training shape whatever the frames (as benchmarks/prernn_faces.py does)."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == NUM_POINTS * 2]
    if not heads or heads[-1].bias is None:
        raise ValueError(
            f"task=landmarks: {type(model).__name__} has no Linear layer of {NUM_POINTS * 2} outputs (with a "
            "bias) to start from the mean shape; use a model with a Linear head (single_frame_*, lrcn_*, "
            "prernn_*, rnn_baseline_*)"
        )
    head = heads[-1]
    head.weight.zero_()
    head.bias.copy_(torch.as_tensor(shape, dtype=head.bias.dtype).flatten())
    return head


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


# ----------------------------------------------------------------------------- clips


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
