"""VideoDataset on real little mp4 files: items, views, flow stacks, determinism, skipping bad videos."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vidrec.data import (
    SkippedItem,
    VideoDataset,
    VideoRecord,
    build_sampler,
    collate_skip,
    read_list_file,
    test_transform,
    train_transform,
)
from vidrec.io import VideoDamageWarning, VideoDecodeError, read_frames, write_video

FRAMES, SIZE, BOUND = 12, 32, 20.0  # as in conftest


@pytest.fixture(scope="module")
def records(synth_root):
    return read_list_file(synth_root / "train.txt")[0]


def _dense(clip_len=4, train=True):
    return build_sampler("dense", clip_len=clip_len, train=train)


def _deq(q):
    return (q - 127.5) / 127.5 * BOUND


class Spy:
    """A sampler that remembers the num_frames it was given."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __call__(self, num_frames, rng):
        self.seen.append(num_frames)
        return self.inner(num_frames, rng)


def test_rgb_item_matches_decoded_frames(records, synth_root):
    spy = Spy(build_sampler("tsn", num_segments=3, train=False))
    ds = VideoDataset(records, root=synth_root, sampler=spy)
    item = ds[2]
    assert set(item) == {"rgb", "label", "video_id"}
    assert item["rgb"].shape == (3, 3, SIZE, SIZE) and item["rgb"].dtype == torch.float32
    assert item["label"] == records[2].label and item["video_id"] == records[2].video_id
    assert spy.seen == [FRAMES]
    indices = spy.inner(FRAMES, None)[0].indices
    frames = read_frames(synth_root / records[2].path, indices)
    expected = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(item["rgb"], expected)


def test_per_item_randomness_is_seeded_by_seed_epoch_index(records, synth_root):
    def make(seed=0):
        return VideoDataset(
            records, root=synth_root, sampler=_dense(), transform=train_transform(24), seed=seed
        )

    a, b = make(), make()
    assert torch.equal(a[1]["rgb"], b[1]["rgb"])  # same (seed, epoch, index)
    assert torch.equal(a[1]["rgb"], a[1]["rgb"])  # reading twice changes nothing
    draws = {a[1]["rgb"].sum().item()}
    for epoch in range(1, 6):
        a.set_epoch(epoch)
        draws.add(a[1]["rgb"].sum().item())
    assert len(draws) > 3  # new clips / crops each epoch
    assert not torch.equal(make(seed=1)[1]["rgb"], b[1]["rgb"])


def test_workers_give_the_same_batches(records, synth_root):
    ds = VideoDataset(records[:4], root=synth_root, sampler=_dense(), transform=train_transform(24))
    batches = [list(DataLoader(ds, batch_size=2, num_workers=w, collate_fn=collate_skip)) for w in (0, 2)]
    for b0, b2 in zip(*batches):
        assert torch.equal(b0["rgb"], b2["rgb"]) and b0["video_id"] == b2["video_id"]
        assert b0["rgb"].shape == (2, 4, 3, 24, 24) and b0["skipped"] == []


def test_multi_clip_multi_crop_views_are_clip_major(records, synth_root):
    clips = build_sampler("test_clips", clip_len=4, num_clips=2)
    ds = VideoDataset(records, root=synth_root, sampler=clips, transform=test_transform(24, crops=3))
    views = ds[0]["rgb"]
    assert views.shape == (6, 4, 3, 24, 24)
    second_only = VideoDataset(
        records,
        root=synth_root,
        sampler=lambda n, rng: clips(n, rng)[1:],
        transform=test_transform(24, crops=3),
    )
    assert torch.equal(views[3:], second_only[0]["rgb"])


