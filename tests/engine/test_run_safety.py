"""Runs never lose or mix results (issue 8): no silent overwrites (point 3), wrong results are errors
(point 4), no leftovers after kills and resumes (point 6), Ctrl-C leaves a resumable checkpoint (point 5)."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
import torch

from vidrec.cli import UsageError, main
from vidrec.engine import runfolder
from vidrec.engine.checkpoint import load_checkpoint
from vidrec.engine.config import load_config
from vidrec.engine.evaluate import NoDataError, evaluate
from vidrec.engine.schema import ConfigError
from vidrec.engine.train import train

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the test-local plug-in module `tinyvid`
    sys.path.insert(0, str(HERE))

TINY = [
    "data.plugin=tinyvid:color_data",
    "model.name=tinyvid:tiny_net",
    "data.frames=2",
    "data.size=4",
    "data.batch_size=4",
    "data.workers=0",
    "progress=false",
    "tensorboard=false",
    "plots=false",
]


def _cfg(out: Path, *extra: str):
    return load_config(None, [*TINY, f"out_dir={out}", *extra])


def _epochs(run: Path) -> list[int]:
    return [int(r["epoch"]) for r in csv.DictReader((run / "metrics.csv").read_text().splitlines())]


# ----------------------------------------------------------------------------- point 3: overwrites


def test_train_refuses_an_existing_run_unless_resumed_or_overwritten(tmp_path):
    run = tmp_path / "run"
    train(_cfg(run, "schedule.epochs=1"))
    before = (run / "last.safetensors").read_bytes()
    with pytest.raises(runfolder.RunFolderError, match="--resume.*overwrite=true"):
        train(_cfg(run, "schedule.epochs=1"))
    assert (run / "last.safetensors").read_bytes() == before and _epochs(run) == [1]
    train(_cfg(run, "schedule.epochs=2", "overwrite=true"))
    assert _epochs(run) == [1, 2]  # a fresh run: the old rows are gone, not mixed in


def test_a_run_folder_in_use_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    with runfolder.locked(run):  # another `vidrec train` holds it
        with pytest.raises(runfolder.RunFolderError, match="in use"):
            train(_cfg(run, "schedule.epochs=1"))
        rc = main(["train", *TINY, f"out_dir={run}", "schedule.epochs=1"])
        assert rc == 2 and "in use by another vidrec train" in capsys.readouterr().err
    assert not (run / "last.safetensors").exists()
    train(_cfg(run, "schedule.epochs=1"))  # the lock went with its holder
    assert (run / "last.safetensors").is_file()


def test_outputs_are_never_replaced_silently(tmp_path, capsys):
    ckpt = tmp_path / "c.safetensors"
    ckpt.write_bytes(b"precious")
    assert main(["export", str(ckpt), "--out", str(ckpt), "--overwrite"]) == 2
    assert "also an input" in capsys.readouterr().err and ckpt.read_bytes() == b"precious"
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"old")
    assert main(["export", str(ckpt), "--out", str(existing)]) == 2
    assert "--overwrite" in capsys.readouterr().err and existing.read_bytes() == b"old"
    csv_out = tmp_path / "preds.csv"
    csv_out.write_text("old")
    assert main(["predict", str(ckpt), str(tmp_path), "--out", str(csv_out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and csv_out.read_text() == "old"
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "report.md").write_text("old")
    assert main(["eval", str(ckpt)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    data = tmp_path / "synth"
    data.mkdir()
    (data / "train.txt").write_text("mine.mp4 0\n")
    assert main(["synth", "--out", str(data), "--per-class", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (data / "train.txt").read_text() == "mine.mp4 0\n"


# ----------------------------------------------------------------------------- point 4: wrong results


def test_unreadable_training_or_validation_set_stops_without_a_checkpoint(tmp_path, capsys):
    run = tmp_path / "a"
    rc = main(["train", *TINY, "data.plugin=tinyvid:unreadable_train_data", f"out_dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2 and "training: no video could be read" in err and len(err.strip().splitlines()) == 1
    assert not list(run.glob("*.safetensors"))
    with pytest.raises(NoDataError, match="validation: no video could be read, all 3 videos were skipped"):
        train(_cfg(tmp_path / "b", "data.plugin=tinyvid:unreadable_val_data", "schedule.epochs=1"))
    assert not list((tmp_path / "b").glob("*.safetensors"))


def test_evaluating_nothing_is_an_error():
    model = torch.nn.Linear(3, 2)
    model.modalities, model.num_classes = ("rgb",), 2
    with pytest.raises(NoDataError, match="the set is empty"):
        evaluate(model, [], device="cpu", progress=False)
    with pytest.raises(NoDataError, match="all 2 videos were skipped"):
        evaluate(model, [{"skipped": ["a.mp4", "b.mp4"]}], device="cpu", progress=False)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("schedule.gamma=-0.5", "schedule.gamma"),
        ("schedule.gamma=0", "schedule.gamma"),
        ("schedule.min_lr_factor=-0.1", "schedule.min_lr_factor"),
        ("schedule.min_lr_factor=1.5", "schedule.min_lr_factor"),
        ("schedule.warmup_start=-1", "schedule.warmup_start"),
        ("model.kwargs={num_classes: 7}", "model.kwargs.num_classes"),
    ],
)
def test_settings_that_give_wrong_training_are_config_errors(tmp_path, override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _cfg(tmp_path, override)


def test_resume_with_another_batch_size_is_refused(tmp_path):
    run = tmp_path / "run"
    train(_cfg(run, "schedule.epochs=1"))
    with pytest.raises(ConfigError, match="data.batch_size=4"):
        train(_cfg(run, "schedule.epochs=2", "data.batch_size=2", "resume=auto"))
    train(_cfg(run, "schedule.epochs=2", "resume=auto"))
    assert _epochs(run) == [1, 2]


def test_eval_labels_follow_the_checkpoint_classes(tmp_path):
    from vidrec.engine.cli_eval import eval_records

    ckpt_names = ["walk", "run", "jump"]
    by_name = tmp_path / "names.txt"
    by_name.write_text("a.mp4 jump\nb.mp4 walk\n")
    records = eval_records(str(by_name), root=str(tmp_path), class_names=ckpt_names)
    assert [r.label for r in records] == [2, 0]  # not the sorted-names order (jump=0, walk=1)
    sub = tmp_path / "ints"
    sub.mkdir()
    (sub / "list.txt").write_text("a.mp4 0\nb.mp4 1\n")
    (sub / "classes.txt").write_text("jump\nrun\n")  # the list's own order
    records = eval_records(str(sub / "list.txt"), root=str(sub), class_names=ckpt_names)
    assert [r.label for r in records] == [2, 1]
    plain = tmp_path / "plain.txt"
    plain.write_text("a.mp4 1\n")
    assert [r.label for r in eval_records(str(plain), root=str(tmp_path), class_names=ckpt_names)] == [1]
    (sub / "classes.txt").write_text("jump\nswim\n")
    with pytest.raises(UsageError, match="swim"):
        eval_records(str(sub / "list.txt"), root=str(sub), class_names=ckpt_names)


# ----------------------------------------------------------------------------- point 6: leftovers


def test_stale_temp_checkpoints_are_removed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = run / ".last.safetensors.tmp-4242"
    stale.write_bytes(b"half a checkpoint")
    train(_cfg(run, "schedule.epochs=1"))
    assert not stale.exists() and not list(run.glob(".*.tmp-*"))


def test_metrics_rows_are_not_repeated_after_resume(tmp_path):
    run = tmp_path / "run"
    train(_cfg(run, "schedule.epochs=1", "log_every_steps=1"))
    shutil.copy(run / "last.safetensors", tmp_path / "epoch1.safetensors")
    train(_cfg(run, "schedule.epochs=2", "log_every_steps=1", "resume=auto"))
    # a kill after epoch 2's rows were written but before its checkpoint: last is still epoch 1's
    shutil.copy(tmp_path / "epoch1.safetensors", run / "last.safetensors")
    train(_cfg(run, "schedule.epochs=2", "log_every_steps=1", "resume=auto"))
    assert _epochs(run) == [1, 2]
    steps = [int(r["step"]) for r in csv.DictReader((run / "steps.csv").read_text().splitlines())]
    assert steps == list(range(1, 13))


def test_resume_flag_followed_by_an_override(tmp_path):
    from vidrec.cli import build_parser
    from vidrec.engine.cli_train import collect_overrides

    args = build_parser("train").parse_args(["train", "c.yaml", "--resume", "optim.lr=0.1"])
    _, overrides = collect_overrides(args)
    assert overrides == ["optim.lr=0.1", "resume=auto"]
    ckpt = tmp_path / "x.safetensors"
    ckpt.write_bytes(b"")
    args = build_parser("train").parse_args(["train", "c.yaml", "--resume", str(ckpt)])
    assert collect_overrides(args)[1] == [f"resume={ckpt}"]


def test_checkpoints_store_absolute_data_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("classes.txt").write_text("red\ngreen\nblue\n")
    Path("data").mkdir()
    train(_cfg(Path("run"), "schedule.epochs=1", "data.root=data", "data.classes=classes.txt"))
    stored = load_checkpoint(tmp_path / "run" / "last.safetensors").config["data"]
    assert stored["root"] == str(tmp_path / "data") and stored["classes"] == str(tmp_path / "classes.txt")


# ----------------------------------------------------------------------------- point 5: Ctrl-C in train


def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    model = "model.kwargs={interrupt_after: 8}"  # Ctrl-C in the 9th forward: epoch 2, batch 3
    rc = main(["train", *TINY, f"out_dir={run}", "schedule.epochs=2", model])
    err = capsys.readouterr().err
    assert rc == 130 and "vidrec train: interrupted" in err and "Traceback" not in err
    mid = load_checkpoint(run / "last.safetensors")
    assert (mid.epoch, mid.step_in_epoch, mid.global_step) == (1, 2, 8)
    train(_cfg(run, "schedule.epochs=2", "resume=auto"))
    end = load_checkpoint(run / "last.safetensors")
    assert (end.epoch, end.global_step) == (2, 12) and _epochs(run) == [1, 2]
