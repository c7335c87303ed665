"""Per-video flow files, completeness checks, denseflow JPEG folders, stale temps and `flow_video`."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import GOOD_VIDEOS, NUM_FRAMES
from flow_helpers import H, W, make_video

from vidrec.flow import (
    FlowEstimator,
    dequantize,
    flow_meta,
    flow_video,
    is_complete,
    load_flow,
    quantize,
    save_flow,
    save_flow_denseflow,
)
from vidrec.flow.storage import FORMAT_VERSION, flow_paths, remove_stale_temps
from vidrec.io import VideoDecodeError, read_flow_folder
from vidrec.io.video import output_size

N = 6  # flow frames in the synthetic arrays


def _codes(n: int = N, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """Quantised smooth flow `(n, h, w, 2)` uint8 that differs per frame (like real flow)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    flows = []
    for _ in range(n):
        a, b, c = rng.uniform(-1, 1, 3)
        u = 8 * a * np.sin(xx / w * 2 * np.pi + c) + 3 * b
        v = 6 * b * np.cos(yy / h * 2 * np.pi - c) - 2 * a
        flows.append(np.stack([u, v], axis=-1))
    return quantize(np.stack(flows))


def _save(out, video_id="v", q=None, **kw):
    q = _codes() if q is None else q
    args = {"bound": 20.0, "method": "dis", "fps": 25.0, "format": "npy", **kw}
    return save_flow(out, video_id, q, **args), q


# -- .flow.npy files --------------------------------------------------------------------------------------
def test_save_and_load_round_trip(tmp_path):
    npy, q = _save(tmp_path)
    assert npy == tmp_path / "v.flow.npy" and npy.is_file() and (tmp_path / "v.flow.json").is_file()
    assert not list(tmp_path.glob("*.tmp"))
    np.testing.assert_array_equal(load_flow(npy), q)
    assert load_flow(npy).dtype == np.uint8
    for order in ([3, 0, 2], [5], [0, 0, 1], np.array([4, 1]), [-1], []):
        got = load_flow(npy, order)
        assert got.shape == (len(order), H, W, 2)
        np.testing.assert_array_equal(got, q[np.asarray(order, dtype=np.int64)])
    np.testing.assert_array_equal(load_flow(npy, slice(1, 4)), q[1:4])
    np.testing.assert_array_equal(load_flow(npy, slice(None, None, 2)), q[::2])
    got = load_flow(npy, [2, 1])
    assert got.flags["C_CONTIGUOUS"] and got.flags["WRITEABLE"] and not isinstance(got, np.memmap)


@pytest.mark.parametrize("name", ["v", "v.flow.npy", "v.flow.json"])
def test_paths_may_name_the_id_the_npy_or_the_json(tmp_path, name):
    _, q = _save(tmp_path)
    np.testing.assert_array_equal(load_flow(tmp_path / name, [1]), q[1:2])
    assert flow_meta(tmp_path / name)["num_frames"] == N + 1


@pytest.mark.parametrize("bad", [[N], [0, N + 3], [-N - 1]])
def test_out_of_range_indices_raise_index_error(tmp_path, bad):
    npy, _ = _save(tmp_path)
    with pytest.raises(IndexError, match=r"v\.flow\.npy"):
        load_flow(npy, bad)


def test_meta_describes_the_file(tmp_path):
    _save(tmp_path, "cls/vid", bound=15.0, method="tvl1", fps=29.97)
    meta = flow_meta(tmp_path / "cls" / "vid")
    assert meta == {
        "bound": 15.0,
        "method": "tvl1",
        "height": H,
        "width": W,
        "num_frames": N + 1,
        "fps": 29.97,
        "version": FORMAT_VERSION,
        "format": "npy",
        "bits": 8,
    }
    assert flow_paths(tmp_path, "cls/vid") == (
        tmp_path / "cls" / "vid.flow.npy",
        tmp_path / "cls" / "vid.flow.json",
    )


def test_missing_files_raise_file_not_found_with_a_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match="vidrec flow"):
        load_flow(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="vidrec flow"):
        flow_meta(tmp_path / "nothing")


@pytest.mark.parametrize(
    "q",
    [
        np.zeros((3, 4, 5, 2), np.float32),
        np.zeros((4, 5, 2), np.uint8),
        np.zeros((3, 4, 5, 3), np.uint8),
    ],
    ids=["float", "3d", "3-channels"],
)
def test_save_flow_rejects_bad_arrays(tmp_path, q):
    with pytest.raises(ValueError, match="uint8"):
        save_flow(tmp_path, "v", q, bound=20, method="dis", fps=25)
    assert not list(tmp_path.iterdir())


