"""Damaged derived data (flow stores, prepared copies) is reported with its path and skipped, or read from
the original, never a crash halfway through an epoch; a manifest pointing outside its copy is refused."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from vidrec.cli import main
from vidrec.data import VideoDataset, build_sampler, collate_skip, read_list_file
from vidrec.data.dataset import SkippedItem
from vidrec.data.prepare import MANIFEST, FrameStoreReader
from vidrec.data.synthetic import make_synthetic_dataset
from vidrec.flow.storage import flow_paths, save_flow
from vidrec.io import VideoDecodeError

SIZE, FRAMES = 32, 10


@pytest.fixture
def root(tmp_path):
    return make_synthetic_dataset(
        tmp_path / "synth", per_class=1, frames=FRAMES, size=SIZE, seed=1, progress=False
    )


def _records(root):
    return read_list_file(root / "train.txt")[0]


def _flow_dataset(root, flow_root, **kw):
    sampler = build_sampler("dense", clip_len=4)
    return VideoDataset(
        _records(root), root=root, modalities=("flow",), flow_root=flow_root, sampler=sampler, **kw
    )


def _rgb_dataset(root, **kw):
    sampler = build_sampler("tsn", num_segments=4, train=False)
    return VideoDataset(_records(root), root=root, sampler=sampler, size=SIZE, seed=2, **kw)


def test_damaged_flow_stores_are_skipped_with_their_path(root, tmp_path):
    flow = tmp_path / "flow"
    records = _records(root)
    for i, r in enumerate(records):
        fmt = "npy" if i == 3 else "ffv1"
        save_flow(flow, r.video_id, np.full((FRAMES - 1, 8, 8, 2), 120, np.uint8), bound=20.0, method="dis",
                  fps=25.0, format=fmt)  # fmt: skip
    truncated, empty = (flow_paths(flow, r.video_id, "ffv1")[0] for r in records[:2])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    empty.write_bytes(b"")
    no_count = flow_paths(flow, records[2].video_id)[1]
    meta = json.loads(no_count.read_text())
    del meta["num_frames"]
    no_count.write_text(json.dumps(meta))
    flow_paths(flow, records[3].video_id, "npy")[0].write_bytes(b"")  # an empty .flow.npy
    ds = _flow_dataset(root, flow)
    with pytest.warns(RuntimeWarning, match="skipping video"):
        items = [ds[i] for i in range(len(ds))]
    bad = {item.path: item.reason for item in items[:4]}
    assert all(isinstance(item, SkippedItem) for item in items[:4]), items[:4]
    assert set(bad) == {
        str(truncated),
        str(empty),
        str(no_count),
        str(flow_paths(flow, records[3].video_id)[0]),
    }
    assert "truncated" in bad[str(truncated)] and "num_frames" in bad[str(no_count)]
    assert all(isinstance(item, dict) for item in items[4:])
    batch = collate_skip(items)
    assert len(batch["skipped"]) == 4 and batch["flow"].shape[0] == len(items) - 4
    with pytest.raises(VideoDecodeError, match="truncated"):
        _flow_dataset(root, flow, strict=True)[0]


def test_a_truncated_flow_video_without_a_recorded_size_is_skipped(root, tmp_path):
    """A version-1 JSON has no `bytes`: the short file is caught when its frames do not decode."""
    flow = tmp_path / "flow"
    r = _records(root)[0]
    q = np.random.default_rng(0).integers(0, 255, (FRAMES - 1, 16, 16, 2), dtype=np.uint8)
    data, js = (
        save_flow(flow, r.video_id, q, bound=20.0, method="dis", fps=25.0),
        flow_paths(flow, r.video_id)[1],
    )
    meta = json.loads(js.read_text())
    del meta["bytes"]
    js.write_text(json.dumps(meta))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    ds = VideoDataset([r], root=root, modalities=("flow",), flow_root=flow,
                      sampler=build_sampler("dense", clip_len=FRAMES - 1))  # fmt: skip
    with pytest.warns(RuntimeWarning, match="damaged flow video"):
        item = ds[0]
    assert isinstance(item, SkippedItem) and item.path == str(data)


def test_a_two_dimensional_frame_store_is_refused(tmp_path):
    path = tmp_path / "a.frames.npy"
    np.save(path, np.zeros((10, 32), np.uint8))
    with pytest.raises(VideoDecodeError, match=r"not a frame store uint8 \(N, H, W, 3\)"):
        FrameStoreReader(path)
    path.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="unreadable frame store"):
        FrameStoreReader(path)


def _prepare_frames(root, out):
    args = ["prepare", str(root / "train.txt"), "--out", str(out), "--format", "frames"]
    assert main([*args, "--short-side", str(SIZE), "--workers", "1"]) == 0
    return json.loads((out / MANIFEST).read_text())


def test_a_manifest_entry_outside_the_copy_is_refused(root, tmp_path):
    out = tmp_path / "frames"
    manifest = _prepare_frames(root, out)
    key, entry = next(iter(manifest["videos"].items()))
    outside = tmp_path / "elsewhere.frames.npy"
    shutil.copy(out / entry["file"], outside)
    entry["file"] = "../elsewhere.frames.npy"  # same bytes, same digest: only the place is wrong
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(
        RuntimeWarning, match=f"the entry of {key} names '../elsewhere.frames.npy', outside the copy"
    ):
        assert _rgb_dataset(root).prepared is None


def test_swapped_or_truncated_prepared_files_are_read_from_the_originals(root, tmp_path, capsys):
    out = tmp_path / "frames"
    manifest = _prepare_frames(root, out)
    entries = list(manifest["videos"].values())
    assert all(e["bytes"] > 0 and len(e["blake2b"]) == 32 for e in entries)
    a, b = (out / e["file"] for e in entries[:2])
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())  # swapped: same size, other frames
    b.write_bytes(a_bytes)
    truncated = out / entries[2]["file"]
    truncated.write_bytes(truncated.read_bytes()[:-100])
    with pytest.warns(RuntimeWarning, match=r"1 damaged file\(s\).*holds \d+ bytes, its manifest says"):
        ds = _rgb_dataset(root)
    assert ds.prepared is not None and str(truncated) not in ds.prepared.files.values()
    with pytest.warns(RuntimeWarning, match="does not match its manifest's blake2b"):
        items = [ds[i] for i in range(len(ds))]
    original = _rgb_dataset(root, prepared=None)
    for i, item in enumerate(items):
        assert np.array_equal(item["rgb"], original[i]["rgb"]), i  # the true frames of every video
    with pytest.raises(VideoDecodeError, match="blake2b"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strict = _rgb_dataset(root, strict=True)
        [strict[i] for i in range(len(strict))]
    capsys.readouterr()
    _prepare_frames(root, out)  # a re-run makes the truncated file again
    assert "5 already prepared, 1 to do" in capsys.readouterr().out


def test_an_old_manifest_without_digests_still_reads_with_a_warning(root, tmp_path):
    out = tmp_path / "frames"
    manifest = _prepare_frames(root, out)
    manifest["version"] = 1
    for entry in manifest["videos"].values():
        del entry["bytes"], entry["blake2b"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match="predates size and hash checks"):
        ds = _rgb_dataset(root)
    assert ds.prepared is not None and len(ds.prepared.files) == len(ds)
    first = ds.prepared.files[str(_records(root)[0].path)]
    np.save(first, np.zeros((FRAMES, 32), np.uint8))  # unchecked, so the reader itself refuses a 2-D store
    with pytest.warns(RuntimeWarning, match="not a frame store"):
        assert isinstance(ds[0], SkippedItem)


def test_flow_settings_come_from_the_first_undamaged_json(tmp_path):
    from vidrec.engine.inputs import flow_settings_from

    for i, video_id in enumerate(("a", "b")):
        q = np.full((3, 8, 12 + i, 2), 127, np.uint8)
        save_flow(tmp_path, video_id, q, bound=10.0 + i, method="dis", fps=25.0, format="npy")
    flow_paths(tmp_path, "a")[1].write_text('{"bound": 20.0, "method": "dis"')  # cut short
    settings = flow_settings_from(tmp_path, ["a", "b"])
    assert settings is not None and settings.bound == 11.0 and settings.short_side == 8
