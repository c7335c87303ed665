"""`vidrec.data.landmarks`: .pts files, videos with landmarks, face crops with jitter, the split."""

from __future__ import annotations

import numpy as np
import pytest
from faces import draw_face, face_points, write_face_video

from vidrec.data.landmarks import (
    Box,
    CropSettings,
    LandmarkClips,
    LandmarksError,
    box_from_points,
    box_from_rect,
    crop_face,
    find_videos,
    jitter_box,
    read_pts,
    read_track,
    split_tracks,
    write_pts,
)

PTS = "version: 1\nn_points: 3\n{\n743.224 197.764\n778 190.301\n0.1 -2.5e-05\n}\n"


def test_pts_round_trip_is_exact(tmp_path):
    src = tmp_path / "a.pts"
    src.write_text(PTS)
    points = read_pts(src)
    assert points.tolist() == [[743.224, 197.764], [778.0, 190.301], [0.1, -2.5e-05]]
    write_pts(tmp_path / "b.pts", points)
    assert (tmp_path / "b.pts").read_text() == PTS  # the text too, integers written as integers
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 500, (66, 2)), [[1 / 3, 2 / 3], [1e-9, 12345678.125]]])
    write_pts(tmp_path / "c.pts", values)
    assert np.array_equal(read_pts(tmp_path / "c.pts"), values)  # bit for bit


