"""No command writes over one of its inputs, or over an existing output without `--overwrite` (issue 20,
"data loss"): each defect the issue names, then every writing command against an existing output. All
of them go through `vidrec.cli.output_path` / `output_folder`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from vidrec.cli import UsageError, main, output_folder, output_path
from vidrec.data.synthetic import make_synthetic_dataset
from vidrec.models.backbones import SPECS, weights_file


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """6 tiny synthetic videos (32 px, 6 frames) with train.txt / test.txt / classes.txt; tests copy
    what they change."""
    root = tmp_path_factory.mktemp("outputs") / "synth"
    return make_synthetic_dataset(root, per_class=1, frames=6, size=32, seed=3, progress=False)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ----------------------------------------------------------------------------- the defects of the issue


def test_prepare_into_its_source_folder_is_refused(dataset, tmp_path, capsys):
    root = _copy(dataset, tmp_path)
    before = _digests(root)
    argv = ["prepare", str(root / "train.txt"), "--short-side", "32", "--workers", "1", "--no-register"]
    assert main([*argv, "--out", str(root)]) == 2
    assert "holds the source" in _one_line_error(capsys)
    assert main([*argv, "--out", str(tmp_path)]) == 2  # a folder above the sources as well
    capsys.readouterr()
    assert _digests(root) == before and not list(root.glob("*prepared*"))


def test_sheet_never_writes_over_its_input(dataset, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes((dataset / (dataset / "train.txt").read_text().split()[0]).read_bytes())
    before = video.read_bytes()
    link = tmp_path / "sheet.png"
    link.symlink_to(video)
    for out in (video, link):
        for extra in ([], ["--overwrite"]):  # not even with --overwrite
            assert main(["sheet", str(video), "--out", str(out), "--frames", "2", *extra]) == 2
            assert "is also an input" in _one_line_error(capsys)
    assert video.read_bytes() == before


def test_train_never_rewrites_the_users_config(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    config = victim / "config.yaml"
    text = (
        "# my notes on this run: keep them\n"
        f"data: {{train_list: {victim / 'list.txt'}}}\n"
        "model: {name: single_frame_mobilenet_v2}  # the baseline\n"
        f"out_dir: {victim}\n"
    )
    config.write_text(text)
    (victim / "list.txt").write_text("a.mp4 0\n")
    for extra in ([], ["overwrite=true"]):
        assert main(["train", str(config), *extra]) == 2
        assert "out_dir's config.yaml" in _one_line_error(capsys)
    assert config.read_text() == text and sorted(p.name for p in victim.iterdir()) == [
        "config.yaml",
        "list.txt",
    ]


def test_eval_keeps_every_file_of_an_existing_report(tmp_path, capsys):
    ckpt = tmp_path / "run" / "last.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"never read: the report is refused first")
    out = tmp_path / "eval"
    out.mkdir()
    for name in ("report.json", "report_confusion.png"):  # no report.md: it used to check only that one
        (out / name).write_text("an earlier report")
        assert main(["eval", str(ckpt), "--out", str(out)]) == 2
        assert f"{out / name} already exists; pass --overwrite" in _one_line_error(capsys)
        assert (out / name).read_text() == "an earlier report"
        (out / name).unlink()


def test_output_path_sees_through_links_and_folders(tmp_path):
    source = tmp_path / "a.mp4"
    source.write_bytes(b"x")
    os.link(source, tmp_path / "hard.mp4")
    (tmp_path / "sub").mkdir()
    for out in (source, tmp_path / "hard.mp4", tmp_path / "sub" / ".." / "a.mp4"):
        with pytest.raises(UsageError, match="is also an input"):
            output_path(out, "--out", overwrite=True, inputs=(source,))
    assert (
        output_path(tmp_path / "new.png", "--out", overwrite=False, inputs=(source,)) == tmp_path / "new.png"
    )
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        output_path(source, "--out", overwrite=False)
    assert output_folder(tmp_path / "copy", "--out", overwrite=False, sources=[source]) == tmp_path / "copy"
    with pytest.raises(UsageError, match="holds the source"):
        output_folder(tmp_path, "--out", overwrite=True, sources=[source])
    (tmp_path / "linked").symlink_to(tmp_path / "sub")  # sources reached through a link: written through it
    with pytest.raises(UsageError, match="holds the source"):
        output_folder(tmp_path / "linked", "--out", overwrite=True, sources=[tmp_path / "linked" / "a.mp4"])


# ----------------------------------------------------------------------------- every writing command


def _copy(dataset: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(dataset, tmp_path / "data"))


def _first_video(root: Path) -> Path:
    return root / (root / "train.txt").read_text().split()[0]


def _sheet(dataset, tmp_path):
    out = tmp_path / "sheet.png"
    out.write_bytes(b"old")
    return ["sheet", str(_first_video(dataset)), "--out", str(out), "--frames", "2"], out


def _synth(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    return [
        "synth",
        "--out",
        str(root),
        "--per-class",
        "1",
        "--frames",
        "6",
        "--size",
        "32",
        "--seed",
        "3",
    ], root


def _flow(dataset, tmp_path):
    out = tmp_path / "flow"
    argv = ["flow", str(dataset / "train.txt"), "--out", str(out), "--workers", "1", "--short-side", "0"]
    assert main([*argv, "--method", "farneback"]) == 0  # complete flow of one method...
    return [*argv, "--method", "dis"], out  # ...is not replaced by another's without --overwrite


def _prepare(dataset, tmp_path):
    out = tmp_path / "prepared"
    argv = ["prepare", str(dataset / "train.txt"), "--out", str(out), "--workers", "1", "--no-register"]
    assert main([*argv, "--format", "frames"]) == 0
    return [*argv, "--format", "video"], out


def _train(dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.safetensors").write_bytes(b"an earlier run")
    argv = ["train", f"data.train_list={dataset / 'train.txt'}", "model.name=single_frame_mobilenet_v2"]
    return [*argv, f"out_dir={out}", "runtime.device=cpu"], out


def _eval(dataset, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.md").write_text("old")
    return ["eval", str(tmp_path / "last.safetensors"), "--out", str(out)], out


def _predict(dataset, tmp_path):
    out = tmp_path / "preds.csv"
    out.write_text("old")
    return ["predict", str(tmp_path / "last.safetensors"), str(dataset), "--out", str(out)], out


def _export(dataset, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_text("old")
    return ["export", str(tmp_path / "last.safetensors"), "--out", str(out)], out


def _dff_run(dataset, tmp_path):
    ckpt, out = tmp_path / "last.safetensors", tmp_path / "overlay.mp4"
    ckpt.write_bytes(b"never read")
    out.write_text("old")
    return ["dff", "run", str(ckpt), str(_first_video(dataset)), "--out", str(out)], out


def _dff_pretrain(dataset, tmp_path):
    out = tmp_path / "flownet.safetensors"
    out.write_text("old")
    return ["dff", "pretrain-flow", str(dataset), "--out", str(out), "--steps", "1"], out


def _demo(dataset, tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.md").write_text("old")
    return ["demo", "--quick", "--out", str(out)], out


def _weights(dataset, tmp_path):
    real = weights_file(SPECS["mobilenet_v2"].weights)
    if not real.is_file():
        pytest.skip(f"{real} absent")
    target = tmp_path / "hub" / "checkpoints" / real.name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"a different file")
    torch.hub.set_dir(str(tmp_path / "hub"))  # undone by the test's monkeypatch
    return ["weights", "--file", str(real)], target


WRITERS = {
    "sheet": _sheet, "synth": _synth, "flow": _flow, "prepare": _prepare, "train": _train, "eval": _eval,
    "predict": _predict, "export": _export, "dff run": _dff_run, "dff pretrain-flow": _dff_pretrain,
    "demo": _demo, "weights": _weights,
}  # fmt: skip
# `vidrec visualize` (every picture it writes): tests/visualize/test_visualize_cli.py; `caption` and
# `dff eval` print only.


@pytest.mark.parametrize("command", list(WRITERS))
def test_every_writing_command_refuses_an_existing_output(command, dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", torch.hub._hub_dir)  # `weights` moves it; put back after
    argv, output = WRITERS[command](dataset, tmp_path)
    capsys.readouterr()
    before = _digests(output) if output.is_dir() else {"": output.read_bytes()}
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "already exists; pass --overwrite" in err or "choose another" in err
    after = _digests(output) if output.is_dir() else {"": output.read_bytes()}
    assert {k: after.get(k) for k in before} == before  # (a lock file may be new)
