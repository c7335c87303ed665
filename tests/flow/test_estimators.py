"""Flow estimators (DIS, Farneback, TV-L1, RAFT): sign convention on a known shift, dtypes, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flow_helpers import H, W, interior, shifted_pair, smooth_texture

from vidrec.flow import DIS_TUNED, METHODS, FlowEstimator, RaftWeightsMissing, compute_flow
from vidrec.flow.raft_weights import raft_weights_path

CPU_METHODS = ("dis", "farneback", "tvl1")
# (u, v): content moves right / left / down / up by whole pixels
SHIFTS = [(2, 0), (-2, 0), (0, 2), (0, -1)]


@pytest.mark.parametrize("shift", SHIFTS, ids=lambda s: f"u{s[0]}v{s[1]}")
@pytest.mark.parametrize("method", CPU_METHODS)
def test_integer_shift_is_recovered_with_the_documented_sign(method, shift):
    prev, nxt = shifted_pair(*shift)
    assert np.array_equal(
        prev[4:-4, 4:-4], nxt[4 + shift[1] : H - 4 + shift[1], 4 + shift[0] : W - 4 + shift[0]]
    )
    flow = compute_flow(prev, nxt, method)
    assert flow.dtype == np.float32 and flow.shape == (H, W, 2)
    vectors = interior(flow)
    np.testing.assert_allclose(np.median(vectors, axis=0), shift, atol=0.1)
    assert np.mean(np.linalg.norm(vectors - shift, axis=1) < 0.5) > 0.9


@pytest.mark.parametrize("method", CPU_METHODS)
def test_identical_frames_give_zero_flow(method):
    frame = smooth_texture(H, W, seed=5)
    flow = compute_flow(frame, frame, method)
    assert np.abs(flow).mean() < 0.01 and np.abs(flow).max() < 0.25  # Farneback: ~0.1 px at the border


@pytest.mark.parametrize("method", CPU_METHODS)
def test_grey_frames_give_the_same_flow_as_rgb(method):
    prev, nxt = shifted_pair(1, 0)
    est = FlowEstimator(method)
    np.testing.assert_array_equal(est(prev[..., 0], nxt[..., 0]), est(prev, nxt))


def test_estimator_is_reusable_and_dis_is_deterministic():
    est = FlowEstimator("dis")
    pairs = [shifted_pair(2, 0, seed=s) for s in range(3)]
    first = [est(*p) for p in pairs]
    again = [est(*p) for p in pairs]  # reused backend: no state leaks from one pair to the next
    fresh = [compute_flow(*p, "dis") for p in pairs]
    for a, b, c in zip(first, again, fresh):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_dis_options_override_the_tuned_settings():
    prev, nxt = shifted_pair(2, 0)
    tuned = FlowEstimator("dis")
    assert tuned.opts == {}
    plain = FlowEstimator("dis", preset="ultrafast")  # preset alone: OpenCV's plain preset
    coarse = FlowEstimator("dis", patch_size=12, var_iterations=0)
    for est in (plain, coarse):
        np.testing.assert_allclose(np.median(interior(est(prev, nxt)), axis=0), (2, 0), atol=0.15)
    assert not np.array_equal(coarse(prev, nxt), tuned(prev, nxt))
    assert set(DIS_TUNED) >= {"patch_size", "var_iterations"}


def test_tvl1_options_are_passed_to_opencv():
    prev, nxt = shifted_pair(2, 0)
    fast = FlowEstimator("tvl1", warps=2, nscales=2, epsilon=0.05)
    np.testing.assert_allclose(np.median(interior(fast(prev, nxt)), axis=0), (2, 0), atol=0.15)
    with pytest.raises(TypeError):
        FlowEstimator("tvl1", no_such_option=1)


@pytest.mark.parametrize("method", CPU_METHODS)
def test_frames_of_different_sizes_raise(method):
    a = smooth_texture(H, W)
    b = smooth_texture(H, W + 2)
    with pytest.raises(ValueError, match="differ"):
        compute_flow(a, b, method)
    with pytest.raises(ValueError, match="differ"):
        compute_flow(a, a[: H // 2], method)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_bad_frames_raise(method):
    a = smooth_texture(H, W)
    with pytest.raises(TypeError, match="uint8"):
        compute_flow(a.astype(np.float32), a.astype(np.float32), method)
    rgba = np.zeros((H, W, 4), np.uint8)
    with pytest.raises(ValueError, match="RGB"):
        compute_flow(rgba, rgba, method)


@pytest.mark.parametrize("method", ["DIS", "tv-l1", "flownet", ""])
def test_unknown_method_raises(method):
    with pytest.raises(ValueError, match="method must be one of") as info:
        FlowEstimator(method)
    for known in METHODS:
        assert known in str(info.value)


def test_unknown_dis_option_names_the_allowed_keys():
    with pytest.raises(ValueError, match="unknown DIS option 'patchsize'") as info:
        FlowEstimator("dis", patchsize=8)
    for key in ("preset", *DIS_TUNED):
        if key != "preset":
            assert key in str(info.value)
    with pytest.raises(ValueError, match="preset"):
        FlowEstimator("dis", preset="slow")


# -- RAFT -------------------------------------------------------------------------------------------------
def test_raft_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    expected = raft_weights_path("small")
    assert expected.is_relative_to(tmp_path / "torch_home")
    assert expected.parent.name == "checkpoints" and expected.suffix == ".pth"
    with pytest.raises(RaftWeightsMissing) as info:
        FlowEstimator("raft")
    message = str(info.value)
    assert str(expected) in message and "never downloads" in message and "--raft-weights" in message
    assert isinstance(info.value, FileNotFoundError)
    assert not expected.exists()  # nothing was fetched


def test_raft_with_a_missing_local_file_names_it(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(RaftWeightsMissing, match="nope.pth"):
        FlowEstimator("raft", weights=missing, device="cpu")
    with pytest.raises(ValueError, match="small' or 'large"):
        FlowEstimator("raft", model="medium", weights=None, device="cpu")


@pytest.fixture(scope="module")
def raft_small_weights(tmp_path_factory):
    """A randomly initialised torchvision raft_small state dict saved to a local .pth (no download)."""
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_small_random.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


# torchvision's RAFT needs >= 128 px a side; RaftFlow pads smaller frames (64x64, 50x70) and odd sizes
@pytest.mark.parametrize("size", [(64, 64), (50, 70), (130, 132)], ids=["64x64", "50x70", "130x132"])
def test_raft_with_local_weights_returns_float32_flow(raft_small_weights, size):
    h, w = size
    prev, nxt = shifted_pair(2, 0, height=h, width=w)
    est = FlowEstimator("raft", weights=str(raft_small_weights), device="cpu", num_updates=3)
    flow = est(prev, nxt)
    assert flow.dtype == np.float32 and flow.shape == (h, w, 2)
    assert np.isfinite(flow).all()
    np.testing.assert_array_equal(est(prev, nxt), flow)  # eval mode, no dropout: deterministic on CPU
    with pytest.raises(ValueError, match="differ"):
        est(prev, nxt[:32])


def test_one_estimator_called_from_several_threads_gives_the_serial_flows():
    """OpenCV's DIS object keeps per-call state: `FlowEstimator` keeps one per calling thread."""
    from concurrent.futures import ThreadPoolExecutor

    est = FlowEstimator("dis")
    pairs = [shifted_pair(s % 3, 1, seed=s) for s in range(6)]
    serial = [est(a, b) for a, b in pairs]
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(lambda p: est(*p), pairs * 3))
    for i, flow in enumerate(threaded):
        np.testing.assert_array_equal(flow, serial[i % len(pairs)])
    assert not np.array_equal(serial[0], serial[1])  # the pairs differ, so a mix-up would show