def test_pts_refuses_to_overwrite_and_names_a_bad_file(tmp_path):
    write_pts(tmp_path / "a.pts", np.zeros((68, 2)))
    with pytest.raises(FileExistsError, match="a.pts exists"):
        write_pts(tmp_path / "a.pts", np.ones((68, 2)))
    write_pts(tmp_path / "a.pts", np.ones((68, 2)), overwrite=True)
    assert read_pts(tmp_path / "a.pts").sum() == 136
    (tmp_path / "bad.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(ValueError, match="bad.pts: n_points says 68 but the file holds 1"):
        read_pts(tmp_path / "bad.pts")


def test_crop_with_jitter_keeps_points_on_their_pixels():
    """Each point is a white dot on black; after a jittered crop every mapped point lands on white."""
    size, rng = 200, np.random.default_rng(1)
    points = face_points(1, size=size, seed=3)[0]
    image = np.zeros((size, size, 3), dtype=np.uint8)
    for x, y in np.round(points).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    base = box_from_points(points, margin=1.3)
    for _ in range(5):
        box = jitter_box(base, scale=0.2, shift=0.1, rng=rng)
        assert box != base
        crop = crop_face(image, box, 128)  # (128, 128, 3), magnified ~1.2x
        inside = box.to_crop(points, 128)
        xy = np.round(inside).astype(int)
        ok = (xy >= 0).all(1) & (xy < 128).all(1)
        assert ok.sum() >= 60
        assert (crop[xy[ok, 1], xy[ok, 0], 0] > 100).all()  # every point sits on its dot
        off = np.clip(xy[ok] + 4, 0, 127)
        assert (crop[off[:, 1], off[:, 0], 0] > 100).mean() < 0.5  # and 4 px away mostly not
        np.testing.assert_allclose(box.to_image(inside, 128), points, atol=1e-3)


def test_dataset_clip_points_match_the_drawn_face(tmp_path):
    write_face_video(tmp_path, "a", frames=12, size=96, seed=0)
    track = read_track(tmp_path / "a.mp4")
    settings = CropSettings(frames=4, size=64, margin=1.3, jitter_scale=0.15, jitter_shift=0.08)
    ds = LandmarkClips([track], settings, train=True, seed=0)
    item = ds[0]
    assert item["rgb"].shape == (4, 3, 64, 64) and item["points"].shape == (4, 68, 2)
    frame = item["rgb"][0].permute(1, 2, 0).numpy()
    expected = draw_face(item["points"][0].numpy(), 64)  # the face drawn where the crop's points say
    face = expected[..., 0] > 150
    assert (frame[..., 0][face] > 150).mean() > 0.9  # the crop shows the face exactly there
    assert (frame[..., 0][~face] > 150).mean() < 0.1
    box = Box(*item["box"][0].tolist())
    np.testing.assert_allclose(box.to_image(item["points"][0].numpy(), 64), item["truth"][0], atol=1e-3)
    again = LandmarkClips([track], settings, train=True, seed=0)[0]
    assert again["start"] == item["start"] and np.array_equal(again["rgb"], item["rgb"])  # seeded


def test_fixed_jitter_versions_give_the_same_clips_every_epoch_with_keys_for_the_cache(tmp_path):
    write_face_video(tmp_path, "a", frames=12, size=96, seed=0)
    write_face_video(tmp_path, "b", frames=12, size=96, seed=1)
    tracks = [read_track(tmp_path / "a.mp4"), read_track(tmp_path / "b.mp4")]
    settings = CropSettings(frames=4, size=32, jitter_scale=0.15, jitter_shift=0.08, versions=3, stride=3)
    ds = LandmarkClips(tracks, settings, train=True, seed=0)
    assert ds.deterministic and len(ds) == 2 * 3 * 3  # 2 tracks x 3 versions x starts 0, 3, 6 (of 0-8)
    assert sorted({ds[i]["start"] for i in range(len(ds))}) == [0, 3, 6]
    keys = [ds.input_key(i) for i in range(len(ds))]
    assert len(set(keys)) == len(ds)  # every (track, version, start) is another input
    first = [ds[i] for i in range(len(ds))]
    ds.set_epoch(5)
    assert [ds.input_key(i) for i in range(len(ds))] == keys  # the same items in every epoch
    for i, item in enumerate(first):
        again, meta = ds[i], ds.item_meta(i)
        assert np.array_equal(again["rgb"], item["rgb"]) and meta.keys() == item.keys() - {"rgb"}
        assert all(np.array_equal(meta[k], item[k]) for k in ("points", "truth", "box"))
    sides = {round(float(ds.item_meta(i)["box"][0, 2]), 3) for i in range(0, len(ds), 3)}
    assert len(sides) > 1  # the versions hold different jitters
    assert not LandmarkClips(tracks, CropSettings(frames=4, size=32), train=True).deterministic
    assert LandmarkClips(tracks, CropSettings(frames=4, size=32), train=False).deterministic
    # another crop size or the file's bytes change the key
    other = LandmarkClips(tracks, CropSettings(frames=4, size=40, versions=3, stride=3), train=True)
    assert other.input_key(0) != keys[0]


def test_detector_boxes_crop_around_the_stored_rectangles(tmp_path):
    write_face_video(tmp_path, "a", frames=8, size=96, seed=0)
    track = read_track(tmp_path / "a.mp4")
    assert track.boxes is not None
    track.boxes = track.boxes + [0, -4, 0, 6]  # a taller rectangle than the points' box
    ds = LandmarkClips([track], CropSettings(frames=4, size=32, margin=1.2, box="detector"), train=False)
    item = ds[0]
    for k in range(4):
        expected = box_from_rect(track.boxes[k], margin=1.2).array()
        np.testing.assert_allclose(item["box"][k].numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(
            Box(*item["box"][k].tolist()).to_image(item["points"][k].numpy(), 32), item["truth"][k], atol=1e-3
        )
    track.boxes = None
    with pytest.raises(LandmarksError, match="no 'boxes'.*box=points"):
        LandmarkClips([track], CropSettings(frames=4, size=32, box="detector"), train=False)


def test_split_by_video_and_by_blocks(tmp_path):
    for i in range(4):
        write_face_video(tmp_path, f"v{i}", frames=8, size=32, seed=i)
    tracks = [read_track(v) for v in find_videos(tmp_path)]
    train, val = split_tracks(tracks[::-1], val_fraction=0.25, gap=4)
    assert [t.video.stem for t in train] == ["v0", "v1", "v2"] and [t.video.stem for t in val] == ["v3"]
    train, val = split_tracks(tracks[:1], val_fraction=0.25, gap=4)  # one video: blocks with a gap
    assert len(train[0]) == 2 and val[0].first == 6 and len(val[0]) == 2
    np.testing.assert_array_equal(val[0].points, tracks[0].points[6:])
    clips = LandmarkClips(val, CropSettings(frames=2, size=32), train=False)
    assert [clips[i]["start"] for i in range(len(clips))] == [6]  # video frame numbers
    train, val = split_tracks(tracks[:2], val_fraction=0.25, gap=4, by="blocks")  # blocks of every video
    assert [(t.video.stem, t.first, len(t)) for t in train] == [("v0", 0, 2), ("v1", 0, 2)]
    assert [(t.video.stem, t.first, len(t)) for t in val] == [("v0", 6, 2), ("v1", 6, 2)]


def test_missing_landmarks_folder_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no video with a <stem>.landmarks.json"):
        find_videos(tmp_path)


def test_a_corrupt_video_is_skipped_with_its_path(tmp_path):
    from vidrec.data import SkippedItem, collate_skip

    write_face_video(tmp_path, "good", frames=8, size=32, seed=0)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 10)
    (tmp_path / "bad.landmarks.json").write_text((tmp_path / "good.landmarks.json").read_text())
    tracks = [read_track(v) for v in find_videos(tmp_path)]
    ds = LandmarkClips(tracks, CropSettings(frames=4, size=32), train=False)
    with pytest.warns(RuntimeWarning, match="bad.mp4"):
        items = [ds[i] for i in range(len(ds))]
    assert sum(isinstance(it, SkippedItem) for it in items) == 2  # bad.mp4's two clips
    batch = collate_skip(items)
    assert batch["rgb"].shape[0] == 2 and batch["skipped"] == [str(tmp_path / "bad.mp4")] * 2
