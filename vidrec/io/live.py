"""Sequential decoding of live sources: a growing file, a pipe on stdin, a camera device, a URL.

`VideoReader` indexes a whole file before it decodes anything, which a source that is still being
written (or never ends) cannot offer. `LiveReader` opens the source with PyAV and yields frames in
decode order as soon as FFmpeg hands them over, holding one frame at a time (constant memory):

- a path: an ordinary file, read once to its end;
- a path with ``follow=True``: a file still being written (a recorder, `ffmpeg -f mpegts out.ts`): at
  its current end the reader waits for more bytes and ends after ``idle_timeout`` seconds without any;
- ``"-"``: the bytes of stdin (``ffmpeg ... -f mpegts - | vidrec predict ... -``); give
  ``input_format`` when FFmpeg cannot guess the container from the first bytes;
- a device such as ``/dev/video0`` (``input_format`` defaults to ``v4l2`` for ``/dev/video*``;
  ``avfoundation`` / ``dshow`` on other systems);
- a URL FFmpeg can open (``rtsp://``, ``http://``, ``udp://``, ...): a read that waits more than
  ``idle_timeout`` seconds ends the stream.

Frames come out as uint8 RGB `(H, W, 3)`, resized exactly as `VideoReader` resizes them (the same
libswscale call), so a file read live gives the same pixels as its random-access reading.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vidrec.io.errors import VideoDecodeError
from vidrec.io.video import INTERPOLATION, frame_to_rgb, output_size

__all__ = ["LiveFrame", "LiveReader", "is_live_source"]

_READ_CHUNK = 4096  # bytes PyAV asks a Python file object for at a time: small, so frames are not held back


@dataclass(frozen=True)
class LiveFrame:
    """One decoded frame of a live source.

    Attributes:
        index: 0-based position in decode (display) order.
        time_s: presentation time in seconds from the first frame (``index / fps`` when the source
            carries no timestamps).
        arrived: `time.perf_counter()` when the frame was decoded (for latency figures).
        rgb: uint8 `(H, W, 3)`.
    """

    index: int
    time_s: float
    arrived: float
    rgb: np.ndarray


def is_live_source(source: str) -> bool:
    """True for stdin (``-``), URLs and devices: sources that are not a finished regular file."""
    return source == "-" or "://" in source or source.startswith("/dev/")


class _PyFile(io.RawIOBase):
    """A byte source PyAV reads through Python: stdin, or a file followed like ``tail -f``.

    With `follow`, at the end of the file it waits for more bytes and ends after `idle` quiet seconds.
    PyAV swallows exceptions raised inside its read callback (and takes them for the end of the
    stream), so a Ctrl-C (or SIGTERM, `vidrec.interrupt`) that lands here is kept in `interrupted` and
    re-raised by the reader; every later read returns at once (FFmpeg asks again after an end of stream,
    and a followed file would make each of those reads wait `idle` seconds).
    """

    def __init__(self, raw, *, follow: bool, idle: float, poll: float = 0.02) -> None:
        self._raw, self.follow, self.idle, self.poll = raw, follow, idle, poll
        self.interrupted: KeyboardInterrupt | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.interrupted is not None:
            return 0
        try:
            return self._read(buffer)
        except KeyboardInterrupt as err:
            self.interrupted = err
            return 0

    def _read(self, buffer) -> int:
        quiet_since = time.monotonic()
        while True:
            n = self._raw.readinto(buffer)
            if n or not self.follow or time.monotonic() - quiet_since >= self.idle:
                return n or 0
            time.sleep(self.poll)

    def close(self) -> None:
        self._raw.close()
        super().close()


class LiveReader:
    """Frames of a live source in decode order, one at a time (see the module docstring).

    Args:
        source: a path, ``"-"`` for stdin, a device path or a URL.
        size: output size: `(H, W)`, an int short side (aspect kept), or None for native.
        follow: treat a path as a file still being written.
        idle_timeout: seconds without new data after which a followed file or a URL ends.
        input_format: FFmpeg demuxer name (``mpegts``, ``v4l2``, ``avfoundation``...); None: guess.
        options: extra FFmpeg options for opening (e.g. ``{"rtsp_transport": "tcp"}``).

    Raises:
        VideoDecodeError: the source cannot be opened or holds no video stream.

    Example:
        >>> with LiveReader("-", size=128, input_format="mpegts") as r:
        ...     for frame in r:  # LiveFrame(index, time_s, arrived, rgb (H, W, 3))
        ...         ...
    """

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        size: int | tuple[int, int] | None = None,
        follow: bool = False,
        idle_timeout: float = 10.0,
        input_format: str | None = None,
        options: dict[str, str] | None = None,
        interpolation: str = INTERPOLATION,
    ) -> None:
        self.source = os.fspath(source)
        self.interpolation = interpolation
        self._file: _PyFile | None = None
        if self.source == "-":
            self._file = _PyFile(
                os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0), follow=False, idle=0
            )
        elif follow:
            _check_path(self.source)
            self._file = _PyFile(open(self.source, "rb", buffering=0), follow=True, idle=idle_timeout)  # noqa: SIM115
        self._container = _open(self.source, self._file, idle_timeout, input_format, dict(options or {}))
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(self.source, "the source holds no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            ctx = self._stream.codec_context
            self.fps = float(self._stream.average_rate or self._stream.guessed_rate or 0.0)
            self._size_arg = size
            self.size = output_size(size, height=ctx.height, width=ctx.width) if ctx.height else None
        except BaseException:
            self._container.close()
            raise

    def __enter__(self) -> LiveReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the source."""
        self._container.close()
        if self._file is not None:
            self._file.close()

    def __iter__(self) -> Iterator[LiveFrame]:
        """Every frame in decode order as soon as it is decoded; ends when the source ends."""
        first_time: float | None = None
        try:
            for index, frame in enumerate(self._container.decode(self._stream)):
                if self.size is None:
                    self.size = output_size(self._size_arg, height=frame.height, width=frame.width)
                if frame.time is not None:
                    first_time = frame.time if first_time is None else first_time
                    t = float(frame.time - first_time)
                else:
                    t = index / (self.fps or 25.0)
                rgb = frame_to_rgb(frame, self.size, self.interpolation)
                yield LiveFrame(index, t, time.perf_counter(), rgb)
        except (av.FFmpegError, OSError) as e:
            self._check_interrupted()
            if _is_timeout(e):
                return  # a URL that went quiet: the stream has ended
            raise VideoDecodeError(self.source, f"decoding failed ({type(e).__name__}: {e})") from e
        self._check_interrupted()

    def _check_interrupted(self) -> None:
        if self._file is not None and self._file.interrupted is not None:
            raise self._file.interrupted  # swallowed by PyAV inside the read callback: raise it here


