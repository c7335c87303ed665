"""Caption data: image folder + CSV (``image,caption`` rows) or video folder + JSON (video -> sentences).

`read_captions` groups the sentences by file (sorted by name); `split_items` splits them by a JSON file
(``{"train": [...], "val": [...]}``) or by the rule *every `val_every`-th file (sorted) is validation*;
`CaptionDataset` yields uint8 RGB clips ``(T, 3, S, S)`` (an image is ``T = 1``) with word ids.

Attribute labels (LRCN's video description from activity / tool / object / location, methods.md 1.5): a
JSON entry may be an object instead of a list of sentences,
``{"sentences": [...], "attributes": {group: value or [one value per frame of the video]}}``, with any
group names (e.g. ``activity``, ``tool``, ``object``, ``location``). A single value labels every frame;
a list labels each frame of the video (its length must be the video's frame count). `attribute_groups`
collects each group's values from the training files; `CaptionDataset(groups=...)` then gives the
labels of the sampled frames as ids ``(T, G)``, `NO_LABEL` where a file has no value for a group.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from vidrec.cli import UsageError
from vidrec.text import Vocabulary
from vidrec.textfiles import csv_errors, read_text, text_stream

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"}


class CaptionDataError(UsageError, ValueError):
    """A captions file or split file that cannot be used (the message names it and what to fix)."""


@dataclass
class CaptionItem:
    """One image or video (path relative to the data root), its human sentences and attribute labels
    (``{group: value or [value per frame]}``, empty when the captions file gives none)."""

    file: str
    sentences: list[str]
    attributes: dict[str, str | list[str]] = field(default_factory=dict)


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def read_captions(path: str | Path) -> list[CaptionItem]:
    """CSV with ``image,caption`` columns (one row per sentence) or JSON ``{file: [sentences]}``."""
    path = Path(path)
    if not path.is_file():
        raise CaptionDataError(f"{path}: captions file not found; give task_options.captions")
    groups: dict[str, list[str]] = {}
    attributes: dict[str, dict] = {}
    if path.suffix.lower() == ".json":
        data = json.loads(read_text(path, "captions file"))
        if not isinstance(data, dict):
            raise CaptionDataError(f"{path}: expected a JSON object {{file: [sentences]}}")
        for k, v in data.items():
            groups[str(k)], attributes[str(k)] = _json_entry(path, str(k), v)
    else:
        with (
            text_stream(path, "captions file") as fh,
            csv_errors(csv.DictReader(fh), path, "captions file") as rows,
        ):
            if not {"image", "caption"} <= set(rows.fieldnames or []):
                raise CaptionDataError(f"{path}: needs a header with columns image,caption")
            for row in rows:
                groups.setdefault(row["image"], []).append(row["caption"])
    items = [CaptionItem(f, s, attributes.get(f, {})) for f, s in sorted(groups.items()) if s]
    if not items:
        raise CaptionDataError(f"{path}: holds no captions")
    return items


def _json_entry(path: Path, file: str, entry) -> tuple[list[str], dict[str, str | list[str]]]:
    """(sentences, attributes) of one JSON entry: a list of sentences or {sentences, attributes}."""
    if isinstance(entry, list):
        return [str(s) for s in entry], {}
    shape = '[sentences] or {"sentences": [...], "attributes": {group: value or [value per frame]}}'
    if not isinstance(entry, dict) or not isinstance(entry.get("sentences"), list):
        raise CaptionDataError(f"{path}: entry {file!r} must be {shape}")
    attrs = entry.get("attributes", {})
    ok = isinstance(attrs, dict) and all(
        isinstance(g, str) and g and "." not in g and (isinstance(v, str) or _str_list(v))
        for g, v in attrs.items()
    )
    if not ok:
        raise CaptionDataError(
            f"{path}: entry {file!r}: attributes must map group names (no dots) to a value or a list of "
            "values, one per frame"
        )
    return [str(s) for s in entry["sentences"]], dict(attrs)


def _str_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, str) for x in value)


def attribute_groups(items: list[CaptionItem]) -> dict[str, list[str]]:
    """``{group: sorted values}`` seen in `items` (groups sorted by name): the attribute classifier's
    heads and the decoder input's layout."""
    seen: dict[str, set[str]] = {}
    for it in items:
        for g, v in it.attributes.items():
            seen.setdefault(g, set()).update([v] if isinstance(v, str) else v)
    return {g: sorted(seen[g]) for g in sorted(seen)}


def attribute_labels(
    item: CaptionItem, groups: dict[str, list[str]], indices: list[int], num_frames: int
) -> torch.Tensor:
    """Label ids ``(T, G)`` of the frames `indices` of `item` (a video of `num_frames` frames);
    `NO_LABEL` for a group the item does not label or a value `groups` does not know."""
    from vidrec.models.captioner import NO_LABEL

    out = torch.full((len(indices), len(groups)), NO_LABEL, dtype=torch.long)
    for g, (group, values) in enumerate(groups.items()):
        value = item.attributes.get(group)
        if value is None:
            continue
        if isinstance(value, list) and len(value) != num_frames:
            raise CaptionDataError(
                f"{item.file}: attribute {group!r} lists {len(value)} values but the file has {num_frames} "
                "frames; give one value per frame, or a single value"
            )
        per_frame = [value] * len(indices) if isinstance(value, str) else [value[i] for i in indices]
        index = {v: i for i, v in enumerate(values)}
        out[:, g] = torch.tensor([index.get(v, NO_LABEL) for v in per_frame])
    return out


