"""The DAVIS-2016 loader on a tiny generated DAVIS-layout folder: per-frame items, (key, current) pairs
with the key 0..max_offset frames back (methods.md 4.5), resizing, the fixed split, and bad files."""

from __future__ import annotations

import pytest
import torch

from vidrec.data import SkippedItem, collate_skip
from vidrec.data.davis import (
    ALL_SEQUENCES,
    TRAIN_SEQUENCES,
    VAL_SEQUENCES,
    DavisError,
    DavisFrames,
    DavisPairs,
    find_sequences,
    read_sequence_list,
    split_names,
)


def test_frames_hold_the_image_and_its_binary_mask(tiny_davis):
    seqs = find_sequences(tiny_davis)
    assert [s.name for s in seqs] == ["seq-a", "seq-b", "seq-c"] and [len(s) for s in seqs] == [12, 10, 8]
    ds = DavisFrames(seqs)
    assert len(ds) == 30
    item = ds[13]  # seq-b frame 1
    assert item["sequence"] == "seq-b" and item["index"] == 1
    assert item["image"].shape == (3, 48, 64) and item["image"].dtype == torch.uint8
    assert item["mask"].shape == (48, 64) and set(item["mask"].unique().tolist()) == {0, 1}
    fg = item["mask"].bool()
    assert item["image"][0][fg].float().mean() > 150 > item["image"][0][~fg].float().mean()  # the square


def test_resize_gives_the_asked_size_and_keeps_masks_binary(tiny_davis):
    item = DavisFrames(find_sequences(tiny_davis, ["seq-a"]), size=(24, 40))[0]
    assert item["image"].shape == (3, 24, 40) and item["mask"].shape == (24, 40)
    assert set(item["mask"].unique().tolist()) == {0, 1}


def test_pairs_take_the_key_0_to_max_offset_frames_back(tiny_davis):
    seqs = find_sequences(tiny_davis)
    frames, pairs = DavisFrames(seqs), DavisPairs(seqs, max_offset=9)
    seen = set()
    for trial in range(20):
        torch.manual_seed(trial)
        for idx in (0, 3, 11, 21):  # seq-a 0, 3, 11; seq-b 9
            item = pairs[idx]
            k = item["index"] - item["offset"]
            assert 0 <= item["offset"] <= min(9, item["index"]) and k >= 0
            assert torch.equal(item["key_image"], frames[idx - item["offset"]]["image"])  # same sequence
            assert torch.equal(item["image"], frames[idx]["image"])
            assert torch.equal(item["mask"], frames[idx]["mask"])  # the loss is on the current frame
            seen.add(item["offset"])
    assert seen == set(range(10))  # every offset 0..9 occurs
    assert all(DavisPairs(seqs, max_offset=0)[i]["offset"] == 0 for i in range(5))


def test_flip_mirrors_image_and_mask_together(tiny_davis):
    seqs = find_sequences(tiny_davis, ["seq-a"])
    plain, flipped = DavisPairs(seqs, max_offset=2), DavisPairs(seqs, max_offset=2, flip=True)
    for seed in range(8):
        torch.manual_seed(seed)
        a = plain[5]
        torch.manual_seed(seed)
        b = flipped[5]
        if not torch.equal(a["mask"], b["mask"]):
            assert torch.equal(b["mask"], a["mask"].flip(-1)) and torch.equal(b["image"], a["image"].flip(-1))
            return
    pytest.fail("no flip in 8 draws")


def test_the_split_is_fixed_and_disjoint():
    assert VAL_SEQUENCES == ("breakdance", "cows", "horsejump-high", "scooter-black")
    assert len(TRAIN_SEQUENCES) == 10 and not set(TRAIN_SEQUENCES) & set(VAL_SEQUENCES)
    assert sorted(TRAIN_SEQUENCES + VAL_SEQUENCES) == list(ALL_SEQUENCES)
    assert split_names("val") == VAL_SEQUENCES and split_names("all") == ALL_SEQUENCES
    with pytest.raises(DavisError, match="unknown DAVIS split 'test'"):
        split_names("test")


