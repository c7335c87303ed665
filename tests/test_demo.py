"""The demo end to end in --quick mode (tiny sizes, one epoch): artefacts exist and reports parse.

Accuracy is not asserted here (one epoch on 4 videos per class); `make demo` shows it.
"""

import json

import pytest

from vidrec.cli import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


def test_demo_writes_reports_and_plots(demo_run):
    report = json.loads((demo_run / "report.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["lrcn", "single_frame"]
    for run in report["runs"]:
        assert 0.0 <= run["metrics"]["top1"] <= 1.0 and 0.0 <= run["pair_acc"] <= 1.0
        folder = demo_run / run["name"]
        for name in ("report.md", "report.json", "report_confusion.png", "curves.png", "last.safetensors"):
            assert (folder / name).is_file(), f"{run['name']}: {name} missing"
        per_model = json.loads((folder / "report.json").read_text())
        assert len(per_model["per_class"]) == 6 and len(per_model["confusion_matrix"]) == 6
    text = (demo_run / "report.md").read_text()
    assert "| lrcn |" in text and "| single_frame |" in text and "stream" in text


def test_predict_export_and_eval_cli_on_demo_checkpoint(demo_run, tmp_path, capsys):
    ckpt = str(demo_run / "lrcn" / "last.safetensors")
    video = next((demo_run / "data" / "grow").glob("*.mp4"))
    assert main(["predict", ckpt, str(video), "--topk", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert (
        main(
            [
                "predict",
                ckpt,
                str(video),
                "--stream",
                "--window",
                "0.12",
                "--stride",
                "0.12",
                "--unit",
                "seconds",
            ]
        )
        == 0
    )
    assert "s-" in capsys.readouterr().out
    assert main(["predict", ckpt, str(demo_run / "data" / "grow"), "--out", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + 4
    assert main(["export", ckpt, "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert "parity" in capsys.readouterr().out
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                ckpt,
                "--clips",
                "2",
                "--crops",
                "3",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    data = json.loads((out / "report.json").read_text())
    assert data["metrics"]["clips"] == 2 and data["metrics"]["num_videos"] == 6  # 1 test video per class
