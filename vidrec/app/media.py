"""What `vidrec app` accepts from a visitor: one video or image, under a size limit, that vidrec decodes.

Uploads are copied into the visitor's own temporary folder under a name the app chooses (only the
extension of the sent name is kept), so nothing is ever written beside the user's files.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vidrec.cli import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class UploadError(UsageError):
    """An upload the app refuses; `status` is the HTTP status the JSON API answers with."""

    status = 415


class UploadTooLarge(UploadError):
    status = 413


@dataclass(frozen=True)
class Media:
    """An accepted upload: its file in the visitor's folder and whether it is a ``video`` or an ``image``."""

    path: Path
    kind: str


def safe_suffix(name: str) -> str:
    """The lower-case extension of a sent file name when it is a plain one (``.mp4``), else ``""``."""
    suffix = Path(name or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def copy_upload(source: BinaryIO, folder: Path, name: str, *, max_bytes: int) -> Path:
    """Copy an uploaded stream into `folder` as ``upload<ext>``, stopping (and deleting the copy) as soon
    as it passes `max_bytes`."""
    path = folder / f"upload{safe_suffix(name)}"
    copied = 0
    with open(path, "wb") as out:
        while chunk := source.read(1 << 20):
            copied += len(chunk)
            if copied > max_bytes:
                break
            out.write(chunk)
    if copied > max_bytes:
        path.unlink()
        raise UploadTooLarge(f"upload {name!r} is larger than the {_mb(max_bytes)} limit; send a shorter "
                             "or smaller file (the server's --max-upload-mb sets the limit)")  # fmt: skip
    return path


def accept(path: str | Path, folder: Path, *, max_bytes: int, name: str = "") -> Media:
    """Check an uploaded file (size, decodable as a video or an image) and copy it into `folder`
    (``upload<ext>``), unless it is there already.

    Raises:
        UploadTooLarge: over `max_bytes`.
        UploadError: empty, or neither a video nor an image vidrec can decode (the reason says which).
    """
    path, name = Path(path), name or Path(path).name
    size = path.stat().st_size
    if size > max_bytes:
        raise UploadTooLarge(
            f"upload {name!r} is {_mb(size)}, over the {_mb(max_bytes)} limit; send a shorter or smaller "
            "file (the server's --max-upload-mb sets the limit)"
        )
    if size == 0:
        raise UploadError(f"upload {name!r} is empty; send a video or an image")
    if path.parent != folder:
        path = Path(shutil.copyfile(path, folder / f"upload{safe_suffix(name)}"))
    return Media(path, check_decodable(path, name))


def check_decodable(path: Path, name: str) -> str:
    """``"image"`` or ``"video"`` when vidrec decodes `path` (an image with PIL, a video's first frame with
    PyAV); else UploadError naming the upload and why."""
    from PIL import Image, UnidentifiedImageError

    from vidrec.io import VideoDecodeError, probe, read_frames

    if path.suffix in IMAGE_SUFFIXES:
        try:
            with Image.open(path) as img:
                img.convert("RGB").load()
            return "image"
        except (UnidentifiedImageError, OSError) as err:
            raise UploadError(f"upload {name!r} is not an image vidrec can read ({err}); send a .jpg or "
                              ".png, or a video") from None  # fmt: skip
    try:
        meta = probe(path)
        read_frames(path, [0])
    except (VideoDecodeError, OSError, ValueError) as err:
        raise UploadError(f"upload {name!r} is not a video vidrec can decode ({_short(err)}); send an "
                          ".mp4, .avi, .mkv, .webm or .mov video, or an image") from None  # fmt: skip
    if meta.num_frames < 1:
        raise UploadError(f"upload {name!r} holds no video frames; send a video or an image")
    return "video"


def still_video(image: Path, out: Path, *, frames: int, fps: float = 8.0) -> Path:
    """`image` as a video of `frames` identical frames (even-sized), for models that read clips."""
    from PIL import Image

    from vidrec.io import write_video

    with Image.open(image) as img:
        rgb = np.asarray(img.convert("RGB"))
    rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]  # H.264 in yuv420p needs even sides
    return write_video(out, np.repeat(rgb[None], max(frames, 1), axis=0), fps)


def make_samples(folder: Path, *, frames: int = 24, size: int = 64) -> dict[str, Path]:
    """One generated clip per class of the demo's synthetic dataset (`vidrec.data.synthetic`), the
    "bundled samples" a visitor can pick: ``{class name: video}``."""
    from vidrec.data.synthetic import CLASSES, make_clip
    from vidrec.io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    return {name: write_video(folder / f"{name}.mp4", make_clip(name, rng, frames=frames, size=size), 8.0)
            for name in CLASSES}  # fmt: skip


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _short(err: BaseException) -> str:
    """The reason of a decoding error without the app's own path (the visitor knows the file by its name)."""
    text = " ".join(str(getattr(err, "reason", err)).split())
    return text if len(text) <= 160 else text[:157] + "..."
