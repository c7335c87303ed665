"""Temporal samplers: property tests (range, order, length, determinism) and the published layouts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidrec.data import samplers as S

frames_st = st.integers(1, 400)
settings.register_profile("vidrec_data", max_examples=60, deadline=None)
settings.load_profile("vidrec_data")


def _check_clips(clips, num_frames, length, *, sorted_runs=None):
    assert clips, "never empty"
    for k, c in enumerate(clips):
        assert isinstance(c, S.ClipSample) and c.clip == k
        assert len(c.indices) == length
        assert all(0 <= i < num_frames for i in c.indices)
        runs = sorted_runs or length
        for r in range(0, length, runs):
            run = c.indices[r : r + runs]
            assert list(run) == sorted(run)


@given(
    n=frames_st,
    segs=st.integers(1, 12),
    new_length=st.integers(1, 6),
    train=st.booleans(),
    seed=st.integers(0, 99),
)
def test_tsn_properties(n, segs, new_length, train, seed):
    clips = S.tsn_segments(n, seed, num_segments=segs, new_length=new_length, train=train)
    _check_clips(clips, n, segs * new_length, sorted_runs=new_length)
    idx = np.array(clips[0].indices).reshape(segs, new_length)
    if n >= new_length:  # runs are consecutive frames
        assert np.all(np.diff(idx, axis=1) == 1)
    if n >= segs * new_length:  # runs are disjoint, in order, one per segment
        assert np.all(np.diff(idx.ravel()) > 0)
        seg = np.floor(idx[:, 0] * segs / n).astype(int)
        assert np.array_equal(seg, np.arange(segs))
    assert clips == S.tsn_segments(n, seed, num_segments=segs, new_length=new_length, train=train)


@given(
    n=frames_st,
    clip_len=st.integers(1, 32),
    stride=st.integers(1, 8),
    train=st.booleans(),
    seed=st.integers(0, 99),
)
def test_dense_clip_properties(n, clip_len, stride, train, seed):
    clips = S.dense_clip(n, np.random.default_rng(seed), clip_len=clip_len, stride=stride, train=train)
    _check_clips(clips, n, clip_len)
    idx = np.array(clips[0].indices)
    if (clip_len - 1) * stride < n:  # fits: exact stride
        assert np.all(np.diff(idx) == stride)
    else:  # too short: starts at 0 and repeats the last frame
        assert idx[0] == 0 and idx[-1] == n - 1
    assert clips == S.dense_clip(
        n, np.random.default_rng(seed), clip_len=clip_len, stride=stride, train=train
    )


@given(n=frames_st, num=st.integers(1, 30), train=st.booleans(), seed=st.integers(0, 99))
def test_uniform_properties(n, num, train, seed):
    clips = S.uniform_frames(n, seed, num=num, train=train)
    _check_clips(clips, n, num)
    if not train and num > 1:
        assert clips[0].indices[0] == 0 and clips[0].indices[-1] == n - 1


@given(n=frames_st, clip_len=st.integers(1, 20), k=st.integers(1, 12), stride=st.integers(1, 3))
def test_test_clips_properties(n, clip_len, k, stride):
    clips = S.test_clips(n, clip_len=clip_len, stride=stride, num_clips=k)
    assert len(clips) == k
    _check_clips(clips, n, clip_len)
    starts = [c.indices[0] for c in clips]
    assert starts == sorted(starts) and starts[0] == 0
    span = (clip_len - 1) * stride + 1
    if n >= span:
        assert clips[-1].indices[-1] == n - 1 or k == 1  # the last clip ends with the video


@given(n=st.integers(1, 200), clip_len=st.integers(1, 20), hop=st.integers(1, 10))
def test_test_clips_hop_covers_video_and_ends_aligned(n, clip_len, hop):
    clips = S.test_clips(n, clip_len=clip_len, hop=hop)
    _check_clips(clips, n, clip_len)
    starts = [c.indices[0] for c in clips]
    assert all(0 < b - a <= hop for a, b in zip(starts, starts[1:]))
    assert clips[-1].indices[-1] == min(n, clip_len) - 1 + max(n - clip_len, 0)


def test_lrcn_protocol_16_frames_hop_8():
    clips = S.test_clips(40, clip_len=16, hop=8)
    assert [c.indices[0] for c in clips] == [0, 8, 16, 24]
    assert clips[-1].indices == tuple(range(24, 40))
    clips = S.test_clips(45, clip_len=16, hop=8)
    assert [c.indices[0] for c in clips] == [0, 8, 16, 24, 29]  # the last aligned to the end


def test_two_stream_25_frames():
    views = S.test_frames(250, num=25, new_length=10)
    assert len(views) == 25 and all(len(v.indices) == 10 for v in views)
    assert views[0].indices[0] == 0 and views[-1].indices[-1] == 249
    short = S.test_frames(5, num=25)
    assert len(short) == 25 and max(i for v in short for i in v.indices) == 4


def test_training_draws_vary_and_testing_is_fixed():
    draws = {S.dense_clip(100, seed, clip_len=8).pop().indices for seed in range(20)}
    assert len(draws) > 5
    tsn = {S.tsn_segments(100, seed, num_segments=4).pop().indices for seed in range(20)}
    assert len(tsn) > 5
    assert (
        len({S.tsn_segments(100, seed, num_segments=4, train=False).pop().indices for seed in range(5)}) == 1
    )


def test_tsn_test_mode_takes_segment_centres():
    assert S.tsn_segments(100, num_segments=4, train=False)[0].indices == (12, 37, 62, 87)


def test_random_stride_range():
    strides = {np.diff(S.dense_clip(200, s, clip_len=5, stride=(5, 15))[0].indices)[0] for s in range(60)}
    assert strides <= set(range(5, 16)) and len(strides) > 5
    assert np.all(np.diff(S.dense_clip(200, clip_len=5, stride=(5, 15), train=False)[0].indices) == 10)


def test_loop_padding():
    assert S.dense_clip(3, 0, clip_len=5, pad="loop")[0].indices == (0, 1, 2, 0, 1)


def test_flow_stack_starts_stay_usable():
    """With N frames there are N-1 flows; sampling starts for stacks of L uses N-L starts (last frame N-2)."""
    n, length = 20, 5
    idx = S.tsn_segments(n - length, 0, num_segments=3, train=True)[0].indices
    assert max(idx) + length - 1 <= n - 2


def test_build_sampler_and_errors():
    sampler = S.build_sampler("dense", clip_len=4, train=False)
    assert sampler(10, None) == [S.ClipSample((3, 4, 5, 6))]
    with pytest.raises(ValueError, match="unknown sampler"):
        S.build_sampler("nope")
    with pytest.raises(ValueError, match="at least one frame"):
        S.dense_clip(0, clip_len=4)
    with pytest.raises(ValueError, match="exactly one"):
        S.test_clips(10, clip_len=4)


# ----------------------------------------------------------------------------- gaps mutation testing found


def test_a_seed_and_a_generator_of_that_seed_draw_the_same():
    for seed in (0, 7, 123):
        gen = np.random.default_rng(seed)
        assert S.dense_clip(100, seed, clip_len=8) == S.dense_clip(100, gen, clip_len=8)
        gen = np.random.default_rng(seed)
        assert S.tsn_segments(100, seed, num_segments=5) == S.tsn_segments(100, gen, num_segments=5)
    draws = [S.dense_clip(1000, seed, clip_len=4)[0].indices for seed in range(10)]
    assert len(set(draws)) == 10  # the seed is used, not a fresh random state or a constant


def test_random_stride_reaches_both_ends_of_its_range():
    strides = {np.diff(S.dense_clip(200, s, clip_len=5, stride=(5, 15))[0].indices)[0] for s in range(300)}
    assert strides == set(range(5, 16))


def test_test_time_clips_are_centred():
    # room for 10 more starts: the centre start is 5; a stride range uses its middle stride (5)
    assert S.dense_clip(20, clip_len=4, stride=3, train=False)[0].indices == (5, 8, 11, 14)
    assert S.dense_clip(20, clip_len=4, stride=(4, 6), train=False)[0].indices == (2, 7, 12, 17)
    assert S.dense_clip(25, clip_len=4, stride=(4, 8), train=False)[0].indices == (3, 9, 15, 21)
    assert S.dense_clip(9, 123, clip_len=9, train=False)[0].indices == tuple(range(9))


@pytest.mark.parametrize(
    ("sampler", "kwargs", "name"),
    [
        (S.tsn_segments, {"num_segments": 0}, "num_segments"),
        (S.tsn_segments, {"num_segments": 3, "new_length": 0}, "new_length"),
        (S.dense_clip, {"clip_len": 0}, "clip_len"),
        (S.dense_clip, {"clip_len": 4, "stride": 0}, "stride"),
        (S.dense_clip, {"clip_len": 4, "stride": (0, 0), "train": False}, "stride"),
        (S.uniform_frames, {"num": 0}, "num"),
        (S.uniform_frames, {"num": 0, "train": True}, "num_segments"),
        (S.test_clips, {"clip_len": 4, "num_clips": 0}, "num_clips"),
        (S.test_clips, {"clip_len": 0, "num_clips": 2}, "clip_len"),
        (S.test_clips, {"clip_len": 4, "stride": 0, "num_clips": 2}, "stride"),
        (S.test_clips, {"clip_len": 4, "hop": 0}, "hop"),
        (S.test_frames, {"num": 0}, "num_clips"),
    ],
)
def test_zero_valued_arguments_are_refused(sampler, kwargs, name):
    with pytest.raises(ValueError, match=rf"{name} must be >= 1, got 0"):
        sampler(50, 0, **kwargs)


def test_one_frame_and_one_of_everything_are_allowed():
    assert S.dense_clip(1, 0, clip_len=1)[0].indices == (0,)
    assert S.tsn_segments(1, 0, num_segments=1)[0].indices == (0,)
    assert S.uniform_frames(1, num=1)[0].indices == (0,)
    assert [c.indices for c in S.test_clips(1, clip_len=1, num_clips=1)] == [(0,)]
    assert [c.indices for c in S.test_clips(3, clip_len=1, hop=1)] == [(0,), (1,), (2,)]


def test_test_frames_defaults_are_the_two_stream_protocol():
    views = S.test_frames(100)
    assert len(views) == 25 and all(len(v.indices) == 1 for v in views)
    assert views[0].indices == (0,) and views[-1].indices == (99,)


def test_training_draws_follow_the_seed_everywhere():
    for seed in range(5):
        a = S.dense_clip(300, seed, clip_len=5, stride=(5, 15))
        assert a == S.dense_clip(300, seed, clip_len=5, stride=(5, 15))  # the stride draw uses the seed too
        assert S.uniform_frames(100, seed, num=6, train=True) == S.uniform_frames(
            100, seed, num=6, train=True
        )
    uniform = {S.uniform_frames(100, seed, num=4, train=True)[0].indices for seed in range(20)}
    assert len(uniform) > 5  # training jitters; testing would give one answer


def test_tsn_segments_draw_their_offsets_independently():
    lo = np.array([0, 25, 50, 75])
    offsets = [np.array(S.tsn_segments(100, seed, num_segments=4)[0].indices) - lo for seed in range(10)]
    assert any(len(set(o.tolist())) > 1 for o in offsets)


def test_uniform_and_odd_stride_range_test_layouts():
    assert S.uniform_frames(11, num=3)[0].indices == (0, 5, 10)
    assert S.uniform_frames(11, num=6)[0].indices == (0, 2, 4, 6, 8, 10)
    # stride range (4, 7) tests with stride 5 (the integer middle), centred: room 24 -> start 12
    assert S.dense_clip(40, clip_len=4, stride=(4, 7), train=False)[0].indices == (12, 17, 22, 27)


def test_unknown_padding_is_named():
    with pytest.raises(ValueError, match="pad must be 'repeat_last' or 'loop', got 'zeros'"):
        S.dense_clip(3, 0, clip_len=5, pad="zeros")
