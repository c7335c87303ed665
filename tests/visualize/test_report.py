import json

import numpy as np
import pytest
import torch
from PIL import Image

from vidrec.engine.evaluate import EvalResult
from vidrec.engine.metrics import classification_metrics
from vidrec.visualize.plots import plot_confusion, plot_curves
from vidrec.visualize.report import write_report


def test_plot_curves_reads_training_csv(tmp_path):
    csv = tmp_path / "log.csv"
    csv.write_text("epoch,train_loss,val_loss,val_top1,lr,note\n1,2.0,2.1,0.2,0.1,x\n2,1.5,,0.4,0.1,y\n")
    out = plot_curves(csv, tmp_path / "curves.png")
    assert Image.open(out).size[0] > 100


def test_plot_curves_names_the_problem(tmp_path):
    csv = tmp_path / "log.csv"
    csv.write_text("epoch,lr\n1,0.1\n")
    with pytest.raises(ValueError, match="loss or accuracy"):
        plot_curves(csv, tmp_path / "c.png")


def test_confusion_png_scales_to_101_classes(tmp_path):
    names = [f"class_{i:03d}" for i in range(101)]
    cm = np.random.default_rng(0).integers(0, 5, (101, 101))
    small = Image.open(plot_confusion(cm[:6, :6], names[:6], tmp_path / "small.png"))
    big = Image.open(plot_confusion(cm, names, tmp_path / "big.png"))
    assert big.size[0] > 2 * small.size[0]
    with pytest.raises(ValueError, match="class names"):
        plot_confusion(cm[:3, :3], names[:2], tmp_path / "bad.png")


def test_write_report_md_and_json(tmp_path):
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    labels = torch.tensor([0, 1, 1])
    res = EvalResult(classification_metrics(probs, labels, 3), probs, labels, ["a", "b", "c"], ["broken.mp4"])
    md = write_report(
        tmp_path, res, class_names=["left", "right", "up"], config={"lr": 0.1}, extra={"pair": 0.5}
    )
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["metrics"]["top1"] == pytest.approx(2 / 3) and data["metrics"]["pair"] == 0.5
    assert data["per_class"][2] == {"class": "up", "support": 0, "accuracy": None}
    assert data["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert data["skipped"] == ["broken.mp4"] and data["config"] == {"lr": 0.1}
    text = md.read_text()
    assert "| right | 2 | 0.5000 |" in text and "broken.mp4" in text
    assert (tmp_path / data["files"]["confusion matrix"]).is_file()
