"""Writing videos and animated GIFs with PyAV (FFmpeg): `write_video` for frames already in memory,
`VideoWriter` for frames that come one at a time (constant memory on a long video).

Files are written atomically: frames go to a temporary file in the destination folder, which is
renamed over the destination with `os.replace` only once the container is closed, so a reader never
sees a half-written video and an interrupted run leaves no broken file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

__all__ = ["VideoWriter", "write_video"]

# file extension -> FFmpeg container (muxer) name
_CONTAINERS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".gif": "gif",
    ".ts": "mpegts",  # MPEG transport stream: readable while still being written (live sources)
}
_PALETTE_SAMPLE = 16  # frames pooled to build a GIF's single shared palette


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    fps: float,
    *,
    codec: str = "libx264",
    gop: int | None = None,
    bframes: int | None = None,
    pix_fmt: str = "yuv420p",
    crf: float | None = None,
    deterministic: bool = False,
) -> Path:
    """Encode RGB frames to a video file (or an animated GIF), atomically.

    Args:
        path: destination; its extension picks the container (.mp4, .mov, .mkv, .webm, .avi, .gif).
            A `.gif` path always uses the GIF encoder with one adaptive 256-colour palette.
        frames: uint8 RGB frames `(T, H, W, 3)` as a numpy array, a torch tensor or a list of `(H, W, 3)`.
        fps: frame rate (may be fractional, e.g. 29.97).
        codec: FFmpeg encoder name, e.g. "libx264" (H.264) or "mpeg4" (MPEG-4 part 2, as UCF101's .avi).
        gop: keyframe interval in frames; with libx264 scene-cut keyframes are turned off so that
            keyframes fall exactly every `gop` frames (short GOPs make random access cheap).
        bframes: maximum consecutive B-frames (0 disables them).
        pix_fmt: encoder pixel format; "yuv420p" needs even width and height.
        crf: constant-rate-factor quality for libx264/libx265 (lower is better, 0 is lossless), or the
            fixed quantiser scale (2..31) for other encoders such as mpeg4.
        deterministic: the same bytes on every run. libx264's rate-control lookahead (mb-tree) gave a
            different encoding in about 1 of 10 runs on a busy 2-core machine, even with one thread;
            this turns it off and encodes on one thread (slower, slightly larger files).

    Returns:
        The destination path.

    Raises:
        ValueError: frames of the wrong shape/dtype, an unknown extension, or odd sizes with yuv420p.
    """
    path = Path(path)
    array = _as_frames(frames, path)
    fmt = _container_for(path)
    is_gif = fmt == "gif"
    if not is_gif:
        _check_even(path, pix_fmt, *array.shape[1:3])
    tmp = _temp_beside(path)
    try:
        with av.open(tmp, mode="w", format=fmt) as container:
            if is_gif:
                _encode_gif(container, array, fps)
            else:
                stream = _add_stream(container, array, fps, codec, gop, bframes, pix_fmt, crf, deterministic)
                _encode(container, stream, (av.VideoFrame.from_ndarray(f, format="rgb24") for f in array))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_even(path: Path, pix_fmt: str, h: int, w: int) -> None:
    """4:2:0 and NV12 formats halve the chroma planes: a ValueError saying what to do for odd sizes."""
    if pix_fmt in ("yuv420p", "yuvj420p", "nv12") and h % 2 + w % 2:
        raise ValueError(
            f"{path}: {pix_fmt} needs even frame sizes, got {h}x{w} (HxW); "
            "crop/pad the frames or pass pix_fmt='yuv444p'"
        )


def _temp_beside(path: Path) -> str:
    """An empty temporary file in `path`'s folder (made if missing), moved onto `path` when complete, so
    a reader never sees a half-written video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return tmp


def _as_frames(frames, path: Path) -> np.ndarray:
    """Frames as a C-contiguous uint8 `(T, H, W, 3)` array, or a ValueError naming the problem."""
    if hasattr(frames, "detach"):  # torch tensor, without importing torch here
        frames = frames.detach().cpu().numpy()
    elif isinstance(frames, list | tuple):
        frames = np.stack([np.asarray(f) for f in frames]) if len(frames) else np.zeros((0,))
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ValueError(f"{path}: frames must be (T, H, W, 3) RGB with T >= 1, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 (0..255), got {array.dtype}; convert them first")
    return np.ascontiguousarray(array)


def _container_for(path: Path) -> str:
    try:
        return _CONTAINERS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"{path}: unknown video extension {path.suffix!r}; use one of {sorted(_CONTAINERS)}"
        ) from None


def _rate(fps: float) -> Fraction:
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def _add_stream(container, array, fps, codec, gop, bframes, pix_fmt, crf, deterministic) -> av.VideoStream:
    """A video stream configured for `codec`; options follow FFmpeg's own names."""
    options: dict[str, str] = {}
    x264_params: list[str] = []
    if crf is not None and codec in ("libx264", "libx265"):
        options["crf"] = f"{crf:g}"
    if gop is not None and codec == "libx264":
        x264_params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
    if deterministic and codec == "libx264":
        x264_params += ["threads=1", "rc-lookahead=0", "mbtree=0"]
    if x264_params:
        options["x264-params"] = ":".join(x264_params)
    stream = container.add_stream(codec, rate=_rate(fps), options=options)
    stream.width, stream.height = array.shape[2], array.shape[1]
    stream.pix_fmt = pix_fmt
    ctx = stream.codec_context
    if deterministic:
        ctx.thread_count = 1
    if gop is not None:
        ctx.gop_size = gop
    if bframes is not None:
        ctx.max_b_frames = bframes
    if crf is not None and codec not in ("libx264", "libx265"):
        ctx.qscale = True  # fixed quantiser: MPEG-4's default 200 kb/s is far too low for training data
        ctx.global_quality = int(crf * 118)  # FF_QP2LAMBDA
    return stream


