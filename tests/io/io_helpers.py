"""Helpers of the vidrec.io tests: small generated videos with awkward properties, a reference decoder."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidrec.io.video import INTERPOLATION

H, W = 48, 64


def moving_texture(n: int, *, seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    """`(n, H, W, 3)` uint8: a random texture sliding diagonally plus a bright square; every frame differs."""
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8)
    tex = ((tex.astype(np.uint16) + np.roll(tex, 1, 0) + np.roll(tex, 1, 1)) // 3).astype(np.uint8)
    frames = np.stack([np.roll(tex, (t, 2 * t), axis=(0, 1))[:height, :width] for t in range(n)])
    for t in range(n):
        y, x = (3 * t) % (height - 8), (5 * t) % (width - 8)
        frames[t, y : y + 8, x : x + 8] = 255
    return frames


def encode(
    path: Path,
    frames: np.ndarray,
    codec: str,
    *,
    fps: int = 25,
    gop: int | None = None,
    bframes: int | None = None,
    options: dict | None = None,
    pts_ms: list[int] | None = None,
    container_options: dict | None = None,
) -> Path:
    """Encode RGB frames with PyAV; `pts_ms` gives per-frame timestamps (variable frame rate)."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _vfr_pts(n: int, seed: int = 1) -> list[int]:
    steps = np.random.default_rng(seed).choice([10, 33, 40, 80, 120], size=n)
    return np.cumsum(steps).tolist()


X264_LONG = {"x264-params": "keyint=100:min-keyint=100:scenecut=0:bframes=3:b-pyramid=normal"}
X264_SHORT = {"x264-params": "keyint=10:min-keyint=10:scenecut=0:bframes=2"}

# name -> how to make it; each is 30-120 frames of 64x48
VIDEO_SPECS = {
    "h264_bframes_gop100.mp4": lambda p: encode(p, moving_texture(120), "libx264", options=X264_LONG),
    "h264_vfr.mkv": lambda p: encode(
        p, moving_texture(60, seed=1), "libx264", options=X264_SHORT, pts_ms=_vfr_pts(60)
    ),
    "mpeg4_gop12.avi": lambda p: encode(p, moving_texture(60, seed=2), "mpeg4", gop=12, bframes=0),
    "mpeg4_bframes.avi": lambda p: encode(p, moving_texture(60, seed=3), "mpeg4", gop=30, bframes=2),
    "mpeg4_bframes.mkv": lambda p: encode(p, moving_texture(60, seed=3), "mpeg4", gop=30, bframes=2),
    "vp9.webm": lambda p: encode(
        p, moving_texture(40, seed=4), "libvpx-vp9", gop=15, options={"deadline": "realtime", "cpu-used": "8"}
    ),
    "vp8.webm": lambda p: encode(
        p, moving_texture(40, seed=5), "libvpx", gop=15, options={"auto-alt-ref": "1", "lag-in-frames": "16"}
    ),
    "anim.gif": lambda p: encode_gif(p, moving_texture(30, seed=6)),
}


def encode_gif(path: Path, frames: np.ndarray) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("gif", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb8"
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="rgb8")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def full_decode(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Reference: every frame of a plain sequential PyAV decode, converted like VideoReader does."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = []
        for frame in container.decode(stream):
            h, w = size or (frame.height, frame.width)
            fmt = "rgb24" if (h, w) == (frame.height, frame.width) else "gbrp"  # planar when scaling
            frames.append(frame.to_ndarray(format=fmt, width=w, height=h, interpolation=INTERPOLATION))
    return np.stack(frames)


def remux(
    src: Path, dst: Path, *, shift_frames: int = 0, rotation: int | None = None, hflip: bool = False
) -> Path:
    """Copy the video packets of `src` into `dst` (no re-encoding).

    `shift_frames` moves every timestamp that many frames earlier: the MP4 muxer then writes an edit
    list that starts the video there (what `ffmpeg -ss T -i in.mp4 -c copy out.mp4` writes), with the
    demuxer keeping the pre-roll packets marked "discard". `rotation` (degrees counter-clockwise) and
    `hflip` write a display matrix, as phones do for videos held upright.
    """
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = source.streams.video[0]
        copy = out.add_stream_from_template(stream)
        if rotation is not None:
            copy.set_display_rotation(rotation, hflip=hflip)
        step = round(1 / (stream.average_rate * stream.time_base))  # ticks per frame
        for packet in source.demux(stream):
            if packet.size == 0:
                continue
            packet.pts -= shift_frames * step
            packet.dts -= shift_frames * step
            packet.stream = copy
            out.mux(packet)
    return dst


def damage_packet(
    src: Path, dst: Path, packet: int, *, at: float = 0.5, length: int = 16, seed: int = 0
) -> Path:
    """Copy `src` with `length` random bytes written `at` (0..1) into the data of the given packet."""
    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        pos, size = next((p.pos, p.size) for i, p in enumerate(container.demux(stream)) if i == packet)
    data = bytearray(src.read_bytes())
    start = pos + int(size * at)
    data[start : start + length] = (
        np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    )
    dst.write_bytes(bytes(data))
    return dst


def player_decode(path: Path) -> list[tuple[int | None, np.ndarray, bool]]:
    """What a player shows: every frame of a sequential decode that skips packets the decoder rejects
    (as FFmpeg's command line does), with each frame's pts and whether it came out concealed."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                frames = stream.codec_context.decode(packet)
            except av.InvalidDataError:
                continue
            out += [(f.pts, f.to_ndarray(format="rgb24"), f.is_corrupt) for f in frames]
    return out