def test_saving_again_replaces_the_data(tmp_path):
    _save(tmp_path, q=_codes(seed=1))
    _, q = _save(tmp_path, q=_codes(n=3, seed=2), bound=10.0)
    np.testing.assert_array_equal(load_flow(tmp_path / "v"), q)
    assert flow_meta(tmp_path / "v")["num_frames"] == 4
    assert is_complete(tmp_path, "v", bound=10, method="dis")


# -- completeness ----------------------------------------------------------------------------------------
def test_is_complete_after_save_and_with_matching_settings(tmp_path):
    assert not is_complete(tmp_path, "v")
    _save(tmp_path)
    assert is_complete(tmp_path, "v")
    assert is_complete(tmp_path, "v", bound=20, method="dis")
    assert not is_complete(tmp_path, "v", bound=10.0)
    assert not is_complete(tmp_path, "v", method="tvl1")
    assert not is_complete(tmp_path, "other")


def test_is_complete_is_false_without_the_json(tmp_path):
    npy, _ = _save(tmp_path)
    npy.with_name("v.flow.json").unlink()
    assert npy.is_file() and not is_complete(tmp_path, "v")


def test_is_complete_is_false_without_the_npy(tmp_path):
    npy, _ = _save(tmp_path)
    npy.unlink()
    assert not is_complete(tmp_path, "v")


@pytest.mark.parametrize("keep", [0.0, 0.01, 0.5, 0.99])
def test_is_complete_is_false_for_a_truncated_npy(tmp_path, keep):
    npy, _ = _save(tmp_path)
    data = npy.read_bytes()
    npy.write_bytes(data[: int(len(data) * keep)])
    assert not is_complete(tmp_path, "v")


def test_is_complete_is_false_when_the_json_and_the_data_disagree(tmp_path):
    npy, q = _save(tmp_path)
    np.save(npy, q[:-1])  # data replaced (e.g. by another run) without its JSON
    assert not is_complete(tmp_path, "v")
    npy.write_bytes(b"not a numpy file at all")
    assert not is_complete(tmp_path, "v")


@pytest.mark.parametrize("text", ["", "{", '{"bound": 20.0}', "[]", "null"])
def test_is_complete_is_false_for_a_broken_json(tmp_path, text):
    npy, _ = _save(tmp_path)
    npy.with_name("v.flow.json").write_text(text)
    assert not is_complete(tmp_path, "v")


# -- denseflow folders -----------------------------------------------------------------------------------
def test_denseflow_folder_is_readable_by_read_flow_folder(tmp_path):
    q = _codes()
    folder = save_flow_denseflow(tmp_path, "cls/v", q, bound=20.0, method="dis", fps=25.0)
    assert folder == tmp_path / "cls" / "v"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [f"x_{i:05d}.jpg" for i in range(1, N + 1)] + [f"y_{i:05d}.jpg" for i in range(1, N + 1)]
    )
    got = read_flow_folder(folder, list(range(N)), layout="xy")
    assert got.shape == q.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - q)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 6  # JPEG is lossy, but only a little
    assert flow_meta(tmp_path / "cls" / "v")["format"] == "denseflow"
    assert is_complete(tmp_path, "cls/v", bound=20, method="dis")
    assert not is_complete(tmp_path, "cls/v", bound=10)
    assert not list((tmp_path / "cls").glob("*.tmp"))


def test_denseflow_completeness_needs_the_last_frame(tmp_path):
    save_flow_denseflow(tmp_path, "v", _codes(), bound=20.0, method="dis", fps=25.0)
    (tmp_path / "v" / f"y_{N:05d}.jpg").unlink()
    assert not is_complete(tmp_path, "v")


def test_denseflow_folder_is_replaced_whole(tmp_path):
    save_flow_denseflow(tmp_path, "v", _codes(n=5), bound=20.0, method="dis", fps=25.0)
    save_flow_denseflow(tmp_path, "v", _codes(n=2), bound=20.0, method="dis", fps=25.0)
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [
        "x_00001.jpg",
        "x_00002.jpg",
        "y_00001.jpg",
        "y_00002.jpg",
    ]
    assert flow_meta(tmp_path / "v")["num_frames"] == 3 and is_complete(tmp_path, "v")


