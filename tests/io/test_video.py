"""Frame exactness: any index list decodes to the same frames as a full sequential decode."""

from __future__ import annotations

import numpy as np
import pytest
from io_helpers import VIDEO_SPECS, full_decode

from vidrec.io import VideoMeta, VideoReader, probe, read_frames


def index_lists(n: int) -> list[list[int]]:
    rng = np.random.default_rng(n)
    tsn = [int((i + 0.5) * n / 8) for i in range(8)]
    return [
        tsn,
        [n - 1],
        [0, 0, n - 1, 0],
        list(range(n))[::-1],
        rng.integers(0, n, 12).tolist(),  # unsorted, repeats likely
        sorted(rng.choice(n, min(n, 5), replace=False).tolist()),
        [n // 2, n // 2 + 1, n // 2 - 1],
    ]


@pytest.mark.parametrize("name", sorted(VIDEO_SPECS))
@pytest.mark.parametrize("threads", [1, 0])
def test_any_indices_equal_full_decode(videos, name, threads):
    path = videos[name]
    truth = full_decode(path)
    with VideoReader(path, threads=threads) as reader:
        assert len(reader) == len(truth) == reader.meta.num_frames
        for indices in index_lists(len(truth)):
            got = reader.get_frames(indices)
            assert got.dtype == np.uint8 and got.shape == (len(indices), *truth.shape[1:])
            np.testing.assert_array_equal(got, truth[indices], err_msg=f"{name} {indices}")


@pytest.mark.parametrize("name", sorted(VIDEO_SPECS))
def test_iteration_equals_full_decode(videos, name):
    with VideoReader(videos[name], threads=1) as reader:
        np.testing.assert_array_equal(np.stack(list(reader)), full_decode(videos[name]))


@pytest.mark.parametrize("name", ["h264_bframes_gop100.mp4", "mpeg4_bframes.avi", "vp9.webm"])
@pytest.mark.parametrize("size, hw", [(32, (32, 43)), ((24, 40), (24, 40))])
def test_resize_during_decode(videos, name, size, hw):
    truth = full_decode(videos[name], size=hw)
    indices = index_lists(len(truth))[0]
    got = read_frames(videos[name], indices, size=size, threads=1)
    assert got.shape == (len(indices), *hw, 3)
    np.testing.assert_array_equal(got, truth[indices])


def test_short_side_keeps_aspect_for_portrait(tmp_path):
    from io_helpers import encode, moving_texture

    path = encode(tmp_path / "portrait.mp4", moving_texture(5, height=64, width=32), "libx264")
    assert read_frames(path, [0], size=16).shape == (1, 32, 16, 3)


def test_meta(videos):
    meta = probe(videos["h264_bframes_gop100.mp4"])
    assert isinstance(meta, VideoMeta)
    assert (meta.width, meta.height, meta.num_frames, meta.codec) == (64, 48, 120, "h264")
    assert meta.fps == pytest.approx(25.0)
    assert meta.duration == pytest.approx(120 / 25, abs=0.1)
    assert probe(videos["mpeg4_gop12.avi"]).codec == "mpeg4"
    assert probe(videos["vp9.webm"]).codec in ("vp9", "libvpx-vp9")
    assert probe(videos["anim.gif"]).num_frames == 30


def test_variable_frame_rate_timestamps(videos):
    with VideoReader(videos["h264_vfr.mkv"]) as reader:
        times = reader.frame_times()
    steps = np.round(np.diff(times) * 1000).astype(int)
    assert len(times) == 60 and times[0] == 0
    assert set(steps) <= {10, 33, 40, 80, 120} and len(set(steps)) > 2  # irregular, as encoded


def test_out_of_range_names_path_and_count(videos):
    path = videos["mpeg4_gop12.avi"]
    with VideoReader(path) as reader:
        for bad in ([60], [-1], [0, 1000]):
            with pytest.raises(IndexError, match=r"mpeg4_gop12\.avi.*60 frames"):
                reader.get_frames(bad)
        assert reader.get_frames([]).shape == (0, 48, 64, 3)


def test_real_clips(shared_data):
    for path in sorted((shared_data / "clips").iterdir()):
        truth = full_decode(path)
        with VideoReader(path, threads=1) as reader:
            assert len(reader) == len(truth)
            for indices in index_lists(len(truth))[:3] + index_lists(len(truth))[4:]:
                np.testing.assert_array_equal(reader.get_frames(indices), truth[indices], err_msg=path.name)


@pytest.mark.parametrize("name", sorted(VIDEO_SPECS))
def test_large_stream_mode_seeks_exactly(videos, name, monkeypatch):
    """Streams over MAX_CACHED_BYTES are not kept in memory but re-read with demuxer seeks."""
    monkeypatch.setattr("vidrec.io.index.MAX_CACHED_BYTES", 0)
    path = videos[name]
    truth = full_decode(path)
    with VideoReader(path, threads=1) as reader:
        assert reader._index.packets is None and len(reader) == len(truth)
        for indices in index_lists(len(truth)):
            got = reader.get_frames(indices)
            np.testing.assert_array_equal(got, truth[indices], err_msg=f"{name} {indices}")
        np.testing.assert_array_equal(np.stack(list(reader)), truth)


def test_large_stream_mode_real_clips(shared_data, monkeypatch):
    monkeypatch.setattr("vidrec.io.index.MAX_CACHED_BYTES", 0)
    for path in sorted((shared_data / "clips").iterdir()):
        truth = full_decode(path)
        with VideoReader(path, threads=1) as reader:
            for indices in index_lists(len(truth)):
                np.testing.assert_array_equal(reader.get_frames(indices), truth[indices], err_msg=path.name)
