"""`dense_encode`: short-GOP re-encoding keeps the frames and makes every GOP short."""

from __future__ import annotations

import numpy as np
import pytest
from io_helpers import X264_SHORT, encode, moving_texture, remux

from vidrec.io import VideoDecodeError, VideoReader, probe
from vidrec.io.dense import dense_encode


def test_dense_encode_keeps_frames_and_shortens_gops(videos, tmp_path):
    src = videos["h264_bframes_gop100.mp4"]
    dst = dense_encode(src, tmp_path / "dense.mp4", gop=8, crf=0)
    before, after = probe(src), probe(dst)
    assert (after.num_frames, after.width, after.height) == (before.num_frames, before.width, before.height)
    assert after.fps == pytest.approx(before.fps)
    with VideoReader(dst, threads=1) as reader:
        assert np.diff(reader._index.key_pos).max() <= 8 and reader._index.key_pos[0] == 0
        dense = reader.get_frames([0, 50, 119])
    with VideoReader(src, threads=1) as reader:
        original = reader.get_frames([0, 50, 119])
    assert np.abs(dense.astype(int) - original).mean() < 2  # crf 0: lossless up to colour rounding


def test_dense_encode_bad_input(tmp_path):
    (tmp_path / "bad.mp4").write_text("nope")
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        dense_encode(tmp_path / "bad.mp4", tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_dense_encode_scales_to_a_short_side(videos, tmp_path):
    src = videos["h264_bframes_gop100.mp4"]
    before = probe(src)
    dst = dense_encode(src, tmp_path / "small.mp4", gop=4, short_side=30)
    after = probe(dst)
    assert min(after.width, after.height) == 30 and after.num_frames == before.num_frames
    ratio = max(before.width, before.height) / min(before.width, before.height)
    assert abs(max(after.width, after.height) - 30 * ratio) <= 2 and after.width % 2 == after.height % 2 == 0


@pytest.mark.parametrize(("rotation", "hflip"), [(90, False), (180, True)])
def test_dense_encode_keeps_the_displayed_orientation(tmp_path, rotation, hflip):
    """A phone video stored rotated: the copy (which carries no display matrix) shows the same frames."""
    src = encode(tmp_path / "src.mp4", moving_texture(12, seed=5), "libx264", options=X264_SHORT)
    phone = remux(src, tmp_path / "phone.mp4", rotation=rotation, hflip=hflip)
    dst = dense_encode(phone, tmp_path / "dense.mp4", gop=4, crf=0)
    shown, copy = (read_all(path) for path in (phone, dst))
    assert copy.shape == shown.shape
    assert np.abs(copy.astype(int) - shown).mean() < 3  # crf 0: lossless up to colour rounding
    stored = read_all(src)  # what a copy that ignored the matrix would hold
    assert stored.shape != copy.shape or np.abs(stored.astype(int) - copy).mean() > 10


def read_all(path) -> np.ndarray:
    with VideoReader(path, threads=1) as reader:
        return reader.get_frames(range(len(reader)))
