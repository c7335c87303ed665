"""`dense_encode`: short-GOP re-encoding keeps the frames and makes every GOP short."""

from __future__ import annotations

import numpy as np
import pytest

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
