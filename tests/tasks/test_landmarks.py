"""task=landmarks: NME / AUC / jitter are exact on known errors, the task trains through the one engine
loop and its checkpoint comes back for inference, and `vidrec predict` draws the points on a video."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from faces import template, write_face_video

from vidrec.engine.checkpoint import load_checkpoint, load_task
from vidrec.engine.config import load_config
from vidrec.engine.schema import ConfigError
from vidrec.engine.train import train
from vidrec.tasks.landmarks import (
    Landmarks,
    auc,
    frame_nme,
    inter_ocular,
    inter_pupil,
    jitter,
    landmark_metrics,
    per_step_points,
)


def test_nme_of_a_known_offset_is_exact_with_both_normalisations():
    truth = torch.tensor(template() * 100)  # outer eye corners 52 px apart, eye centres 36 px
    assert float(inter_ocular(truth)) == pytest.approx(52.0, abs=1e-9)
    assert float(inter_pupil(truth)) == pytest.approx(36.0, abs=1e-9)
    pred = truth + torch.tensor([3.0, 4.0])  # every point 5 px off
    assert float(frame_nme(pred, truth, inter_ocular)) == pytest.approx(5 / 52, abs=1e-12)
    assert float(frame_nme(pred, truth, inter_pupil)) == pytest.approx(5 / 36, abs=1e-12)
    m = landmark_metrics(pred.numpy()[None, None], truth.numpy()[None, None])
    assert m["val_nme"] == pytest.approx(5 / 52) and m["val_nme_ip"] == pytest.approx(5 / 36)


def test_auc_at_008_on_known_errors():
    assert auc(np.array([0.0, 0.04, 0.08, 0.1])) == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert auc(np.zeros(5)) == 1.0 and auc(np.full(3, 0.2)) == 0.0
    assert auc(np.array([0.02])) == pytest.approx(0.75)
    # the same area by integrating the step curve numerically
    errors = np.random.default_rng(0).uniform(0, 0.12, 50)
    x = np.linspace(0, 0.08, 200001)
    curve = (errors[None] <= x[:, None]).mean(1)
    assert auc(errors) == pytest.approx(np.trapezoid(curve, x) / 0.08, abs=1e-4)


def test_jitter_is_zero_for_a_constant_offset_and_measures_shake():
    truth = np.stack([template() * 100 + [t, 0] for t in range(5)])[None]  # (1, 5, 68, 2), moving
    assert jitter(truth + [2.0, -1.0], truth) == pytest.approx(0.0, abs=1e-12)
    shaky = truth + np.array([0, 5.2, 0, 5.2, 0])[None, :, None, None] * [1, 0]
    assert jitter(shaky, truth) == pytest.approx(0.1)  # 5.2 px per frame / 52 px


def _config(tmp_path, *extra):
    (tmp_path / "faces").mkdir(exist_ok=True)
    for i in range(2):
        write_face_video(tmp_path / "faces", f"face{i}", frames=12, size=48, seed=i)
    return load_config(None, [
        "task=landmarks", f"data.root={tmp_path}/faces", "data.frames=4", "data.size=16",
        "data.batch_size=2", "data.workers=0", "model.name=prernn_rnn_conv_mobilenet_v2",
        "model.kwargs={pretrained: false}", "progress=false", "tensorboard=false", "schedule.epochs=2",
        "optim.lr=0.001", f"out_dir={tmp_path}/run", "task_options={jitter_scale: 0.05}", *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """PreRNN (conv RNN, MobileNetV2) trained 2 one-step epochs on generated faces: (folder, result)."""
    tmp = tmp_path_factory.mktemp("landmarks")
    return tmp, train(_config(tmp))


def test_landmarks_trains_through_the_engine_and_its_checkpoint_round_trips(trained):
    tmp_path, result = trained
    hist = result.history
    assert all(np.isfinite(h["val_nme"]) and 0 <= h["val_auc08"] <= 1 for h in hist)
    assert all("train_nme" in h and "val_jitter" in h and "val_nme_ip" in h for h in hist)
    assert result.best_top1 == min(h["val_nme"] for h in hist)  # lower is better
    assert (tmp_path / "run" / "ced.png").is_file()  # the task's report
    best = load_checkpoint(tmp_path / "run" / "best.safetensors")
    stored = dict(best.task_state)
    mean = np.array(stored.pop("mean_shape")).reshape(68, 2)  # the head's start: data in the checkpoint
    assert stored == {"points": 68, "frames": 4, "size": 16, "margin": 1.3, "box": "points"}
    assert mean == pytest.approx(_mean_shape(tmp_path / "faces", ["face0"]), abs=1e-5)  # face1 validates
    model, task = load_task(tmp_path / "run" / "best.safetensors")
    assert isinstance(task, Landmarks) and task.crop.size == 16 and task.crop.frames == 4
    _, val = task.datasets(model)
    loader = torch.utils.data.DataLoader(val, batch_size=2, collate_fn=task.collate())
    again = task.validate(model, loader, device=torch.device("cpu"), amp=False, progress=False)
    assert again["val_nme"] == pytest.approx(best.best_metric, rel=1e-5)  # the stored weights score the same


def _mean_shape(folder, names, margin=1.3):
    """The mean centred crop coordinates `(68, 2)` of every frame of the named videos, computed here."""
    shapes = []
    for name in names:
        for p in json.loads((folder / f"{name}.landmarks.json").read_text())["landmarks"]:
            p = np.array(p)
            lo, hi = p.min(0), p.max(0)
            side = (hi - lo).max() * margin
            shapes.append((p - ((lo + hi) / 2 - side / 2)) / side - 0.5)
    return np.mean(shapes, axis=0)


def test_fixed_jitter_versions_train_on_cached_trunk_features_with_the_same_result(tmp_path):
    """jitter_versions + freeze_trunk: the frozen trunk runs once per crop (the feature cache), and a run
    that reads the cache scores what the same run computing the trunk every step scores."""
    opts = ["task_options={jitter_scale: 0.05, jitter_versions: 2, clip_stride: 2, box: detector, "
            "split: blocks, val_fraction: 0.34}", "model.kwargs={pretrained: false, freeze_trunk: true, "
            "kernel_size: 1}", "schedule.epochs=1", "data.frames=2"]  # fmt: skip
    cached = train(_config(tmp_path, *opts, f"out_dir={tmp_path}/cached"))
    files = list((tmp_path / "cached" / "feature_cache").rglob("*.safetensors"))
    # 2 videos x 2 versions x starts 0, 2, 4 (12 frames: 4 validate after a 2-frame gap) + 2 x 2 val clips
    assert len(files) == 2 * 2 * 3 + 2 * 2
    plain = train(_config(tmp_path, *opts, "runtime.feature_cache=false", f"out_dir={tmp_path}/plain"))
    assert not (tmp_path / "plain" / "feature_cache").exists()
    assert cached.history[-1]["val_nme"] == pytest.approx(plain.history[-1]["val_nme"], rel=1e-4)
    assert cached.history[-1]["train_loss"] == pytest.approx(plain.history[-1]["train_loss"], rel=1e-4)
    state = load_checkpoint(tmp_path / "cached" / "last.safetensors").task_state
    assert state["box"] == "detector"
    _, task = load_task(tmp_path / "cached" / "last.safetensors")
    assert task.crop.box == "detector"  # vidrec predict crops in the convention it was trained in


def test_an_untrained_landmarks_model_predicts_the_training_mean_shape(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        write_face_video(folder, f"face{i}", frames=8, size=48, seed=i)
    val = json.loads((folder / "face2.landmarks.json").read_text())  # the validation video: another shape
    val["landmarks"] = [[[x, y + 6 * (k >= 48)] for k, (x, y) in enumerate(p)] for p in val["landmarks"]]
    (folder / "face2.landmarks.json").write_text(json.dumps(val))
    cfg = load_config(None, [
        "task=landmarks", f"data.root={folder}", "data.frames=4", "data.size=16", "data.workers=0",
        "model.name=single_frame_mobilenet_v2", "model.kwargs={pretrained: false}",
        "task_options={val_fraction: 0.34}",
    ])  # fmt: skip
    task = Landmarks(cfg)
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():
        out = per_step_points(model(torch.randn(2, 4, 3, 16, 16)), 4)  # any frames
    train_mean = _mean_shape(folder, ["face0", "face1"])
    assert out.numpy() == pytest.approx(np.broadcast_to(train_mean, out.shape), abs=1e-5)
    assert np.abs(_mean_shape(folder, ["face0", "face1", "face2"]) - train_mean).max() > 1e-3
    assert np.array(task.state()["mean_shape"]) == pytest.approx(train_mean.ravel(), abs=1e-5)
    train, _ = task.datasets(model)
    assert {t.video.name for t in train.tracks} == {"face0.mp4", "face1.mp4"}  # the split it was taken from


def test_per_clip_models_and_bad_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"task_options\.loss"):
        _config(tmp_path, "task_options={loss: huber}")
    with pytest.raises(ValueError, match=r"per-step outputs \(B, 4, 136\).*gave \(2, 136\)"):
        per_step_points(torch.zeros(2, 136), 4)  # one output per clip (TSN-like)
    with pytest.raises(ValueError, match="one-stream model"):
        per_step_points({"rgb": torch.zeros(2, 4, 136)}, 4)
    assert per_step_points(torch.arange(136.0)[None], 1).shape == (1, 1, 68, 2)  # one-frame clips are fine


def test_vidrec_predict_draws_the_landmarks_on_a_video(trained, tmp_path, capsys):
    from vidrec.cli import main
    from vidrec.io import read_frames

    ckpt = str(trained[0] / "run" / "last.safetensors")
    video = write_face_video(tmp_path, "new", frames=10, size=48, seed=7)
    out = tmp_path / "drawn.mp4"
    assert main(["predict", ckpt, str(video), "--out", str(out)]) == 0
    assert "drew 10 frames" in capsys.readouterr().out
    drawn, src = read_frames(out, range(10)), read_frames(video, range(10))
    points = np.array(json.loads((tmp_path / "drawn.landmarks.json").read_text())["landmarks"])
    assert points.shape == (10, 68, 2)
    green = (drawn[..., 1].astype(int) - drawn[..., 0] > 80) & (src[..., 1].astype(int) - src[..., 0] < 30)
    assert green.sum() > 10 * 20  # dots drawn on every frame
    inside = np.round(points[0]).astype(int)
    inside = inside[((inside >= 0) & (inside < 48)).all(1)]
    assert len(inside) and green[0][inside[:, 1], inside[:, 0]].mean() > 0.5  # where the points are
    assert main(["predict", ckpt, str(video), "--out", str(out)]) == 2  # an existing output is kept


def test_vidrec_predict_on_a_blank_video_reports_every_frame_without_a_face(trained, tmp_path, capsys):
    from vidrec.cli import main
    from vidrec.io import write_video

    ckpt = str(trained[0] / "run" / "last.safetensors")
    blank = write_video(tmp_path / "blank.mp4", np.zeros((10, 48, 64, 3), np.uint8), 25)
    out = tmp_path / "blank_points.json"
    assert main(["predict", ckpt, str(blank), "--out", str(out)]) == 0
    assert "no face (haar) in 10 of 10 frames: 0-9" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["face"] == [False] * 10 and data["no_face"] == list(range(10)) and data["detector"] == "haar"
    assert np.isfinite(np.array(data["landmarks"])).all() and len(data["landmarks"]) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.mp4", "blank_points.json"]  # no video drawn


def test_vidrec_predict_takes_a_fixed_face_box_and_refuses_bad_ones(trained, tmp_path, capsys):
    from vidrec.cli import main

    ckpt = str(trained[0] / "run" / "last.safetensors")
    video = write_face_video(tmp_path, "new", frames=6, size=48, seed=3)
    out = tmp_path / "fixed.json"
    assert main(["predict", ckpt, str(video), "--out", str(out), "--face-box", "10,8,38,40"]) == 0
    assert "a face in every frame (fixed box)" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["face"] == [True] * 6
    assert data["crop_boxes"][0] == pytest.approx([3.2, 3.2, 41.6])  # 32 px x margin 1.3 around (24, 24)
    for bad, message in [
        (["--face-box", "10,8,5,40"], "RIGHT must exceed LEFT"),
        (["--face-box", "1,2,3"], "four numbers"),
        (["--box-smoothing", "1"], "in [0, 1)"),
    ]:
        assert main(["predict", ckpt, str(video), "--out", str(tmp_path / "bad.json"), *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.json").exists()


def test_vidrec_predict_with_dlib_missing_says_how_to_install_it(trained, tmp_path, capsys):
    import importlib.util

    from vidrec.cli import main

    if importlib.util.find_spec("dlib") is not None:
        pytest.skip("dlib is installed here")
    video = write_face_video(tmp_path, "new", frames=4, size=48, seed=3)
    ckpt = str(trained[0] / "run" / "last.safetensors")
    assert main(["predict", ckpt, str(video), "--out", str(tmp_path / "p.json"), "--detector", "dlib"]) == 2
    assert "pip install 'vidrec[dlib]'" in capsys.readouterr().err


def test_a_checkpoint_with_a_malformed_mean_shape_is_refused_naming_it(tmp_path):
    from vidrec.engine import checkpoint as C
    from vidrec.engine.schema import config_to_dict

    cfg = load_config(None, ["task=landmarks", "model.name=prernn_rnn_conv_mobilenet_v2"])
    state = {"points": 68, "frames": 4, "size": 16, "margin": 1.3, "mean_shape": [0.1, 0.2, "x"]}
    path = C.save_checkpoint(
        tmp_path / "best.safetensors",
        C.Checkpoint(model={}, config=config_to_dict(cfg), class_names=[], task_state=state),
    )
    with pytest.raises(C.CheckpointError, match=rf"^{tmp_path / 'best.safetensors'}: .*mean_shape"):
        C.load_task(path)
