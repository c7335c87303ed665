"""Detection: boxes per frame of one annotated video (MOTChallenge ground truth), FCOS losses, box AP.

Data: ``data.root`` is a video file, or a folder holding one video (or a folder of frames); the boxes are
``task_options.gt`` (a path, relative to the video's folder unless absolute) or the ``gt.txt`` /
``gt/gt.txt`` beside the video (`vidrec.data.mot`). The frames are split in contiguous ranges,
``task_options.train_frames`` / ``val_frames`` (``"A-B"``, 1-based, inclusive; default: the annotated
frames, the first 70 % for training and the rest for validation; ``val_frames: none``: no validation).
Frames are decoded once, resized to ``task_options.size`` and kept in memory.

Two ways to train, chosen by ``task_options.pairs``:
- per frame (``pairs: false``): a `fcos_mobilenet_v2`-like model maps images to FCOS's losses;
- Deep Feature Flow end to end (``pairs: true``): each item is frame i and a key frame i - U{0..max_offset}
  of the same range; the model (`dff_fcos_mobilenet_v2`, a `vidrec.dff.detect.PyramidDFF`) runs the feature
  net on the key frame, warps its pyramid to frame i and the head predicts i's boxes.

Validation scores every ``val_stride``-th frame of the validation range (a DFF model on fixed (key,
current) pairs) with COCO's box AP (`vidrec.engine.det_metrics.BoxAP`: AP@0.5, AP@0.75, AP@[.5:.95];
conf-0 boxes are ignore regions); ``val_AP50`` picks ``best.safetensors``. `report` draws the last
validation's precision-recall curve (``pr_curve.png``) and a strip of validation frames with the
predicted (green) and true (white) boxes (``detections.png``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from vidrec.engine.checkpoint import MAX_SIDE
from vidrec.engine.schema import ConfigError, TrainConfig
from vidrec.tasks.base import Step, Task, register_task

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".ts", ".gif")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
KEY_COLOUR = (255, 200, 0)  # RGB: the frame number of key frames (as `vidrec dff run` marks them)
BOX_COLOUR = (40, 220, 40)  # RGB: predicted boxes
GT_COLOUR = (255, 255, 255)  # RGB: true boxes in the report


@dataclass
class DetectOptions:
    size: list[int] = field(
        default_factory=lambda: [360, 480],
        metadata={"help": "[H, W] every frame is resized to (boxes are scaled with it)"},
    )
    gt: str = field(
        default="",
        metadata={"help": "MOT ground-truth file (relative to the video's folder); empty: gt.txt beside it"},
    )
    train_frames: str = field(
        default="", metadata={"help": "training frames A-B (1-based, inclusive); empty: first 70% annotated"}
    )
    val_frames: str = field(
        default="",
        metadata={"help": "validation frames A-B; empty: the annotated frames after training's; none"},
    )
    pairs: bool = field(
        default=False,
        metadata={"help": "train Deep Feature Flow on (key, current) pairs (a DFF model); false: per frame"},
    )
    max_offset: int = field(
        default=9, metadata={"help": "with pairs: the key frame is 0..max_offset frames before the current"}
    )
    val_stride: int = field(default=1, metadata={"help": "score every n-th frame of the validation range"})
    flip: bool = field(default=True, metadata={"help": "random horizontal flips of training items"})
    jitter: float = field(default=0.1, metadata={"help": "random zoom of training items in [1 - j, 1 + j]"})


@register_task
class Detect(Task):
    """Object detection on one annotated video; see the module docstring."""

    name = "detect"
    Options = DetectOptions
    best_metric = "val_AP50"
    higher_is_better = True

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        o = self.options
        if len(o.size) != 2 or min(o.size) < 32 or max(o.size) > MAX_SIDE:
            raise ConfigError(f"task_options.size: must be [H, W] of 32..{MAX_SIDE} px each, got {o.size}")
        if o.max_offset < 0 or o.val_stride < 1 or not 0 <= o.jitter < 0.5:
            raise ConfigError("task_options.max_offset must be >= 0, val_stride >= 1 and jitter in [0, 0.5)")
        self.last_eval = None  # (COCOeval, example frames) of the last validation, for `report`

    # -- data ---------------------------------------------------------------------------------------
    def check(self) -> None:
        self._inputs()

    def _inputs(self) -> tuple[Path, Any, range, range | None]:
        """(video, its `MotBoxes`, training frames, validation frames or None), all checked."""
        from vidrec.data.mot import MotFormatError, find_gt, parse_frames, read_mot
        from vidrec.io import probe

        video = find_video(self.cfg.data.root)
        o = self.options
        if o.gt:
            gt_path = (
                Path(o.gt) if Path(o.gt).is_absolute() else (video if video.is_dir() else video.parent) / o.gt
            )
            if not gt_path.is_file():
                raise ConfigError(
                    f"task_options.gt: {gt_path} does not exist; give the MOT gt.txt of {video}"
                )
        else:
            gt_path = find_gt(video)
            if gt_path is None:
                raise ConfigError(
                    f"task_options.gt: no gt.txt beside {video}; give the MOT ground-truth file"
                )
        num, (height, width) = frame_count(video), frame_shape(video, probe)
        try:
            gt = read_mot(gt_path, num_frames=num, height=height, width=width)
        except MotFormatError as err:
            raise ConfigError(str(err)) from None
        annotated = gt.last_frame + 1
        if annotated == 0:
            raise ConfigError(f"{gt_path} holds no boxes; a detector needs some to learn from")
        try:
            cut = max(1, int(annotated * 0.7))
            train = parse_frames(
                o.train_frames or f"1-{cut}", num_frames=num, what="task_options.train_frames"
            )
            val = None
            if o.val_frames.lower() != "none":
                default_val = f"{train.stop + 1}-{max(annotated, train.stop + 1)}"
                val = parse_frames(
                    o.val_frames or default_val, num_frames=num, what="task_options.val_frames"
                )
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if val is not None and train.start < val.stop and val.start < train.stop:
            raise ConfigError(
                f"task_options: train_frames {train.start + 1}-{train.stop} and val_frames "
                f"{val.start + 1}-{val.stop} overlap; validate on frames never trained on"
            )
        for name, frames in (("train_frames", train), ("val_frames", val)):
            if frames is not None and frames.stop > annotated:  # after the last line: never annotated
                raise ConfigError(
                    f"task_options.{name}: frames after {annotated} have no boxes in {gt_path}; they were "
                    "never annotated, and counting them as empty would teach or score every object as false"
                )
        return video, gt, train, val

    def datasets(
        self, model: nn.Module, log: Callable[[str], None] | None = None
    ) -> tuple[Dataset, Dataset | None]:
        from vidrec.data.mot import DetectFrames, DetectPairs, load_frames

        o = self.options
        video, gt, train_range, val_range = self._inputs()
        size = (int(o.size[0]), int(o.size[1]))
        aug = {"flip": o.flip, "jitter": o.jitter}
        train_images = load_frames(video, train_range, size)
        val_images = load_frames(video, val_range, size) if val_range is not None else None
        if o.pairs:
            train = DetectPairs(train_images, train_range, gt, max_offset=o.max_offset, **aug)
            val = (
                DetectPairs(val_images, val_range, gt, max_offset=o.max_offset, seed=0) if val_range else None
            )
        else:
            train = DetectFrames(train_images, train_range, gt, **aug)
            val = DetectFrames(val_images, val_range, gt) if val_range else None
        if val is not None and o.val_stride > 1:
            val = Subset(val, range(0, len(val), o.val_stride))
        if log is not None:
            clipped = f", {gt.clipped} clipped to the frame" if gt.clipped else ""
            dropped = f", {gt.dropped} outside it dropped" if gt.dropped else ""
            val_text = f"{val_range.start + 1}-{val_range.stop} ({len(val)} scored)" if val_range else "none"
            train_text = f"{train_range.start + 1}-{train_range.stop}"
            log(f"detect: {video.name}, {gt.count()} boxes in {gt.path.name}{clipped}{dropped}; "
                f"training frames {train_text}, validation {val_text}")  # fmt: skip
        return train, val

    def collate(self) -> Callable[[list[Any]], Any]:
        from vidrec.data.mot import collate_detect

        return collate_detect

    # -- model and state ----------------------------------------------------------------------------
    def build_model(self, *, weights: bool = True) -> nn.Module:
        from vidrec.models.build import build_model

        model_cfg = self.cfg.model
        if not weights and model_cfg.kwargs.get("flow_weights"):  # a checkpoint holds the flow net's weights
            model_cfg = dataclasses.replace(model_cfg, kwargs={**model_cfg.kwargs, "flow_weights": ""})
        model = build_model(model_cfg, num_classes=2, weights=weights)
        if not hasattr(_inner(model), "task_net"):
            raise ConfigError(f"model.name: {model_cfg.name} is not a detector (e.g. fcos_mobilenet_v2)")
        if self.options.pairs and not is_paired(model):
            raise ConfigError(
                f"task_options.pairs: {model_cfg.name} takes one image; pairs need a DFF model "
                "(e.g. model.name=dff_fcos_mobilenet_v2)"
            )
        return model

    def state(self) -> dict[str, Any]:
        return {"size": list(self.options.size), "pairs": self.options.pairs, "classes": self.class_names()}

    def class_names(self) -> list[str]:
        return ["background", "object"]

    # -- training and validation --------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: dict, device: torch.device) -> Step:
        targets = [
            {"boxes": b.to(device), "labels": torch.ones(len(b), dtype=torch.int64, device=device)}
            for b in batch["boxes"]
        ]
        losses = run_model(model, batch, device, pairs=self.options.pairs, targets=targets)
        loss = sum(losses.values())
        n = len(targets)
        return Step(loss=loss, items=n, sums={k: float(v.detach()) * n for k, v in losses.items()})

    def train_metrics(self, sums: dict[str, float], items: int) -> dict[str, float]:
        """The epoch's mean FCOS loss parts: classification (focal), box regression (GIoU), centre-ness."""
        return {f"train_{k}": v / max(items, 1) for k, v in sums.items()}

    @torch.no_grad()
    def validate(
        self, model: nn.Module, loader: DataLoader, *, device: torch.device, amp: bool, progress: bool
    ) -> dict[str, Any]:
        from vidrec.engine.det_metrics import BoxAP
        from vidrec.progress import progress as bar

        model.eval()
        scores, examples = BoxAP(), []
        every = max(1, len(loader) // 4)  # 4 example frames spread over the range, for the report
        for i, batch in enumerate(bar(loader, desc="validate", disable=not progress, leave=False)):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                dets = run_model(model, batch, device, pairs=self.options.pairs)
            for frame, det, gt, ignore in zip(
                batch["index"], dets, batch["boxes"], batch["ignore"], strict=True
            ):
                scores.update(frame, det["boxes"], det["scores"], gt, ignore)
            if i % every == 0 and len(examples) < 4:
                boxes, found = dets[0]["boxes"].float().cpu().numpy(), dets[0]["scores"].float().cpu().numpy()
                examples.append(
                    (batch["image"][0].permute(1, 2, 0).numpy(), boxes, found, batch["boxes"][0].numpy())
                )
        model.train()
        ev = scores.evaluate(gather=True)
        self.last_eval = (ev, examples)
        ap = scores.compute() if ev is None else _summary(ev)
        return {"val_AP50": ap["AP50"], "val_AP": ap["AP"], "val_AP75": ap["AP75"], "val_skipped": []}

    def report(self, out_dir: Path, history: list[dict[str, Any]]) -> None:
        """``pr_curve.png`` and ``detections.png`` of the last validation (see the module docstring)."""
        if self.last_eval is None or self.last_eval[0] is None:
            return
        ev, examples = self.last_eval
        plot_pr({"model": ev}, Path(out_dir) / "pr_curve.png")
        if examples:
            strip = np.concatenate(
                [draw_boxes(draw_boxes(img, gt, None, colour=GT_COLOUR), b, s) for img, b, s, gt in examples],
                axis=1,
            )
            cv2.imwrite(str(Path(out_dir) / "detections.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))

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
        """Detect on every frame of `video` (per frame, each frame at the training size) and write it to
        `out` with the boxes drawn, frame by frame (constant memory); a one-line summary back."""
        from vidrec.dff.detect import as_pyramid_dff
        from vidrec.dff.flownets import DISFlow
        from vidrec.dff.schedule import FixedInterval

        inner = _inner(model)
        dff = as_pyramid_dff(inner, flow_net=None if is_paired(inner) else DISFlow())  # flow unused at l = 1
        n, keys, fps = draw_video(
            dff, video, out, FixedInterval(1), size=list(self.options.size), device=device
        )
        return f"drew the boxes of {n} frames -> {out} ({fps:.1f} frames/s detection)"


# ----------------------------------------------------------------------------- helpers


def find_video(root: str) -> Path:
    """``data.root`` as a video: the file itself, or the one video (or the frame folder) in the folder."""
    if not root:
        raise ConfigError(
            "data.root: required with task=detect (a video, or a folder holding one, with gt.txt)"
        )
    path = Path(root)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ConfigError(f"data.root: {path} does not exist; give a video or a folder holding one")
    videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if len(videos) == 1:
        return videos[0]
    if not videos and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
        return path  # a frame folder
    found = ", ".join(p.name for p in videos) or "none"
    raise ConfigError(f"data.root: {path} must hold exactly one video (found {found}); name the video itself")


def frame_count(video: Path) -> int:
    """Frames of a video (counted from its packets) or of a frame folder."""
    from vidrec.io import probe

    if video.is_dir():
        return len([p for p in video.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES])
    return probe(video).num_frames


def frame_shape(video: Path, probe) -> tuple[int, int]:
    """(height, width) of the frames."""
    if video.is_dir():
        first = sorted(p for p in video.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[0]
        h, w = cv2.imread(str(first)).shape[:2]
        return h, w
    meta = probe(video)
    return meta.height, meta.width


def _inner(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def is_paired(model: nn.Module) -> bool:
    """True for a Deep Feature Flow model (forward takes key and current images)."""
    return hasattr(_inner(model), "flow_net")


def run_model(model: nn.Module, batch: dict, device: torch.device, *, pairs: bool, targets=None):
    """Detections per image (or the loss dict with `targets`) of a `collate_detect` batch; images arrive
    uint8 and are ImageNet-normalised here, on the device."""
    from vidrec.data.transforms import normalize_rgb

    image = normalize_rgb(batch["image"].to(device, non_blocking=True))
    if pairs:
        key = normalize_rgb(batch["key_image"].to(device, non_blocking=True))
        same = batch["offset"].to(device) == 0
        return model(key, image, same, targets)
    return model(image, targets)


def _summary(ev) -> dict[str, float]:
    from vidrec.engine.det_metrics import _ap

    return {"AP": _ap(ev), "AP50": _ap(ev, 0.5), "AP75": _ap(ev, 0.75)}


def draw_boxes(
    frame: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray | None,
    *,
    threshold: float = 0.4,
    colour: tuple[int, int, int] = BOX_COLOUR,
) -> np.ndarray:
    """A copy of uint8 RGB `frame` with `boxes` (x1 y1 x2 y2 px) drawn; with `scores`, only those of at
    least `threshold`, each labelled with its score."""
    out = np.ascontiguousarray(frame).copy()
    thick = max(1, min(out.shape[:2]) // 240)
    for i, box in enumerate(np.asarray(boxes).reshape(-1, 4)):
        if scores is not None and scores[i] < threshold:
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        if scores is not None:
            cv2.putText(
                out, f"{scores[i]:.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1
            )
    return out


def plot_pr(curves: dict[str, Any], path: Path, *, iou: float = 0.5) -> None:
    """Precision-recall curves at IoU `iou`, one line per `COCOeval` in `curves` (name -> eval), to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vidrec.engine.det_metrics import _ap, pr_curve

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, ev in curves.items():
        recall, precision = pr_curve(ev, iou)
        ax.plot(recall, precision, label=f"{name} (AP@{iou:g} {_ap(ev, iou):.3f})")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"precision-recall, IoU {iou:g}",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def video_frames(video: Path) -> tuple[Iterator[np.ndarray], int, float | None]:
    """(uint8 RGB frames one by one, count, fps or None) of a video file or a frame folder."""
    if video.is_dir():
        files = sorted(p for p in video.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return (
            (cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files),
            len(files),
            None,
        )
    from vidrec.io import VideoReader

    reader = VideoReader(video)
    return iter(reader), reader.meta.num_frames, reader.meta.fps


def draw_video(
    dff,
    video: Path,
    out: Path,
    schedule,
    *,
    size: list[int] | None,
    device: torch.device,
    fps: float | None = None,
) -> tuple[int, int, float]:
    """Run `dff` (a `PyramidDFF`) over `video` under `schedule`, writing each frame with its boxes (scaled
    back to the frame's own size; key frames marked) to `out` as soon as it is drawn:
    (frames, key frames, frames/s of decoding + detection)."""
    import time

    from vidrec.data.transforms import normalize_rgb
    from vidrec.io import VideoWriter
    from vidrec.progress import progress

    frames, total, video_fps = video_frames(video)
    kept: list[np.ndarray] = []

    def inputs() -> Iterator[torch.Tensor]:
        for frame in frames:
            kept.append(frame)
            if size and list(frame.shape[:2]) != list(size):
                frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            yield normalize_rgb(
                torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1)[None]
            )

    count = keys = 0
    spent = 0.0
    with (
        VideoWriter(out, fps=fps or video_fps or 24.0) as writer,
        progress(total=total, desc="detect", unit="frame") as bar,
    ):
        tick = time.perf_counter()
        for dets, is_key in dff.run(inputs(), schedule):
            spent += time.perf_counter() - tick
            frame = kept.pop()
            h, w = frame.shape[:2]
            work = size or [h, w]
            scale = np.array([w / work[1], h / work[0]] * 2, np.float32)
            drawn = draw_boxes(
                frame, dets[0]["boxes"].float().cpu().numpy() * scale, dets[0]["scores"].float().cpu().numpy()
            )
            label = f"{count}" + (" KEY" if is_key else "")
            cv2.putText(
                drawn,
                label,
                (6, 18),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                KEY_COLOUR if is_key else (255, 255, 255),
                1,
            )
            writer.write(drawn)
            count, keys = count + 1, keys + is_key
            bar.update(1)
            tick = time.perf_counter()
        if count == 0:
            raise ValueError(f"{video} has no frames")
    return count, keys, count / max(spent, 1e-9)
