"""DAVIS is scored as the DAVIS-2016 toolkit scores it: predictions made at a working size are upsampled
to the native mask size and compared with the masks as stored, and each sequence's first and last frame
are left out unless all frames are asked for; in `vidrec dff eval` and in the segment task's validation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from vidrec.data.davis import find_sequences
from vidrec.dff.davis_eval import evaluate_sequences
from vidrec.dff.schedule import FixedInterval
from vidrec.engine.config import load_config
from vidrec.engine.seg_metrics import boundary_f, region_j
from vidrec.tasks.segment import Segment

NATIVE, WORK = (96, 160), (48, 80)
TRUE_COLS, PRED_COLS = (41, 101), (22, 52)  # the truth at native px; the prediction at working px
ROWS = (20, 60)  # native rows of both (working rows 10..30)


def _box(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def _working_logits() -> torch.Tensor:
    """(1, 2, 48, 80): foreground on working rows 10..30, cols 22..52; bilinear upsampling by 2 puts the
    edges on native rows 20..60, cols 44..104, i.e. 3 native px right of the truth (cols 41..101)."""
    fg = torch.from_numpy(_box(WORK, (ROWS[0] // 2, ROWS[1] // 2), PRED_COLS)).float() * 2 - 1
    return torch.stack([-fg, fg])[None]


@pytest.fixture
def native_davis(tmp_path: Path) -> Path:
    """One 5-frame sequence at 96 x 160 whose first and last masks are empty (the prediction is wrong
    there), the others the box."""
    root = tmp_path / "davis"
    (root / "JPEGImages/480p/box").mkdir(parents=True)
    (root / "Annotations/480p/box").mkdir(parents=True)
    for t in range(5):
        mask = _box(NATIVE, ROWS, TRUE_COLS) if 0 < t < 4 else np.zeros(NATIVE, bool)
        cv2.imwrite(str(root / f"JPEGImages/480p/box/{t:05d}.jpg"), np.full((*NATIVE, 3), 90, np.uint8))
        cv2.imwrite(str(root / f"Annotations/480p/box/{t:05d}.png"), mask.astype(np.uint8) * 255)
    return root


class ConstantSegmenter(nn.Module):
    """The same working-size logits for every frame; checks it is given working-size frames."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        assert image.shape[-2:] == WORK
        return _working_logits().expand(len(image), -1, -1, -1)

    def run(self, frames, schedule):  # the `DFF.run` interface `evaluate_sequences` walks
        for frame in frames:
            yield self(frame), True


def _by_hand() -> tuple[float, float, float]:
    """(J, F at native size, F the old way: at the working size) of one middle frame."""
    pred = _box(NATIVE, ROWS, (2 * PRED_COLS[0], 2 * PRED_COLS[1]))
    truth = _box(NATIVE, ROWS, TRUE_COLS)
    assert region_j(pred, truth) == (101 - 44) / (104 - 41)  # the overlap of cols 44..101 over 41..104
    truth_small = cv2.resize(truth.astype(np.uint8), WORK[::-1], interpolation=cv2.INTER_NEAREST)
    pred_small = _box(WORK, (ROWS[0] // 2, ROWS[1] // 2), PRED_COLS)
    return region_j(pred, truth), boundary_f(pred, truth), boundary_f(pred_small, truth_small)


def test_davis_scored_at_native_resolution_without_first_and_last(native_davis):
    j, f, f_working = _by_hand()
    assert f < 0.8 < 0.99 < f_working  # 3 px off is outside the 2 px tolerance at 96 x 160, 1.5 px within 1
    seqs = find_sequences(native_davis)
    (res,) = evaluate_sequences(ConstantSegmenter(), seqs, FixedInterval(1), size=WORK, progress=False)
    np.testing.assert_allclose(
        (res.J, res.F), (j, f), atol=1e-12
    )  # frames 0 and 4 (predicted wrong) left out
    assert res.frames == 5  # every frame still runs through the model
    (every,) = evaluate_sequences(
        ConstantSegmenter(), seqs, FixedInterval(1), size=WORK, progress=False, all_frames=True
    )
    np.testing.assert_allclose((every.J, every.F), (3 * j / 5, 3 * f / 5), atol=1e-12)  # J = F = 0 on 0 and 4


def _segment_task(root: Path, *extra: str) -> Segment:
    cfg = load_config(
        None,
        ["task=segment", f"data.root={root}", "model.name=segnet_mobilenet_v2",
         "task_options={size: [48, 80], train_sequences: [box], val_sequences: [box]}", *extra],
    )  # fmt: skip
    return Segment(cfg)


def test_segment_validation_is_scored_like_davis(native_davis, monkeypatch):
    from torch.utils.data import DataLoader

    from vidrec.data import collate_skip

    monkeypatch.setattr(Segment, "_sequences", lambda self: (find_sequences(native_davis),) * 2)
    j, f, _ = _by_hand()
    for extra, frames, expected in (
        ([], 3, (j, f)),
        (["task_options.val_all_frames=true"], 5, (0.6 * j, 0.6 * f)),
    ):
        task = _segment_task(native_davis, *extra)
        _, val = task.datasets(ConstantSegmenter())
        assert len(val) == frames and val[0]["image"].shape[-2:] == WORK and val[0]["mask"].shape == NATIVE
        loader = DataLoader(val, batch_size=2, collate_fn=collate_skip)
        out = task.validate(
            ConstantSegmenter(), loader, device=torch.device("cpu"), amp=False, progress=False
        )
        assert (out["val_J"], out["val_F"]) == pytest.approx(expected, abs=1e-12)


def test_validation_batches_masks_of_different_native_sizes(native_davis, monkeypatch):
    """A folder with sequences stored at two sizes (as DAVIS-2017): each prediction is upsampled to its
    own mask's size; a batch holding both keeps the masks as a list."""
    from torch.utils.data import DataLoader

    from vidrec.data.davis import collate_davis

    small = native_davis / "JPEGImages/480p/small"
    (native_davis / "Annotations/480p/small").mkdir(parents=True)
    small.mkdir()
    for t in range(3):  # at the working size itself: the box as the prediction draws it
        cv2.imwrite(str(small / f"{t:05d}.jpg"), np.full((*WORK, 3), 90, np.uint8))
        mask = _box(WORK, (ROWS[0] // 2, ROWS[1] // 2), PRED_COLS).astype(np.uint8) * 255
        cv2.imwrite(str(native_davis / f"Annotations/480p/small/{t:05d}.png"), mask)
    seqs = find_sequences(native_davis, ["box", "small"])
    monkeypatch.setattr(Segment, "_sequences", lambda self: (seqs, seqs))
    task = _segment_task(native_davis)
    _, val = task.datasets(ConstantSegmenter())
    loader = DataLoader(val, batch_size=4, collate_fn=task.collate())
    batches = list(loader)  # 3 frames of box (96 x 160) and 1 of small (48 x 80)
    assert isinstance(batches[0]["mask"], list) and [m.shape for m in batches[0]["mask"]][-2:] == [
        NATIVE,
        WORK,
    ]
    assert collate_davis([val[0], val[1]])["mask"].shape == (2, *NATIVE)  # one size: one tensor
    out = task.validate(ConstantSegmenter(), loader, device=torch.device("cpu"), amp=False, progress=False)
    j, f, _ = _by_hand()
    np.testing.assert_allclose((out["val_J"], out["val_F"]), ((j + 1) / 2, (f + 1) / 2), atol=1e-12)
