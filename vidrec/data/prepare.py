"""Prepared copies of a dataset (`vidrec prepare`): short-GOP videos or a uint8 frame store, and how
datasets find them.

A one-off preparation makes every epoch cheaper to read:

- ``video``: each video re-encoded by `vidrec.io.dense_encode` (H.264, a keyframe every `gop` frames, no
  B-frames, optionally scaled to a short side): `<out>/<video_id>.mp4`. Lossy, a fraction of the size.
- ``frames``: each video decoded once at a short side into `<out>/<video_id>.frames.npy`, uint8
  `(N, H, W, 3)`, read memory-mapped. At the dataset's decode size (`data.resize`) the frames are exactly
  what decoding the original gives; the cost is disk (N x H x W x 3 bytes a video).

Every output is written to a temporary name and renamed, then a sidecar `<out>/<video_id>.prepared.json`
records the source's size and modification time and the frame count (or why the video failed). The
manifest `<out>/vidrec_prepared.json` lists every video of the input with its state and says whether the
copy is complete; the source root gets a small registry `<root>/.vidrec_prepared.json` naming the copy.

A `VideoDataset` pointed at the original root (``prepared="auto"``, the default) reads the registry and
uses a copy when its manifest is complete, every record of the dataset is in it with an unchanged source
file, and its short side is at least the dataset's decode size; otherwise it reads the originals and says
why once. Video ids, labels and flow lookups stay those of the originals.

Each manifest entry records its file's size (`bytes`) and a `blake2b` digest of its size, first and last
64 KiB (`file_digest`: cheap at every open, yet a swapped, replaced or truncated file changes it; a few bytes
damaged in the middle of a long file are not caught). A copy is refused when an entry's `file` lies
outside the copy's folder; a file whose size differs (when the copy is found) or whose digest differs (when
it is first opened in a process) is read from its original instead, with a warning naming it. Manifests
written before these fields existed (version 1) are still read, unchecked, with a one-line warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from vidrec.io import VideoDecodeError, VideoReader, probe
from vidrec.io.video import output_size

__all__ = [
    "FORMATS",
    "MANIFEST",
    "REGISTRY",
    "FrameStoreReader",
    "PrepareSettings",
    "PreparedCopy",
    "find_prepared",
    "is_prepared",
    "prepare_video",
    "remove_partial",
    "write_manifest",
]

FORMATS = ("video", "frames")
MANIFEST = "vidrec_prepared.json"
REGISTRY = ".vidrec_prepared.json"
VERSION = 2  # 2: `bytes` and `blake2b` per prepared file; version 1 is read without those checks
_READABLE = (1, 2)
_SAMPLE = 1 << 16  # bytes hashed at each end of a file by `file_digest` (64 KiB: ~0.1 ms an open)


@dataclass(frozen=True)
class PrepareSettings:
    """How a copy is made. `short_side` 0 keeps the size; `gop`, `crf`, `preset` apply to ``video``."""

    format: str = "video"
    short_side: int = 0
    gop: int = 8
    crf: int = 18
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.short_side < 0 or self.gop < 1:
            raise ValueError(f"short_side must be >= 0 and gop >= 1, got {self.short_side}, {self.gop}")

    def output_name(self, video_id: str) -> str:
        return f"{video_id}.mp4" if self.format == "video" else f"{video_id}.frames.npy"


def source_key(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """How a manifest names a source video: its path relative to the root, with `/`."""
    return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve())).as_posix()


def _stamp(path: str | os.PathLike) -> dict[str, int]:
    st = os.stat(path)
    return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _write_json(path: Path, data: dict) -> None:
    """Atomically: a temporary file beside `path`, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sidecar_path(out: str | os.PathLike, video_id: str) -> Path:
    return Path(out) / f"{video_id}.prepared.json"


