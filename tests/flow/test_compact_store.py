"""The default flow store (lossless FFV1 `.flow.mkv`): exact codes, the stated error bound, random access,
completeness, size against `.flow.npy`, the projected disk use, and reading the older stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import GOOD_VIDEOS, NUM_FRAMES
from flow_helpers import H, W

import vidrec.flow.cli as flow_cli
from vidrec.cli import main
from vidrec.flow import (
    DEFAULT_FORMAT,
    dequantize,
    find_flow,
    flow_meta,
    is_complete,
    load_flow,
    max_quantization_error,
    num_flow_frames,
    quantize,
    save_flow,
)
from vidrec.flow.cli import list_jobs, projected_bytes

N = 7


def _smooth_flow(n: int = N, h: int = 96, w: int = 128, seed: int = 0, bound: float = 20.0) -> np.ndarray:
    """Float flow `(n, h, w, 2)` px, smooth and different per frame, inside `[-bound, bound]`."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(-1, 1, 3)
        u = 0.6 * bound * a * np.sin(xx / w * 2 * np.pi + c) + 0.3 * bound * b
        v = 0.5 * bound * b * np.cos(yy / h * 2 * np.pi - c) - 0.3 * bound * a
        out.append(np.stack([u, v], axis=-1) + rng.normal(0, 0.05, (h, w, 2)))
    return np.clip(np.stack(out), -bound, bound).astype(np.float32)


def _save(out, video_id="v", q=None, **kw):
    q = quantize(_smooth_flow()) if q is None else q
    return save_flow(out, video_id, q, **{"bound": 20.0, "method": "dis", "fps": 25.0, **kw}), q


def test_the_default_store_is_ffv1_and_round_trips_the_codes_exactly(tmp_path):
    assert DEFAULT_FORMAT == "ffv1"
    path, q = _save(tmp_path, "cls/v")
    assert path == tmp_path / "cls" / "v.flow.mkv" and (tmp_path / "cls" / "v.flow.json").is_file()
    assert not list(tmp_path.rglob("*.tmp"))
    np.testing.assert_array_equal(load_flow(tmp_path / "cls" / "v"), q)
    for order in ([5, 0, 2], [6], [3, 3, 1], np.array([4, 1]), [-1], []):
        got = load_flow(path, order)
        assert got.shape == (len(order), *q.shape[1:]) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, q[np.asarray(order, dtype=np.int64)])
    np.testing.assert_array_equal(load_flow(path, slice(1, 6, 2)), q[1:6:2])
    assert num_flow_frames(path) == N
    meta = flow_meta(path)
    assert (meta["format"], meta["bits"], meta["bound"], meta["num_frames"]) == ("ffv1", 8, 20.0, N + 1)
    assert meta["bytes"] == path.stat().st_size


@pytest.mark.parametrize("bound", [20.0, 5.0])
def test_stored_flow_is_within_the_documented_bound(tmp_path, bound):
    flow = _smooth_flow(bound=bound, seed=3)
    path, _ = _save(tmp_path, q=quantize(flow, bound), bound=bound)
    back = dequantize(load_flow(path), flow_meta(path)["bound"])
    err = np.abs(back - flow).max()
    assert err <= max_quantization_error(bound) + 1e-5  # bound / 255: the store itself adds nothing
    assert err > 0.5 * max_quantization_error(bound)  # and the test sees the quantisation at all


def test_odd_sizes_round_trip(tmp_path):
    q = quantize(_smooth_flow(n=3, h=33, w=47))
    path, _ = _save(tmp_path, q=q)
    np.testing.assert_array_equal(load_flow(path), q)


def test_ffv1_is_much_smaller_than_npy_on_smooth_flow(tmp_path):
    q = quantize(_smooth_flow(n=12, h=128, w=170))
    mkv, _ = _save(tmp_path, "a", q=q)
    npy, _ = _save(tmp_path, "b", q=q, format="npy")
    assert mkv.stat().st_size * 5 < npy.stat().st_size


def test_out_of_range_indices_name_the_file(tmp_path):
    path, _ = _save(tmp_path)
    with pytest.raises(IndexError, match=r"v\.flow\.mkv"):
        load_flow(path, [N])


# -- completeness -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_a_truncated_mkv_is_not_complete(tmp_path, keep):
    path, _ = _save(tmp_path)
    assert is_complete(tmp_path, "v", bound=20, method="dis")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert not is_complete(tmp_path, "v")


