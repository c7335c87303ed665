"""Segmentation: a binary foreground mask per frame (DAVIS-2016), cross-entropy, J / F validation.

Data: ``data.root`` is a DAVIS-layout folder (`vidrec.data.davis`); the training and validation
sequences are the fixed split of ../shared/data/davis2016 (`vidrec.data.davis.TRAIN_SEQUENCES` /
`VAL_SEQUENCES`) unless ``task_options.train_sequences`` / ``val_sequences`` name others (a list of names,
or one path to a text file listing them). Frames and masks are resized to ``task_options.size``.

Two ways to train, chosen by ``task_options.pairs``:
- per frame (``pairs: false``): a `segnet_mobilenet_v2`-like model maps an image (B, 3, H, W) to logits
  (B, 2, H, W); every frame of the training sequences, augmented by `vidrec.data.davis.Augment`
  (``scale``, ``crop``, ``flip``, ``color_jitter``; ``paste``: another sequence's object pasted on); the
  loss is pixel-wise cross-entropy on the frame's mask (crop padding ignored), plus ``jaccard`` x
  `soft_jaccard_loss`;
- Deep Feature Flow end to end (``pairs: true``, methods.md 4.5): each item is the annotated frame i and
  a key frame k = i - U{0..max_offset}; the model (`dff_segnet_mobilenet_v2`, a `vidrec.dff.DFF`) runs the
  feature net on k, warps its features to i along the flow and predicts i's mask; items with k == i use
  the features unwarped. Gradients reach the task net, the feature net, the flow net and the scale field.

A model with a motion cue (``model.kwargs.motion``, `vidrec.models.motion`) is given each frame with its
previous and next one stacked, (B, 9, H, W), augmented alike (the key frame's, with pairs).

Validation scores every ``val_stride``-th frame of the validation sequences: per frame for a per-frame
model, and on (key, current) pairs drawn the same way (the same draws every epoch) for a DFF model; J and
F as the DAVIS toolkit scores them (`vidrec.engine.seg_metrics`): the logits are upsampled to the native
size of the masks and scored against the masks as stored, and each sequence's first and last frame are
left out (``val_all_frames: true`` keeps them); ``val_J`` picks ``best.safetensors``. At the end of
training, `Segment.report` prints the last validation's J mean, J recall and F mean per sequence and
writes them to ``val_sequences.md`` in the run folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from vidrec.engine.checkpoint import MAX_SIDE
from vidrec.engine.schema import ConfigError, TrainConfig
from vidrec.tasks.base import Step, Task, register_task


@dataclass
class SegmentOptions:
    size: list[int] = field(
        default_factory=lambda: [240, 432],
        metadata={"help": "[H, W] every frame and mask is resized to (DAVIS 480p is 480 x 854)"},
    )
    pairs: bool = field(
        default=False,
        metadata={"help": "train Deep Feature Flow on (key, current) pairs (a DFF model); false: per frame"},
    )
    max_offset: int = field(
        default=9, metadata={"help": "with pairs: the key frame is 0..max_offset frames before the current"}
    )
    train_sequences: list[str] = field(
        default_factory=list,
        metadata={
            "help": "training sequence names, or [path of a text file listing them]; empty: the fixed split"
        },
    )
    val_sequences: list[str] = field(
        default_factory=list,
        metadata={
            "help": "validation sequence names or [list file]; empty: the fixed split; [none]: no validation"
        },
    )
    val_stride: int = field(
        default=1, metadata={"help": "score every n-th frame of the validation sequences"}
    )
    val_all_frames: bool = field(
        default=False,
        metadata={"help": "validate on every frame; false: leave out each sequence's first and last (DAVIS)"},
    )
    flip: bool = field(default=True, metadata={"help": "random horizontal flips of training items"})
    scale: list[float] = field(
        default_factory=lambda: [1.0, 1.0],
        metadata={"help": "per frame: [low, high] random scale of the training frames (x size)"},
    )
    crop: list[int] = field(
        default_factory=list,
        metadata={"help": "per frame: [H, W] random crop of the scaled training frames; empty: size"},
    )
    color_jitter: float = field(
        default=0.0, metadata={"help": "per frame: colour jitter strength of the training frames (0: none)"}
    )
    jaccard: float = field(
        default=0.0,
        metadata={"help": "weight of a soft-Jaccard (IoU) loss on the foreground, added to cross-entropy"},
    )
    paste: float = field(
        default=0.0,
        metadata={
            "help": "per frame: probability of pasting another training sequence's object onto a training "
            "frame (and its neighbours; copy-paste, vidrec.data.davis.paste_object); 0: never"
        },
    )


@register_task
class Segment(Task):
    """Binary video segmentation; see the module docstring."""

    name = "segment"
    Options = SegmentOptions
    best_metric = "val_J"
    higher_is_better = True

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        o = self.options
        if len(o.size) != 2 or min(o.size) < 16 or max(o.size) > MAX_SIDE:
            raise ConfigError(f"task_options.size: must be [H, W] of 16..{MAX_SIDE} px each, got {o.size}")
        if o.max_offset < 0 or o.val_stride < 1:
            raise ConfigError("task_options.max_offset must be >= 0 and task_options.val_stride >= 1")
        if len(o.scale) != 2 or not 0 < o.scale[0] <= o.scale[1]:
            raise ConfigError(f"task_options.scale: must be [low, high] with 0 < low <= high, got {o.scale}")
        if o.crop and (len(o.crop) != 2 or min(o.crop) < 16 or max(o.crop) > MAX_SIDE):
            raise ConfigError(f"task_options.crop: must be [] or [H, W] of 16..{MAX_SIDE} px, got {o.crop}")
        if o.color_jitter < 0 or o.jaccard < 0:
            raise ConfigError("task_options.color_jitter and task_options.jaccard must be >= 0")
        if not 0 <= o.paste <= 1:
            raise ConfigError(f"task_options.paste: a probability in [0, 1], got {o.paste}")
        self.sequence_table: list = []  # the last validation's `vidrec.engine.seg_metrics.SequenceScore`s

    # -- data ---------------------------------------------------------------------------------------
    def check(self) -> None:
        if not self.cfg.data.root:
            raise ConfigError(
                "data.root: required with task=segment (a DAVIS folder holding JPEGImages/480p)"
            )
        self._sequences()

    def _sequences(self) -> tuple[list, list | None]:
        from vidrec.data.davis import find_sequences, split_names

        root, o = self.cfg.data.root, self.options
        train_names = sequence_names(o.train_sequences) or split_names("train")
        if [s.lower() for s in o.val_sequences] == ["none"]:
            return find_sequences(root, train_names), None
        val_names = sequence_names(o.val_sequences) or split_names("val")
        both = sorted(set(train_names) & set(val_names))
        if both:
            raise ConfigError(
                f"task_options: sequence {', '.join(both)} is in both train_sequences and val_sequences; "
                "a validation sequence must not be trained on"
            )
        return find_sequences(root, train_names), find_sequences(root, val_names)

    def datasets(
        self, model: nn.Module, log: Callable[[str], None] | None = None
    ) -> tuple[Dataset, Dataset | None]:
        from vidrec.data.davis import Augment, DavisFrames, DavisPairs
        from vidrec.models.motion import takes_neighbours

        o, (train_seqs, val_seqs) = self.options, self._sequences()
        size, neighbours = tuple(o.size), takes_neighbours(model)
        scoring = {"size": size, "native_masks": True, "skip_ends": not o.val_all_frames}  # as DAVIS scores
        if o.pairs:
            train = DavisPairs(
                train_seqs, max_offset=o.max_offset, size=size, flip=o.flip, neighbours=neighbours
            )
            val = (
                DavisPairs(val_seqs, max_offset=o.max_offset, neighbours=neighbours, **scoring)
                if val_seqs
                else None
            )
        else:
            augment = Augment(
                size, scale=tuple(o.scale), crop=tuple(o.crop) or None, flip=o.flip, color=o.color_jitter
            )
            train = DavisFrames(train_seqs, size=size, augment=augment, neighbours=neighbours, paste=o.paste)
            val = DavisFrames(val_seqs, neighbours=neighbours, **scoring) if val_seqs else None
        if val is not None and o.val_stride > 1:
            val = Subset(val, range(0, len(val), o.val_stride))
        if log is not None:
            scored = len(val) if val is not None else 0
            log(f"segment: {len(train_seqs)} training sequences ({len(train)} frames), "
                f"{len(val_seqs or [])} validation sequences ({scored} frames scored)")  # fmt: skip
        return train, val

    def collate(self) -> Callable[[list[Any]], Any]:
        """`collate_skip`, with validation masks (native size) of different sizes kept as a list."""
        from vidrec.data.davis import collate_davis

        return collate_davis

    # -- model and state ----------------------------------------------------------------------------
    def build_model(self, *, weights: bool = True) -> nn.Module:
        from vidrec.models.build import build_model  # imports every model: only when one is built

        model_cfg = self.cfg.model
        if not weights and model_cfg.kwargs.get("flow_weights"):  # a checkpoint holds the flow net's weights
            model_cfg = dataclasses.replace(model_cfg, kwargs={**model_cfg.kwargs, "flow_weights": ""})
        model = build_model(model_cfg, num_classes=2, weights=weights)
        if self.options.pairs and not is_paired(model):
            raise ConfigError(
                f"task_options.pairs: {self.cfg.model.name} takes one image; pairs need a DFF model "
                "(e.g. model.name=dff_segnet_mobilenet_v2)"
            )
        return model

    def state(self) -> dict[str, Any]:
        return {
            "size": list(self.options.size),
            "pairs": self.options.pairs,
            "classes": ["background", "foreground"],
        }

    def class_names(self) -> list[str]:
        return ["background", "foreground"]

    def report(self, out_dir: Path, history: list[dict[str, Any]]) -> None:
        """The last validation's per-sequence J mean, J recall and F mean: printed and written to
        ``val_sequences.md``."""
        from vidrec.engine.seg_metrics import format_sequence_table

        if not self.sequence_table:
            return
        epoch = history[-1]["epoch"] if history else "?"
        text = (
            f"Validation after epoch {epoch}, per sequence:\n\n{format_sequence_table(self.sequence_table)}\n"
        )
        (Path(out_dir) / "val_sequences.md").write_text(text)
        print(text, flush=True)

    # -- training and validation --------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: dict, device: torch.device) -> Step:
        from vidrec.data.davis import IGNORE

        logits, mask = forward_batch(model, batch, device, pairs=self.options.pairs)
        loss = F.cross_entropy(logits, mask, ignore_index=IGNORE)
        if self.options.jaccard > 0:
            loss = loss + self.options.jaccard * soft_jaccard_loss(logits, mask)
        pred = logits.detach().argmax(dim=1)
        valid = mask != IGNORE  # crop padding
        inter = float(((pred == 1) & (mask == 1)).sum())
        union = float((((pred == 1) & valid) | (mask == 1)).sum())
        return Step(loss=loss, items=len(mask), sums={"inter": inter, "union": union})

    def train_metrics(self, sums: dict[str, float], items: int) -> dict[str, float]:
        """Pooled foreground IoU of the epoch's training batches (not DAVIS's per-sequence J)."""
        return {"train_iou": sums.get("inter", 0.0) / max(sums.get("union", 0.0), 1.0)}

    @torch.no_grad()
    def validate(
        self, model: nn.Module, loader: DataLoader, *, device: torch.device, amp: bool, progress: bool
    ) -> dict[str, Any]:
        from vidrec.engine.seg_metrics import JF
        from vidrec.progress import progress as bar

        model.eval()
        scores, loss_sum, n, skipped = JF(), 0.0, 0, []
        for batch in bar(loader, desc="validate", disable=not progress, leave=False):
            skipped += list(batch.get("skipped", []))
            if self.is_empty(batch):
                continue
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = predict(model, batch, device, pairs=self.options.pairs)  # (B, 2, H, W) working size
            for seq, idx, out, mask in zip(
                batch["sequence"], batch["index"], logits, batch["mask"], strict=True
            ):
                mask = mask.to(device)[None]  # (1, H0, W0) as stored
                out = F.interpolate(
                    out[None].float(), size=mask.shape[-2:], mode="bilinear", align_corners=False
                )
                loss_sum += float(F.cross_entropy(out, mask))
                scores.update(seq, int(idx), out[0].argmax(0), mask[0])
                n += 1
        model.train()
        jf = scores.compute(gather=True)
        self.sequence_table = scores.table()
        return {"val_loss": loss_sum / max(n, 1), "val_J": jf["J"], "val_F": jf["F"], "val_JF": jf["JF"],
                "val_skipped": skipped}  # fmt: skip


# ----------------------------------------------------------------------------- helpers


def soft_jaccard_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU of the foreground, per image then averaged: the IoU-shaped term J rewards, which
    pixel-wise cross-entropy under-weights for small objects. Pixels marked `IGNORE` do not count.

    Args:
        logits: (B, 2, H, W); mask: (B, H, W) in {0, 1, IGNORE}.
    """
    from vidrec.data.davis import IGNORE

    valid = (mask != IGNORE).float()
    p = logits.float().softmax(dim=1)[:, 1] * valid  # (B, H, W) foreground probability
    g = (mask == 1).float()
    inter = (p * g).sum(dim=(1, 2))
    union = (p + g - p * g).sum(dim=(1, 2))
    return (1 - (inter + 1) / (union + 1)).mean()  # +1: an image without foreground and none predicted -> 0