def file_digest(path: str | os.PathLike) -> str:
    """Hex blake2b of a file's size, its first and its last 64 KiB (see the module docstring)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        h.update(f.read(_SAMPLE))
        if size > _SAMPLE:
            f.seek(max(_SAMPLE, size - _SAMPLE))
            h.update(f.read(_SAMPLE))
    return h.hexdigest()


def _file_check(path: Path) -> dict[str, int | str]:
    return {"bytes": path.stat().st_size, "blake2b": file_digest(path)}


# ----------------------------------------------------------------------------- making a copy


def prepare_video(
    src: str | os.PathLike, out: str | os.PathLike, video_id: str, settings: PrepareSettings
) -> int:
    """Prepare one video into `out` (output, then its sidecar, each atomically); returns its frame count.

    Raises:
        VideoDecodeError: the source cannot be read or the copy does not hold the same number of frames
            (the sidecar then records the failure).
    """
    out = Path(out)
    dst = out / settings.output_name(video_id)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.with_name(f".{dst.name}.part").unlink(missing_ok=True)  # left by a killed run
    stamp = _stamp(src)
    try:
        meta = probe(src)
        stamp |= {"source_height": meta.height, "source_width": meta.width}
        frames = _make(src, dst, settings, meta.num_frames)
    except VideoDecodeError as err:
        _write_json(
            sidecar_path(out, video_id), {**stamp, "failed": err.reason, "settings": asdict(settings)}
        )
        raise
    entry = {**stamp, "file": dst.name, "frames": frames, **_file_check(dst), "settings": asdict(settings)}
    _write_json(sidecar_path(out, video_id), entry)
    return frames


def remove_partial(out: str | os.PathLike, video_id: str, settings: PrepareSettings) -> None:
    """Delete the temporary files an interrupted `prepare_video` of `video_id` left in `out`."""
    for path in (Path(out) / settings.output_name(video_id), sidecar_path(out, video_id)):
        path.with_name(f".{path.name}.part").unlink(missing_ok=True)


def _make(src: str | os.PathLike, dst: Path, settings: PrepareSettings, expected: int) -> int:
    if settings.format == "frames":
        return write_frame_store(src, dst, short_side=settings.short_side or None, num_frames=expected)
    from vidrec.io.dense import dense_encode

    dense_encode(src, dst, gop=settings.gop, crf=settings.crf, preset=settings.preset,
                 short_side=settings.short_side or None)  # fmt: skip
    got = probe(dst).num_frames
    if got != expected:
        dst.unlink(missing_ok=True)
        raise VideoDecodeError(src, f"the re-encoded copy holds {got} frames, the original {expected}")
    return got


def write_frame_store(
    src: str | os.PathLike, dst: str | os.PathLike, *, short_side: int | None, num_frames: int
) -> int:
    """Decode every frame of `src` (at `short_side`) into `dst`, a uint8 `(N, H, W, 3)` `.npy`, atomically.

    Frames are written as they are decoded into a memory-mapped temporary file (a long video never sits
    in memory), which is renamed when all `num_frames` arrived.
    """
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.part")
    meta = probe(src)
    h, w = output_size(short_side, height=meta.height, width=meta.width)
    store = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(num_frames, h, w, 3))
    n = 0
    try:
        with VideoReader(src, size=short_side, threads=1) as reader:
            for n, frame in enumerate(reader, start=1):
                if n > num_frames:
                    break
                store[n - 1] = frame
        if n != num_frames:
            raise VideoDecodeError(src, f"decoded {n} frames where {num_frames} were counted")
        store.flush()
        del store
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return num_frames


def is_prepared(
    out: str | os.PathLike, video_id: str, src: str | os.PathLike, settings: PrepareSettings
) -> bool:
    """True when `out` holds a good copy of `src` made with `settings` from the source as it is now."""
    entry = _read_json(sidecar_path(out, video_id))
    if not entry or "failed" in entry or entry.get("settings") != asdict(settings):
        return False
    try:
        same = {k: entry.get(k) for k in ("source_size", "source_mtime_ns")} == _stamp(src)
    except OSError:
        return False
    file = Path(out) / Path(video_id).parent / entry["file"]
    return same and file.is_file() and _size_problem(file, entry) is None  # a truncated copy is made again


def read_manifest(out: str | os.PathLike) -> dict | None:
    return _read_json(Path(out) / MANIFEST)


def write_manifest(
    out: str | os.PathLike,
    sources: Iterable[tuple[str, str]],
    root: str | os.PathLike,
    settings: PrepareSettings,
) -> dict:
    """Gather every video's sidecar into `<out>/vidrec_prepared.json` (atomically) and return it.

    `sources` are `(source path, video id)` of the WHOLE input (all shards); the copy is complete when each
    has a sidecar (done or failed) for these settings.
    """
    out = Path(out)
    videos, pending = {}, 0
    for path, vid in sources:
        entry = _read_json(sidecar_path(out, vid))
        if not entry or entry.get("settings") != asdict(settings):
            pending += 1
            continue
        keys = ("source_size", "source_mtime_ns", "source_height", "source_width")
        item = {"id": vid, **{k: entry[k] for k in keys if k in entry}}
        if "failed" in entry:
            item["failed"] = entry["failed"]
        else:
            item |= {"file": (Path(vid).parent / entry["file"]).as_posix(), "frames": entry["frames"]}
            item |= _recorded_check(out / item["file"], entry)
        videos[source_key(path, root)] = item
    manifest = {
        "version": VERSION,
        "root": str(Path(root).resolve()),
        "settings": asdict(settings),
        "complete": pending == 0,
        "pending": pending,
        "failed": sum("failed" in v for v in videos.values()),
        "videos": videos,
    }
    _write_json(out / MANIFEST, manifest)
    return manifest


def _recorded_check(path: Path, entry: dict) -> dict:
    """The sidecar's `bytes` and `blake2b`, or (a sidecar written before they existed) the file's now."""
    if "bytes" in entry and "blake2b" in entry:
        return {"bytes": entry["bytes"], "blake2b": entry["blake2b"]}
    try:
        return _file_check(path)
    except OSError:
        return {}


def register(root: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Name the copy `out` in `<root>/.vidrec_prepared.json` so datasets on `root` find it."""
    path = Path(root) / REGISTRY
    copies = (_read_json(path) or {}).get("copies", [])
    target = str(Path(out).resolve())
    _write_json(path, {"copies": [c for c in copies if c != target] + [target]})
    return path


