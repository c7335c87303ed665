"""Inference reads the checkpoint and the user's inputs, nothing else, and a checkpoint of the wrong kind or
with malformed metadata is one clear line and exit 2 (issue 20: "reads a checkpoint chooses",
"wrong-kind inputs")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vidrec.cli import main
from vidrec.engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    _flatten,
    load_for_inference,
    save_checkpoint,
)
from vidrec.engine.config import config_from_dict
from vidrec.engine.schema import config_to_dict
from vidrec.io import write_video
from vidrec.models import get_model
from vidrec.text import Vocabulary

pytestmark = pytest.mark.usefixtures("one_thread")
SECRET = "zanzibar"  # a word only the captions file the checkpoint names holds
CAPTION_KWARGS = {"backbone": "mobilenet_v2", "hidden_size": 8, "embed_size": 8, "dropout": 0.0}


@pytest.fixture(autouse=True)
def no_weight_files(tmp_path, monkeypatch):
    """An empty torch cache, and any read of a weights file (ImageNet or a path) fails the test."""
    import vidrec.models.backbones as backbones

    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"inference read a weights file: {args}")

    monkeypatch.setattr(backbones, "read_state_dict", refuse)
    monkeypatch.setattr(backbones, "imagenet_state_dict", refuse)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A captions folder (naming the secret word), an image and a 6-frame video."""
    root = tmp_path_factory.mktemp("media")
    (root / "captions.csv").write_text(f"image,caption\na.jpg,a {SECRET} square\n")
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(root / "a.jpg")
    write_video(root / "v.mp4", np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), 4)
    return root


def _caption_checkpoint(path, media, *, pretrained=False, vocab=True):
    words = Vocabulary.build(["a red square", "a blue box"], min_count=1)
    raw = {
        "task": "caption",
        "task_options": {"root": str(media), "captions": str(media / "captions.csv"), "min_count": 1,
                         "resize": 32, "size": 32, "frames": 2, "max_len": 5},
        "model": {"name": "lrcn1u_captioner", "kwargs": {**CAPTION_KWARGS, "pretrained": pretrained}},
    }  # fmt: skip
    torch.manual_seed(0)
    model = get_model("lrcn1u_captioner", num_classes=len(words), **CAPTION_KWARGS)
    state = {"vocab": words.to_state(), "max_len": 5} if vocab else {}
    cfg = config_to_dict(config_from_dict(raw))
    save_checkpoint(path, Checkpoint(model=model.state_dict(), config=cfg, class_names=[], task_state=state))
    return path, model


def _segment_checkpoint(path):
    cfg = config_to_dict(config_from_dict({"task": "segment", "model": {"name": "segnet_mobilenet_v2"}}))
    model = get_model("segnet_mobilenet_v2", num_classes=2)
    return save_checkpoint(path, Checkpoint(model=model.state_dict(), config=cfg, class_names=[]))


def _classify_checkpoint(path, *, class_names=("a", "b", "c"), meta=None, train_list="t.txt"):
    raw = {"data": {"train_list": str(train_list), "frames": 2, "size": 32, "resize": 32},
           "model": {"name": "single_frame_mobilenet_v2", "kwargs": {"pretrained": True}}}  # fmt: skip
    model = get_model("single_frame_mobilenet_v2", num_classes=3)
    ckpt = Checkpoint(model=model.state_dict(), config=config_to_dict(config_from_dict(raw)),
                      class_names=list(class_names))  # fmt: skip
    tensors, header = _flatten(ckpt)
    for key, value in (meta or {}).items():  # an edited or damaged header
        header.pop(key) if value is None else header.__setitem__(key, value)
    save_file(tensors, str(path), metadata=header)
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ----------------------------------------------------------------------------- reads a checkpoint chooses


@pytest.mark.parametrize("pretrained", [True, "passwd"])
def test_a_caption_checkpoint_never_opens_a_pretrained_file(pretrained, media, tmp_path):
    """`model.kwargs.pretrained` (ImageNet, or a path such as /etc/passwd) is not read at inference: the
    captioner builders used to hide `pretrained` in **kwargs from the `pretrained=False` override."""
    pretrained = str(tmp_path / "passwd") if pretrained == "passwd" else pretrained
    path, model = _caption_checkpoint(tmp_path / "c.safetensors", media, pretrained=pretrained)
    rebuilt, cfg, _ = load_for_inference(path)
    assert cfg.model.kwargs["pretrained"] == pretrained  # the stored config is kept as it was...
    for key, value in model.state_dict().items():  # ...and every weight comes from the checkpoint
        assert torch.equal(rebuilt.state_dict()[key], value), key


