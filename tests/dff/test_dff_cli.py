"""`vidrec dff run` on a tiny generated video and a frame folder: an overlay with key frames marked and
frames/s printed; an existing output is refused without --overwrite; bad inputs give one-line errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from vidrec.cli import main
from vidrec.dff.cli import KEY_COLOUR
from vidrec.engine.checkpoint import Checkpoint, save_checkpoint
from vidrec.engine.config import load_config
from vidrec.engine.schema import config_to_dict
from vidrec.io import probe, read_frames, write_video
from vidrec.tasks import Task, register_task


class TinySeg(nn.Module):
    """A per-frame segmentation model with the parts `as_dff` needs."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_net = nn.Conv2d(3, 4, 16, stride=16)
        self.task_net = nn.Conv2d(4, 2, 1)
        self.feature_stride = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task_net(self.feature_net(x))


@register_task
class ToyDffSeg(Task):
    name = "toy_dffseg"

    def build_model(self, *, weights: bool = True) -> nn.Module:
        return TinySeg()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(0)
    cfg = load_config(None, ["task=toy_dffseg", "data.plugin=unused:unused"])
    path = tmp_path_factory.mktemp("ckpt") / "seg.safetensors"
    save_checkpoint(
        path, Checkpoint(model=TinySeg().state_dict(), config=config_to_dict(cfg), class_names=[])
    )
    return str(path)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    """12 frames 64 x 96: a bright square moving right on a dark textured background."""
    rng = np.random.default_rng(0)
    frames = []
    for t in range(12):
        f = rng.integers(0, 40, (64, 96, 3)).astype(np.uint8)
        f[20:44, 10 + 4 * t : 34 + 4 * t] = 220
        frames.append(f)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, np.stack(frames), fps=12)
    return str(path)


def _border_is_key_colour(frame: np.ndarray) -> bool:
    return bool(np.abs(frame[:2, 20:-20].reshape(-1, 3).mean(0) - np.array(KEY_COLOUR)).max() < 40)


def test_run_writes_an_overlay_with_key_frames_marked(checkpoint, video, tmp_path, capsys):
    out = tmp_path / "overlay.mp4"
    assert main(["dff", "run", checkpoint, video, "--out", str(out), "--interval", "5"]) == 0
    printed = capsys.readouterr().out
    assert "12 frames, 3 key frames (fixed interval 5), flow DISFlow" in printed and "frames/s" in printed
    assert probe(out).num_frames == 12
    frames = read_frames(out, range(12))
    assert frames.shape == (12, 64, 96, 3)
    assert [_border_is_key_colour(f) for f in frames] == [i % 5 == 0 for i in range(12)]


