"""The detect task trains through the one engine (`vidrec.engine.train.train`) on a generated video with
its gt.txt, per frame and as DFF on pairs; its checkpoint draws boxes (`vidrec predict`, `vidrec dff run`)
and is scored (`vidrec dff eval`)."""

from __future__ import annotations

import numpy as np
import pytest

from vidrec.cli import main
from vidrec.engine.checkpoint import load_checkpoint, load_task
from vidrec.engine.config import load_config
from vidrec.engine.schema import ConfigError
from vidrec.engine.train import train
from vidrec.io import probe, read_frames

QUIET = ["progress=false", "tensorboard=false", "data.workers=0", "runtime.device=cpu"]


def detect_config(root, out, *extra, options="train_frames: 1-16, val_frames: 17-24"):
    return load_config(
        None,
        [
            "task=detect",
            f"data.root={root}",
            "model.name=fcos_mobilenet_v2",
            "data.batch_size=2",
            f"task_options={{size: [64, 96], {options}}}",
            "optim.name=adamw",
            "optim.lr=0.001",
            "schedule.name=constant",
            "schedule.epochs=1",
            "max_steps_per_epoch=2",
            f"out_dir={out}",
            *QUIET,
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def runs(boxes_video, tmp_path_factory):
    """(per-frame result, its run folder, DFF result, its run folder): 2 steps each through the engine."""
    base = tmp_path_factory.mktemp("detect_runs")
    per_frame = train(detect_config(boxes_video, base / "per_frame"))
    dff = train(
        detect_config(
            boxes_video,
            base / "dff",
            "model.name=dff_fcos_mobilenet_v2",
            f"model.init_from={base / 'per_frame' / 'best.safetensors'}",
            options="train_frames: 1-16, val_frames: 17-24, pairs: true, max_offset: 3",
        )
    )
    return per_frame, base / "per_frame", dff, base / "dff"


def test_detect_trains_two_steps_through_the_engine_and_reports(runs):
    result, run, _, _ = runs
    (epoch,) = result.history
    assert {"train_classification", "train_bbox_regression", "train_bbox_ctrness"} <= set(epoch)
    assert all(0.0 <= epoch[k] <= 1.0 for k in ("val_AP50", "val_AP", "val_AP75"))
    assert result.best_top1 == epoch["val_AP50"]  # val_AP50 picks best.safetensors
    best = load_checkpoint(run / "best.safetensors")
    assert best.task_state["size"] == [64, 96] and best.config["task"] == "detect"
    assert (run / "pr_curve.png").stat().st_size > 0 and (run / "detections.png").stat().st_size > 0
    model, task = load_task(run / "best.safetensors")
    assert type(model).__name__ == "Detector" and task.options.val_frames == "17-24"


def test_dff_detect_trains_on_pairs_from_the_per_frame_run(runs):
    per_frame, run, result, dff_run = runs
    (epoch,) = result.history
    assert np.isfinite(epoch["train_loss"]) and 0.0 <= epoch["val_AP50"] <= 1.0
    model, _ = load_task(dff_run / "best.safetensors")
    assert type(model).__name__ == "PyramidDFF"
    # init_from copied the per-frame feature net and head (the DFF step then moved them a little)
    source = load_checkpoint(run / "best.safetensors").model
    stem = "feature_net.body.0.0.weight"
    assert np.allclose(model.state_dict()[stem].numpy(), source[stem].numpy(), atol=0.05)


def test_predict_draws_boxes_on_every_frame(runs, boxes_video, tmp_path, capsys):
    _, run, _, _ = runs
    out = tmp_path / "drawn.mp4"
    video = str(boxes_video / "clip.mp4")
    assert main(["predict", str(run / "best.safetensors"), video, "--out", str(out)]) == 0
    assert "drew the boxes of 24 frames" in capsys.readouterr().out
    assert probe(out).num_frames == 24 and read_frames(out, [0]).shape == (1, 96, 128, 3)
    assert main(["predict", str(run / "best.safetensors"), video, "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_dff_run_and_eval_on_a_detect_checkpoint(runs, boxes_video, tmp_path, capsys):
    _, run, _, dff_run = runs
    video = str(boxes_video / "clip.mp4")
    out = tmp_path / "dff.mp4"
    assert (
        main(["dff", "run", str(dff_run / "best.safetensors"), video, "--out", str(out), "--interval", "5"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "24 frames, 5 key frames (fixed interval 5), flow FlowNetLite" in printed
    assert probe(out).num_frames == 24
    assert main(["dff", "eval", str(run / "best.safetensors"), str(boxes_video), "--interval", "2"]) == 0
    printed = capsys.readouterr().out
    assert "frames 17-24" in printed and "flow DISFlow" in printed
    assert "AP@0.5 " in printed and "4/8 key frames" in printed and "frames/s" in printed
    bad = ["dff", "eval", str(run / "best.safetensors"), str(boxes_video), "--frames", "17-30"]
    assert main(bad) == 2
    assert "past the end of the video (24 frames)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("train_frames: 1-16, val_frames: 10-20", "overlap; validate on frames never trained on"),
        ("train_frames: 1-16, val_frames: 17-30", "past the end of the video"),
        ("train_frames: 1-16, val_frames: 17-24, gt: other.txt", "other.txt does not exist"),
    ],
)
def test_bad_splits_and_files_are_one_clear_line(boxes_video, tmp_path, options, message):
    from vidrec.tasks.detect import Detect

    with pytest.raises(ConfigError, match=message):
        Detect(detect_config(boxes_video, tmp_path, options=options)).check()


def test_a_bad_gt_line_stops_the_run_naming_file_and_line(boxes_video, tmp_path):
    from vidrec.tasks.detect import Detect

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "clip.mp4").symlink_to(boxes_video / "clip.mp4")
    lines = (boxes_video / "gt.txt").read_text().splitlines()
    lines[5] = "30,1,10,10,20,20,1,-1,-1,-1"  # frame 30 of a 24-frame video
    (folder / "gt.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"gt.txt:6: frame 30 is past the end of the video \(24 frames\)"):
        Detect(detect_config(folder, tmp_path)).check()


def test_default_split_is_contiguous_blocks_of_the_annotated_frames(boxes_video, tmp_path):
    from vidrec.tasks.detect import Detect

    _, _, train_range, val_range = Detect(
        detect_config(boxes_video, tmp_path, options="flip: false")
    )._inputs()
    assert (train_range, val_range) == (range(0, 16), range(16, 24))  # 70 % of 24 annotated frames, the rest


def test_the_pets09_config_and_ground_truth(shared_data):
    from vidrec.data.mot import read_mot

    cfg = load_config("detect_pets09", [f"data.root={shared_data / 'pets09_s2l1'}"])
    assert cfg.task == "detect" and cfg.task_options["train_frames"] == "1-350"
    gt = read_mot(shared_data / "pets09_s2l1" / "gt_train.txt", num_frames=795, height=576, width=768)
    assert gt.count() == 2712 - 174 and sum(len(v) for v in gt.ignore.values()) == 174
    assert gt.last_frame == 499 and gt.clipped == 0


def test_frames_after_the_last_annotated_one_are_refused_for_training_and_validation(boxes_video, tmp_path):
    from vidrec.tasks.detect import Detect

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "clip.mp4").symlink_to(boxes_video / "clip.mp4")
    lines = [ln for ln in (boxes_video / "gt.txt").read_text().splitlines() if int(ln.split(",")[0]) <= 20]
    (folder / "gt.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="val_frames: frames after 20 have no boxes"):
        Detect(detect_config(folder, tmp_path)).check()  # validation 17-24
    with pytest.raises(ConfigError, match="train_frames: frames after 20 have no boxes"):
        Detect(detect_config(folder, tmp_path, options="train_frames: 1-22, val_frames: none")).check()
    _, _, train_range, val_range = Detect(
        detect_config(folder, tmp_path, options="val_frames: none")
    )._inputs()
    assert (train_range, val_range) == (range(0, 14), None)  # 70 % of the 20 annotated frames
