"""DAVIS-2016: video object segmentation sequences with a binary foreground mask on every frame.

Layout (Perazzi et al., CVPR'16)::

    ROOT/JPEGImages/480p/<sequence>/00000.jpg ...
    ROOT/Annotations/480p/<sequence>/00000.png ...   (0 = background, anything else = foreground)

Items are dicts like every vidrec dataset's:
- `DavisFrames` (per-frame training and evaluation): ``image`` uint8 (3, H, W) RGB, ``mask`` int64 (H, W)
  in {0, 1}, ``sequence`` and ``index``;
- `DavisPairs` (Deep Feature Flow training, methods.md 4.5): the annotated frame i as above plus
  ``key_image`` uint8 (3, H, W), the frame k = i - U{0..max_offset} clipped to the sequence start, and
  ``offset`` = i - k (0 means the key frame is the current frame: its features are used unwarped).

The split of the 14 sequences in ``../shared/data/davis2016`` is fixed here (`TRAIN_SEQUENCES` /
`VAL_SEQUENCES`: the names sorted, every fourth from the second to validation); any other DAVIS-layout
folder is read with an explicit sequence list (`read_sequence_list`). Missing folders, empty sequences,
frames without a mask and unreadable files raise `DavisError` naming the path, as do masks that are not
binary (0/255 or 0/1) or not the size of their frame; the datasets skip such an item (`SkippedItem`).

Scored as DAVIS scores (evaluation): frames at any working size, masks as stored (``native_masks``), and
each sequence's first and last frame left out (``skip_ends``, `scored_frames`).

Training augmentation (`Augment`, torchvision ``transforms.v2`` on the image and its mask together): a
random scale of the working size, a random crop (padded where the scaled frame is smaller; padded mask
pixels hold `IGNORE`, which the loss skips), a horizontal flip, and colour jitter of the image only;
optionally (`paste_object`) the annotated object of another training sequence pasted onto the frame first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from vidrec.cli import UsageError
from vidrec.data.dataset import SkippedItem, collate_skip

IMAGES = Path("JPEGImages/480p")
MASKS = Path("Annotations/480p")
IGNORE = 255  # mask value of pixels padded in by a crop: not scored by the training loss

# The 14 DAVIS-2016 val sequences in ../shared/data/davis2016, sorted; index % 4 == 1 -> our validation.
ALL_SEQUENCES = (
    "bmx-trees", "breakdance", "camel", "car-roundabout", "car-shadow", "cows", "dance-twirl",
    "drift-chicane", "goat", "horsejump-high", "libby", "motocross-jump", "paragliding-launch",
    "scooter-black",
)  # fmt: skip
VAL_SEQUENCES = tuple(s for i, s in enumerate(ALL_SEQUENCES) if i % 4 == 1)
TRAIN_SEQUENCES = tuple(s for s in ALL_SEQUENCES if s not in VAL_SEQUENCES)
# The project's 4-fold cross-validation of the 14 (benchmarks/segment_davis.py --train-folds): each fold is
# held out by one run trained on the other sequences. The fixed split's validation, the leave-other-out four
# (held out since before the cross-validation), and the remaining six in two, alternately by name.
CV_FOLDS = {
    "segment_davis": VAL_SEQUENCES,
    "segment_davis_loo": ("bmx-trees", "car-roundabout", "drift-chicane", "motocross-jump"),
    "cv_c": ("camel", "dance-twirl", "libby"),
    "cv_d": ("car-shadow", "goat", "paragliding-launch"),
}


class DavisError(UsageError, ValueError):
    """A DAVIS folder, sequence or file is missing or unreadable; the message names the path."""


@dataclass(frozen=True)
class Sequence:
    """One sequence: its frames and their masks, in frame order (same length)."""

    name: str
    frames: tuple[Path, ...]
    masks: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.frames)


def split_names(split: str) -> tuple[str, ...]:
    """The fixed sequence names of ``split`` (train / val / all) of ../shared/data/davis2016."""
    names = {"train": TRAIN_SEQUENCES, "val": VAL_SEQUENCES, "all": ALL_SEQUENCES}
    if split not in names:
        raise DavisError(f"split: unknown DAVIS split {split!r}; choose one of {sorted(names)}")
    return names[split]


def read_sequence_list(path: str | Path) -> tuple[str, ...]:
    """Sequence names from a text file, one per line (blank lines and ``#`` comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DavisError(f"{path}: sequence list not found; give a text file with one sequence name a line")
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    names = tuple(line for line in lines if line)
    if not names:
        raise DavisError(f"{path}: the sequence list names no sequence")
    return names


def find_sequences(root: str | Path, names: tuple[str, ...] | list[str] = ()) -> list[Sequence]:
    """The sequences `names` (default: every folder under ROOT/JPEGImages/480p) of a DAVIS-layout root.

    Raises `DavisError` naming the path when the root, a sequence folder or a frame's mask is missing.
    """
    root = Path(root)
    if not (root / IMAGES).is_dir():
        raise DavisError(
            f"{root}: not a DAVIS folder ({IMAGES}/ is missing); it must hold {IMAGES}/<seq>/*.jpg "
            f"and {MASKS}/<seq>/*.png"
        )
    names = list(names) or sorted(p.name for p in (root / IMAGES).iterdir() if p.is_dir())
    return [_sequence(root, name) for name in names]


def _sequence(root: Path, name: str) -> Sequence:
    frame_dir, mask_dir = root / IMAGES / name, root / MASKS / name
    for folder in (frame_dir, mask_dir):
        if not folder.is_dir():
            raise DavisError(f"{folder}: sequence folder not found; check the root and the sequence name")
    frames = sorted(frame_dir.glob("*.jpg"))
    if not frames:
        raise DavisError(f"{frame_dir}: no .jpg frames in this sequence folder")
    masks = tuple(mask_dir / f"{f.stem}.png" for f in frames)
    absent = [m for m in masks if not m.is_file()]
    if absent:
        raise DavisError(
            f"{absent[0]}: mask not found ({len(absent)} of {len(frames)} frames of {name} lack one)"
        )
    return Sequence(name, tuple(frames), masks)


def read_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a JPEG, resized to ``size = (H, W)`` (area / bilinear) when given."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DavisError(f"{path}: cannot read this image (missing or corrupt)")
    return resize_image(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size)


def resize_image(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """`img` (H, W, 3) resized to ``size = (H, W)`` (area when shrinking, else bilinear); None keeps it."""
    if size is not None and img.shape[:2] != tuple(size):
        shrink = size[0] < img.shape[0]
        img = cv2.resize(
            img, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return img


def read_mask(
    path: Path, size: tuple[int, int] | None = None, *, frame_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Binary foreground int64 (H, W) of a DAVIS annotation (nonzero = foreground), nearest-resized.

    The PNG must hold 0 and 255 (or 0 and 1) only, and, given `frame_shape` (its frame's (H, W) as
    stored), be that size; otherwise `DavisError` names it.
    """
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DavisError(f"{path}: cannot read this mask (missing or corrupt PNG)")
    if frame_shape is not None and mask.shape != tuple(frame_shape):
        (h, w), (fh, fw) = mask.shape, frame_shape
        raise DavisError(f"{path}: mask of {h}x{w} for a frame of {fh}x{fw}; a mask must be its frame's size")
    top = 255 if mask.max() > 1 else 1
    if ((mask != 0) & (mask != top)).any():
        values = np.unique(mask).tolist()
        shown = f"{values[:6]}{'...' if len(values) > 6 else ''}"
        raise DavisError(
            f"{path}: mask is not binary (values {shown}); DAVIS-2016 masks hold 0 and 255 (or 0 and 1)"
        )
    if size is not None and mask.shape != tuple(size):
        mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return (mask > 0).astype(np.int64)


def scored_frames(length: int, skip_ends: bool = True) -> range:
    """The frame indices DAVIS scores in a sequence of `length` frames: all but the first and the last
    (the 2016 toolkit's evaluation), or every frame when not `skip_ends`."""
    return range(1, length - 1) if skip_ends else range(length)


def collate_davis(batch: list[dict | SkippedItem]) -> dict:
    """`vidrec.data.collate_skip`, except that native masks of different sizes (sequences of a folder
    stored at several sizes, as in DAVIS-2017) stay a list of (H0, W0) tensors instead of one tensor."""
    good = [b for b in batch if isinstance(b, dict)]
    if len({tuple(b["mask"].shape) for b in good}) <= 1:
        return collate_skip(batch)
    out = collate_skip(
        [{k: v for k, v in b.items() if k != "mask"} if isinstance(b, dict) else b for b in batch]
    )
    out["mask"] = [b["mask"] for b in good]
    return out


class Augment:
    """Random scale, crop, flip and colour jitter of a training frame and its mask, applied alike.

    The scale is a resize with OpenCV (area or bilinear; nearest for the mask), cheaper than v2 on 480p;
    crop, flip and colour jitter are torchvision ``transforms.v2`` on the image and its mask together.

    Args:
        size: the working size (H, W) a scale of 1 means (the frame is resized to ``size x scale``).
        scale: (low, high) of the uniform random scale.
        crop: (H, W) of the random crop; pixels the scaled frame does not cover are padded (image 0,
            mask `IGNORE`).
        flip: random horizontal flip (p = 0.5).
        color: strength of the brightness, contrast and saturation jitter; 0 = none (hue is left
            alone: it costs more than the rest of the item).
    """

    def __init__(
        self,
        size: tuple[int, int],
        *,
        scale: tuple[float, float] = (1.0, 1.0),
        crop: tuple[int, int] | None = None,
        flip: bool = True,
        color: float = 0.0,
    ) -> None:
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale: must be 0 < low <= high, got {scale}")
        self.size, self.scale = tuple(size), tuple(scale)
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}
        steps: list[v2.Transform] = [v2.RandomCrop(tuple(crop or size), pad_if_needed=True, fill=fill)]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        if color > 0:  # images only: v2 leaves Mask tensors alone
            steps.append(v2.ColorJitter(brightness=color, contrast=color, saturation=color))
        self.transform = v2.Compose(steps)

    def __call__(
        self, img: np.ndarray, mask: np.ndarray, others: tuple[np.ndarray, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB uint8 (H, W, 3) and mask (H, W) at any size -> uint8 (3, h, w) and int64 (h, w).

        `others`: more frames of the same size (the neighbours, `vidrec.models.motion`) given the same
        scale, crop, flip and colour change; the image is then all of them stacked, (3 + 3n, h, w).
        """
        s = float(torch.empty(()).uniform_(*self.scale))
        h, w = max(1, round(self.size[0] * s)), max(1, round(self.size[1] * s))
        frames = [tv_tensors.Image(_chw(resize_image(f, (h, w)))) for f in (img, *others)]
        # pixel centres, as the area / bilinear resize of the image (INTER_NEAREST samples corners)
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        target = tv_tensors.Mask(torch.from_numpy(mask))
        *frames, target = self.transform(*frames, target)  # v2 draws one set of parameters per call
        image = torch.cat([f.as_subclass(torch.Tensor) for f in frames])
        return image, target.as_subclass(torch.Tensor).long()


def _chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))  # (C, H, W) uint8


def _stack(img: np.ndarray, others: tuple[np.ndarray, ...]) -> np.ndarray:
    """(H, W, 3) and n more of its size -> (H, W, 3 + 3n): the frames stacked on the channels."""
    return np.concatenate([img, *others], axis=2) if others else img


def paste_object(
    frames: list[np.ndarray],
    mask: np.ndarray,
    donor_frames: list[np.ndarray],
    donor_masks: list[np.ndarray],
    *,
    scale: tuple[float, float] = (0.5, 1.0),
    feather: int = 5,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Copy-paste augmentation: the annotated object of another sequence pasted onto a frame and its
    neighbours.

    `frames` (the frame, then its neighbours; RGB uint8 (H, W, 3), one size) and `mask` (H, W) of the frame;
    `donor_frames` / `donor_masks` the same of another sequence's frame (any one size). One random scale of
    `scale`, horizontal flip and shift place the donor's frames and masks on the frame's canvas (the shift
    keeps the centre of the donor object's box on it); each donor mask, its edge blurred over `feather` px,
    is the alpha that blends its frame in, so the pasted object moves across the neighbours as it moved in
    its own video (against this video's background and camera: what the motion cue looks for). Returns the
    new frames and the mask of the frame: its own object and the pasted one (their union; DAVIS-2016's
    foreground is the moving object, and two are pasted together only in training).
    """
    h, w = mask.shape
    dh, dw = donor_masks[0].shape
    ys, xs = np.nonzero(donor_masks[0])
    if len(ys) == 0:  # no object to paste
        return frames, mask
    s = float(torch.empty(()).uniform_(*scale)) * min(h / dh, w / dw)
    flip = bool(torch.rand(()) < 0.5)
    cy, cx = (ys.min() + ys.max()) / 2 * s, (xs.min() + xs.max()) / 2 * s
    if flip:
        cx = (dw - 1) * s - cx
    ty = float(torch.empty(()).uniform_(0, h)) - cy  # the box centre lands anywhere on the canvas
    tx = float(torch.empty(()).uniform_(0, w)) - cx
    sx = -s if flip else s
    m = np.array([[sx, 0.0, tx + ((dw - 1) * s if flip else 0.0)], [0.0, s, ty]], np.float32)

    def place(img: np.ndarray, interp: int) -> np.ndarray:
        return cv2.warpAffine(img, m, (w, h), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    out = []
    pasted = None
    for frame, dframe, dmask in zip(frames, donor_frames, donor_masks, strict=True):
        alpha = place(dmask.astype(np.float32), cv2.INTER_LINEAR)
        if pasted is None:
            pasted = alpha > 0.5  # the frame's own: the first of the list
        if feather > 1:
            k = feather | 1
            alpha = cv2.GaussianBlur(alpha, (k, k), 0) * (alpha > 0)
        alpha = alpha[..., None]
        blended = frame.astype(np.float32) * (1 - alpha) + place(dframe, cv2.INTER_LINEAR) * alpha
        out.append(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
    keep = mask == IGNORE
    new_mask = np.where(pasted, 1, mask).astype(mask.dtype)
    new_mask[keep & ~pasted] = IGNORE
    return out, new_mask


class DavisFrames(Dataset):
    """Every frame of `sequences` with its mask (see the module docstring for the item).

    Args:
        sequences: from `find_sequences`.
        size: (H, W) every frame and mask is resized to; None keeps 480p.
        native_masks: keep masks as stored (only frames are resized): DAVIS scores predictions upsampled
            to the native mask size (evaluation).
        skip_ends: leave out each sequence's first and last frame, as the DAVIS-2016 toolkit does when
            scoring (evaluation; a sequence of 2 frames or fewer then gives none).
        flip: random horizontal flip (training).
        strict: raise on an unreadable frame or mask instead of returning a `SkippedItem` (which
            `vidrec.data.collate_skip` drops and reports by path).
        augment: training augmentation (scale, crop, flip, colour) in place of ``size`` and ``flip``:
            frames and masks are read as stored and given to it.
        neighbours: ``image`` is the frame with its previous and next one stacked, uint8 (9, H, W)
            (`vidrec.models.motion.neighbour_indices`), all resized, cropped and flipped alike.
        paste: with `augment`, the probability that an item first gets the object of a random frame of
            another of `sequences` pasted onto it and its neighbours (`paste_object`; 0: never).
    """

    def __init__(
        self,
        sequences: list[Sequence],
        *,
        size: tuple[int, int] | None = None,
        native_masks: bool = False,
        skip_ends: bool = False,
        flip: bool = False,
        strict: bool = False,
        augment: Augment | None = None,
        neighbours: bool = False,
        paste: float = 0.0,
    ) -> None:
        if not 0.0 <= paste <= 1.0:
            raise ValueError(f"paste: a probability in [0, 1], got {paste}")
        self.sequences, self.size, self.flip, self.strict = list(sequences), size, flip, strict
        self.augment, self.neighbours, self.paste = augment, neighbours, paste
        self.mask_size = None if native_masks else size
        self.index = [
            (s, i) for s, seq in enumerate(self.sequences) for i in scored_frames(len(seq), skip_ends)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def _flip(self) -> bool:
        return self.flip and bool(torch.rand(()) < 0.5)

    def __getitem__(self, idx: int) -> dict | SkippedItem:
        """The item of `idx`, or a `SkippedItem` naming an unreadable file (raised when `strict`)."""
        try:
            return self._item(*self.index[idx])
        except DavisError as err:
            if self.strict:
                raise
            return SkippedItem(str(err).split(":")[0], str(err))

    def _others(self, seq: Sequence, i: int, size: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
        """The neighbours of frame `i` when `neighbours` (read at `size`), else none."""
        if not self.neighbours:
            return ()
        from vidrec.models.motion import neighbour_indices

        return tuple(read_image(seq.frames[j], size) for j in neighbour_indices(i, len(seq)))

    def _pasted(self, frames: list[np.ndarray], mask: np.ndarray, s: int) -> list:
        """`paste_object` of a random frame of another sequence than `s` onto `frames` (the frame and its
        neighbours) -> [(frame, mask), *neighbours]. A donor that cannot be read leaves them as they are
        (it is reported when it is an item itself)."""
        while True:
            d, j = self.index[int(torch.randint(len(self.index), ()))]
            if d != s:
                break
        donor = self.sequences[d]
        order = [j]
        if self.neighbours:
            from vidrec.models.motion import neighbour_indices

            order += list(neighbour_indices(j, len(donor)))
        try:
            dframes = [read_image(donor.frames[k]) for k in order]
            dmasks = [read_mask(donor.masks[k], frame_shape=dframes[0].shape[:2]) for k in order]
        except DavisError:
            return [(frames[0], mask), *frames[1:]]
        out, mask = paste_object(frames, mask, dframes, dmasks)
        return [(out[0], mask), *out[1:]]

    def _item(self, s: int, i: int) -> dict:
        seq = self.sequences[s]
        img = read_image(seq.frames[i])  # as stored: its mask must be this size
        if self.augment is not None:
            mask = read_mask(seq.masks[i], frame_shape=img.shape[:2])
            others = tuple(resize_image(o, img.shape[:2]) for o in self._others(seq, i, None))
            if self.paste > 0 and len(self.sequences) > 1 and float(torch.rand(())) < self.paste:
                img, *others = self._pasted([img, *others], mask, s)
                img, mask, others = img[0], img[1], tuple(others)
            image, mask = self.augment(img, mask, others)
            return {"image": image, "mask": mask, "sequence": seq.name, "index": i}
        mask = read_mask(seq.masks[i], self.mask_size, frame_shape=img.shape[:2])
        img = _stack(resize_image(img, self.size), self._others(seq, i, self.size or img.shape[:2]))
        if self._flip():
            img, mask = img[:, ::-1], mask[:, ::-1]
        return {"image": _chw(img), "mask": torch.from_numpy(mask.copy()), "sequence": seq.name, "index": i}


class DavisPairs(DavisFrames):
    """(key, current) pairs for DFF training: the key is 0..`max_offset` frames before the current one
    (uniform, clipped to the first frame), the loss is on the current frame (methods.md 4.5). With
    ``neighbours`` the key image is stacked with its own neighbours (it runs the feature net)."""

    def __init__(
        self,
        sequences: list[Sequence],
        *,
        max_offset: int = 9,
        size: tuple[int, int] | None = None,
        native_masks: bool = False,
        skip_ends: bool = False,
        flip: bool = False,
        strict: bool = False,
        neighbours: bool = False,
    ) -> None:
        if max_offset < 0:
            raise DavisError(f"max_offset: must be >= 0, got {max_offset}")
        super().__init__(
            sequences,
            size=size,
            native_masks=native_masks,
            skip_ends=skip_ends,
            flip=flip,
            strict=strict,
            neighbours=neighbours,
        )
        self.max_offset = max_offset

    def _item(self, s: int, i: int) -> dict:
        seq = self.sequences[s]
        k = max(0, i - int(torch.randint(0, self.max_offset + 1, ())))
        img, key = read_image(seq.frames[i]), read_image(seq.frames[k], self.size)
        mask = read_mask(seq.masks[i], self.mask_size, frame_shape=img.shape[:2])
        key = _stack(key, self._others(seq, k, key.shape[:2]))  # the key frame runs the feature net
        img = resize_image(img, self.size)  # the current frame feeds only the flow net: its RGB
        if self._flip():
            img, key, mask = img[:, ::-1], key[:, ::-1], mask[:, ::-1]
        return {
            "image": _chw(img),
            "key_image": _chw(key),
            "mask": torch.from_numpy(mask.copy()),
            "offset": i - k,
            "sequence": seq.name,
            "index": i,
        }
