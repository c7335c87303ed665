"""From the official UCF101 / HMDB51 layout to trained RGB, flow and two-stream models, via the CLI.

A miniature UCF101 (`UCF-101/`, `ucfTrainTestlist/` with CRLF files) and HMDB51 are generated once; flow
is extracted with `vidrec flow DATA_ROOT --out FLOW`; each model trains one step, then `vidrec eval` and
`vidrec predict` (whole, --timeline, --stream) run on its checkpoint. Tiny sizes keep this quick.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/official_layout.py
from official_layout import UCF_CLASSES, make_hmdb51, make_ucf101  # noqa: E402

from vidrec.cli import main  # noqa: E402

SMALL = ["data.frames=2", "data.size=32", "data.resize=32", "data.batch_size=2", "data.workers=0",
         "schedule.epochs=1", "max_steps_per_epoch=1", "progress=false", "tensorboard=false",
         "plots=false"]  # fmt: skip
MODELS = {
    "rgb": ["model.name=lrcn_mobilenet_v2", "model.kwargs={hidden_size: 8}"],
    "flow": ["model.name=lrcn_mobilenet_v2", "model.kwargs={modality: flow3, hidden_size: 8}"],
    "two_stream": ["model.name=two_stream_mobilenet_v2", "model.kwargs={flow_length: 2}",
                   "data.flow_length=2", "data.sampler=segments"],
}  # fmt: skip


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> tuple[Path, Path]:
    """(data.root of a miniature UCF101, the flow folder `vidrec flow DATA_ROOT --out FLOW` made)."""
    root = make_ucf101(tmp_path_factory.mktemp("UCF101"))
    flow = root.parent / "UCF101_flow"
    assert main(["flow", str(root), "--out", str(flow), "--workers", "1", "--short-side", "0"]) == 0
    return root, flow


@pytest.fixture(scope="module")
def runs(ucf, tmp_path_factory) -> dict[str, Path]:
    """`vidrec train` on the official layout with data.format=ucf101: one run folder per model kind."""
    root, flow = ucf
    out = {}
    for kind, model in MODELS.items():
        run = tmp_path_factory.mktemp(kind) / "run"
        extra = [f"data.flow_root={flow}"] if kind != "rgb" else []
        argv = ["train", "data.format=ucf101", f"data.root={root}", *SMALL, *model, *extra, f"out_dir={run}"]
        assert main(argv) == 0, kind
        out[kind] = run
    return out


def test_ucf101_trains_from_the_official_layout(runs, ucf):
    from vidrec.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(runs["rgb"] / "last.safetensors")
    assert ckpt.class_names == list(UCF_CLASSES) and ckpt.global_step == 1
    assert ckpt.metrics["num_skipped"] == 0 and ckpt.metrics["val_top1"] is not None
    flow = load_checkpoint(runs["two_stream"] / "last.safetensors").flow  # how its flow was made
    assert flow == {"method": "dis", "bound": 20.0, "short_side": 24}


def test_hmdb51_trains_and_evaluates(tmp_path, capsys):
    root = make_hmdb51(tmp_path / "HMDB51")
    run = tmp_path / "run"
    argv = ["train", "data.format=hmdb51", "data.split=1", f"data.root={root}", *SMALL,
            "model.name=single_frame_mobilenet_v2", f"out_dir={run}"]  # fmt: skip
    assert main(argv) == 0
    assert main(["eval", str(run / "last.safetensors"), "--clips", "1"]) == 0
    assert "videos 3  skipped 0" in capsys.readouterr().out  # the 3 code-2 (test) videos of split 1


def test_wrong_root_stops_with_one_line(tmp_path, capsys):
    (tmp_path / "UCF-101").mkdir()  # the videos' folder but no split files
    argv = ["train", "data.format=ucf101", f"data.root={tmp_path}", *SMALL,
            "model.name=single_frame_mobilenet_v2", f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    assert main(argv) == 2  # a usage error: the user fixes data.root
    err = capsys.readouterr().err.strip()
    assert "ucfTrainTestlist" in err and "must hold" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_no_video_under_root_stops_and_partial_counts_right(ucf, tmp_path, capsys):
    root, _ = ucf
    empty = tmp_path / "empty"  # split files without videos: nothing usable
    (empty / "UCF-101").mkdir(parents=True)
    (empty / "ucfTrainTestlist").symlink_to(root / "ucfTrainTestlist")
    argv = ["train", "data.format=ucf101", *SMALL, "model.name=single_frame_mobilenet_v2"]
    assert main([*argv, f"data.root={empty}", f"out_dir={tmp_path / 'r0'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "none of the 6 videos" in err and "UCF-101/<Class>" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r0" / "last.safetensors").exists()
    # 2 of 6 training and 1 of 3 test videos absent: all 3 counted, though the loader drops a batch
    part = tmp_path / "part"
    (part / "ucfTrainTestlist").mkdir(parents=True)
    for f in (root / "ucfTrainTestlist").iterdir():
        (part / "ucfTrainTestlist" / f.name).write_bytes(f.read_bytes())
    for video in sorted((root / "UCF-101").rglob("*.avi"))[3:]:  # Archery g01 on...; drops 2 train, 1 test
        (part / video.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
        (part / video.relative_to(root)).symlink_to(video)
    assert main([*argv, f"data.root={part}", f"out_dir={tmp_path / 'r1'}"]) == 0
    from vidrec.engine.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "r1" / "last.safetensors").metrics["num_skipped"] == 3


def test_eval_two_stream_checkpoint_keeps_flow_length(runs, capsys):
    assert main(["eval", str(runs["two_stream"] / "last.safetensors"), "--clips", "2"]) == 0
    out = capsys.readouterr().out
    assert "videos 3  skipped 0" in out and (runs["two_stream"] / "eval" / "report.md").is_file()


@pytest.mark.parametrize("kind", ["rgb", "flow", "two_stream"])
@pytest.mark.parametrize("mode", [[], ["--timeline"], ["--stream"]])
def test_predict_any_model_whole_timeline_stream(runs, ucf, kind, mode, capsys):
    video = ucf[0] / "UCF-101" / "Archery" / "v_Archery_g03_c01.avi"
    argv = ["predict", str(runs[kind] / "last.safetensors"), str(video), "--topk", "2", *mode]
    assert main([*argv, "--window", "6", "--stride", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(any(c in line for c in UCF_CLASSES) for line in lines)
    if mode:  # 12 frames (11 flows, 10 stacks of 2): windows start at 0 and 4
        assert [line.split("frames")[1].split()[0] for line in lines] == ["0-", "4-"]


def test_in_process_flow_equals_the_stored_flow(ucf):
    """predict's flow (method, size and bound as stored with the model) gives what eval reads from disk."""
    from vidrec.data import ClipSample, VideoDataset, VideoRecord, test_transform
    from vidrec.engine.inputs import FlowSettings
    from vidrec.engine.predict import Preprocess

    root, flow_root = ucf
    path = "UCF-101/Archery/v_Archery_g02_c01.avi"
    pre = Preprocess(resize=32, size=32, modalities=("rgb", "flow"), flow=FlowSettings("dis", 20.0, 24),
                     flow_length=2)  # fmt: skip
    ds = VideoDataset(
        [VideoRecord(path, 1, path[:-4])], root=root, modalities=("rgb", "flow"), flow_root=flow_root,
        sampler=lambda n, rng: [ClipSample(indices=(3, 4, 8), clip=0)],
        transform=test_transform(32, normalize=False),
        size=32, flow_length=2,
    )  # fmt: skip
    with pre.open(root / path) as video:
        mine = video.clip([3, 4, 8])
        streamed = dict(video.steps())
    stored = ds[0]
    for m in ("rgb", "flow"):
        assert mine[m].shape == stored[m].shape == ((3, 3, 32, 32) if m == "rgb" else (3, 4, 32, 32))
        torch.testing.assert_close(mine[m], stored[m])
        torch.testing.assert_close(streamed[4][m][0], stored[m][1])