def test_a_caption_checkpoint_without_vocabulary_never_reads_its_captions_file(
    media, tmp_path, capsys, monkeypatch
):
    import vidrec.tasks.caption as caption

    monkeypatch.setattr(caption, "read_captions", lambda *a: pytest.fail("read the stored captions file"))
    path, _ = _caption_checkpoint(tmp_path / "c.safetensors", media, vocab=False)
    assert main(["caption", str(path), str(media / "a.jpg"), "--beam", "1"]) == 2
    out, err = capsys.readouterr()
    assert "holds no caption vocabulary" in err and len(err.strip().splitlines()) == 1
    assert SECRET not in out + err


def test_a_classify_checkpoint_without_class_names_never_reads_its_lists(tmp_path, monkeypatch):
    import vidrec.tasks.classify as classify

    monkeypatch.setattr(classify, "read_records", lambda *a: pytest.fail("read the stored list files"))
    lists = tmp_path / "train.txt"
    lists.write_text(f"{SECRET}.mp4 0\n")
    path = _classify_checkpoint(tmp_path / "c.safetensors", class_names=[], train_list=lists)
    with pytest.raises(CheckpointError, match="holds no class names"):
        load_for_inference(path)


# ----------------------------------------------------------------------------- wrong-kind checkpoints


def _argv(command, ckpt, media, tmp_path):
    return {
        "predict": ["predict", ckpt, str(media / "v.mp4")],
        "export": ["export", ckpt, "--out", str(tmp_path / "m.onnx"), "--no-check"],
        "visualize": ["visualize", "gradcam", ckpt, str(media / "v.mp4"), "--out", str(tmp_path / "viz")],
        "eval": ["eval", ckpt, "--out", str(tmp_path / "eval")],
        "caption": ["caption", ckpt, str(media / "a.jpg")],
        "dff run": ["dff", "run", ckpt, str(media / "v.mp4"), "--out", str(tmp_path / "o.mp4")],
        "dff eval": ["dff", "eval", ckpt, str(tmp_path / "davis")],
    }[command]


@pytest.mark.parametrize(
    ("task", "command"),
    [("caption", c) for c in ("predict", "export", "visualize", "eval", "dff run", "dff eval")]
    + [("segment", c) for c in ("predict", "export", "visualize", "eval", "caption")],
)
def test_a_checkpoint_of_another_task_is_one_line_and_exit_2(task, command, media, tmp_path, capsys):
    if task == "caption":
        path = _caption_checkpoint(tmp_path / "c.safetensors", media)[0]
    else:
        path = _segment_checkpoint(tmp_path / "c.safetensors")
    assert main(_argv(command, str(path), media, tmp_path)) == 2
    err = _one_line_error(capsys)
    assert f"is a `task: {task}` checkpoint" in err and "use vidrec" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]  # nothing written


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"config": None}, "metadata has no 'config'"),
        ({"config": '{"data": {"train_list": '}, "metadata 'config' is not valid JSON"),
        ({"config": '["a list"]'}, "metadata 'config' is a list"),
        ({"class_names": '["a", "b", "c", "d", "e"]'}, "the model its metadata describes: size mismatch"),
        ({"class_names": '["a", "b", "c", "d", "e"]'}, "(its metadata lists 5 class names)"),
        ({"class_names": "[1, 2, 3]"}, "'class_names' is not a list of names"),
        ({"epoch": "two"}, "metadata 'epoch' is 'two'"),
        ({"task_state": "{"}, "metadata 'task_state' is not valid JSON"),
    ],
)
def test_malformed_checkpoint_metadata_is_one_line_naming_it(meta, message, media, tmp_path, capsys):
    path = _classify_checkpoint(tmp_path / "c.safetensors", meta=meta)
    assert main(["predict", str(path), str(media / "v.mp4")]) == 2
    err = _one_line_error(capsys)
    assert message in err and str(path) in err


def test_a_well_formed_classify_checkpoint_still_predicts(media, tmp_path, capsys):
    path = _classify_checkpoint(tmp_path / "c.safetensors")
    assert main(["predict", str(path), str(media / "v.mp4"), "--topk", "3"]) == 0
    assert sorted(line.split()[1] for line in capsys.readouterr().out.splitlines()) == ["a", "b", "c"]