def test_mkv_without_json_or_json_without_mkv_is_not_complete(tmp_path):
    path, _ = _save(tmp_path)
    (tmp_path / "v.flow.json").unlink()
    assert not is_complete(tmp_path, "v")
    _save(tmp_path)
    path.unlink()
    assert not is_complete(tmp_path, "v")


def test_a_different_video_under_the_same_name_is_not_complete(tmp_path):
    path, _ = _save(tmp_path)
    meta = json.loads((tmp_path / "v.flow.json").read_text())
    _save(tmp_path, "w", q=quantize(_smooth_flow(n=3)))
    path.write_bytes((tmp_path / "w.flow.mkv").read_bytes())  # data replaced without its JSON
    (tmp_path / "v.flow.json").write_text(json.dumps(meta))
    assert not is_complete(tmp_path, "v")


# -- older stores keep working ----------------------------------------------------------------------------
def test_version_1_npy_outputs_are_still_read(tmp_path):
    q = quantize(_smooth_flow(n=4))
    np.save(tmp_path / "old.flow.npy", q)
    meta = {"bound": 20.0, "method": "tvl1", "height": 96, "width": 128, "num_frames": 5, "fps": 25.0}
    (tmp_path / "old.flow.json").write_text(json.dumps({**meta, "version": 1}))
    assert find_flow(tmp_path, "old") == tmp_path / "old"
    assert num_flow_frames(tmp_path / "old") == 4 and is_complete(tmp_path, "old", bound=20)
    np.testing.assert_array_equal(load_flow(tmp_path / "old", [3, 1]), q[[3, 1]])


def test_denseflow_folders_without_json_are_found_and_read(tmp_path):
    import cv2

    q = quantize(_smooth_flow(n=3, h=32, w=40))
    folder = tmp_path / "cls" / "v"
    folder.mkdir(parents=True)
    for i, frame in enumerate(q, start=1):
        cv2.imwrite(str(folder / f"flow_x_{i:05d}.jpg"), frame[..., 0])
        cv2.imwrite(str(folder / f"flow_y_{i:05d}.jpg"), frame[..., 1])
    assert find_flow(tmp_path, "cls/v") == folder and num_flow_frames(folder) == 3
    got = load_flow(folder, [2, 0])
    assert got.shape == (2, 32, 40, 2) and np.abs(got.astype(int) - q[[2, 0]]).mean() < 1.0


# -- the CLI ------------------------------------------------------------------------------------------------
def test_cli_writes_ffv1_by_default_and_reports_the_disk_use(good_videos, tmp_path, capsys):
    out = tmp_path / "flow"
    assert main(["flow", str(good_videos), "--out", str(out), "--short-side", "0", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    ids = sorted(name.rsplit(".", 1)[0] for name in GOOD_VIDEOS)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flow.mkv")) == [
        f"{i}.flow.mkv" for i in ids
    ]
    assert not list(out.rglob("*.flow.npy"))
    raw = len(ids) * (NUM_FRAMES - 1) * H * W * 2
    assert f"npy would take {raw / 1000:.1f} KB" in text and "from 3 video headers" in text
    written = sum(p.stat().st_size for p in out.rglob("*.flow.mkv"))
    assert f"wrote {written / 1000:.1f} KB" in text and "per 100 flow frames, ffv1" in text
    assert "projected disk use" in text.split("done:")[0]  # printed before the work


def test_projection_is_exact_for_npy(good_videos):
    jobs = list_jobs(good_videos)
    total, read = projected_bytes(jobs, short_side=32, fmt="npy")
    # 64x48 -> short side 32: 43x32, (12 - 1) flows of 2 values per pixel
    assert read == 3 and total == 3 * (NUM_FRAMES - 1) * 32 * 43 * 2


def test_projection_beyond_the_free_space_warns(good_videos, tmp_path, capsys, monkeypatch):
    class Usage:
        free = 999

    monkeypatch.setattr(flow_cli.shutil, "disk_usage", lambda path: Usage())
    args = ["flow", str(good_videos), "--out", str(tmp_path / "o"), "--short-side", "0", "--workers", "1"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "999 B free" in captured.out and "more than the free space" in captured.err


def test_with_two_stores_of_one_video_the_json_picks_the_one_written_last(tmp_path):
    old = quantize(_smooth_flow(n=3, seed=1))
    new = quantize(_smooth_flow(n=3, seed=2))
    _save(tmp_path, q=old, format="npy")
    _save(tmp_path, q=new)  # ffv1, e.g. a re-extraction into the same folder
    np.testing.assert_array_equal(load_flow(tmp_path / "v"), new)
    _save(tmp_path, q=old, format="npy")
    np.testing.assert_array_equal(load_flow(tmp_path / "v"), old)
