"""What `vidrec app` shows for each task: one served checkpoint run on one accepted file.

Each view calls the library's own code (`vidrec.engine.predict`, `vidrec.tasks.cli_caption.describe_file`,
the landmarks task's `draw_predictions`, `vidrec.dff.cli.dff_run`, `vidrec.visualize.cli.gradcam`) with
settings parsed by that command's own argument parser, and returns a `View`: the JSON the API answers
with, the files the page shows, and a one-line summary. Outputs go to the `work` folder it is given (the
visitor's temporary folder), never beside an input.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidrec.app.catalog import Catalog, Entry
from vidrec.app.media import Media, still_video
from vidrec.cli import UsageError

Report = Callable[[float, str], None]  # (fraction done, what runs now)


@dataclass(frozen=True)
class Settings:
    """What a visitor can set: timeline windows (frames; 0 = the training clip length, stride = half the
    window), the DFF key-frame interval l, and whether to add Grad-CAM (classify checkpoints)."""

    window: int = 0
    stride: int = 0
    interval: int = 10
    gradcam: bool = True


@dataclass
class View:
    """One result: `data` is the JSON of ``POST /v1/predict`` (``task`` and the task's own fields; files
    are named in `files`, by role), `rows` a table for the page, `summary` one line."""

    task: str
    summary: str
    data: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    rows: list[list[Any]] = field(default_factory=list)


def command_args(
    add_arguments: Callable[[argparse.ArgumentParser], None], argv: list[str]
) -> argparse.Namespace:
    """`argv` parsed by a `vidrec` command's own parser: its defaults and checks, no second copy of them."""
    parser = argparse.ArgumentParser(prog="vidrec", exit_on_error=False)
    add_arguments(parser)
    try:
        return parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as err:
        raise UsageError(f"bad settings {argv[2:]}: {err}") from None


def render(catalog: Catalog, name: str, media: Media, work: Path, settings: Settings, report: Report) -> View:
    """Run the served checkpoint `name` on `media`, writing into `work`; the task's `View`."""
    entry = catalog.get(name)
    view = VIEWS.get(entry.task)
    if view is None:
        raise UsageError(f"{name} is a `task: {entry.task}` checkpoint; the app shows "
                         f"{', '.join(VIEWS)} checkpoints")  # fmt: skip
    return view(catalog, entry, media, work, settings, report)


def _video(media: Media, work: Path, frames: int) -> Path:
    """The file a clip model reads: the upload, or an image as a still video of `frames` frames."""
    return media.path if media.kind == "video" else still_video(media.path, work / "still.mp4", frames=frames)


# ----------------------------------------------------------------------------- classify