# ----------------------------------------------------------------------------- reading a copy


@dataclass(frozen=True)
class PreparedCopy:
    """A usable prepared copy: its format and, per source path as the caller gave it, the prepared file and
    the source's `(height, width)` (a copy read at a short side must come out at the size the original
    would: an odd width is rounded to an even one when re-encoding)."""

    folder: str
    format: str
    files: dict[str, str]
    source_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # source path -> the manifest's `blake2b`

    def verify(self, path: str) -> str | None:
        """Why the prepared file of source `path` cannot be trusted (its digest differs), or None."""
        want = self.digests.get(path)
        if want is None:
            return None
        file = self.files[path]
        try:
            st = os.stat(file)
            key = (file, st.st_size, st.st_mtime_ns, want)
            if key not in _VERIFIED:
                if file_digest(file) != want:
                    return f"{file} does not match its manifest's blake2b (damaged, replaced or swapped)"
                _VERIFIED.add(key)
        except OSError as err:
            return f"{file}: {err}"
        return None


_VERIFIED: set[tuple[str, int, int, str]] = set()  # files whose digest matched in this process


def find_prepared(
    paths: Iterable[str | os.PathLike],
    root: str | os.PathLike,
    prepared: str | os.PathLike | None = "auto",
    *,
    size: int | tuple[int, int] | None = None,
) -> PreparedCopy | None:
    """The prepared copy covering every video in `paths` (sources under `root`), or None.

    `prepared`: "auto" (the copies registered in `<root>/.vidrec_prepared.json`, frame stores first), a
    copy's folder, or None / "off". A copy that exists but cannot be used (incomplete, a source changed,
    a smaller short side than `size`) gives a warning naming the reason; "auto" then reads the originals.
    """
    if prepared in (None, "", "off"):
        return None
    if prepared == "auto":
        registry = _read_json(Path(root) / REGISTRY)
        folders = [] if registry is None else list(registry.get("copies", []))
    else:
        folders = [str(prepared)]
    paths = list(paths)
    reasons = []
    candidates = [(f, read_manifest(f)) for f in folders]
    candidates.sort(key=lambda fm: (fm[1] or {}).get("settings", {}).get("format") != "frames")
    for folder, manifest in candidates:
        reason = _unusable(manifest, size) if manifest else "no manifest (was `vidrec prepare` run there?)"
        copy = None if reason else _match(folder, manifest, paths, root)
        if isinstance(copy, PreparedCopy):
            return copy
        reasons.append(f"{folder}: {reason or copy}")
    if reasons:
        warnings.warn(
            "not using the prepared copy ("
            + "; ".join(reasons)
            + "); reading the original videos. Run `vidrec prepare` again to bring it up to date.",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


def _unusable(manifest: dict, size: int | tuple[int, int] | None) -> str | None:
    if manifest.get("version") not in _READABLE:
        return f"manifest version {manifest.get('version')} is not one of {_READABLE}"
    if not manifest.get("complete"):
        return f"incomplete: {manifest.get('pending')} videos still to prepare"
    short = int(manifest["settings"].get("short_side", 0))
    want = None if size is None else (size if isinstance(size, int) else min(size))
    if short and (want is None or want > short):
        return f"prepared at short side {short}, the dataset decodes at {size or 'native size'}"
    return None


def _match(folder: str, manifest: dict, paths: list, root) -> PreparedCopy | str:
    videos, files, sizes, digests, damaged = manifest["videos"], {}, {}, {}, []
    inside = Path(folder).resolve()
    for path in paths:
        key = source_key(Path(root) / path, root)
        entry = videos.get(key)
        if entry is None:
            return f"{key} is not in it"
        try:
            stamp = _stamp(Path(root) / path)
        except OSError:
            continue  # a missing source is the dataset's to report
        if {k: entry[k] for k in stamp} != stamp:
            return f"{key} changed after it was prepared"
        if "failed" in entry:  # a video that failed to prepare is read from the original
            continue
        file = Path(folder) / entry["file"]
        if not file.resolve().is_relative_to(inside):
            return (
                f"the entry of {key} names {entry['file']!r}, outside the copy: refused (an edited manifest?)"
            )
        problem = _size_problem(file, entry)
        if problem:
            damaged.append(problem)
            continue
        files[str(path)] = str(file)
        sizes[str(path)] = (entry["source_height"], entry["source_width"])
        if "blake2b" in entry:
            digests[str(path)] = entry["blake2b"]
    _warn_unchecked(folder, manifest, damaged)
    return PreparedCopy(str(folder), manifest["settings"]["format"], files, sizes, digests)


def _size_problem(file: Path, entry: dict) -> str | None:
    """Why `file` is not the one the manifest entry recorded (missing, or another size), or None."""
    try:
        size = file.stat().st_size
    except OSError:
        return f"{file} is missing"
    want = entry.get("bytes")
    return f"{file} holds {size} bytes, its manifest says {want}" if want not in (None, size) else None


def _warn_unchecked(folder: str, manifest: dict, damaged: list[str]) -> None:
    if damaged:
        warnings.warn(
            f"prepared copy {folder}: {len(damaged)} damaged file(s), read from their originals instead: "
            f"{'; '.join(damaged[:3])}; delete them and run `vidrec prepare` again",
            RuntimeWarning,
            stacklevel=4,
        )
    if manifest.get("version") == 1:
        warnings.warn(
            f"prepared copy {folder}: its manifest predates size and hash checks (version 1), so its files "
            "are used unchecked; run `vidrec prepare` again to add them",
            RuntimeWarning,
            stacklevel=4,
        )


class FrameStoreReader:
    """Frames of a `.frames.npy` store, memory-mapped: `len()`, `get_frames(indices) -> (N, H, W, 3)`.

    `size` (an int short side or `(H, W)`) resizes like the dataset's frame-folder reader (bilinear,
    antialiased) when it differs from the stored size; at the stored size frames come back as stored.
    """

    def __init__(self, path: str | os.PathLike, *, size: int | tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        try:
            self.frames = np.load(self.path, mmap_mode="r")  # (N, H, W, 3) uint8
        except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
            raise VideoDecodeError(self.path, f"unreadable frame store ({err})") from err
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            found = f"{self.frames.dtype} {self.frames.shape}"
            raise VideoDecodeError(
                self.path, f"not a frame store uint8 (N, H, W, 3): {found}; prepare it again"
            )
        _, h, w, _ = self.frames.shape
        self.size = output_size(size, height=h, width=w)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __enter__(self) -> FrameStoreReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.frames = None

    def get_frames(self, indices) -> np.ndarray:
        idx = np.asarray(list(indices), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise VideoDecodeError(self.path, f"frame indices {idx.tolist()} outside 0..{len(self) - 1}")
        frames = np.ascontiguousarray(self.frames[idx])  # (N, H, W, 3)
        if self.size == frames.shape[1:3]:
            return frames
        return resize_frames(frames, self.size)


def resize_frames(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """uint8 `(N, H, W, 3)` resized to `hw` (bilinear, antialiased, rounded)."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x.float(), size=tuple(hw), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
