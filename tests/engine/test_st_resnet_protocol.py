"""ST-ResNet's test protocol (methods.md 3.4), `vidrec eval --protocol st_resnet`: 25 frames evenly spaced
over the video, whole frames (short side `data.resize`, no crop) through the network fully convolutionally,
class maps averaged over space and time and the streams fused as the model fuses them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vidrec.cli import main as cli_main
from vidrec.data import make_synthetic_dataset
from vidrec.data.records import VideoRecord
from vidrec.engine.cli_eval import clip_sampler, eval_loader
from vidrec.engine.config import load_config
from vidrec.engine.evaluate import evaluate, is_fully_convolutional, model_inputs
from vidrec.io import write_video
from vidrec.models import Backbone, get_model
from vidrec.models.two_stream import TSN, TwoStream

pytestmark = pytest.mark.usefixtures("one_thread")
L, K = 2, 3  # flow stack length, classes


def _flow(root: Path, video_id: str, frames: int, h: int, w: int, seed: int = 0) -> None:
    from vidrec.flow.storage import save_flow

    q = np.random.default_rng(seed).integers(100, 156, (frames - 1, h, w, 2), dtype=np.uint8)
    save_flow(root, video_id, q, bound=20.0, method="test", fps=25.0)


def _two_stream(arch: str = "resnet18") -> TwoStream:
    torch.manual_seed(0)
    rgb = TSN(backbone=Backbone(arch, num_classes=K), modality="rgb")
    flow = TSN(backbone=Backbone(arch, in_chans=2 * L, num_classes=K), modality="flow")
    return TwoStream(rgb=rgb, flow=flow).eval()


def test_protocol_samples_25_evenly_spaced_frames():
    cfg = SimpleNamespace(data=SimpleNamespace(stride=1, frames=4))
    clips = clip_sampler(cfg, protocol="st_resnet")(97, None)
    assert len(clips) == 1  # one clip: the temporal filters see the 25 frames together
    assert clips[0].indices == tuple(range(0, 97, 4))  # 25 frames, 0 .. 96 every 4
    short = clip_sampler(cfg, protocol="st_resnet")(10, None)[0].indices
    assert len(short) == 25 and short[0] == 0 and short[-1] == 9 and list(short) == sorted(short)
    assert len(clip_sampler(cfg, protocol="st_resnet", frames=7)(97, None)[0].indices) == 7


@pytest.fixture(scope="module")
def wide_video(tmp_path_factory) -> tuple[Path, Path]:
    """(root with v.mp4: 30 frames of 40x56 moving noise, flow root with its flow)."""
    root = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (40, 90, 3), dtype=np.uint8)
    write_video(root / "v.mp4", np.stack([base[:, t : t + 56] for t in range(0, 30)]), fps=25)
    _flow(root / "flow", "v", 30, 40, 56)
    return root, root / "flow"


def test_dense_full_frame_is_the_class_map_mean_on_frames_unlike_the_crop(wide_video):
    root, flow = wide_video
    cfg = load_config(
        None,
        [f"data.train_list={root / 'list.txt'}", f"data.root={root}", f"data.flow_root={flow}",
         f"data.flow_length={L}", "data.resize=40", "data.size=32", "data.frames=2"],
    )  # fmt: skip
    records = [VideoRecord("v.mp4", 1, "v")]
    loader = eval_loader(
        cfg, ("rgb", "flow"), records=records, clips=5, crops=1, batch=4, workers=0, protocol="st_resnet"
    )
    batch = next(iter(loader))
    # the whole 40x56 frame (short side data.resize), not the 32x32 training crop
    assert batch["rgb"].shape == (1, 25, 3, 40, 56) and batch["flow"].shape == (1, 25, 2 * L, 40, 56)
    model = _two_stream()
    assert is_fully_convolutional(model)
    res = evaluate(model, loader, device="cpu", progress=False)
    # the property: the dense score is the class map (the fc at every conv5 position of every frame)
    # averaged over space and time, per stream, then the streams' softmaxes fused by the model's weights
    x, _ = model_inputs(batch, model.modalities, "cpu")
    with torch.no_grad():
        scores = {m: getattr(model, m).class_map(x[m]).mean(dim=(1, 3, 4)) for m in model.modalities}
    assert model.rgb.class_map(x["rgb"]).shape[-2:] == (2, 2)  # 40x56 frames: a 2x2 class map
    w = model.fusion_weights
    expected = sum(w[m] * scores[m].softmax(-1) for m in scores) / sum(w.values())
    torch.testing.assert_close(res.probs, expected, atol=1e-5, rtol=1e-4)
    # ... which a centre crop at the training size does not give
    crop = evaluate(
        model,
        eval_loader(cfg, ("rgb", "flow"), records=records, clips=25, crops=1, batch=1, workers=0),
        device="cpu",
        progress=False,
    )
    assert (crop.probs - res.probs).abs().max() > 1e-3


def test_only_fully_convolutional_models_qualify():
    assert is_fully_convolutional(get_model("st_resnet50", num_classes=K, flow_length=L))
    assert is_fully_convolutional(get_model("tsn_resnet50", num_classes=K))
    assert not is_fully_convolutional(get_model("lrcn_resnet18", num_classes=K))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("protocol")
    root = make_synthetic_dataset(base / "synth", per_class=1, frames=12, size=48, seed=0, progress=False)
    for line in (root / "train.txt").read_text().splitlines():
        video_id = line.split()[0].rsplit(".", 1)[0]
        _flow(base / "flow", video_id, 12, 48, 48)
    return root, base / "flow"


def test_vidrec_eval_protocol_st_resnet_end_to_end(synthetic, tmp_path, capsys):
    root, flow = synthetic
    run = tmp_path / "run"
    args = [
        "train", "model.name=two_stream_mobilenet_v2", f"model.kwargs={{flow_length: {L}}}",
        "data.format=list", f"data.train_list={root / 'train.txt'}", "data.val_list=",
        f"data.classes={root / 'classes.txt'}", f"data.root={root}", f"data.flow_root={flow}",
        f"data.flow_length={L}", "data.modalities=[rgb, flow]", "data.sampler=segments", "data.frames=2",
        "data.resize=40", "data.size=32", "data.batch_size=2", "data.workers=0", "schedule.epochs=1",
        "max_steps_per_epoch=1", "runtime.device=cpu", "progress=false", "tensorboard=false",
        "plots=false", f"out_dir={run}",
    ]  # fmt: skip
    assert cli_main(args) == 0
    ckpt = str(run / "last.safetensors")
    evaluate_args = ["eval", ckpt, "--list", str(root / "train.txt"), "--workers", "0"]
    assert cli_main([*evaluate_args, "--protocol", "st_resnet", "--out", str(tmp_path / "ev")]) == 0
    assert "videos 6  skipped 0" in capsys.readouterr().out
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    m = report["metrics"]
    assert m["protocol"] == "st_resnet" and m["frames"] == 25 and m["short_side"] == 40
    # crops do not apply to whole frames: one line, exit 2
    assert cli_main([*evaluate_args, "--protocol", "st_resnet", "--crops", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--crops" in err[0]