# -- stale temps -----------------------------------------------------------------------------------------
def test_remove_stale_temps_removes_only_this_videos_leftovers(tmp_path):
    _save(tmp_path, "v1")
    mine = [tmp_path / "v1.flow.npy.1234.tmp", tmp_path / "v1.flow.json.1234.tmp"]
    for p in mine:
        p.write_bytes(b"half written")
    (tmp_path / "v1.1234.tmp").mkdir()  # a half-filled denseflow folder
    (tmp_path / "v1.1234.tmp" / "x_00001.jpg").write_bytes(b"")
    others = [
        tmp_path / "v2.flow.npy.99.tmp",
        tmp_path / "v10.flow.npy.99.tmp",  # another video whose id starts with "v1"
        tmp_path / "v1_b.flow.json.99.tmp",
    ]
    for p in others:
        p.write_bytes(b"another worker is writing this")
    (tmp_path / "v11.99.tmp").mkdir()

    remove_stale_temps(tmp_path, "v1")
    assert not any(p.exists() for p in mine) and not (tmp_path / "v1.1234.tmp").exists()
    assert all(p.exists() for p in others) and (tmp_path / "v11.99.tmp").is_dir()
    assert is_complete(tmp_path, "v1")  # the finished output is untouched
    remove_stale_temps(tmp_path / "no_such_folder", "v1")  # nothing to do, no error


def test_remove_stale_temps_in_a_subfolder(tmp_path):
    (tmp_path / "cls").mkdir()
    stale = tmp_path / "cls" / "v.flow.npy.7.tmp"
    stale.write_bytes(b"x")
    remove_stale_temps(tmp_path, "cls/v")
    assert not stale.exists()


# -- flow_video ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pan_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("pan") / "pan.mp4", NUM_FRAMES, seed=4, dx=2, dy=-1)


def test_flow_video_returns_quantised_flow_of_every_pair(pan_video):
    ticks = []
    q = flow_video(pan_video, short_side=None, on_frame=lambda: ticks.append(1))
    assert q.dtype == np.uint8 and q.shape == (NUM_FRAMES - 1, H, W, 2)
    assert len(ticks) == NUM_FRAMES - 1
    flow = dequantize(q)
    median = np.median(flow[:, 8:-8, 8:-8].reshape(-1, 2), axis=0)
    np.testing.assert_allclose(median, (2, -1), atol=0.2)  # the video's content moves right 2, up 1


def test_flow_video_resizes_and_uses_the_given_estimator_and_bound(pan_video):
    calls = []

    class Spy(FlowEstimator):
        def __call__(self, prev, nxt):
            calls.append(prev.shape)
            return super().__call__(prev, nxt)

    q = flow_video(pan_video, short_side=32, bound=5.0, estimator=Spy("farneback"))
    h, w = output_size(32, height=H, width=W)
    assert q.shape == (NUM_FRAMES - 1, h, w, 2) and calls == [(h, w, 3)] * (NUM_FRAMES - 1)
    median = np.median(dequantize(q, 5.0)[:, 4:-4, 4:-4].reshape(-1, 2), axis=0)
    np.testing.assert_allclose(median, (2 * w / W, -h / H), atol=0.2)  # flow scales with the frames


def test_flow_video_is_deterministic(pan_video):
    np.testing.assert_array_equal(
        flow_video(pan_video, short_side=None), flow_video(pan_video, short_side=None)
    )


def test_flow_video_on_broken_files_raises_video_decode_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (bad, empty, tmp_path / "missing.mp4"):
        with pytest.raises(VideoDecodeError) as info:
            flow_video(path)
        assert str(path) in str(info.value) and info.value.path == str(path)


def test_flow_video_needs_two_frames(tmp_path):
    one = make_video(tmp_path / "one.mp4", 1)
    with pytest.raises(VideoDecodeError, match="at least 2 frames"):
        flow_video(one, short_side=None)


def test_good_videos_fixture_has_the_expected_sizes(good_videos):
    for name in GOOD_VIDEOS:
        q = flow_video(good_videos / name, "dis", short_side=None)
        assert q.shape == (NUM_FRAMES - 1, H, W, 2)


def test_denseflow_write_failure_names_the_file_and_leaves_no_output(tmp_path, monkeypatch):
    import cv2

    monkeypatch.setattr(cv2, "imwrite", lambda path, img: not path.endswith("y_00002.jpg"))
    with pytest.raises(OSError, match="y_00002.jpg"):
        save_flow_denseflow(tmp_path, "v", _codes(n=3), bound=20.0, method="dis", fps=25.0)
    assert not is_complete(tmp_path, "v", bound=20.0, method="dis")
    assert not (tmp_path / "v").exists()
