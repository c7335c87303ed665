"""What real files do to a decoder: edit lists, truncation, damaged data, variable frame rate, rotation.

Each case is a small generated file with the property a real clip had (issue 9); frames are compared
with what a player shows (a plain sequential decode; for damaged data one that skips rejected packets).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from io_helpers import (
    VIDEO_SPECS,
    X264_SHORT,
    _vfr_pts,
    damage_packet,
    encode,
    full_decode,
    moving_texture,
    player_decode,
    remux,
)

from vidrec.io import VideoDamageWarning, VideoDecodeError, VideoReader, probe, read_frames

TRIM = 13  # frames cut from the start by the edit list; the GOP is 10, so 3 are decoded pre-roll


@pytest.fixture(scope="module")
def edit_list_mp4(tmp_path_factory):
    """An mp4 trimmed as `ffmpeg -ss T -c copy` does: an edit list starting 13 frames in."""
    root = tmp_path_factory.mktemp("edit")
    src = encode(root / "src.mp4", moving_texture(60, seed=9), "libx264", options=X264_SHORT)
    return remux(src, root / "trimmed.mp4", shift_frames=TRIM)


def index_lists(n: int) -> list[list[int]]:
    return [[0], [n - 1], [0, 1, 2], list(range(n)), [n - 1, 0, n // 2, n // 2], [3, 9, 10, 11, n - 2]]


# -- 1. edit lists ---------------------------------------------------------------------------------------
def test_edit_list_frames_are_what_a_player_shows(edit_list_mp4):
    truth = full_decode(edit_list_mp4)  # FFmpeg applies the edit list when decoding
    assert len(truth) == 60 - TRIM
    np.testing.assert_array_equal(truth[0], full_decode(edit_list_mp4.with_name("src.mp4"))[TRIM])
    meta = probe(edit_list_mp4)
    assert meta.num_frames == len(truth) and meta.duration == pytest.approx(len(truth) / 25)
    with VideoReader(edit_list_mp4, threads=1) as reader:
        for indices in index_lists(len(truth)):
            np.testing.assert_array_equal(reader.get_frames(indices), truth[indices], err_msg=str(indices))
        np.testing.assert_array_equal(np.stack(list(reader)), truth)
        times = reader.frame_times()
        assert times[0] == 0 and times[-1] == pytest.approx((len(truth) - 1) / 25)


def test_edit_list_large_stream_mode(edit_list_mp4, monkeypatch):
    monkeypatch.setattr("vidrec.io.index.MAX_CACHED_BYTES", 0)  # packets re-read with demuxer seeks
    truth = full_decode(edit_list_mp4)
    with VideoReader(edit_list_mp4, threads=1) as reader:
        assert reader._index.packets is None
        for indices in index_lists(len(truth)):
            np.testing.assert_array_equal(reader.get_frames(indices), truth[indices], err_msg=str(indices))


def test_one_frame_numbering_across_probe_read_flow_predict_sheet(edit_list_mp4, tmp_path, capsys):
    """probe, read_frames, the flow file, predict's frames and the sheet agree on frame i."""
    from vidrec.cli import main
    from vidrec.data.samplers import tsn_segments
    from vidrec.engine.predict import Preprocess, rgb_frames
    from vidrec.flow.storage import flow_video

    n = probe(edit_list_mp4).num_frames
    flow = flow_video(edit_list_mp4, method="farneback", short_side=0)
    assert flow.shape[0] == n - 1
    frames = read_frames(edit_list_mp4, range(n))
    assert frames.shape[0] == n
    streamed = list(rgb_frames(edit_list_mp4, preprocess=Preprocess(resize=48, size=48)))
    assert [f.index for f in streamed] == list(range(n))
    assert [f.time_s for f in streamed] == pytest.approx(np.arange(n) / 25)
    assert main(["sheet", str(edit_list_mp4), "--out", str(tmp_path / "s.png"), "--frames", "5"]) == 0
    shown = capsys.readouterr().out
    assert str(list(tsn_segments(n, num_segments=5, train=False)[0].indices)) in shown


# -- 2. truncation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["h264_gop10.mkv", "h264_gop10_faststart.mp4", "mpeg4_gop12.avi"])
def test_truncation_is_detected_warned_and_strict_raises(truncated_videos, name):
    path = truncated_videos[name]
    with pytest.warns(VideoDamageWarning, match=rf"{name}: truncated: .*frames"):
        meta = probe(path)
    assert meta.truncated and meta.problems and 0 < meta.num_frames < 60
    assert meta.duration == pytest.approx(meta.num_frames / 25, abs=0.05)  # what is there, not the header
    with pytest.raises(VideoDecodeError, match=rf"{name}: truncated"):
        VideoReader(path, strict=True)


