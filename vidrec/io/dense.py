"""Re-encoding videos with short GOPs ("dense encoding"), a one-off step that makes random access cheap.

Sparse samplers (TSN: 8 frames a clip) read a few frames spread over a video. With the long GOPs of
ordinary files (x264: a keyframe every 250 frames) every sampled frame costs decoding all reference
frames since the last keyframe; with a keyframe every `gop` frames it costs at most `gop - 1`. This is
the same idea as mmaction2's "dense-encoded" videos. The result is a new, lossy encoding: frames are
exact with respect to the re-encoded file, not the original.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidrec.io.errors import VideoDecodeError
from vidrec.io.video import _frame_matrix, _orientation, output_size, probe

__all__ = ["dense_encode"]


def dense_encode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    gop: int = 8,
    crf: int = 18,
    preset: str = "veryfast",
    fast_decode: bool = True,
    short_side: int | None = None,
) -> Path:
    """Re-encode `src` as H.264 in mp4 with a keyframe every `gop` frames and no B-frames.

    Args:
        src: any video FFmpeg reads.
        dst: output `.mp4` path (written to a temporary name, then renamed).
        gop: keyframe interval in frames.
        crf: x264 quality (lower is better; 18 is visually lossless for most content).
        preset: x264 speed preset of the one-off encode.
        fast_decode: x264 `tune=fastdecode` (no CABAC, no deblocking): faster decoding, larger files.
        short_side: scale to this short side (aspect kept, even sizes; area filter) while re-encoding;
            None keeps the size. Training that resizes at decode time anyway decodes fewer pixels.

    Returns:
        `dst` as a Path. The frame count is kept; timestamps are re-made at the average frame rate
        (variable-rate input becomes constant-rate). A display matrix (a phone video stored rotated)
        is applied to the pixels, so the copy shows what `VideoReader` shows for the original.
    """
    dst = Path(dst)
    meta = probe(src)  # raises VideoDecodeError for unreadable input
    height, width = output_size(short_side, height=meta.height, width=meta.width)
    tmp = dst.with_name(f".{dst.name}.part")
    try:
        with av.open(os.fspath(src)) as inp, av.open(str(tmp), "w", format="mp4") as out:
            stream = _add_stream(out, meta.fps, width, height, gop, crf, preset, fast_decode)
            orient = None
            for i, frame in enumerate(inp.decode(video=0)):  # frames stay in YUV unless turned
                if orient is None:  # every decoded frame carries the stream's display matrix
                    orient = _orientation(_frame_matrix(frame))
                if any(orient):  # `meta` is the displayed size: turn before scaling
                    frame = _oriented(frame, orient)
                frame = frame.reformat(
                    width=stream.width, height=stream.height, format="yuv420p", interpolation="AREA"
                )
                frame.pts, frame.time_base = i, 1 / stream.average_rate  # constant rate
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    except (av.FFmpegError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise VideoDecodeError(src, f"re-encoding to {dst} failed ({type(e).__name__}: {e})") from e
    os.replace(tmp, dst)
    return dst


def _oriented(frame: av.VideoFrame, orient: tuple[bool, bool, bool]) -> av.VideoFrame:
    """The frame as displayed: `(transpose, flip_x, flip_y)` applied in RGB (the copy has no matrix)."""
    transpose, flip_x, flip_y = orient
    rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) as stored
    if transpose:
        rgb = rgb.transpose(1, 0, 2)
    rgb = np.ascontiguousarray(rgb[:: -1 if flip_y else 1, :: -1 if flip_x else 1])
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def _add_stream(out, fps: float, width: int, height: int, gop, crf, preset, fast_decode) -> av.VideoStream:
    options = {"crf": str(crf), "preset": preset, "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
    if fast_decode:
        options["tune"] = "fastdecode"
    rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(25)
    stream = out.add_stream("libx264", rate=rate, options=options)
    stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
    stream.codec_context.max_b_frames = 0
    return stream
