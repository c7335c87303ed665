"""Property tests: random bytes and damaged real files give frames or VideoDecodeError, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidrec.io import VideoDecodeError, VideoReader

pytestmark = pytest.mark.timeout(120)
SETTINGS = settings(
    max_examples=25, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)
SOURCES = ["h264_bframes_gop100.mp4", "mpeg4_bframes.avi", "vp9.webm", "h264_vfr.mkv", "anim.gif"]


def decode_all_or_error(path) -> None:
    try:
        with VideoReader(path, threads=1) as reader:
            n = len(reader)
            assert n > 0
            frames = reader.get_frames([0, n // 2, n - 1])
            assert frames.shape[0] == 3 and frames.dtype == np.uint8
    except VideoDecodeError as e:
        assert str(path) in str(e)


@SETTINGS
@given(data=st.binary(min_size=1, max_size=4096))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "random.mp4"
    path.write_bytes(data)
    decode_all_or_error(path)


@SETTINGS
@given(source=st.sampled_from(SOURCES), cut=st.floats(0.0, 1.0))
def test_truncated(videos, tmp_path, source, cut):
    data = videos[source].read_bytes()
    path = tmp_path / f"cut{videos[source].suffix}"
    path.write_bytes(data[: max(1, int(len(data) * cut))])
    decode_all_or_error(path)


@SETTINGS
@given(
    source=st.sampled_from(SOURCES),
    flips=st.lists(
        st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=20
    ),
)
def test_bit_flips(videos, tmp_path, source, flips):
    data = bytearray(videos[source].read_bytes())
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    path = tmp_path / f"flipped{videos[source].suffix}"
    path.write_bytes(bytes(data))
    decode_all_or_error(path)
