"""Caption data: image folder + CSV (``image,caption`` rows) or video folder + JSON (video -> sentences).

`read_captions` groups the sentences by file (sorted by name); `split_items` splits them by a JSON file
(``{"train": [...], "val": [...]}``) or by the rule *every `val_every`-th file (sorted) is validation*;
`CaptionDataset` yields uint8 RGB clips ``(T, 3, S, S)`` (an image is ``T = 1``) with word ids.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from vidrec.cli import UsageError
from vidrec.text import Vocabulary

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"}


class CaptionDataError(UsageError, ValueError):
    """A captions file or split file that cannot be used (the message names it and what to fix)."""


@dataclass
class CaptionItem:
    """One image or video (path relative to the data root) and its human sentences."""

    file: str
    sentences: list[str]


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def read_captions(path: str | Path) -> list[CaptionItem]:
    """CSV with ``image,caption`` columns (one row per sentence) or JSON ``{file: [sentences]}``."""
    path = Path(path)
    if not path.is_file():
        raise CaptionDataError(f"{path}: captions file not found; give task_options.captions")
    groups: dict[str, list[str]] = {}
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise CaptionDataError(f"{path}: expected a JSON object {{file: [sentences]}}")
        groups = {str(k): [str(s) for s in v] for k, v in data.items()}
    else:
        with path.open(newline="") as fh:
            rows = csv.DictReader(fh)
            if not {"image", "caption"} <= set(rows.fieldnames or []):
                raise CaptionDataError(f"{path}: needs a header with columns image,caption")
            for row in rows:
                groups.setdefault(row["image"], []).append(row["caption"])
    items = [CaptionItem(f, s) for f, s in sorted(groups.items()) if s]
    if not items:
        raise CaptionDataError(f"{path}: holds no captions")
    return items


def split_items(
    items: list[CaptionItem], *, split_file: str = "", val_every: int = 5
) -> tuple[list[CaptionItem], list[CaptionItem]]:
    """(train, val): by `split_file`'s ``train`` / ``val`` lists, else file index % val_every ==
    val_every - 1 (in name order) is validation; ``val_every=0``: no validation."""
    if split_file:
        split = json.loads(Path(split_file).read_text())
        by_name = {i.file: i for i in items}
        unknown = [f for f in split.get("train", []) + split.get("val", []) if f not in by_name]
        if unknown or "train" not in split:
            raise CaptionDataError(
                f"{split_file}: needs a 'train' list of captioned files (unknown: {unknown[:3]})"
            )
        return [by_name[f] for f in split["train"]], [by_name[f] for f in split.get("val", [])]
    if val_every <= 0:
        return list(items), []
    return (
        [it for i, it in enumerate(items) if i % val_every != val_every - 1],
        [it for i, it in enumerate(items) if i % val_every == val_every - 1],
    )


def _square(x: torch.Tensor, *, resize: int, size: int) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` -> short side `resize`, centre crop `size` x `size`."""
    return TF.center_crop(TF.resize(x, resize, antialias=True), [size, size])


def load_image(path: str | Path, *, resize: int = 256, size: int = 224) -> torch.Tensor:
    """An image file -> uint8 ``(1, 3, size, size)`` (a clip of one frame)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise CaptionDataError(f"{path}: cannot read the image ({err}); is it a JPEG/PNG file?") from None
    img = torch.from_numpy(rgb.copy()).permute(2, 0, 1)  # (3, H, W)
    return _square(img, resize=resize, size=size).unsqueeze(0)


def frame_indices(num_frames: int, frames: int) -> list[int]:
    """`frames` indices spread evenly over a video of `num_frames` (repeats when it is shorter)."""
    return [int(i) for i in np.round(np.linspace(0, num_frames - 1, frames))]


def load_clip(
    path: str | Path, *, frames: int = 8, resize: int = 256, size: int = 224, indices: list[int] | None = None
) -> torch.Tensor:
    """A video file -> uint8 ``(frames, 3, size, size)``, frames spread evenly over it (or `indices`)."""
    from vidrec.io import probe, read_frames

    if indices is None:
        indices = frame_indices(probe(path).num_frames, frames)
    clip = torch.from_numpy(read_frames(path, indices, size=resize)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    return _square(clip, resize=resize, size=size)


def load_media(path: str | Path, *, frames: int, resize: int, size: int) -> torch.Tensor:
    """An image (``T = 1``) or a video (`frames` frames) as uint8 ``(T, 3, size, size)``."""
    if is_image(path):
        return load_image(path, resize=resize, size=size)
    return load_clip(path, frames=frames, resize=resize, size=size)


class CaptionDataset(Dataset):
    """Training: one item per (file, sentence); validation: one per file with all its sentences.

    Item: ``{"rgb": uint8 (T, 3, S, S), "caption": ids (L,) ending in <eos>, "refs": [sentences],
    "id": file}``; a file that cannot be read gives None (warned, named in ``skipped``; `strict` raises).
    """

    def __init__(
        self, root: str | Path, items: list[CaptionItem], vocab: Vocabulary, *, train: bool,
        frames: int = 8, resize: int = 256, size: int = 224, max_len: int = 20, strict: bool = False,
    ) -> None:  # fmt: skip
        self.root, self.items, self.vocab, self.train = Path(root), items, vocab, train
        self.frames, self.resize, self.size, self.max_len, self.strict = frames, resize, size, max_len, strict
        self.index = [(i, s) for i, it in enumerate(items) for s in range(len(it.sentences))] if train else [
            (i, 0) for i in range(len(items))
        ]  # fmt: skip
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:  # the engine calls it; items do not depend on the epoch
        pass

    def drop_missing(self) -> list[str]:
        """Remove the items whose file is absent; returns their paths."""
        missing = sorted({it.file for it in self.items if not (self.root / it.file).is_file()})
        if missing:
            keep = [i for i, it in enumerate(self.items) if it.file not in set(missing)]
            self.index = [(i, s) for i, s in self.index if i in set(keep)]
        return [str(self.root / f) for f in missing]

    def __getitem__(self, k: int) -> dict | None:
        i, s = self.index[k]
        item = self.items[i]
        path = self.root / item.file
        try:
            rgb = load_media(path, frames=self.frames, resize=self.resize, size=self.size)
        except Exception as err:  # a corrupt file is reported and skipped
            if self.strict:
                raise
            self.skipped[str(path)] = str(err)
            warnings.warn(f"{path}: skipped ({err})", stacklevel=2)
            return {"skipped_path": str(path)}
        ids = torch.tensor(self.vocab.encode(item.sentences[s], max_len=self.max_len - 1))
        return {"rgb": rgb, "caption": ids, "refs": list(item.sentences), "id": item.file}


def collate_captions(batch: list[dict]) -> dict:
    """Stack clips ``(B, T, 3, S, S)``, pad ids to ``(B, L)`` with <pad>; unreadable files in ``skipped``."""
    skipped = [b["skipped_path"] for b in batch if "skipped_path" in b]
    good = [b for b in batch if "skipped_path" not in b]
    if not good:
        return {"skipped": skipped}
    caps = torch.nn.utils.rnn.pad_sequence([b["caption"] for b in good], batch_first=True, padding_value=0)
    return {
        "rgb": torch.stack([b["rgb"] for b in good]),
        "caption": caps,
        "refs": [b["refs"] for b in good],
        "id": [b["id"] for b in good],
        "skipped": skipped,
    }