def sequence_names(spec: list[str]) -> tuple[str, ...]:
    """Names from a ``task_options`` sequence list: the names themselves, or the lines of one list file."""
    from vidrec.data.davis import read_sequence_list

    if len(spec) == 1 and (spec[0].endswith(".txt") or Path(spec[0]).is_file()):
        return read_sequence_list(spec[0])
    return tuple(spec)


def _inner(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def is_paired(model: nn.Module) -> bool:
    """True for a Deep Feature Flow model (forward takes key and current images)."""
    return hasattr(_inner(model), "flow_net")


def predict(model: nn.Module, batch: dict, device: torch.device, *, pairs: bool) -> torch.Tensor:
    """Logits (B, K, H, W) of a batch of `vidrec.data.davis` items, at the model's output size.

    Images arrive as uint8 (B, 3, H, W) (or a frame with its neighbours, (B, 9, H, W)) and are
    ImageNet-normalised here, on the device.
    """
    from vidrec.data.transforms import normalize_frames

    image = normalize_frames(batch["image"].to(device, non_blocking=True))
    if pairs:
        key = normalize_frames(batch["key_image"].to(device, non_blocking=True))
        same = torch.as_tensor(batch["offset"]).to(device) == 0  # eq_flag: the key is the current frame
        return model(key, image, same)
    return model(image)


def forward_batch(
    model: nn.Module, batch: dict, device: torch.device, *, pairs: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, K, H, W) upsampled to the mask size, mask (B, H, W) int64) of a batch (training)."""
    logits = predict(model, batch, device, pairs=pairs)
    mask = batch["mask"].to(device, non_blocking=True)
    if logits.shape[-2:] != mask.shape[-2:]:
        logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear", align_corners=False)
    return logits, mask
