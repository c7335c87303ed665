"""`vidrec visualize maximize | gradcam` on a checkpoint in the format `vidrec train` writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vidrec.cli import main
from vidrec.data.synthetic import make_clip
from vidrec.engine.checkpoint import Checkpoint, save_checkpoint
from vidrec.engine.config import config_from_dict
from vidrec.engine.schema import config_to_dict
from vidrec.io import probe, write_video
from vidrec.models import get_model

CLASSES = ["orbit_cw", "orbit_ccw", "grow"]


def _checkpoint(path, name="two_stream_mobilenet_v2"):
    kwargs = {"flow_length": 2, "pretrained": True, "dropout": {"rgb": 0.5, "flow": 0.8}}
    cfg = config_from_dict(
        {
            "data": {"train_list": "t.txt", "modalities": ["rgb", "flow"], "flow_length": 2, "frames": 2,
                     "size": 32, "resize": 32, "sampler": "segments"},
            "model": {"name": name, "kwargs": kwargs},
        }
    )  # fmt: skip
    torch.manual_seed(0)
    model = get_model("two_stream_mobilenet_v2", num_classes=3, **{**kwargs, "pretrained": False})
    save_checkpoint(
        path, Checkpoint(model=model.state_dict(), config=config_to_dict(cfg), class_names=CLASSES)
    )
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "last.safetensors")


@pytest.fixture(autouse=True)
def no_imagenet(tmp_path, monkeypatch):
    """An empty torch cache: `pretrained: true` in the stored config must not read ImageNet weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))


def test_maximize_writes_pictures_and_refuses_to_overwrite(ckpt, tmp_path, capsys):
    out = tmp_path / "viz"
    argv = ["visualize", "maximize", str(ckpt), "--class", "orbit_ccw", "--steps", "3", "--out", str(out),
            "--mp4", "--no-progress", "--device", "cpu", "--reg", "flow.tv_time=0.5"]  # fmt: skip
    assert main(argv) == 0
    stem = "class_orbit_ccw_slow"
    flow_gif = out / f"{stem}_flow.gif"
    assert probe(flow_gif).num_frames == 4  # T=2 stacks x L=2 fields, in time order
    assert probe(out / f"{stem}_rgb.mp4").num_frames == 2
    for suffix in ("_flow_arrows.gif", "_rgb.gif", "_sheet.png", "_objective.png", ".safetensors"):
        assert (out / f"{stem}{suffix}").is_file(), suffix
    assert Image.open(out / f"{stem}_sheet.png").size[0] > 300
    assert "objective" in capsys.readouterr().out
    assert main(argv) == 2  # every output exists: refused before any work
    assert "already exists" in capsys.readouterr().err


def test_maximize_a_layer_unit_and_list_layers(ckpt, tmp_path, capsys):
    assert main(["visualize", "maximize", str(ckpt), "--list-layers"]) == 0
    assert "flow.backbone.net.features.4.conv.0.0" in capsys.readouterr().out
    argv = ["visualize", "maximize", str(ckpt), "--layer", "flow.backbone.net.features.4", "--channel", "3",
            "--position", "1,1", "--prior", "fast", "--optimize", "flow", "--steps", "2", "--frames", "1",
            "--optimizer", "adam", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "flow.backbone.net.features.4_c3_at1-1_fast_flow.gif").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class", "nope"], "neither a class name"),
        ([], "exactly one of --class"),
        (["--layer", "rgb.missing"], "no layer 'rgb.missing'"),
        (["--class", "0", "--reg", "flow.tv_time"], "MODALITY.FIELD=NUMBER"),
    ],
)
def test_maximize_usage_errors_are_one_line(ckpt, tmp_path, capsys, extra, message):
    argv = [
        "visualize",
        "maximize",
        str(ckpt),
        "--steps",
        "1",
        "--out",
        str(tmp_path),
        "--no-progress",
        *extra,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_checkpoints_naming_unregistered_code_are_refused(tmp_path, capsys):
    bad = _checkpoint(tmp_path / "bad.safetensors", name="os:system")
    assert main(["visualize", "maximize", str(bad), "--class", "0", "--out", str(tmp_path / "v")]) == 2
    assert "not a registered model" in capsys.readouterr().err


def test_gradcam_on_a_video(ckpt, tmp_path, capsys):
    video = tmp_path / "orbit.mp4"
    write_video(video, make_clip("orbit_cw", np.random.default_rng(0), frames=12, size=40), 25)
    argv = ["visualize", "gradcam", str(ckpt), str(video), "--class", "orbit_cw",
            "--out", str(tmp_path / "g"), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "rgb: mean heat per frame" in out and "flow: mean heat per frame" in out
    for stream in ("rgb", "flow"):
        assert probe(tmp_path / "g" / f"orbit_gradcam_{stream}.gif").num_frames == 2  # T = 2 segments
    assert (tmp_path / "g" / "orbit_gradcam_sheet.png").is_file()
    assert main(argv) == 2
    missing = ["visualize", "gradcam", str(ckpt), str(tmp_path / "none.mp4"), "--out", str(tmp_path / "h")]
    assert main(missing) == 2
    assert "none.mp4 does not exist" in capsys.readouterr().err


def test_gradcam_flow_is_quantised_like_stored_flow(ckpt, tmp_path):
    from vidrec.visualize.cli import load_model, video_inputs

    video = tmp_path / "move.mp4"
    write_video(video, make_clip("move_right", np.random.default_rng(1), frames=8, size=32), 25)
    model, cfg, _ = load_model(ckpt, torch.device("cpu"))
    x = video_inputs(cfg, model, str(video), frames=0, flow_method="dis")
    from vidrec.data.transforms import FLOW_PX_SCALE

    px = x["flow"].double() * FLOW_PX_SCALE  # fed as the dataset feeds it, px / 9.04
    codes = (px + 20) * 255 / 40  # vidrec.flow.quantize's grid, bound 20
    assert x["flow"].shape == (1, 2, 4, 32, 32) and torch.allclose(codes, codes.round(), atol=1e-3)
    raw = video_inputs(cfg, model, str(video), frames=0, flow_method="dis", flow_bound=0)
    assert not torch.allclose(raw["flow"], x["flow"])


def test_a_class_name_cannot_steer_where_maximize_writes():
    """Class names come from the checkpoint: `/`, `..` and escape characters never reach a file name."""
    from argparse import Namespace

    from vidrec.visualize.cli import _stem
    from vidrec.visualize.units import Unit

    args = Namespace(name="", prior="none")
    names = ["../../etc/cron.d/x", "\x1b[2Jwipe", "ok-name"]
    stems = [_stem(args, Unit(layer="", channel=i), names) for i in range(3)]
    assert stems == ["class_etc_cron_d_x_none", "class_2Jwipe_none", "class_ok-name_none"]
    assert all("/" not in s and "\x1b" not in s for s in stems)
