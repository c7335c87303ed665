"""`vidrec prepare`: prepared copies (short-GOP videos, uint8 frame stores), resume, shards, the manifest
and datasets that pick a complete, matching copy up by themselves."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

from vidrec.cli import main
from vidrec.data import VideoDataset, build_sampler, collate_skip, read_list_file, train_transform
from vidrec.data.prepare import MANIFEST, REGISTRY, FrameStoreReader
from vidrec.data.synthetic import make_synthetic_dataset
from vidrec.io import VideoReader, probe

SIZE, FRAMES = 32, 10


@pytest.fixture
def root(tmp_path):
    """A fresh synthetic dataset (6 videos in train.txt) per test: prepare registers copies in it."""
    return make_synthetic_dataset(
        tmp_path / "synth", per_class=1, frames=FRAMES, size=SIZE, seed=1, progress=False
    )


def _dataset(root, **kw):
    records = read_list_file(root / "train.txt")[0]
    sampler = build_sampler("tsn", num_segments=4, train=True)
    transform = train_transform(24, kind="tsn", normalize=False)
    return VideoDataset(records, root=root, sampler=sampler, transform=transform, size=SIZE, seed=2, **kw)


def _batch(ds):
    return collate_skip([ds[i] for i in range(len(ds))])


def test_frame_store_is_exact_and_datasets_pick_it_up(root, tmp_path, capsys):
    out = tmp_path / "frames"
    args = ["prepare", str(root / "train.txt"), "--out", str(out), "--format", "frames"]
    assert main([*args, "--short-side", str(SIZE), "--workers", "1"]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and manifest["failed"] == 0 and len(manifest["videos"]) == 6
    assert json.loads((root / REGISTRY).read_text())["copies"] == [str(out.resolve())]
    first = next(iter(manifest["videos"].values()))
    with FrameStoreReader(out / first["file"]) as store, VideoReader(root / first["file"].replace(
        ".frames.npy", ".mp4"), size=SIZE) as video:  # fmt: skip
        assert len(store) == len(video) == FRAMES
        assert np.array_equal(store.get_frames([0, 5, 9]), video.get_frames([0, 5, 9]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete, matching copy: no warning
        fast = _dataset(root)
    assert fast.prepared is not None and fast.prepared.format == "frames" and len(fast.prepared.files) == 6
    slow = _dataset(root, prepared=None)
    assert slow.prepared is None
    a, b = _batch(fast), _batch(slow)
    assert a["rgb"].dtype == torch.uint8 and torch.equal(a["rgb"], b["rgb"])  # exact at the decode size
    # a second run has nothing to do
    capsys.readouterr()
    assert main([*args, "--short-side", str(SIZE), "--workers", "1"]) == 0
    assert "6 already prepared, 0 to do" in capsys.readouterr().out


def test_video_shards_resume_and_a_changed_source(root, tmp_path, capsys):
    out = tmp_path / "gop4"
    args = ["prepare", str(root / "train.txt"), "--out", str(out), "--gop", "4", "--crf", "10"]
    assert main([*args, "--shard", "0/2", "--workers", "2"]) == 0
    assert "still to prepare" in capsys.readouterr().out
    with pytest.warns(RuntimeWarning, match="incomplete: 3 videos"):
        assert _dataset(root).prepared is None  # half a copy is not used
    assert main([*args, "--shard", "1/2", "--workers", "1"]) == 0
    ds = _dataset(root)
    assert ds.prepared is not None and ds.prepared.format == "video"
    copy = next(iter(ds.prepared.files.values()))
    assert probe(copy).num_frames == FRAMES
    with VideoReader(copy) as reader:
        assert np.diff(reader._index.key_pos).max() <= 4
    a, b = _batch(ds), _batch(_dataset(root, prepared=None))
    assert a["rgb"].shape == b["rgb"].shape
    assert (a["rgb"].float() - b["rgb"].float()).abs().mean() < 4  # lossy, but the same frames
    # a source that changed after it was prepared: the originals are read, and the reason is given
    changed = root / read_list_file(root / "train.txt")[0][0].path
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    with pytest.warns(RuntimeWarning, match="changed after it was prepared"):
        assert _dataset(root).prepared is None
    capsys.readouterr()
    assert main([*args, "--workers", "1"]) == 0  # resume: only the changed video is redone
    assert "5 already prepared, 1 to do" in capsys.readouterr().out
    assert _dataset(root).prepared is not None


def test_failures_are_listed_and_other_settings_are_refused(root, tmp_path, capsys):
    records = read_list_file(root / "train.txt")[0]
    bad = root / records[1].path
    bad.write_bytes(b"not a video at all" * 20)
    out = tmp_path / "frames"
    args = ["prepare", str(root / "train.txt"), "--out", str(out), "--format", "frames", "--workers", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "1 failed" in text and f"FAILED {records[1].video_id}" in text
    assert main([*args, "--strict"]) == 1
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and manifest["failed"] == 1
    ds = _dataset(root)  # the copy serves the five good videos; the bad one is read (and skipped) as before
    assert (
        ds.prepared is not None
        and len(ds.prepared.files) == 5
        and str(records[1].path) not in ds.prepared.files
    )
    assert main([*args, "--short-side", "16"]) == 2
    assert "choose another --out" in capsys.readouterr().err
    with pytest.warns(RuntimeWarning, match="short side 16"):  # smaller than the dataset's decode size
        main([*args[:3], str(tmp_path / "small"), *args[4:], "--short-side", "16", "--no-register"])
        _dataset(root, prepared=tmp_path / "small")


def test_a_copy_with_an_odd_size_reads_at_the_originals_size(tmp_path):
    from vidrec.data import VideoRecord
    from vidrec.io import write_video

    yy, xx = np.mgrid[0:40, 0:58]
    frames = np.stack([np.stack([(xx * 4 + t * 3) % 256, yy * 6, (xx + yy) * 2], -1) for t in range(12)])
    folder = tmp_path / "odd"
    folder.mkdir()
    write_video(folder / "a.mp4", frames.astype(np.uint8), 10)
    out = tmp_path / "copy"
    cmd = ["prepare", str(folder), "--out", str(out), "--short-side", "24", "--crf", "10", "--workers", "1"]
    assert main(cmd) == 0
    assert probe(out / "a.mp4").width == 34  # 58 * 24 / 40 = 34.8 -> 35, even for H.264 -> 34

    def item(prepared):
        sampler = build_sampler("tsn", num_segments=3, train=False)
        records = [VideoRecord("a.mp4", 0, "a")]
        return VideoDataset(records, root=folder, sampler=sampler, size=24, prepared=prepared)[0]["rgb"]

    copy, original = item("auto"), item(None)
    assert copy.shape == original.shape == (3, 3, 24, 35)
    assert (copy - original).abs().mean() < 0.03  # float in [0, 1]: a few grey levels
