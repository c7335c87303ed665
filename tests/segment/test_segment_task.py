"""The segment task trains through the one engine loop (`vidrec.engine.train.train`) on a tiny DAVIS
folder, reports DAVIS J / F, resumes exactly, and its checkpoint comes back from `load_task`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidrec.engine.checkpoint import load_checkpoint, load_task
from vidrec.engine.config import load_config
from vidrec.engine.schema import ConfigError
from vidrec.engine.train import train
from vidrec.models.segnet import SegNet, segnet_mobilenet_v2
from vidrec.tasks.segment import Segment

QUIET = ["progress=false", "tensorboard=false", "plots=false", "data.workers=0", "runtime.device=cpu"]


def segment_config(root, out, *extra):
    return load_config(
        None,
        [
            "task=segment",
            f"data.root={root}",
            "model.name=segnet_mobilenet_v2",
            "data.batch_size=4",
            "task_options={size: [32, 48], train_sequences: [seq-a, seq-b], val_sequences: [seq-c]}",
            "optim.name=adamw",
            "optim.lr=0.003",
            "schedule.name=constant",
            f"out_dir={out}",
            *QUIET,
            *extra,
        ],
    )


def test_segnet_keeps_output_stride_16_and_upsamples_to_the_input():
    model = segnet_mobilenet_v2(output_stride=16).eval()
    x = torch.randn(1, 3, 64, 96)
    assert model.feature_net(x).shape == (1, 1280, 4, 6)
    assert model(x).shape == (1, 2, 64, 96)
    assert segnet_mobilenet_v2(output_stride=8).feature_net(x).shape == (1, 1280, 8, 12)


@pytest.fixture(scope="module")
def per_frame_run(tmp_path_factory):
    """A per-frame segnet trained 3 short epochs on the tiny DAVIS folder: (result, run folder, root)."""
    from davis_helpers import write_sequence

    root = tmp_path_factory.mktemp("davis")
    for i, (name, n) in enumerate((("seq-a", 12), ("seq-b", 10), ("seq-c", 8))):
        write_sequence(root, name, n, seed=i)
    out = root.parent / "per_frame"
    return train(segment_config(root, out, "schedule.epochs=3", "max_steps_per_epoch=2")), out, root


def test_dff_segnet_is_the_per_frame_net_on_key_frames():
    from vidrec.models import get_model

    torch.manual_seed(0)
    dff = get_model("dff_segnet_mobilenet_v2", num_classes=2).eval()
    seg = SegNet(dff.feature_net, dff.task_net, feature_stride=16).eval()
    key, cur = torch.randn(2, 3, 64, 96), torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(dff(cur, cur, torch.tensor([True, True])), seg(cur))
        assert dff(key, cur).shape == (2, 2, 64, 96)
    assert torch.equal(dff.scale.bias, torch.ones(128))  # S = 1 at the start, over the reduced map
    assert dff.bias_field is None  # B only when asked for: checkpoints without it keep loading
    with_b = get_model("dff_segnet_mobilenet_v2", num_classes=2, bias_field=True).eval()
    assert with_b.bias_field.conv.out_channels == 128 and "bias_field.conv.weight" in with_b.state_dict()


def test_segment_task_trains_scores_j_f_and_round_trips(per_frame_run):
    result, run, _ = per_frame_run
    hist = result.history
    assert all({"val_J", "val_F", "val_JF", "train_iou"} <= set(h) for h in hist)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(0.0 <= h["val_J"] <= 1.0 and 0.0 <= h["val_F"] <= 1.0 for h in hist)
    assert result.best_top1 == max(h["val_J"] for h in hist)  # val_J picks best.safetensors
    best = load_checkpoint(run / "best.safetensors")
    assert best.task_state["size"] == [32, 48] and best.class_names == ["background", "foreground"]
    model, task = load_task(run / "best.safetensors")
    assert isinstance(task, Segment) and isinstance(model, SegNet) and not model.training
    assert all(torch.equal(model.state_dict()[k], v.float()) for k, v in best.model.items())


def test_dff_trains_end_to_end_on_pairs_from_the_per_frame_net(per_frame_run, tmp_path):
    from vidrec.dff.flownets import FlowNetLite, save_flownet

    _, per_frame, root = per_frame_run
    start = load_checkpoint(per_frame / "best.safetensors").model
    torch.manual_seed(1)
    pretrained_flow = FlowNetLite(stride=16)
    save_flownet(pretrained_flow, tmp_path / "flow.safetensors")
    cfg = segment_config(
        root,
        tmp_path / "dff",
        "model.name=dff_segnet_mobilenet_v2",
        f"model.kwargs={{flow_weights: {tmp_path / 'flow.safetensors'}}}",
        "task_options.pairs=true",
        "task_options.max_offset=3",
        f"model.init_from={per_frame / 'best.safetensors'}",
        "schedule.epochs=1",
        "max_steps_per_epoch=2",
        "task_options.val_stride=2",
    )
    result = train(cfg)
    assert 0.0 <= result.history[-1]["val_J"] <= 1.0
    after = load_checkpoint(tmp_path / "dff" / "last.safetensors").model
    assert torch.equal(after["scale.bias"], torch.ones(128))  # S's bias never moves
    assert (
        after["flow_net.predict.weight"].abs().sum() > 0
    )  # zero at init: the task loss reached the flow net
    assert not torch.equal(
        after["feature_net.0.0.weight"], start["feature_net.0.0.weight"]
    )  # through the warp
    moved = (after["flow_net.enc1.0.weight"] - pretrained_flow.enc1[0].weight).abs().max()
    assert 0 < moved < 0.05  # the flow net started from flow_weights (2 steps at lr 0.003 from there)
    (tmp_path / "flow.safetensors").unlink()  # the checkpoint alone rebuilds the model
    model, task = load_task(tmp_path / "dff" / "last.safetensors")
    assert task.options.pairs and type(model).__name__ == "DFF"


def test_segment_task_resumes_to_the_same_weights(tiny_davis, tmp_path):
    short = ["max_steps_per_epoch=1", "task_options.val_stride=4"]
    straight = train(segment_config(tiny_davis, tmp_path / "a", "schedule.epochs=2", *short))
    train(segment_config(tiny_davis, tmp_path / "b", "schedule.epochs=1", *short))
    resumed = train(segment_config(tiny_davis, tmp_path / "b", "schedule.epochs=2", "resume=auto", *short))
    a = load_checkpoint(tmp_path / "a" / "last.safetensors").model
    b = load_checkpoint(tmp_path / "b" / "last.safetensors").model
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history[-1]["val_J"] == straight.history[-1]["val_J"]


def test_segment_options_and_data_errors_name_the_field(tiny_davis, tmp_path):
    with pytest.raises(ConfigError, match=r"task_options\.size"):
        Segment(load_config(None, ["task=segment", "task_options={size: [32]}"]))
    with pytest.raises(ConfigError, match=r"data\.root: required with task=segment"):
        train(load_config(None, ["task=segment", f"out_dir={tmp_path}/x", *QUIET]))
    with pytest.raises(ConfigError, match=r"task_options\.pairs: segnet_mobilenet_v2 takes one image"):
        train(segment_config(tiny_davis, tmp_path / "y", "task_options.pairs=true"))
    from vidrec.data.davis import DavisError

    with pytest.raises(DavisError, match=r"seq-z: sequence folder not found"):
        train(segment_config(tiny_davis, tmp_path / "z", "task_options.val_sequences=[seq-z]"))


def test_dff_eval_prints_per_sequence_j_f_and_l1_is_per_frame(per_frame_run, capsys):
    from vidrec.cli import main
    from vidrec.data.davis import find_sequences
    from vidrec.dff import as_dff
    from vidrec.dff.davis_eval import evaluate_sequences, load_sequence
    from vidrec.dff.flownets import DISFlow
    from vidrec.dff.schedule import FixedInterval
    from vidrec.engine.seg_metrics import JF

    _, run, root = per_frame_run
    ckpt = str(run / "best.safetensors")
    assert main(["dff", "eval", ckpt, str(root), "--sequences", "seq-c", "seq-b", "--interval", "3"]) == 0
    text = capsys.readouterr().out
    assert "scored at the native mask size, first and last frames left out" in text
    assert "fixed interval 3, flow DISFlow" in text and "seq-c" in text and "seq-b" in text
    seq_c = next(line for line in text.splitlines() if line.startswith("seq-c")).split()
    assert seq_c[3:5] == ["8", "3"]  # 8 frames, key frames 0, 3, 6
    model, _ = load_task(ckpt)
    seqs = find_sequences(root, ["seq-c"])
    (res,) = evaluate_sequences(as_dff(model, flow_net=DISFlow()), seqs, FixedInterval(1), size=(32, 48))
    frames, masks = load_sequence(seqs[0], (32, 48))
    assert masks.shape[1:] == (48, 64)  # scored against the masks as stored
    jf = JF()
    with torch.no_grad():
        for i in range(1, len(frames) - 1):  # the first and last frame are not scored
            from vidrec.data.transforms import normalize_rgb

            logits = F.interpolate(model(normalize_rgb(frames[i][None])), size=(48, 64), mode="bilinear")
            jf.update("seq-c", i, logits[0].argmax(0), masks[i])
    assert (res.J, res.F, res.keys) == (jf.compute()["J"], jf.compute()["F"], 8)
    assert main(["dff", "eval", ckpt, str(root / "missing")]) == 2  # one-line error, no traceback


def test_dff_train_runs_the_dff_davis_config(capsys):
    from vidrec.cli import main

    assert main(["dff", "train", "data.root=/somewhere/davis", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "task: segment" in text and "pairs: true" in text and "dff_segnet_mobilenet_v2" in text
    assert "root: /somewhere/davis" in text