def _is_timeout(err: BaseException) -> bool:
    return isinstance(err, av.FFmpegError) and getattr(err, "errno", None) in (5, 110)  # EIO, ETIMEDOUT


def _open(source: str, pyfile: _PyFile | None, idle: float, fmt: str | None, options: dict[str, str]):
    """The PyAV input container of `source` (see `LiveReader`); `pyfile` for stdin / a followed file."""
    kwargs: dict = {"format": fmt, "options": options, "metadata_errors": "ignore"}
    if pyfile is not None:
        target, kwargs["buffer_size"] = pyfile, _READ_CHUNK
    elif "://" in source:
        target, kwargs["timeout"] = source, idle
    elif source.startswith("/dev/"):
        target = source
        kwargs["format"] = fmt or ("v4l2" if source.startswith("/dev/video") else None)
    else:
        _check_path(source)
        target = source
    try:
        container = av.open(target, **kwargs)
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        if pyfile is not None:
            pyfile.close()
            if pyfile.interrupted is not None:  # Ctrl-C while FFmpeg probed: the end it saw was ours
                raise pyfile.interrupted from None
        raise VideoDecodeError(source, f"FFmpeg cannot open it as a video ({type(e).__name__}: {e})") from e
    if pyfile is not None and pyfile.interrupted is not None:
        container.close()
        raise pyfile.interrupted
    return container


def _check_path(path: str) -> None:
    if not Path(path).exists():
        raise VideoDecodeError(path, "no such file; check the path (or pass a URL, a device or - for stdin)")
    if Path(path).is_dir():
        raise VideoDecodeError(path, "is a folder, not a video")
