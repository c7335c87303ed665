"""`task: caption` through the one engine loop on tiny generated data: image folder + CSV and video folder +
JSON, vocabulary stored in the checkpoint, identical sentences after a round trip, `vidrec caption` on
an image and a video (whole and --timeline), clear one-line errors on bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidrec.cli import main as cli_main
from vidrec.engine.checkpoint import load_checkpoint, load_task
from vidrec.engine.config import load_config
from vidrec.engine.schema import ConfigError
from vidrec.engine.train import train
from vidrec.io import write_video
from vidrec.tasks.caption_data import CaptionDataset, collate_captions, read_captions, split_items

pytestmark = pytest.mark.usefixtures("one_thread")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
MODEL = [
    "model.name=lrcn2f_captioner",
    "model.kwargs={backbone: resnet18, pretrained: false, hidden_size: 32, embed_size: 16, dropout: 0.0}",
]
QUIET = ["progress=false", "tensorboard=false", "plots=false", "data.workers=0", "runtime.device=cpu"]


def _image(colour: str, size: int = 40) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[8:32, 8:32] = COLOURS[colour]
    return img


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """6 images (a coloured square each) and captions.csv with two sentences per image."""
    root = tmp_path_factory.mktemp("caps")
    with (root / "captions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption"])
        for i, colour in enumerate([*COLOURS, "red", "blue"]):
            Image.fromarray(_image(colour)).save(root / f"img{i}.jpg")
            w.writerow([f"img{i}.jpg", f"A {colour} square ."])
            w.writerow([f"img{i}.jpg", f"a {colour} box on black"])
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vids")
    sentences = {}
    for i, colour in enumerate(["red", "green", "blue"]):
        frames = np.stack([np.roll(_image(colour, 48), 2 * t, axis=1) for t in range(12)])
        write_video(root / f"v{i}.mp4", frames, fps=4)
        sentences[f"v{i}.mp4"] = [f"a {colour} square moves right", f"a {colour} block slides"]
    (root / "captions.json").write_text(json.dumps(sentences))
    (root / "split.json").write_text(json.dumps({"train": ["v0.mp4", "v1.mp4"], "val": ["v2.mp4"]}))
    return root


def _image_overrides(images: Path, out: Path) -> list[str]:
    return [
        "task=caption",
        f"task_options={{root: {images}, val_every: 3, min_count: 1, resize: 32, size: 32, max_len: 8}}",
        *MODEL, *QUIET, "data.batch_size=4", "optim.name=adamw", "optim.lr=0.01", "schedule.epochs=2",
        "plots=true", f"out_dir={out}",
    ]  # fmt: skip


def test_captions_files_and_split(images, videos):
    items = read_captions(images / "captions.csv")
    assert [i.file for i in items] == [f"img{i}.jpg" for i in range(6)] and len(items[0].sentences) == 2
    train_items, val_items = split_items(items, val_every=3)
    assert [i.file for i in val_items] == ["img2.jpg", "img5.jpg"] and len(train_items) == 4
    vids = read_captions(videos / "captions.json")
    tr, va = split_items(vids, split_file=str(videos / "split.json"))
    assert [v.file for v in va] == ["v2.mp4"] and len(tr) == 2


def test_image_captioning_trains_and_round_trips_through_the_checkpoint(images, tmp_path):
    result = train(load_config(None, _image_overrides(images, tmp_path / "run")))
    h = result.history[-1]
    assert {"val_CIDEr", "val_BLEU4", "val_loss", "train_perplexity"} <= set(h)
    ckpt = load_checkpoint(tmp_path / "run" / "last.safetensors")
    words = ckpt.task_state["vocab"]["words"]
    assert {"red", "green", "square", "box"} <= set(words) and "." not in words
    model, task = load_task(tmp_path / "run" / "last.safetensors")
    assert task.vocab.itos[4:] == words
    # captions.md holds what the trained model in memory wrote at its last validation (greedy); the model
    # loaded from last.safetensors (written after it) writes the same sentences: a checkpoint round trip
    rows = (tmp_path / "run" / "captions.md").read_text().splitlines()[2:]
    written = {r.split(" | ")[0].strip("| "): r.split(" | ")[1].strip() for r in rows}
    assert set(written) == {"img2.jpg", "img5.jpg"}
    val = [i for i in read_captions(images / "captions.csv") if i.file in written]
    ds = CaptionDataset(images, val, task.vocab, train=False, resize=32, size=32)
    batch = collate_captions([ds[i] for i in range(len(ds))])
    ids = task.decode_batch(model, batch, torch.device("cpu"))[0]
    assert {f: task.vocab.decode(r) for f, r in zip(batch["id"], ids)} == written
    assert result.best_checkpoint is not None


def test_caption_cli_on_images_videos_and_timeline(images, videos, tmp_path, capsys):
    out = tmp_path / "vrun"
    args = [
        "train", "task=caption",
        f"task_options={{root: {videos}, split_file: {videos / 'split.json'}, frames: 3, min_count: 1, "
        "resize: 32, size: 32, max_len: 8}",
        *MODEL, *QUIET, "data.batch_size=2", "optim.name=adamw", "optim.lr=0.01", "schedule.epochs=1",
        f"out_dir={out}",
    ]  # fmt: skip
    assert cli_main(args) == 0
    capsys.readouterr()
    ckpt = str(out / "last.safetensors")
    assert cli_main(["caption", ckpt, str(videos / "v0.mp4"), str(images / "img0.jpg"), "--beam", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert (
        len(lines) == 2 and lines[0].startswith(f"{videos / 'v0.mp4'}: ") and lines[1].startswith(str(images))
    )
    assert (
        cli_main(["caption", ckpt, str(videos / "v1.mp4"), "--timeline", "--window", "6", "--stride", "4"])
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("]")[0].split("[")[1].split(",")[0] for ln in lines] == [
        "frames 0-5", "frames 4-9", "frames 6-11"
    ]  # fmt: skip
    # greedy (beam 1) and sampling run too, and a sample is reproducible by its seed
    assert cli_main(["caption", ckpt, str(images / "img1.jpg"), "--sample", "5", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert cli_main(["caption", ckpt, str(images / "img1.jpg"), "--sample", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out == first
    # a corrupt image is reported with its path and skipped (exit 2), the others still described
    assert cli_main(["caption", ckpt, str(images / "broken.jpg"), str(images / "img2.jpg")]) == 2
    cap = capsys.readouterr()
    assert "skipped" in cap.err and "broken.jpg" in cap.err and "img2.jpg: " in cap.out
    # a missing file: one line, exit 2, before any model is built
    assert cli_main(["caption", ckpt, str(tmp_path / "nope.jpg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.jpg does not exist" in err[0]


def test_bad_caption_options_name_the_field(images, tmp_path):
    with pytest.raises(ConfigError, match=r"task_options\.min_count"):
        load_config(None, ["task=caption", "task_options={min_count: 0}"])
    with pytest.raises(ConfigError, match=r"task_options\.val_decode"):
        load_config(None, ["task=caption", "task_options={val_decode: nucleus}"])
    cfg = load_config(None, ["task=caption", f"task_options={{root: {images}, captions: {tmp_path}/x.csv}}"])
    with pytest.raises(FileNotFoundError, match=r"task_options\.captions: .*x\.csv does not exist"):
        train(cfg)
