"""write_video: real encodes that decode back, codec options, atomic writes."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from vidrec.io.writer import write_video


def _frames(n: int = 10, h: int = 32, w: int = 48) -> np.ndarray:
    """A gradient with a moving bright block: smooth enough that lossy codecs stay close."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, None]
    frames[..., 2] = np.linspace(0, 255, h, dtype=np.uint8)[None, :, None]
    for t in range(n):
        frames[t, 8:16, 2 * t : 2 * t + 8] = 255
    return frames


def _decode(path) -> tuple[np.ndarray, str, float]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(stream)])
        return frames, stream.codec_context.name, float(stream.average_rate)


@pytest.mark.parametrize(
    ("name", "kwargs", "codec", "tol"),
    [
        ("a.mp4", {}, "h264", 6),
        ("b.avi", {"codec": "mpeg4", "crf": 2}, "mpeg4", 6),
        ("c.mkv", {"pix_fmt": "yuv444p", "crf": 0}, "h264", 1),
        ("d.gif", {}, "gif", 3),
    ],
)
def test_round_trip(tmp_path, name, kwargs, codec, tol):
    frames = _frames()
    out = write_video(tmp_path / name, frames, 25, **kwargs)
    decoded, got_codec, fps = _decode(out)
    assert got_codec == codec
    assert decoded.shape == frames.shape
    assert fps == pytest.approx(25)
    assert np.abs(decoded.astype(int) - frames).mean() < tol


def test_accepts_tensor_and_list(tmp_path):
    frames = _frames(4)
    a, _, _ = _decode(write_video(tmp_path / "t.mp4", torch.from_numpy(frames), 10, crf=0, pix_fmt="yuv444p"))
    b, _, _ = _decode(write_video(tmp_path / "l.mp4", list(frames), 10, crf=0, pix_fmt="yuv444p"))
    np.testing.assert_array_equal(a, b)


def test_gop_sets_keyframe_interval(tmp_path):
    out = write_video(tmp_path / "g.mp4", _frames(12), 25, gop=4, bframes=0)
    with av.open(str(out)) as c:
        keys = [p.is_keyframe for p in c.demux(video=0) if p.size]
    assert keys == [i % 4 == 0 for i in range(12)]


def test_fractional_fps(tmp_path):
    _, _, fps = _decode(write_video(tmp_path / "f.mp4", _frames(6), 29.97))
    assert fps == pytest.approx(29.97, abs=0.01)


@pytest.mark.parametrize(
    ("frames", "name", "match"),
    [
        (np.zeros((3, 32, 32), np.uint8), "x.mp4", "T, H, W, 3"),
        (np.zeros((3, 32, 32, 3), np.float32), "x.mp4", "uint8"),
        (np.zeros((3, 31, 32, 3), np.uint8), "x.mp4", "even"),
        (np.zeros((3, 32, 32, 3), np.uint8), "x.xyz", "extension"),
    ],
)
def test_bad_input_raises_and_writes_nothing(tmp_path, frames, name, match):
    with pytest.raises(ValueError, match=match):
        write_video(tmp_path / name, frames, 25)
    assert list(tmp_path.iterdir()) == []


def test_failed_encode_leaves_no_file_and_keeps_old_one(tmp_path):
    target = tmp_path / "v.mp4"
    write_video(target, _frames(3), 25)
    before = target.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - FFmpeg's error type varies with the version
        write_video(target, _frames(3), 25, codec="no_such_codec")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