def test_flow_stacks_from_denseflow_folders(records, synth_root, flow_root):
    spy = Spy(build_sampler("tsn", num_segments=3, train=False))
    ds = VideoDataset(
        records,
        root=synth_root,
        modalities=("rgb", "flow", "flow3"),
        sampler=spy,
        flow_root=flow_root,
        flow_length=2,
    )
    item = ds[0]
    assert spy.seen == [FRAMES - 2]  # 11 flows, stacks of 2: starts 0..9 (last frame used: N-2)
    starts = spy.inner(FRAMES - 2, None)[0].indices
    assert item["rgb"].shape == (3, 3, SIZE, SIZE)
    assert item["flow"].shape == (3, 4, SIZE, SIZE) and item["flow3"].shape == (3, 3, SIZE, SIZE)
    for t, i in enumerate(starts):  # channels x1, y1, x2, y2 of flows i and i+1 (codes 100+k, 200-k)
        expected = [_deq(100 + i), _deq(200 - i), _deq(100 + i + 1), _deq(200 - i - 1)]
        assert torch.allclose(item["flow"][t].mean((1, 2)), torch.tensor(expected), atol=0.2)
        assert torch.allclose(item["flow"][t].std((1, 2)), torch.zeros(4), atol=0.05)
        u, v = expected[:2]
        lrcn = [np.clip(16 * u, -128, 127), np.clip(16 * v, -128, 127), min(16 * np.hypot(u, v), 127)]
        assert torch.allclose(
            item["flow3"][t].mean((1, 2)), torch.tensor(lrcn, dtype=torch.float32), atol=3.5
        )


def test_flow_is_resized_with_the_frames_and_rescaled(records, synth_root, flow_root):
    ds = VideoDataset(
        records,
        root=synth_root,
        modalities=("rgb", "flow"),
        sampler=_dense(2, False),
        flow_root=flow_root,
        size=16,
    )
    item = ds[0]
    assert item["rgb"].shape == (2, 3, 16, 16) and item["flow"].shape == (2, 2, 16, 16)
    full = VideoDataset(
        records, root=synth_root, modalities=("flow",), sampler=_dense(2, False), flow_root=flow_root
    )
    assert torch.allclose(item["flow"].mean((2, 3)), full[0]["flow"].mean((2, 3)) / 2, atol=0.05)


def test_flow_train_flip_negates_x_in_the_batch(records, synth_root, flow_root):
    torch.manual_seed(0)
    ds = VideoDataset(
        records,
        root=synth_root,
        modalities=("flow",),
        sampler=_dense(2),
        flow_root=flow_root,
        transform=train_transform(24, kind="resized"),
    )
    signs = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        signs.add(bool(ds[0]["flow"][:, 0].mean() > 0))
    assert signs == {True, False}  # x codes are < 127.5 (negative); a flip makes them positive


def test_flow_npy_files(records, synth_root, tmp_path):
    flow = pytest.importorskip("vidrec.flow")
    if not hasattr(flow, "load_flow"):
        pytest.skip("vidrec.flow.load_flow is not there yet")
    rec = records[0]
    q = np.zeros((FRAMES - 1, SIZE, SIZE, 2), np.uint8)
    q[..., 0] = np.arange(FRAMES - 1)[:, None, None] * 10
    q[..., 1] = 255 - q[..., 0]
    path = tmp_path / f"{rec.video_id}.flow.npy"
    path.parent.mkdir(parents=True)
    np.save(path, q)
    meta = {"bound": 10, "method": "test", "height": SIZE, "width": SIZE, "num_frames": FRAMES, "fps": 25.0}
    path.with_name(path.name.replace(".npy", ".json")).write_text(json.dumps({**meta, "version": 1}))
    ds = VideoDataset(
        [rec], root=synth_root, modalities=("flow",), sampler=_dense(3, False), flow_root=tmp_path
    )
    x = ds[0]["flow"][:, 0, 0, 0]
    starts = _dense(3, False)(FRAMES - 1, None)[0].indices
    assert torch.allclose(x, (torch.tensor(starts) * 10 - 127.5) / 127.5 * 10)


def test_frames_folder(records, synth_root, tmp_path):
    rec = records[3]
    folder = tmp_path / rec.video_id
    folder.mkdir(parents=True)
    for i, frame in enumerate(read_frames(synth_root / rec.path, range(FRAMES)), start=1):
        cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    spy = Spy(_dense(4, False))
    ds = VideoDataset([rec], root=synth_root, sampler=spy, frames_root=tmp_path)
    from_video = VideoDataset([rec], root=synth_root, sampler=_dense(4, False))[0]["rgb"]
    item = ds[0]
    assert spy.seen == [FRAMES]
    assert (item["rgb"] - from_video).abs().mean() < 0.02