def _encode(container, stream, frames) -> None:
    for i, frame in enumerate(frames):
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _encode_gif(container, array: np.ndarray, fps: float) -> None:
    """GIF with one adaptive palette built from up to 16 evenly spaced frames (no flicker between frames)."""
    stream = container.add_stream("gif", rate=_rate(fps))
    stream.width, stream.height = array.shape[2], array.shape[1]
    stream.pix_fmt = "pal8"
    pick = np.linspace(0, len(array) - 1, min(len(array), _PALETTE_SAMPLE)).round().astype(int)
    palette = _gif_palette(array[pick])
    frames = (_gif_frame(f, *palette) for f in array)
    _encode(container, stream, frames)


class VideoWriter:
    """Encode RGB frames one at a time as they are produced, holding none of them (a GIF holds its first
    16, from which its one palette is built); atomic like `write_video`.

    Use it as a context manager: the file appears under `path` when the block ends without an error;
    on an error (or `abort`) the temporary file is removed and nothing is written::

        with VideoWriter("overlay.mp4", fps=25) as out:
            for frame in frames:  # uint8 (H, W, 3) RGB, all of one size
                out.write(frame)

    Args:
        path, fps, codec, gop, bframes, pix_fmt, crf, deterministic: as `write_video`'s.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        *,
        codec: str = "libx264",
        gop: int | None = None,
        bframes: int | None = None,
        pix_fmt: str = "yuv420p",
        crf: float | None = None,
        deterministic: bool = False,
    ) -> None:
        self.path, self.fps = Path(path), fps
        self._fmt = _container_for(self.path)
        _rate(fps)  # a bad rate fails here, before any file is made
        self._options = (codec, gop, bframes, pix_fmt, crf, deterministic)
        self._tmp = _temp_beside(self.path)
        self._container = av.open(self._tmp, mode="w", format=self._fmt)
        self._stream = None
        self._shape: tuple[int, ...] | None = None
        self._gif_first: list[np.ndarray] = []  # a GIF's frames until its palette is built
        self._palette = None
        self.frames = 0  # frames written so far
        self._encoded = 0  # frames given to the encoder (a GIF's first ones wait for its palette)

    def write(self, frame: np.ndarray) -> None:
        """Encode one uint8 RGB frame `(H, W, 3)`; every frame must have the first one's size."""
        array = _as_frames(np.asarray(frame)[None], self.path)[0]
        if self._shape is None:
            self._start(array)
        elif array.shape != self._shape:
            raise ValueError(
                f"{self.path}: frame {self.frames} is {array.shape}, the first was {self._shape}"
            )
        self.frames += 1
        if self._fmt != "gif":
            self._mux(av.VideoFrame.from_ndarray(array, format="rgb24"))
        elif self._palette is None:
            self._gif_first.append(array)
            if len(self._gif_first) == _PALETTE_SAMPLE:
                self._flush_gif()
        else:
            self._mux(_gif_frame(array, *self._palette))

    def close(self) -> Path:
        """Finish the file and move it to `path`; a writer given no frame writes nothing (ValueError)."""
        try:
            if self._shape is None:
                raise ValueError(f"{self.path}: no frames to write; a video needs at least one")
            if self._palette is None and self._fmt == "gif":
                self._flush_gif()
            self._container.mux(self._stream.encode(None))
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop the file being written (nothing appears under `path`)."""
        with contextlib.suppress(av.FFmpegError, OSError, ValueError):  # e.g. a container without a stream
            self._container.close()
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _start(self, array: np.ndarray) -> None:
        codec, gop, bframes, pix_fmt, crf, deterministic = self._options
        h, w = array.shape[:2]
        if self._fmt == "gif":
            self._stream = self._container.add_stream("gif", rate=_rate(self.fps))
            self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "pal8"
        else:
            _check_even(self.path, pix_fmt, h, w)
            self._stream = _add_stream(
                self._container, array[None], self.fps, codec, gop, bframes, pix_fmt, crf, deterministic
            )
        self._shape = array.shape

    def _flush_gif(self) -> None:
        self._palette = _gif_palette(np.stack(self._gif_first))
        for array in self._gif_first:
            self._mux(_gif_frame(array, *self._palette))
        self._gif_first = []

    def _mux(self, frame: av.VideoFrame) -> None:
        frame.pts, self._encoded = self._encoded, self._encoded + 1
        self._container.mux(self._stream.encode(frame))


def _gif_palette(array: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """(PIL palette image, ARGB (256, 4)) of one adaptive palette pooled from frames (N, H, W, 3)."""
    palette_img = Image.fromarray(np.concatenate(array, axis=0)).quantize(
        colors=256, method=Image.Quantize.MEDIANCUT
    )
    rgb = np.zeros((256, 3), np.uint8)
    pal = np.asarray(palette_img.getpalette()[: 256 * 3], np.uint8).reshape(-1, 3)
    rgb[: len(pal)] = pal
    return palette_img, np.concatenate([np.full((256, 1), 255, np.uint8), rgb], axis=1)


def _gif_frame(array: np.ndarray, palette_img: Image.Image, argb: np.ndarray) -> av.VideoFrame:
    pixels = np.asarray(Image.fromarray(array).quantize(palette=palette_img, dither=Image.Dither.NONE))
    return av.VideoFrame.from_ndarray((pixels, argb), format="pal8")
