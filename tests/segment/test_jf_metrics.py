"""DAVIS J and F on hand-made masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidrec.engine.seg_metrics import JF, boundary_f, boundary_map, boundary_prf, region_j, tolerance_px


def square(shape, top, left, side):
    m = np.zeros(shape, bool)
    m[top : top + side, left : left + side] = True
    return m


def test_j_is_intersection_over_union():
    gt = square((20, 30), 5, 5, 10)
    assert region_j(square((20, 30), 5, 10, 10), gt) == pytest.approx(50 / 150)
    assert region_j(gt, gt) == 1.0
    assert region_j(np.zeros_like(gt), gt) == 0.0
    assert region_j(np.zeros_like(gt), np.zeros_like(gt)) == 1.0  # both empty: DAVIS counts it perfect


def test_boundary_map_is_the_toolkits_seg2bmap():
    mask = square((5, 5), 1, 1, 2)
    expected = np.zeros((5, 5), bool)
    for r, c in [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (1, 2), (2, 1), (2, 2)]:
        expected[r, c] = (
            True  # half a pixel towards the origin: above / left of the square, its last row / col
        )
    assert np.array_equal(boundary_map(mask), expected)
    edge = np.zeros((4, 4), bool)
    edge[:, 2:] = True  # touching the right border: the border itself is no boundary
    assert np.array_equal(np.argwhere(boundary_map(edge))[:, 1], [1, 1, 1, 1])


def test_tolerance_is_0008_of_the_diagonal_rounded_up():
    assert tolerance_px((480, 854)) == 8  # 0.008 * 979.6 = 7.84
    assert tolerance_px((100, 100)) == 2
    assert tolerance_px((100, 100), 3) == 3  # >= 1: pixels


def test_f_matches_boundaries_within_the_tolerance_only():
    shape = (480, 854)
    gt = square(shape, 100, 200, 200)
    assert boundary_f(gt, gt) == 1.0
    assert boundary_f(np.roll(gt, 8, axis=1), gt) == 1.0  # 8 px = the tolerance at 480p
    f, p, r = boundary_prf(np.roll(gt, 12, axis=1), gt)
    assert f < 0.7 and p == pytest.approx(r, abs=0.02)  # the vertical edges are now too far


def test_f_with_an_extra_blob_and_empty_masks():
    gt = square((100, 200), 10, 10, 20)
    pred = gt | square((100, 200), 60, 150, 20)  # the same square again, far away
    f, p, r = boundary_prf(pred, gt)
    assert (p, r) == (0.5, 1.0) and f == pytest.approx(2 / 3)
    empty = np.zeros_like(gt)
    assert boundary_prf(empty, gt) == (0.0, 1.0, 0.0)
    assert boundary_prf(gt, empty) == (0.0, 0.0, 1.0)
    assert boundary_prf(empty, empty) == (1.0, 1.0, 1.0)


def test_scores_average_per_sequence_then_over_sequences():
    gt = square((40, 40), 5, 5, 20)
    jf = JF()
    jf.update("a", 0, torch.from_numpy(gt), torch.from_numpy(gt))  # J 1
    jf.update("a", 1, np.zeros_like(gt), gt)  # J 0, F 0
    jf.update("b", 0, gt, gt)  # J 1
    per = jf.per_sequence()
    assert per == {"a": (0.5, 0.5, 2), "b": (1.0, 1.0, 1)}
    out = jf.compute()
    assert out["J"] == 0.75 and out["F"] == 0.75 and out["JF"] == 0.75  # not the frame mean 2/3
    jf.update("a", 1, gt, gt)  # a frame scored again replaces its score
    assert jf.per_sequence()["a"] == (1.0, 1.0, 2)
    with pytest.raises(ValueError, match="one shape"):
        region_j(gt, gt[:10])