def test_run_refuses_to_overwrite_and_replaces_with_overwrite(checkpoint, video, tmp_path, capsys):
    out = tmp_path / "overlay.mp4"
    out.write_bytes(b"keep me")
    assert main(["dff", "run", checkpoint, video, "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    args = ["--adaptive", "2", "--threshold", "1e9", "--max-gap", "4", "--overwrite"]
    assert main(["dff", "run", checkpoint, video, "--out", str(out), *args]) == 0
    printed = capsys.readouterr().out
    assert "adaptive: 2 per 20 frames, flow > 1e+09, max gap 4" in printed and probe(out).num_frames == 12
    assert "12 frames, 2 key frames" in printed  # 0 and 4; 8 would be the third in 20 frames


def test_run_reads_a_frame_folder_and_resizes(checkpoint, video, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(read_frames(video, range(6))):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out = tmp_path / "folder.mp4"
    assert (
        main(["dff", "run", checkpoint, str(folder), "--out", str(out), "--size", "32", "--interval", "2"])
        == 0
    )
    meta = probe(out)
    assert meta.num_frames == 6 and (meta.height, meta.width) == (32, 48)
    assert "3 key frames" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--flow", "learned"], "has no learned flow net; give --flow-weights"),
        (["--interval", "0"], "key-frame schedule: key-frame interval must be an integer >= 1"),
        (["--adaptive", "5", "--window", "3"], "1 <= budget <= window"),
        (["--adaptive", "2", "--bidirectional"], "--bidirectional takes the key frames of --interval"),
        (["--size", "48000"], "--size takes a short side or H W of 16 to 8192 px each, got [48000]"),
        (["--size", "8"], "of 16 to 8192 px each, got [8]"),
    ],
)
def test_run_bad_options_are_one_line_errors(checkpoint, video, tmp_path, capsys, extra, message):
    assert main(["dff", "run", checkpoint, video, "--out", str(tmp_path / "o.mp4"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "o.mp4").exists()


def test_run_missing_or_empty_inputs(checkpoint, tmp_path, capsys):
    assert (
        main(["dff", "run", checkpoint, str(tmp_path / "absent.mp4"), "--out", str(tmp_path / "o.mp4")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["dff", "run", checkpoint, str(tmp_path / "empty"), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "holds no .jpg/.png images" in capsys.readouterr().err
    assert main(["dff", "run", str(tmp_path / "no.safetensors"), str(tmp_path), "--out", "o.mp4"]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_pretrain_flow_writes_weights_that_run_uses_and_refuses_to_overwrite(
    checkpoint, video, tmp_path, capsys
):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, f in enumerate(read_frames(video, range(5))):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    weights = tmp_path / "flownet.safetensors"
    args = ["dff", "pretrain-flow", str(tmp_path), "--out", str(weights), "--steps", "2", "--batch", "2"]
    assert main([*args, "--size", "64", "96", "--width", "4"]) == 0
    assert "(first / last tenth of 2 steps)" in capsys.readouterr().out and weights.is_file()
    assert main([*args, "--size", "64", "96"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    out = tmp_path / "learned.mp4"
    run = ["dff", "run", checkpoint, video, "--out", str(out), "--flow", "learned"]
    assert main([*run, "--flow-weights", str(weights)]) == 0
    assert "flow FlowNetLite" in capsys.readouterr().out and probe(out).num_frames == 12


def test_pretrain_flow_downscale_makes_the_detectors_quarter_resolution_flow_net(video, tmp_path, capsys):
    """`--stride 8 --downscale 4`: the stride-8 flow net from a 1/4 pair (`dff_fcos_mobilenet_v2`'s
    default); a downscale too coarse for the stride is one line, exit 2."""
    from vidrec.dff.flownets import load_flownet

    weights = tmp_path / "q.safetensors"
    args = ["dff", "pretrain-flow", video, "--out", str(weights), "--steps", "1", "--batch", "1",
            "--size", "64", "96", "--width", "4", "--stride", "8"]  # fmt: skip
    assert main([*args, "--downscale", "8"]) == 2
    assert "--downscale 8 is too coarse for --stride 8" in capsys.readouterr().err and not weights.exists()
    assert main([*args, "--downscale", "4"]) == 0
    net = load_flownet(weights)
    assert (net.stride, net.downscale) == (8, 4) and net.dec1 is not None


def test_run_streams_the_overlay_holding_a_frame_or_two(checkpoint, tmp_path, capsys, monkeypatch):
    import vidrec.dff.cli as dff_cli
    import vidrec.io
    from vidrec.io import VideoWriter

    rng = np.random.default_rng(1)
    long_video = tmp_path / "long.mp4"
    write_video(long_video, rng.integers(0, 255, (90, 32, 48, 3), dtype=np.uint8), fps=30)
    decoded, written_after = [0], []  # frames read so far; that count at each frame written

    real_read = dff_cli.read_input

    def counting_read(source, *, strict):
        frames, total, fps = real_read(source, strict=strict)

        def counted():
            for f in frames:
                decoded[0] += 1
                yield f

        return counted(), total, fps

    real_write = VideoWriter.write

    def spy_write(self, frame):
        written_after.append(decoded[0])
        real_write(self, frame)

    def no_batch_write(*a, **k):
        raise AssertionError("the overlay must be written frame by frame, not collected for write_video")

    monkeypatch.setattr(dff_cli, "read_input", counting_read)
    monkeypatch.setattr(VideoWriter, "write", spy_write)
    monkeypatch.setattr(vidrec.io, "write_video", no_batch_write)
    out = tmp_path / "overlay.mp4"
    assert main(["dff", "run", checkpoint, str(long_video), "--out", str(out), "--interval", "10"]) == 0
    assert len(written_after) == 90  # each frame written once, the k-th while at most k + 2 were decoded
    assert all(after <= k + 2 for k, after in enumerate(written_after, start=1))
    assert probe(out).num_frames == 90
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("90 frames, 9 key frames") and "frames/s" in last  # the speed, printed last


class NeighbourFeatures(nn.Module):
    """A feature net with a motion cue's input contract: (B, 9, H, W), the frame first."""

    neighbours = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 16, stride=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 9, f"a motion feature net got {tuple(x.shape)}"
        return self.conv(x[:, :3])


class TinyMotionSeg(TinySeg):
    """Everything background (task net weights 0, bias for class 0), its feature net takes neighbours."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_net = NeighbourFeatures()
        nn.init.zeros_(self.task_net.weight)
        with torch.no_grad():
            self.task_net.bias.copy_(torch.tensor([1.0, 0.0]))


@register_task
class ToyDffSegMotion(Task):
    name = "toy_dffseg_motion"

    def build_model(self, *, weights: bool = True) -> nn.Module:
        return TinyMotionSeg()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_run_gives_a_motion_model_neighbours_and_keeps_each_overlay_on_its_own_frame(
    video, tmp_path, capsys, bidirectional
):
    cfg = load_config(None, ["task=toy_dffseg_motion", "data.plugin=unused:unused"])
    ckpt = tmp_path / "motion.safetensors"
    save_checkpoint(
        ckpt, Checkpoint(model=TinyMotionSeg().state_dict(), config=config_to_dict(cfg), class_names=[])
    )
    out = tmp_path / "overlay.mp4"
    extra = ["--bidirectional"] if bidirectional else []  # outputs held back until the next key frame
    assert main(["dff", "run", str(ckpt), video, "--out", str(out), "--interval", "5", *extra]) == 0
    which = "bidirectional" if bidirectional else "fixed"
    assert f"12 frames, 3 key frames ({which} interval 5)" in capsys.readouterr().out
    written = read_frames(out, range(12)).astype(np.float32)
    source = read_frames(video, range(12)).astype(np.float32)
    assert [_border_is_key_colour(f) for f in written] == [i % 5 == 0 for i in range(12)]
    # one frame read ahead: each overlay must still be drawn on its own frame (the square moves 4 px a frame)
    region = (slice(24, 44), slice(8, 88))
    closest = [int(np.argmin([np.abs(w[region] - s[region]).mean() for s in source])) for w in written]
    assert closest == list(range(12))
