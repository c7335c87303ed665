"""The papers' recipes end to end: every shipped recipe config runs through `vidrec train` on the synthetic
set (tiny sizes by overrides), chained as the recipes chain them: LRCN stage (a) -> (b) by
`model.init_from`, TSN RGB + flow -> ST-ResNet by per-stream `pretrained`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidrec.cli import main as cli_main
from vidrec.data import make_synthetic_dataset
from vidrec.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # ~50 s of CPU: AlexNet / ResNet-50 runs, one step each

CONFIGS = Path(__file__).resolve().parents[2] / "vidrec" / "configs"
FRAMES, SIZE = 14, 64


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """(synthetic dataset root, flow root with a `.flow.npy` of random codes per video)."""
    from vidrec.flow.storage import save_flow

    base = tmp_path_factory.mktemp("recipes")
    root = make_synthetic_dataset(
        base / "synth", per_class=1, frames=FRAMES, size=SIZE, seed=0, progress=False
    )
    flow = base / "flow"
    rng = np.random.default_rng(0)
    for line in (root / "train.txt").read_text().splitlines():
        video_id = line.split()[0].rsplit(".", 1)[0]
        q = rng.integers(100, 156, (FRAMES - 1, SIZE, SIZE, 2), dtype=np.uint8)
        save_flow(flow, video_id, q, bound=20.0, method="test", fps=25.0)
    return root, flow


def _train(name: str, data: tuple[Path, Path], out: Path, *extra: str) -> Path:
    root, flow = data
    args = [
        "train", str(CONFIGS / f"{name}.yaml"),
        "data.format=list", f"data.train_list={root / 'train.txt'}", "data.val_list=",
        f"data.classes={root / 'classes.txt'}",
        f"data.root={root}", f"data.flow_root={flow}", f"data.resize={SIZE}", "data.batch_size=2",
        "data.workers=0", "schedule.epochs=1", "max_steps_per_epoch=1", "optim.accum_steps=1",
        "schedule.warmup_iters=0", "runtime.device=cpu", "progress=false", "tensorboard=false",
        "plots=false", "ckpt_every_steps=0", f"out_dir={out / name}", *extra,
    ]  # fmt: skip
    assert cli_main(args) == 0
    ckpt = out / name / "last.safetensors"
    assert load_checkpoint(ckpt).global_step == 1
    return ckpt


def test_lrcn_stage_a_then_b(data, tmp_path):
    for modality in ("rgb", "flow"):
        stage_a = _train(
            f"lrcn_ucf101_{modality}_single_frame",
            data,
            tmp_path,
            "model.kwargs.pretrained=false",
            "data.size=64",
        )
        stage_b = _train(
            f"lrcn_ucf101_{modality}", data, tmp_path, f"model.init_from={stage_a}", "data.frames=3",
            "data.size=64", "model.kwargs.hidden_size=8",
        )  # fmt: skip
    # LRCN's test protocol on the flow model: 3-frame clips every 4 frames, the last aligned to the end,
    # 10 crops with mirrored flow not negated (auto for LRCN, as the release)
    root = data[0]
    out = tmp_path / "eval"
    args = ["eval", str(stage_b), "--protocol", "lrcn", "--clip-len", "3", "--hop", "4", "--crops", "10"]
    assert cli_main([*args, "--list", str(root / "train.txt"), "--workers", "0", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["num_videos"] == 6 and report["metrics"]["protocol"] == "lrcn"


def test_two_stream(data, tmp_path):
    _train("two_stream_ucf101", data, tmp_path, "data.size=32", "data.frames=2", "data.flow_length=2",
           "model.kwargs.flow_length=2")  # fmt: skip


def test_tsn_streams_then_st_resnet(data, tmp_path):
    small = ["model.kwargs.pretrained=false", "data.size=32", "data.frames=2"]
    rgb = _train("tsn_ucf101_rgb", data, tmp_path, *small)
    flow = _train(
        "tsn_ucf101_flow", data, tmp_path, *small, "data.flow_length=2", "model.kwargs.flow_length=2"
    )
    streams = f"model.kwargs.pretrained={{appearance: {rgb}, motion: {flow}}}"
    st = _train("st_resnet_ucf101", data, tmp_path, streams, "data.size=32", "data.frames=3",
                "data.flow_length=2", "model.kwargs.flow_length=2", "data.stride=[1,3]")  # fmt: skip
    # its test protocol (methods.md 3.4): evenly spaced whole frames at data.resize (64, not the 32 crop),
    # dense class maps averaged over space and time; 5 frames instead of 25 keep ResNet-50 cheap here
    root, out = data[0], tmp_path / "eval"
    args = ["eval", str(st), "--protocol", "st_resnet", "--frames", "5", "--list", str(root / "train.txt")]
    assert cli_main([*args, "--workers", "0", "--out", str(out)]) == 0
    metrics = json.loads((out / "report.json").read_text())["metrics"]
    assert metrics["protocol"] == "st_resnet" and metrics["frames"] == 5 and metrics["short_side"] == SIZE
