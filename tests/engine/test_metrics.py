import math

import numpy as np
import pytest
import torch

from vidrec.engine import metrics

# 4 videos, 3 classes; predictions (arg-max): 0, 2, 1, 1; labels 0, 1, 1, 2
PROBS = torch.tensor(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.3, 0.6],
        [0.2, 0.5, 0.3],
        [0.1, 0.5, 0.4],
    ]
)
LABELS = torch.tensor([0, 1, 1, 2])


def test_topk_hand_computed():
    assert metrics.topk_accuracy(PROBS, LABELS, 1) == pytest.approx(2 / 4)
    # top-2 sets: {0,1}, {2,1}, {1,2}, {1,2} -> all four hit
    assert metrics.topk_accuracy(PROBS, LABELS, 2) == pytest.approx(1.0)
    assert metrics.topk_accuracy(PROBS, LABELS, 5) == 1.0  # k clipped to K


def test_confusion_and_per_class():
    cm = metrics.confusion_matrix(PROBS, LABELS)
    expected = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(cm, expected)
    np.testing.assert_allclose(metrics.per_class_accuracy(PROBS, LABELS), [1.0, 0.5, 0.0])
    assert metrics.mean_class_accuracy(PROBS, LABELS) == pytest.approx(0.5)


def test_mean_class_ignores_absent_classes():
    per = metrics.per_class_accuracy(PROBS, LABELS, num_classes=4)
    assert math.isnan(per[3])
    assert metrics.mean_class_accuracy(PROBS, LABELS, num_classes=4) == pytest.approx(0.5)


def test_mean_class_differs_from_top1_when_imbalanced():
    probs = torch.eye(2)[[0, 0, 0, 0]]
    labels = torch.tensor([0, 0, 0, 1])
    assert metrics.topk_accuracy(probs, labels) == 0.75
    assert metrics.mean_class_accuracy(probs, labels) == 0.5


def test_nll_and_pair_accuracy():
    assert metrics.nll(PROBS, LABELS) == pytest.approx(-np.log([0.7, 0.3, 0.5, 0.4]).mean())
    # pair (1, 2): video 1 (label 1): 0.3 < 0.6 wrong; video 2: 0.5 > 0.3 right;
    # video 3 (label 2): 0.4 < 0.5 wrong
    assert metrics.pair_accuracy(PROBS, LABELS, [(1, 2)]) == pytest.approx(1 / 3)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="probs"):
        metrics.topk_accuracy(PROBS[0], LABELS)


def test_classification_metrics_keys():
    m = metrics.classification_metrics(PROBS, LABELS, 4)
    assert m["per_class_acc"][3] is None and m["num_videos"] == 4
    assert set(m) >= {"top1", "top5", "mean_class_acc", "loss"}
