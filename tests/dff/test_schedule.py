"""Key-frame schedules: the fixed interval, and the adaptive policy that never exceeds its budget of key
frames in any window (a property over random signals) while spending it where the signal is high."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidrec.dff.schedule import Adaptive, FixedInterval, Schedule


def _keys(schedule: Schedule, signals: list[float]) -> list[int]:
    schedule.reset()
    return [i for i, s in enumerate(signals) if schedule.decide(i, None if i == 0 else s)]


def test_fixed_interval_picks_every_lth_frame_and_rejects_bad_intervals():
    assert _keys(FixedInterval(4), [0.0] * 10) == [0, 4, 8]
    assert _keys(FixedInterval(1), [0.0] * 3) == [0, 1, 2]
    assert isinstance(FixedInterval(3), Schedule) and isinstance(Adaptive(), Schedule)
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="interval must be an integer >= 1"):
            FixedInterval(bad)


@settings(max_examples=300, deadline=None)
@given(
    signals=st.lists(st.floats(0.0, 3.0, allow_nan=False), min_size=1, max_size=120),
    budget=st.integers(1, 5),
    extra=st.integers(0, 20),
    threshold=st.floats(0.0, 3.0),
    max_gap=st.one_of(st.none(), st.integers(1, 15)),
)
def test_adaptive_never_exceeds_its_budget_in_any_window(signals, budget, extra, threshold, max_gap):
    window = budget + extra
    keys = _keys(Adaptive(budget=budget, window=window, threshold=threshold, max_gap=max_gap), signals)
    assert keys[0] == 0
    for start in range(len(signals)):
        assert sum(start <= k < start + window for k in keys) <= budget
    # and it spends it where propagation fails: every frame over the threshold with budget left is a key
    for i, s in enumerate(signals[1:], start=1):
        spent = sum(i - window < k < i for k in keys)
        if s > threshold and spent < budget:
            assert i in keys


def test_adaptive_keys_follow_the_signal_and_restart_per_video():
    policy = Adaptive(budget=2, window=10, threshold=1.0)
    quiet, jump = [0.1] * 30, [0.1] * 30
    jump[7] = jump[8] = jump[9] = jump[10] = 5.0
    assert _keys(policy, quiet) == [0]  # nothing moves: one key frame, far below FixedInterval(5)'s cost
    assert _keys(policy, jump) == [
        0,
        7,
        10,
    ]  # 8, 9 wait (0 and 7 spent the budget); 10 has 0 out of its window
    assert _keys(Adaptive(budget=1, window=5, threshold=1.0, max_gap=6), quiet[:14]) == [0, 6, 12]


def test_adaptive_rejects_a_budget_larger_than_its_window_and_unknown_signals():
    with pytest.raises(ValueError, match="1 <= budget <= window"):
        Adaptive(budget=3, window=2)
    with pytest.raises(ValueError, match="'flow' or 'warp'"):
        Adaptive(signal="brightness")
