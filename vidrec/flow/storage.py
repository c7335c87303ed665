"""Per-video flow stores, their metadata, lookup under a flow root, and `flow_video`.

Three stores hold the same uint8 codes `(N-1, H, W, 2)` (flow from frame i to i+1, x then y, `quantize`d
with `bound`), each beside `<id>.flow.json`:

- ``ffv1`` (the default): `<id>.flow.mkv`, a lossless FFV1 video in Matroska whose frame i is flow i with
  the x plane above the y plane (gray8, `(2H, W)`), every frame a keyframe. About 15x smaller than `.npy`
  on real flow and bit-exact, so the only error is the quantisation's `bound / 255` px.
- ``npy``: `<id>.flow.npy`, the raw array (memory-mapped when read).
- ``denseflow``: a folder `<id>/x_00001.jpg, y_00001.jpg, ...` (lossy JPEG, the layout other tools read).

Writes are atomic: data goes to a temp name that `os.replace` renames, and the JSON is written last, so
an output is complete exactly when its JSON exists and describes the data beside it. The JSON keeps the
quantisation parameters (`bound`, `bits`) with the video, so readers never guess them.

Damaged outputs (an empty or truncated `.flow.mkv` or `.flow.npy`, a JSON that does not parse or lacks
`num_frames`) raise `vidrec.io.VideoDecodeError` naming the file, which datasets report and skip like a
bad video.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from vidrec.flow.estimators import FlowEstimator
from vidrec.flow.quantize import DEFAULT_BOUND, quantize
from vidrec.io.errors import VideoDecodeError

__all__ = [
    "DEFAULT_FORMAT",
    "FORMATS",
    "FORMAT_VERSION",
    "find_flow",
    "flow_meta",
    "flow_paths",
    "flow_video",
    "is_complete",
    "load_flow",
    "num_flow_frames",
    "remove_stale_temps",
    "save_flow",
    "save_flow_denseflow",
]

FORMAT_VERSION = 2  # 2: `format`, `bits` and (ffv1) `bytes` in the JSON; version-1 files still read
FORMATS = ("ffv1", "npy", "denseflow")
DEFAULT_FORMAT = "ffv1"
_SUFFIX = {"ffv1": ".flow.mkv", "npy": ".flow.npy"}
_FFV1_OPTIONS = {"g": "1"}  # every frame a keyframe (random access); Golomb-Rice coder (fast)
_DENSEFLOW_FIRST = ("x_00001.jpg", "flow_x_00001.jpg")


def flow_paths(out: str | os.PathLike, video_id: str, fmt: str = "npy") -> tuple[Path, Path]:
    """`(<out>/<video_id>.flow.npy or .flow.mkv, <out>/<video_id>.flow.json)`; `fmt`: "npy" or "ffv1"."""
    base = Path(out) / video_id
    return base.with_name(base.name + _SUFFIX[fmt]), base.with_name(base.name + ".flow.json")


def _base(path: str | os.PathLike) -> Path:
    """Accept `<id>.flow.npy`, `<id>.flow.mkv`, `<id>.flow.json` or `<id>` and return `<id>`."""
    path = Path(path)
    for suffix in (*_SUFFIX.values(), ".flow.json"):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def _json_path(base: Path) -> Path:
    return base.with_name(base.name + ".flow.json")


def _tmp(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def _atomic_json(path: Path, meta: dict) -> None:
    tmp = _tmp(path)
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _meta(q: np.ndarray, *, bound: float, method: str, fps: float, fmt: str) -> dict:
    n, h, w = q.shape[:3]
    return {"bound": float(bound), "bits": 8, "method": method, "height": h, "width": w, "num_frames": n + 1,
            "fps": float(fps), "version": FORMAT_VERSION, "format": fmt}  # fmt: skip


def _check_codes(q: np.ndarray, video_id: str) -> None:
    if q.dtype != np.uint8 or q.ndim != 4 or q.shape[-1] != 2 or not len(q):
        raise ValueError(f"flow for {video_id!r} must be uint8 (N-1, H, W, 2), got {q.dtype} {q.shape}")


def save_flow(
    out: str | os.PathLike,
    video_id: str,
    q: np.ndarray,
    *,
    bound: float,
    method: str,
    fps: float,
    format: str = DEFAULT_FORMAT,  # noqa: A002 - the CLI's --format
) -> Path:
    """Atomically write quantised flow `q` uint8 `(N-1, H, W, 2)` in `format` and then its JSON.

    Returns the data path (`.flow.mkv`, `.flow.npy` or the denseflow folder).
    """
    if format == "denseflow":
        return save_flow_denseflow(out, video_id, q, bound=bound, method=method, fps=fps)
    if format not in _SUFFIX:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    _check_codes(q, video_id)
    data, js = flow_paths(out, video_id, format)
    data.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(data)
    if format == "npy":
        with open(tmp, "wb") as f:
            np.save(f, q)
    else:
        _write_ffv1(tmp, q, fps)
    os.replace(tmp, data)
    meta = _meta(q, bound=bound, method=method, fps=fps, fmt=format)
    if format == "ffv1":
        meta["bytes"] = data.stat().st_size
    _atomic_json(js, meta)
    return data


def _write_ffv1(path: Path, q: np.ndarray, fps: float) -> None:
    """FFV1 gray8 frames `(2H, W)`: flow i's x plane over its y plane."""
    import av

    rate = Fraction(fps).limit_denominator(1001) if 0 < fps < 1000 else Fraction(25)
    n, h, w = q.shape[:3]
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, 2 * h, "gray"
        stream.options = dict(_FFV1_OPTIONS)
        stream.codec_context.thread_count = 1
        for frame in q:
            planes = np.ascontiguousarray(frame.transpose(2, 0, 1).reshape(2 * h, w))  # (2H, W)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="gray")))
        container.mux(stream.encode())