def classify(catalog: Catalog, entry: Entry, media: Media, work: Path, s: Settings, report: Report) -> View:
    """Top-5 of the whole video, per-window probabilities (plot and table), the predicted segments marked on
    the video; with `Settings.gradcam`, the Grad-CAM sheet and heat-map video."""
    from vidrec.engine import cli_predict
    from vidrec.engine.predict import Preprocess, predict_video, timeline, topk

    model, task = catalog.model(entry.name)
    cfg, names = task.cfg, task.class_names()
    frames = cfg.data.frames
    video = _video(media, work, frames)
    args = command_args(cli_predict.add_arguments, [str(entry.path), str(video)])
    modalities = tuple(getattr(model, "modalities", ("rgb",)))
    pre = Preprocess.from_config(
        cfg, modalities=modalities, flow=cli_predict.flow_settings(args, cfg, modalities)
    )
    report(0.1, "whole-video prediction")
    best = topk(predict_video(model, video, preprocess=pre, frames=frames, clips=args.clips), names, 5)
    window = s.window or frames
    stride = s.stride or max(window // 2, 1)
    report(0.3, f"timeline: windows of {window} frames every {stride}")
    wins = timeline(model, video, preprocess=pre, window=window, stride=stride)
    shown = [n for n, _ in best]
    rows = [
        [round(w.start_s, 2), round(w.end_s, 2), n, round(p, 3)]
        for w in wins
        for n, p in topk(w.probs, names, 1)
    ]
    segments = predicted_segments(wins, names)
    report(0.5, "drawing the timeline and the marked video")
    files = {
        "timeline_png": _plot(wins, names, shown, segments, work / "timeline.png", entry.name),
        "video": mark_segments(video, segments, work / "marked.mp4"),
    }
    data = {
        "task": "classify",
        "checkpoint": entry.name,
        "topk": [[n, round(p, 6)] for n, p in best],
        "timeline": [
            {
                "start_s": round(w.start_s, 4),
                "end_s": round(w.end_s, 4),
                "start_frame": w.start_frame,
                "end_frame": w.end_frame,
                "topk": [[n, round(p, 6)] for n, p in topk(w.probs, names, 3)],
            }
            for w in wins
        ],  # fmt: skip
        "segments": [{"start_s": round(a, 4), "end_s": round(b, 4), "class": c} for a, b, c in segments],
    }
    if s.gradcam:
        report(0.7, "Grad-CAM")
        files |= _gradcam(entry, video, work, catalog.device)
    summary = f"{entry.name}: {best[0][0]} ({best[0][1]:.2f}); {len(wins)} windows, {len(segments)} segments"
    return View("classify", summary, data, files, rows)


def predicted_segments(wins, names: list[str]) -> list[tuple[float, float, str]]:
    """Consecutive windows with the same top class merged: `(start_s, end_s, class name)`; where windows
    overlap, a segment ends where the next window starts."""
    segments: list[tuple[float, float, str]] = []
    from vidrec.engine.predict import topk

    for i, w in enumerate(wins):
        name = topk(w.probs, names, 1)[0][0]
        end = min(w.end_s, wins[i + 1].start_s) if i + 1 < len(wins) else w.end_s
        if segments and segments[-1][2] == name:
            segments[-1] = (segments[-1][0], end, name)
        else:
            segments.append((w.start_s, end, name))
    return segments


def _plot(wins, names: list[str], shown: list[str], segments, out: Path, title: str) -> Path:
    from vidrec.visualize.plots import plot_timeline

    centres = [(w.start_s + w.end_s) / 2 for w in wins]
    probs = {n: [float(w.probs[names.index(n)]) for w in wins] for n in shown}
    return plot_timeline(centres, probs, segments, out, title=f"{title}: per-window probabilities")


def mark_segments(video: Path, segments: list[tuple[float, float, str]], out: Path) -> Path:
    """`video` with the predicted class of the segment each frame falls in written on it, and a strip at
    the bottom showing the segments with the current time marked (H.264 mp4 browsers play)."""
    from vidrec.io import VideoReader, VideoWriter

    with VideoReader(video) as reader:
        times, fps = reader.frame_times(), reader.meta.fps or 25.0
        h, w = reader.meta.height, reader.meta.width
        scale = min(480 / max(h, w), max(1.0, 256 / min(h, w)))  # big enough to read, small to send
        end = segments[-1][1] if segments else 1.0
        with VideoWriter(out, fps=fps) as writer:
            for t, rgb in zip(times, reader):
                frame = _even(cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
                writer.write(_label(frame, float(t), segments, end))
    return out


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return np.ascontiguousarray(frame[: h // 2 * 2, : w // 2 * 2])


def _label(frame: np.ndarray, t: float, segments, end: float) -> np.ndarray:
    out = frame.copy()
    h, w = out.shape[:2]
    current = next((name for a, b, name in segments if a <= t < b), segments[-1][2] if segments else "")
    scale, strip = max(0.3, min(w, h) / 400), max(4, h // 24)
    bar = strip + int(22 * scale) + 4  # the class above the strip (a player's controls cover the top less)
    cv2.rectangle(out, (0, h - bar), (w, h - strip), (0, 0, 0), -1)
    cv2.putText(out, current, (4, h - strip - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (255, 255, 255), 1)
    for i, (a, b, _) in enumerate(segments):
        colour = (70, 130, 230) if i % 2 == 0 else (230, 160, 60)
        cv2.rectangle(out, (int(a / end * w), h - strip), (int(b / end * w), h), colour, -1)
    x = int(min(t / end, 1.0) * (w - 1))
    cv2.line(out, (x, h - strip - 2), (x, h), (255, 255, 255), 2)
    return out


def _gradcam(entry: Entry, video: Path, work: Path, device: str) -> dict[str, Path]:
    """The Grad-CAM sheet and the first stream's heat-map video (`vidrec visualize gradcam ... --mp4`)."""
    from vidrec.visualize import cli as viz

    args = command_args(viz.add_arguments, ["gradcam", str(entry.path), str(video), "--out",
                                            str(work / "gradcam"), "--mp4", "--device", device])  # fmt: skip
    files, _ = viz.gradcam(args)
    heat = next(p for role, p in files.items() if role.endswith(".mp4"))
    return {"gradcam_sheet": files["sheet"], "gradcam_video": heat}


# ----------------------------------------------------------------------------- other tasks


def caption(catalog: Catalog, entry: Entry, media: Media, work: Path, s: Settings, report: Report) -> View:
    """A sentence for an image, or one per window of a video (`vidrec caption --timeline`)."""
    from vidrec.tasks import cli_caption

    model, task = catalog.model(entry.name)
    window = (
        ["--window", str(s.window), "--stride", str(s.stride or max(s.window // 2, 1))] if s.window else []
    )
    timeline = ["--timeline", *window] if media.kind == "video" else []
    args = command_args(cli_caption.add_arguments, [str(entry.path), str(media.path), *timeline])
    report(0.2, "describing")
    lines = list(cli_caption.describe_file(model, task, media.path, args))
    captions = [{"label": label.strip(" []"), "sentence": sentence} for label, sentence in lines]
    data = {"task": "caption", "checkpoint": entry.name, "sentence": captions[0]["sentence"],
            "captions": captions}  # fmt: skip
    summary = f"{entry.name}: {len(captions)} sentence(s); first: {captions[0]['sentence']}"
    return View(
        "caption", summary, data, rows=[[c["label"] or "whole file", c["sentence"]] for c in captions]
    )


def landmarks(catalog: Catalog, entry: Entry, media: Media, work: Path, s: Settings, report: Report) -> View:
    """The video with the 68 predicted points drawn on every frame (`vidrec predict ... --out`)."""
    import torch

    from vidrec.data.landmarks import landmarks_file

    model, task = catalog.model(entry.name)
    video, out = _video(media, work, 8), work / "landmarks.mp4"
    report(0.2, "tracking the face")
    summary = task.draw_predictions(model, video, out, device=torch.device(catalog.device), progress=True,
                                    overwrite=False)  # fmt: skip
    points = json.loads(landmarks_file(out).read_text())["landmarks"]
    data = {"task": "landmarks", "checkpoint": entry.name, "frames": len(points), "points": points}
    return View("landmarks", f"{entry.name}: {summary.split(' -> ')[0]}", data, {"video": out})


def segment(catalog: Catalog, entry: Entry, media: Media, work: Path, s: Settings, report: Report) -> View:
    """The DFF mask overlay with key frames marked and the frames/s it ran at (`vidrec dff run
    --interval l`)."""
    from vidrec.dff.cli import add_run_arguments, dff_run

    video, out = _video(media, work, 2 * s.interval), work / "overlay.mp4"
    args = command_args(add_run_arguments, [str(entry.path), str(video), "--out", str(out), "--interval",
                                            str(s.interval), "--device", catalog.device])  # fmt: skip
    report(0.2, f"Deep Feature Flow, key frame every {s.interval}")
    run = dff_run(args)
    data = {"task": "segment", "checkpoint": entry.name, "frames": run.frames, "key_frames": run.keys,
            "interval": s.interval, "dff_fps": round(run.dff_fps, 2),
            "overall_fps": round(run.overall_fps, 2)}  # fmt: skip
    return View("segment", f"{entry.name}: {run.summary()}", data, {"video": run.out})


VIEWS: dict[str, Callable[..., View]] = {
    "classify": classify,
    "caption": caption,
    "landmarks": landmarks,
    "segment": segment,
}
