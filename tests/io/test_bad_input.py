"""Bad files raise VideoDecodeError naming the path and the reason; nothing hangs or crashes."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from io_helpers import full_decode, moving_texture

from vidrec.io import VideoDecodeError, VideoReader, probe, read_frames

pytestmark = pytest.mark.timeout(60)


def expect_error(path, match: str) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError, match=match) as info:
        probe(path)
    assert str(path) in str(info.value) and info.value.path == str(path)
    return info.value


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.mp4", "no such file")


def test_zero_bytes(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    expect_error(tmp_path / "empty.mp4", "empty")


def test_text_file_renamed(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    expect_error(tmp_path / "notes.mp4", "cannot read it as a video")


def test_png_renamed_is_not_a_video(tmp_path):
    import cv2

    ok, png = cv2.imencode(".png", moving_texture(1)[0])
    (tmp_path / "image.mp4").write_bytes(png.tobytes())
    expect_error(tmp_path / "image.mp4", "still image")


def test_directory(tmp_path):
    expect_error(tmp_path, "not a regular file")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files without permission")
def test_unreadable(videos, tmp_path):
    path = tmp_path / "locked.mp4"
    path.write_bytes(videos["mpeg4_gop12.avi"].read_bytes())
    path.chmod(0)
    try:
        expect_error(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_unreadable_reported_even_as_root(videos, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    expect_error(videos["mpeg4_gop12.avi"], "permission denied")


def test_header_only_mp4(videos, tmp_path):
    data = videos["h264_bframes_gop100.mp4"].read_bytes()
    (tmp_path / "head.mp4").write_bytes(data[:200])  # ftyp and a little mdat, no moov
    expect_error(tmp_path / "head.mp4", "head.mp4")


def test_error_pickles():
    err = pickle.loads(pickle.dumps(VideoDecodeError("/x.mp4", "broken")))
    assert (err.path, err.reason, str(err)) == ("/x.mp4", "broken", "/x.mp4: broken")


@pytest.mark.parametrize(
    "name", ["h264_gop10.mkv", "h264_gop10.mp4", "h264_gop10_faststart.mp4", "mpeg4_gop12.avi"]
)
def test_missing_final_gop(truncated_videos, name):
    """A cut file either fails to open, or reports frames that decode exactly; asking for a frame the
    decoder cannot produce raises VideoDecodeError."""
    path = truncated_videos[name]
    try:
        reader = VideoReader(path, threads=1)
    except VideoDecodeError as e:
        assert str(path) in str(e)
        return
    with reader:
        assert 0 < len(reader) < 60
        try:
            truth = full_decode(path)
        except Exception:  # the reference decoder may choke on the cut tail
            truth = None
        good = len(truth) if truth is not None else 0
        for i in range(len(reader)):
            try:
                frame = reader.get_frames([i])
            except VideoDecodeError as e:
                assert str(path) in str(e)
                continue
            if i < good:
                np.testing.assert_array_equal(frame[0], truth[i])
        assert len(list(_safe_iter(reader))) <= len(reader)


def _safe_iter(reader):
    try:
        yield from reader
    except VideoDecodeError:
        return


def test_corrupt_middle_bytes(videos, tmp_path):
    data = bytearray(videos["h264_bframes_gop100.mp4"].read_bytes())
    rng = np.random.default_rng(0)
    start = len(data) // 3
    data[start : start + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    (tmp_path / "corrupt.mp4").write_bytes(bytes(data))
    try:
        frames = read_frames(tmp_path / "corrupt.mp4", list(range(0, 120, 7)))
    except VideoDecodeError as e:
        assert "corrupt.mp4" in str(e)
    else:
        assert frames.shape == (18, 48, 64, 3)