@pytest.mark.parametrize("name", sorted(VIDEO_SPECS))
def test_sound_files_raise_no_alarm(videos, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", VideoDamageWarning)
        with VideoReader(videos[name], strict=True, threads=1) as reader:
            assert not reader.meta.truncated and reader.meta.problems == ()
            assert reader.verify() == []


# -- 3. damaged data -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def damaged_avi(tmp_path_factory):
    """MPEG-4 avi, GOP 12, whose frame 30 (a P-frame) and last frame have damaged headers."""
    root = tmp_path_factory.mktemp("damaged")
    src = encode(root / "src.avi", moving_texture(60, seed=7, height=96, width=128), "mpeg4", gop=12)
    middle = damage_packet(src, root / "middle.avi", 30, at=0.0, length=8)
    return damage_packet(middle, root / "damaged.avi", 59, at=0.0, length=8)


def test_damaged_avi_decodes_around_the_damage(damaged_avi):
    shown = {pts: rgb for pts, rgb, _ in player_decode(damaged_avi)}  # pts = frame number in AVI
    assert 30 not in shown and 59 not in shown and len(shown) == 58
    with VideoReader(damaged_avi, threads=1) as reader:
        assert len(reader) == 60  # the index cannot know; reading says what is wrong
        with pytest.warns(
            VideoDamageWarning, match="damaged.avi: damaged data: the decoder rejected packet 30"
        ):
            got = reader.get_frames([29, 31, 45, 58])
        np.testing.assert_array_equal(got, np.stack([shown[i] for i in (29, 31, 45, 58)]))
        for bad in (30, 59):
            with pytest.raises(
                VideoDecodeError, match=rf"frame {bad} cannot be decoded: the file is damaged"
            ):
                reader.get_frames([bad])
        assert any("frames never decode: 30, 59" in p for p in reader.verify())
    with pytest.raises(VideoDecodeError, match="damaged data"):
        read_frames(damaged_avi, [31], strict=True)  # decoding 31 passes the rejected packet 30


def test_damaged_mkv_keyframe_warns(tmp_path):
    src = encode(
        tmp_path / "src.mkv", moving_texture(60, seed=7, height=96, width=128), "libx264", options=X264_SHORT
    )
    path = damage_packet(src, tmp_path / "key.mkv", 10, at=0.5, length=16)  # frame 10 is a keyframe
    assert [i for i, (_, _, corrupt) in enumerate(player_decode(path)) if corrupt][:1] == [10]
    with pytest.warns(VideoDamageWarning, match=r"key.mkv: damaged data: frame 10 decoded with errors"):
        read_frames(path, [5, 10])
    with warnings.catch_warnings():
        warnings.simplefilter("error", VideoDamageWarning)
        read_frames(path, [5, 9])  # before the damage: clean
    with pytest.raises(VideoDecodeError, match="frame 10 decoded with errors"):
        read_frames(path, [10], strict=True)


# -- 5. variable frame rate ------------------------------------------------------------------------------
def test_vfr_fps_is_the_real_average(videos):
    pts = _vfr_pts(60)  # ms, as encoded
    meta = probe(videos["h264_vfr.mkv"])
    assert meta.fps == pytest.approx(59 / ((pts[-1] - pts[0]) / 1000), rel=1e-9)
    assert abs(meta.fps - 25) > 5  # not the nominal rate


# -- 6. rotation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rotation", "hflip", "expect"),
    [
        (90, False, lambda f: np.rot90(f, 1, axes=(1, 2))),  # counter-clockwise, as FFmpeg's matrix says
        (270, False, lambda f: np.rot90(f, 3, axes=(1, 2))),
        (180, False, lambda f: f[:, ::-1, ::-1]),
        (0, True, lambda f: f[:, :, ::-1]),
        (90, True, lambda f: np.rot90(f, 1, axes=(1, 2))[:, :, ::-1]),  # mirrored after the turn
    ],
)
def test_rotation_is_applied_or_kept(tmp_path, rotation, hflip, expect):
    src = encode(tmp_path / "src.mp4", moving_texture(20, seed=3), "libx264", options=X264_SHORT)
    path = remux(src, tmp_path / "phone.mp4", rotation=rotation, hflip=hflip)
    stored = full_decode(src)
    meta = probe(path)
    assert meta.rotation == rotation
    assert (meta.height, meta.width) == expect(stored).shape[1:3]
    with VideoReader(path, threads=1) as reader:
        np.testing.assert_array_equal(reader.get_frames(range(20)), expect(stored))
        np.testing.assert_array_equal(np.stack(list(reader)), expect(stored))
    kept = read_frames(path, [0, 7], autorotate=False)
    np.testing.assert_array_equal(kept, stored[[0, 7]])
    small = read_frames(path, [3], size=24)
    assert min(small.shape[1:3]) == 24 and (small.shape[1] > small.shape[2]) == (expect(stored).shape[1] > 48)


def test_damage_without_timestamps_is_not_renumbered(videos, tmp_path):
    """AVI with B-frames has no timestamps: frames are counted, so after a rejected packet the count
    would shift; the reader refuses those frames instead of returning the wrong ones."""
    path = damage_packet(videos["mpeg4_bframes.avi"], tmp_path / "bf.avi", 30, at=0.0, length=8)
    truth = full_decode(videos["mpeg4_bframes.avi"])
    with VideoReader(path, threads=1) as reader:
        assert not reader._index.by_pts
        np.testing.assert_array_equal(reader.get_frames([3, 20]), truth[[3, 20]])  # before the damage
        with pytest.warns(VideoDamageWarning), pytest.raises(VideoDecodeError, match="numbered exactly"):
            reader.get_frames([45])
