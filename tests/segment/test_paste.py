"""Copy-paste augmentation (`task_options.paste`, `vidrec.data.davis.paste_object`): another sequence's
object lands on a frame and its neighbours at one place, keeps its own motion across them, and joins the
frame's mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidrec.data.davis import Augment, DavisFrames, find_sequences, paste_object
from vidrec.engine.config import load_config
from vidrec.engine.schema import ConfigError
from vidrec.tasks.segment import Segment


def scene(h: int, w: int, box: tuple[int, ...], *, fg: int, bg: int) -> tuple[np.ndarray, np.ndarray]:
    """A flat frame of grey `bg` with a box (y0, y1, x0, x1) of grey `fg`, and the box's mask."""
    img = np.full((h, w, 3), bg, np.uint8)
    mask = np.zeros((h, w), np.int64)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1], mask[y0:y1, x0:x1] = fg, 1
    return img, mask


def box_of(region: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(region)
    return ys.min(), ys.max(), xs.min(), xs.max()


def test_the_pasted_object_joins_the_mask_and_moves_across_the_neighbours_as_in_its_own_video():
    h, w = 60, 100
    own = [scene(h, w, (5, 15, 5, 15), fg=40, bg=0) for _ in range(3)]  # the frame's object stays put
    # the donor (another size) moves its object 6 px right from each frame to the next: frame, prev, next
    donor = [scene(120, 200, (40, 80, 60 + dx, 100 + dx), fg=250, bg=120) for dx in (0, -6, 6)]
    torch.manual_seed(3)
    seen_flip, whole = set(), 0
    for _ in range(40):
        frames, mask = paste_object(
            [f for f, _ in own], own[0][1], [f for f, _ in donor], [m for _, m in donor], scale=(1.0, 1.0)
        )
        assert len(frames) == 3 and all(f.shape == (h, w, 3) and f.dtype == np.uint8 for f in frames)
        pasted = [f[..., 0] > 200 for f in frames]  # the donor's bright object, wherever it landed
        assert pasted[0].any()
        # the new mask: the frame's own object (where not covered) and the pasted one
        assert np.array_equal(mask == 1, (own[0][1] == 1) | (mask == 1))
        assert np.array_equal(mask[pasted[0]], np.ones(pasted[0].sum(), np.int64))
        assert set(np.unique(mask).tolist()) <= {0, 1}
        # the donor's background never comes along: outside the pasted masks the frame is as it was
        for f in frames:
            far = ~np.isin(f[..., 0], [0, 40]) & (f[..., 0] <= 200)  # neither the frame's nor the object
            assert far.mean() < 0.05  # only the feathered edge blends
        boxes = [box_of(p) for p in pasted if p.any()]
        if len(boxes) < 3 or any(b[0] == 0 or b[2] == 0 or b[1] == h - 1 or b[3] == w - 1 for b in boxes):
            continue  # partly off the canvas
        whole += 1
        # one placement for the three: the object's motion is the donor's, scaled by h / 120 = 0.5
        x_now, x_prev, x_next = (b[2] for b in boxes)
        step = (x_next - x_now, x_now - x_prev)
        assert step in {(3, 3), (-3, -3)}, step  # 6 px at half the size; mirrored when flipped
        seen_flip.add(step[0] < 0)
        # the object is scaled with the canvas: 40 x 40 donor px -> about 20 x 20
        y0, y1, x0, x1 = boxes[0]
        assert abs((y1 - y0 + 1) - 20) <= 2 and abs((x1 - x0 + 1) - 20) <= 2
    assert whole >= 4 and seen_flip == {True, False}


def test_a_donor_without_an_object_leaves_the_frame_alone():
    img, mask = scene(30, 40, (5, 10, 5, 10), fg=200, bg=10)
    empty = np.zeros((30, 40), np.int64)
    frames, out = paste_object([img], mask, [np.full_like(img, 99)], [empty])
    assert np.array_equal(frames[0], img) and np.array_equal(out, mask)


def test_davis_frames_paste_objects_of_other_sequences_only_in_training(tiny_davis):
    seqs = find_sequences(tiny_davis, ["seq-a", "seq-b"])
    augment = Augment((48, 64), flip=False)
    plain = DavisFrames(seqs, augment=augment, neighbours=True)
    pasted = DavisFrames(seqs, augment=augment, neighbours=True, paste=1.0)
    torch.manual_seed(0)
    more = 0
    for i in range(len(plain)):
        a, b = plain[i], pasted[i]
        assert b["image"].shape == a["image"].shape == (9, 48, 64)
        assert bool((b["mask"] >= a["mask"]).all())  # its own object stays foreground (squares never overlap
        more += int(b["mask"].sum() > a["mask"].sum())  # fully in these sequences: some of it shows)
    assert more >= len(plain) // 2  # a second object on nearly every item
    with pytest.raises(ValueError, match="paste"):
        DavisFrames(seqs, augment=augment, paste=1.5)


def test_paste_option_is_checked_and_named():
    with pytest.raises(ConfigError, match=r"task_options\.paste"):
        Segment(load_config(None, ["task=segment", "task_options={size: [32, 48], paste: 2}"]))