def save_flow_denseflow(
    out: str | os.PathLike, video_id: str, q: np.ndarray, *, bound: float, method: str, fps: float
) -> Path:
    """Write `q` as denseflow's `<out>/<video_id>/x_00001.jpg`, `y_00001.jpg`, ... (then the JSON beside it).

    The folder is filled under a temp name and renamed into place. JPEG is lossy: read back codes differ
    from `q` by a few levels, exactly as with denseflow's own output.
    """
    _check_codes(q, video_id)
    folder = Path(out) / video_id
    tmp = _tmp(folder)
    tmp.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(q, start=1):
        for axis, name in enumerate(("x", "y")):
            path = tmp / f"{name}_{i:05d}.jpg"
            if not cv2.imwrite(str(path), np.ascontiguousarray(frame[..., axis])):
                raise OSError(f"could not write {path} (disk full or not writable?)")
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)
    _atomic_json(flow_paths(out, video_id)[1], _meta(q, bound=bound, method=method, fps=fps, fmt="denseflow"))
    return folder


def flow_meta(path: str | os.PathLike) -> dict:
    """The JSON beside a flow output (`path`: `<id>` or its `.flow.mkv`, `.flow.npy`, `.flow.json`)."""
    js = _json_path(_base(path))
    try:
        meta = json.loads(js.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{js}: no flow metadata; extract the flow with `vidrec flow`") from e
    except (OSError, ValueError) as e:  # ValueError: not JSON (UnicodeDecodeError is one too)
        raise VideoDecodeError(js, f"damaged flow metadata ({e}); extract this video again") from e
    if not isinstance(meta, dict):
        raise VideoDecodeError(js, "damaged flow metadata (not a JSON object); extract this video again")
    return meta


def _stored_format(base: Path) -> str | None:
    """Which store holds `base`: the JSON's `format` when its data exists, else whatever data exists."""
    found = [fmt for fmt, suffix in _SUFFIX.items() if base.with_name(base.name + suffix).is_file()]
    if base.is_dir() and any((base / name).is_file() for name in _DENSEFLOW_FIRST):
        found.append("denseflow")
    if len(found) <= 1:  # the usual case: no JSON to read
        return found[0] if found else None
    try:
        said = json.loads(_json_path(base).read_text()).get("format", "npy")
    except (OSError, ValueError, AttributeError):
        said = None
    if said in found:
        return said
    return found[0] if found else None


def find_flow(flow_root: str | os.PathLike, video_id: str) -> Path | None:
    """The `<id>` base under `flow_root` holding flow of `video_id` (any store), or None.

    Tried in order: `flow_root/<video_id>`; then, so that the flow of a dataset's parent or child folder
    is found too, `flow_root/<one folder>/<video_id>` (flow extracted from a folder above the videos, e.g.
    `vidrec flow UCF101/` holding `UCF-101/<Class>/...`) and `<video_id>` without its leading folders,
    keeping at least `<class>/<name>` (flow extracted from the video folder itself). Only an unambiguous
    match is returned.
    """
    root = Path(flow_root)
    for candidate in _candidates(root, video_id):
        if _stored_format(candidate) is not None:
            return candidate
    return None


def _candidates(root: Path, video_id: str) -> Iterator[Path]:
    yield root / video_id
    parts = video_id.split("/")
    try:
        above = [root / d.name / video_id for d in os.scandir(root) if d.is_dir()]
    except OSError:
        above = []
    hits = [c for c in above if _stored_format(c) is not None]
    if len(hits) == 1:
        yield hits[0]
    for k in range(1, len(parts) - 1):
        yield root.joinpath(*parts[k:])


def num_flow_frames(path: str | os.PathLike) -> int:
    """How many flow frames `<id>` holds (N-1 for a video of N frames), in any store."""
    base = _base(path)
    fmt = _stored_format(base)
    if fmt == "npy":
        return len(_open_npy(base.with_name(base.name + ".flow.npy")))
    if fmt == "ffv1":
        return _ffv1_count(base)
    if fmt == "denseflow":
        from vidrec.io import count_frames

        return count_frames(base, _denseflow_layout(base)[0])
    raise FileNotFoundError(f"{base}: no flow (.flow.mkv, .flow.npy or folder); run `vidrec flow` first")


def _open_npy(path: Path) -> np.ndarray:
    """The memory-mapped codes `(N, H, W, 2)` of a `.flow.npy`; a damaged file raises `VideoDecodeError`."""
    try:
        data = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
        raise VideoDecodeError(path, f"damaged flow file ({type(e).__name__}: {e}); extract it again") from e
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 2 or not len(data):
        raise VideoDecodeError(path, f"not flow codes uint8 (N, H, W, 2): {data.dtype} {data.shape}")
    return data


def _ffv1_count(base: Path) -> int:
    """Flow frames of a `.flow.mkv` per its JSON, after checking the JSON and the file's size against it."""
    meta, data = flow_meta(base), base.with_name(base.name + ".flow.mkv")
    n = meta.get("num_frames")
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise VideoDecodeError(
            _json_path(base), f"num_frames is {n!r}, not a frame count >= 2; extract this video again"
        )
    size, want = data.stat().st_size, meta.get("bytes")
    if size == 0 or (isinstance(want, int) and size != want):
        said = f" of the {want} its JSON records" if isinstance(want, int) else ""
        raise VideoDecodeError(data, f"truncated or damaged: {size} bytes{said}; extract this video again")
    return n - 1


def _denseflow_layout(folder: Path) -> tuple[str, str]:
    """(x file template, layout name for `read_flow_folder`)."""
    if (folder / "flow_x_00001.jpg").is_file():
        return "flow_x_{:05d}.jpg", "flow_xy"
    return "x_{:05d}.jpg", "xy"


def load_flow(path: str | os.PathLike, indices: Sequence[int] | slice | None = None) -> np.ndarray:
    """Read flow frames `indices` (0-based, any order; None: all) as uint8 `(len(indices), H, W, 2)`.

    `path` names `<id>` (or one of its files); the store is found from the files there (see the module
    docstring). `.flow.npy` is memory-mapped; `.flow.mkv` decodes only the wanted frames.
    """
    base = _base(path)
    fmt = _stored_format(base)
    if fmt is None:
        raise FileNotFoundError(
            f"{base}.flow.mkv: no flow file (nor .flow.npy, nor a denseflow folder); extract it with "
            "`vidrec flow`"
        )
    count = num_flow_frames(base)
    data_path = base.with_name(base.name + _SUFFIX[fmt]) if fmt in _SUFFIX else base
    wanted = _index_list(indices, count, data_path)
    if fmt == "npy":
        data = _open_npy(base.with_name(base.name + ".flow.npy"))
        return np.ascontiguousarray(data[np.asarray(wanted, dtype=np.int64)]).reshape(-1, *data.shape[1:])
    if fmt == "ffv1":
        return _read_ffv1(base.with_name(base.name + ".flow.mkv"), wanted)
    from vidrec.io import read_flow_folder

    return read_flow_folder(base, wanted, layout=_denseflow_layout(base)[1])


def _index_list(indices, count: int, path: Path) -> list[int]:
    if indices is None:
        return list(range(count))
    if isinstance(indices, slice):
        return list(range(count))[indices]
    wanted = [int(i) for i in np.asarray(indices, dtype=np.int64).ravel()]
    if any(i < -count or i >= count for i in wanted):
        raise IndexError(f"{path}: flow indices must be in [0, {count}), got {wanted}")
    return [i % count for i in wanted]


def _read_ffv1(path: Path, wanted: list[int]) -> np.ndarray:
    """Decode frames `wanted` of an FFV1 flow video: uint8 `(len(wanted), H, W, 2)`.

    Raises:
        VideoDecodeError: the file does not open, or holds fewer frames than asked for (damaged).
    """
    import av

    try:
        return _decode_ffv1(path, wanted)
    except (av.FFmpegError, IndexError, ValueError) as e:  # FFmpegError: empty or garbled data
        raise VideoDecodeError(path, f"damaged flow video ({type(e).__name__}: {e}); extract it again") from e


def _decode_ffv1(path: Path, wanted: list[int]) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        h, w = stream.height // 2, stream.width
        packets = [p for p in container.demux(stream) if p.size]
        if not all(p.is_keyframe for p in packets):  # not written by vidrec: decode in order
            frames = [f.to_ndarray(format="gray") for p in packets for f in stream.decode(p)]
            return _split_planes([frames[i] for i in wanted], h, w)
        cache: dict[int, np.ndarray] = {}
        for i in dict.fromkeys(wanted):
            frames = stream.codec_context.decode(packets[i])
            if not frames:
                raise OSError(f"{path}: flow frame {i} did not decode; extract this video again")
            cache[i] = frames[0].to_ndarray(format="gray")
    return _split_planes([cache[i] for i in wanted], h, w)


def _split_planes(frames: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """`(2H, W)` gray frames (x over y) -> `(N, H, W, 2)`."""
    if not frames:
        return np.zeros((0, h, w, 2), np.uint8)
    stacked = np.stack(frames).reshape(len(frames), 2, h, w)
    return np.ascontiguousarray(stacked.transpose(0, 2, 3, 1))


def is_complete(
    out: str | os.PathLike, video_id: str, *, bound: float | None = None, method: str | None = None
) -> bool:
    """True when the JSON exists, matches `bound`/`method` if given, and describes the data beside it.

    Any store counts (an output in another format than the one asked for is complete all the same).
    """
    base = Path(out) / video_id
    try:
        meta = json.loads(_json_path(base).read_text())
        if (bound is not None and meta["bound"] != float(bound)) or (
            method is not None and meta["method"] != method
        ):
            return False
        n, h, w = meta["num_frames"] - 1, meta["height"], meta["width"]
        fmt = meta.get("format", "npy")
        if fmt == "denseflow":
            return (base / f"y_{n:05d}.jpg").is_file()
        if fmt == "ffv1":
            return flow_paths(out, video_id, "ffv1")[0].stat().st_size == meta["bytes"]
        return np.load(flow_paths(out, video_id)[0], mmap_mode="r").shape == (n, h, w, 2)
    except (OSError, ValueError, KeyError, TypeError, EOFError):  # EOFError: a 0-byte .npy
        return False


def remove_stale_temps(out: str | os.PathLike, video_id: str) -> None:
    """Delete temp files a killed run left for `video_id` (call only for videos this process owns)."""
    base = Path(out) / video_id
    # exactly this video's temps (`_tmp` names): not those of another video whose id starts the same
    own = re.compile(re.escape(base.name) + r"(\.flow\.npy|\.flow\.mkv|\.flow\.json)?\.\d+\.tmp")
    if base.parent.is_dir():
        for tmp in base.parent.iterdir():
            if not own.fullmatch(tmp.name):
                continue
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def flow_video(
    path: str | os.PathLike,
    method: str = "dis",
    *,
    short_side: int | None = 256,
    bound: float = DEFAULT_BOUND,
    estimator: FlowEstimator | None = None,
    on_frame: Callable[[], None] | None = None,
) -> np.ndarray:
    """Flow between consecutive frames of a video, quantised: uint8 `(N-1, H, W, 2)`.

    Args:
        path: video file (decoded with `vidrec.io.VideoReader`).
        method: flow method (ignored when `estimator` is given).
        short_side: resize frames to this short side before the flow (None or 0: native size).
        bound: quantisation bound in px.
        estimator: a reusable `FlowEstimator` (one per worker).
        on_frame: called after each flow frame (progress bars).

    Raises:
        VideoDecodeError: unreadable video, or fewer than 2 frames.
    """
    from vidrec.io import VideoDecodeError, VideoReader

    est = estimator or FlowEstimator(method)
    out, prev = [], None
    with VideoReader(path, size=short_side or None, threads=1) as reader:
        for frame in reader:
            if prev is not None:
                out.append(quantize(est(prev, frame), bound))
                if on_frame:
                    on_frame()
            prev = frame
    if not out:
        raise VideoDecodeError(path, "flow needs at least 2 frames")
    return np.stack(out)  # (N-1, H, W, 2)