def split_items(
    items: list[CaptionItem], *, split_file: str = "", val_every: int = 5
) -> tuple[list[CaptionItem], list[CaptionItem]]:
    """(train, val): by `split_file`'s ``train`` / ``val`` lists, else file index % val_every ==
    val_every - 1 (in name order) is validation; ``val_every=0``: no validation."""
    if split_file:
        split = json.loads(read_text(split_file, "split file"))
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
    "id": file}``, plus ``"attributes": ids (T, G)`` with `groups` (`attribute_labels`); a file that
    cannot be read gives None (warned, named in ``skipped``; `strict` raises).
    """

    def __init__(
        self, root: str | Path, items: list[CaptionItem], vocab: Vocabulary, *, train: bool,
        frames: int = 8, resize: int = 256, size: int = 224, max_len: int = 20, strict: bool = False,
        groups: dict[str, list[str]] | None = None,
    ) -> None:  # fmt: skip
        self.root, self.items, self.vocab, self.train = Path(root), items, vocab, train
        self.groups = groups
        self.frames, self.resize, self.size, self.max_len, self.strict = frames, resize, size, max_len, strict
        self.index = [(i, s) for i, it in enumerate(items) for s in range(len(it.sentences))] if train else [
            (i, 0) for i in range(len(items))
        ]  # fmt: skip
        self.skipped: dict[str, str] = {}
        self._digests: dict[Path, tuple[tuple[int, int], str]] = {}  # path -> ((size, mtime), sha256)

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

    def input_key(self, k: int) -> str:
        """What item `k`'s frames depend on: the file's bytes (hashed) and how frames are made of them;
        the sentences of one file share it (`vidrec.engine.feature_cache` keys the frozen features)."""
        path = self.root / self.items[self.index[k][0]].file
        look = "image" if is_image(path) else f"video frames={self.frames}"
        return f"caption {look} resize={self.resize} size={self.size} file={self._digest(path)}"

    def _digest(self, path: Path) -> str:
        """sha256 of the file's bytes, remembered while its size and modification time stay."""
        try:
            st = path.stat()
        except OSError:
            return "missing"
        stamp = (st.st_size, st.st_mtime_ns)
        known = self._digests.get(path)
        if known is None or known[0] != stamp:
            known = (stamp, hashlib.sha256(path.read_bytes()).hexdigest())
            self._digests[path] = known
        return known[1]

    def item_meta(self, k: int) -> dict:
        """Item `k` without its frames: word ids, all sentences, the file (and attribute ids with `groups`,
        which read the video's frame count)."""
        i, s = self.index[k]
        item = self.items[i]
        ids = torch.tensor(self.vocab.encode(item.sentences[s], max_len=self.max_len - 1))
        out = {"caption": ids, "refs": list(item.sentences), "id": item.file}
        if self.groups is not None:
            path = self.root / item.file
            num_frames = 1 if is_image(path) else _num_frames(path)
            indices = [0] if is_image(path) else frame_indices(num_frames, self.frames)
            out["attributes"] = attribute_labels(item, self.groups, indices, num_frames)
        return out

    def __getitem__(self, k: int) -> dict | None:
        i, s = self.index[k]
        item = self.items[i]
        path = self.root / item.file
        try:
            out = self._media(item, path)
        except Exception as err:  # a corrupt file is reported and skipped
            if self.strict:
                raise
            self.skipped[str(path)] = str(err)
            warnings.warn(f"{path}: skipped ({err})", stacklevel=2)
            return {"skipped_path": str(path)}
        ids = torch.tensor(self.vocab.encode(item.sentences[s], max_len=self.max_len - 1))
        return {**out, "caption": ids, "refs": list(item.sentences), "id": item.file}

    def _media(self, item: CaptionItem, path: Path) -> dict[str, torch.Tensor]:
        """``{"rgb": (T, 3, S, S)}``, with ``"attributes": (T, G)`` of the same frames under `groups`."""
        if self.groups is None:
            return {"rgb": load_media(path, frames=self.frames, resize=self.resize, size=self.size)}
        if is_image(path):
            rgb, indices, num_frames = load_image(path, resize=self.resize, size=self.size), [0], 1
        else:
            from vidrec.io import probe

            num_frames = probe(path).num_frames
            indices = frame_indices(num_frames, self.frames)
            rgb = load_clip(path, resize=self.resize, size=self.size, indices=indices)
        return {"rgb": rgb, "attributes": attribute_labels(item, self.groups, indices, num_frames)}


def _num_frames(path: Path) -> int:
    from vidrec.io import probe

    return probe(path).num_frames


def collate_captions(batch: list[dict]) -> dict:
    """Stack clips ``(B, T, 3, S, S)`` (and attribute ids ``(B, T, G)``), pad ids to ``(B, L)`` with <pad>;
    unreadable files in ``skipped``."""
    skipped = [b["skipped_path"] for b in batch if "skipped_path" in b]
    good = [b for b in batch if "skipped_path" not in b]
    if not good:
        return {"skipped": skipped}
    caps = torch.nn.utils.rnn.pad_sequence([b["caption"] for b in good], batch_first=True, padding_value=0)
    out = {
        "rgb": torch.stack([b["rgb"] for b in good]),
        "caption": caps,
        "refs": [b["refs"] for b in good],
        "id": [b["id"] for b in good],
        "skipped": skipped,
    }
    if "attributes" in good[0]:
        out["attributes"] = torch.stack([b["attributes"] for b in good])  # (B, T, G)
    return out