def test_bad_videos_are_skipped_and_reported(records, synth_root, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    bad = [
        VideoRecord(str(tmp_path / "missing.mp4"), 0, "missing"),
        VideoRecord(str(tmp_path / "broken.mp4"), 1, "broken"),
    ]
    ds = VideoDataset(records[:2] + bad, root=synth_root, sampler=_dense())
    with pytest.warns(RuntimeWarning, match="missing.mp4"):
        item = ds[2]
    assert isinstance(item, SkippedItem) and not item and "missing.mp4" in item.path
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time is silent
        assert isinstance(ds[2], SkippedItem)
    with pytest.warns(RuntimeWarning, match="broken.mp4"):
        batch = collate_skip([ds[i] for i in range(4)])
    assert batch["rgb"].shape == (2, 4, 3, SIZE, SIZE) and batch["label"].tolist() == [
        r.label for r in records[:2]
    ]
    assert [p.rsplit("/", 1)[1] for p in batch["skipped"]] == ["missing.mp4", "broken.mp4"]
    assert set(ds.skipped) == set(batch["skipped"])
    assert collate_skip([ds[2], None]) == {"skipped": [ds[2].path, "<unknown>"]}
    strict = VideoDataset(bad, root=synth_root, sampler=_dense(), strict=True)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        strict[1]


def test_missing_flow_and_too_short_videos_are_skipped(records, synth_root, flow_root, tmp_path):
    ds = VideoDataset(records, root=synth_root, modalities=("flow",), sampler=_dense(), flow_root=tmp_path)
    with pytest.warns(RuntimeWarning, match="no flow"):
        assert isinstance(ds[0], SkippedItem)
    ds = VideoDataset(
        records,
        root=synth_root,
        modalities=("flow",),
        sampler=_dense(),
        flow_root=flow_root,
        flow_length=FRAMES,
    )
    with pytest.warns(RuntimeWarning, match="too few frames"):
        assert isinstance(ds[0], SkippedItem)


def test_constructor_checks(records, synth_root):
    with pytest.raises(ValueError, match="modalities"):
        VideoDataset(records, root=synth_root, modalities=("depth",), sampler=_dense())
    with pytest.raises(ValueError, match="flow_root"):
        VideoDataset(records, root=synth_root, modalities=("flow",), sampler=_dense())


def test_truncated_video_warns_and_strict_raises(records, synth_root, tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (40, SIZE, SIZE, 3), dtype=np.uint8)
    data = write_video(tmp_path / "full.mkv", frames, fps=25, gop=8).read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: int(len(data) * 0.6)])  # a download cut short
    cut = [VideoRecord(str(tmp_path / "cut.mkv"), 0, "cut")]
    with pytest.warns(VideoDamageWarning, match="cut.mkv: truncated"):
        item = VideoDataset(cut, root=synth_root, sampler=_dense())[0]
    assert not isinstance(item, SkippedItem)
    with pytest.raises(VideoDecodeError, match="cut.mkv: truncated"):
        VideoDataset(cut, root=synth_root, sampler=_dense(), strict=True)[0]


@pytest.mark.parametrize("views", [False, True], ids=["train", "test_views"])
def test_uint8_items_normalised_on_device_equal_float_items(records, synth_root, views):
    from vidrec.engine.evaluate import model_inputs

    def make(normalize):
        if views:
            sampler = build_sampler("test_clips", clip_len=4, num_clips=2)
            transform = test_transform(24, crops=3, normalize=normalize)
        else:
            sampler, transform = _dense(), train_transform(24, kind="tsn", normalize=normalize)
        return VideoDataset(records[:4], root=synth_root, sampler=sampler, transform=transform, seed=5)

    raw, ref = make(False), make(True)
    raw_batch = collate_skip([raw[i] for i in range(4)])
    ref_batch = collate_skip([ref[i] for i in range(4)])
    assert raw_batch["rgb"].dtype == torch.uint8 and ref_batch["rgb"].dtype == torch.float32
    assert raw_batch["rgb"].element_size() * 4 == ref_batch["rgb"].element_size()
    x_raw, v_raw = model_inputs(raw_batch, ("rgb",), "cpu")
    x_ref, v_ref = model_inputs(ref_batch, ("rgb",), "cpu")
    assert v_raw == v_ref == (6 if views else 1)
    torch.testing.assert_close(x_raw, x_ref)