def test_a_sequence_list_file_selects_sequences(tiny_davis, tmp_path):
    listing = tmp_path / "val.txt"
    listing.write_text("# validation\nseq-c\n\nseq-a  # fast\n")
    names = read_sequence_list(listing)
    assert names == ("seq-c", "seq-a")
    assert [s.name for s in find_sequences(tiny_davis, names)] == ["seq-c", "seq-a"]
    with pytest.raises(DavisError, match="nope.txt: sequence list not found"):
        read_sequence_list(tmp_path / "nope.txt")


def test_missing_folders_and_masks_name_the_path(tiny_davis, tmp_path):
    with pytest.raises(DavisError, match=r"not a DAVIS folder \(JPEGImages/480p/ is missing\)"):
        find_sequences(tmp_path / "empty")
    with pytest.raises(DavisError, match=r"480p/seq-z: sequence folder not found"):
        find_sequences(tiny_davis, ["seq-a", "seq-z"])
    (tiny_davis / "Annotations/480p/seq-b/00004.png").unlink()
    with pytest.raises(DavisError, match=r"seq-b/00004.png: mask not found \(1 of 10 frames of seq-b"):
        find_sequences(tiny_davis, ["seq-b"])


def test_a_corrupt_frame_is_skipped_by_path_or_raised_in_strict_mode(tiny_davis):
    bad = tiny_davis / "JPEGImages/480p/seq-c/00002.jpg"
    bad.write_bytes(b"not a jpeg")
    seqs = find_sequences(tiny_davis, ["seq-c"])
    item = DavisFrames(seqs)[2]
    assert isinstance(item, SkippedItem) and item.path == str(bad) and "cannot read" in item.reason
    batch = collate_skip([DavisFrames(seqs)[i] for i in range(4)])
    assert batch["skipped"] == [str(bad)] and batch["image"].shape[0] == 3
    with pytest.raises(DavisError, match="00002.jpg: cannot read this image"):
        DavisFrames(seqs, strict=True)[2]


@pytest.mark.shared_data
def test_the_shared_davis_folder_holds_the_split(shared_data):
    root = shared_data / "davis2016"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    seqs = find_sequences(root)
    assert tuple(s.name for s in seqs) == ALL_SEQUENCES
    item = DavisFrames(find_sequences(root, VAL_SEQUENCES[:1]), size=(240, 432))[0]
    assert item["image"].shape == (3, 240, 432) and item["mask"].sum() > 0


def test_masks_of_another_size_or_not_binary_are_skipped_naming_the_path(tiny_davis):
    import cv2
    import numpy as np

    masks = tiny_davis / "Annotations/480p/seq-c"
    small, grey, ones = masks / "00001.png", masks / "00002.png", masks / "00003.png"
    mask = cv2.imread(str(small), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(small), mask[::2, ::2])  # 24x32 for a 48x64 frame
    soft = np.where(mask > 0, 128, 0).astype(np.uint8)
    soft[0, 0] = 255  # an anti-aliased (or multi-object) mask: three values
    cv2.imwrite(str(grey), soft)
    cv2.imwrite(str(ones), (mask > 0).astype(np.uint8))  # 0/1 is a binary mask too
    seqs = find_sequences(tiny_davis, ["seq-c"])
    for ds in (DavisFrames(seqs, size=(32, 48)), DavisPairs(seqs, size=(32, 48), max_offset=0)):
        a, b, c = ds[1], ds[2], ds[3]
        assert (
            isinstance(a, SkippedItem)
            and a.path == str(small)
            and "mask of 24x32 for a frame of 48x64" in a.reason
        )
        assert (
            isinstance(b, SkippedItem)
            and b.path == str(grey)
            and "not binary (values [0, 128, 255])" in b.reason
        )
        assert isinstance(c, dict) and torch.equal(c["mask"].unique(), torch.tensor([0, 1]))
    with pytest.raises(DavisError, match="00001.png: mask of 24x32"):
        DavisFrames(seqs, strict=True)[1]


def test_a_sequence_in_both_splits_is_refused_naming_it(tiny_davis):
    from vidrec.engine.config import ConfigError, load_config
    from vidrec.tasks.segment import Segment

    options = "task_options={train_sequences: [seq-a, seq-b], val_sequences: [seq-b, seq-c]}"
    task = Segment(load_config(None, ["task=segment", f"data.root={tiny_davis}", options]))
    with pytest.raises(ConfigError, match="sequence seq-b is in both train_sequences and val_sequences"):
        task.check()
