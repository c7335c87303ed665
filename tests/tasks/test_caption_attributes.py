"""LRCN's video description from attributes (methods.md 1.5): `task_options.decoder_input=attributes` makes
the decoder read a per-frame attribute classifier's probabilities (one softmax head per group, averaged over
the frames, concatenated) instead of mean-pooled CNN features; the feature path stays the default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidrec.cli import main as cli_main
from vidrec.engine.checkpoint import load_checkpoint, load_task
from vidrec.io import write_video
from vidrec.models.captioner import (
    NO_LABEL,
    CaptionDecoder,
    Captioner,
    attribute_loss,
    build_captioner,
    caption_loss,
)
from vidrec.tasks.caption import CaptionOptions
from vidrec.tasks.caption_data import (
    CaptionDataError,
    CaptionDataset,
    attribute_groups,
    collate_captions,
    read_captions,
)
from vidrec.text import Vocabulary
from vidrec.text.decode import greedy

pytestmark = pytest.mark.usefixtures("one_thread")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
FRAMES = 12


def _clip(colour: str) -> np.ndarray:
    """A square at the top for the first half of the frames, at the bottom after."""
    frames = np.zeros((FRAMES, 48, 48, 3), np.uint8)
    for t in range(FRAMES):
        y = 4 if t < FRAMES // 2 else 28
        frames[t, y : y + 16, 16:32] = COLOURS[colour]
    return frames


@pytest.fixture(scope="module")
def described(tmp_path_factory) -> Path:
    """4 videos; captions.json entries with sentences, a clip-level `object` and a per-frame `location`."""
    root = tmp_path_factory.mktemp("attrs")
    location = ["top"] * (FRAMES // 2) + ["bottom"] * (FRAMES // 2)
    entries = {}
    for i, colour in enumerate(["red", "green", "blue", "red"]):
        write_video(root / f"v{i}.mp4", _clip(colour), fps=4)
        entries[f"v{i}.mp4"] = {
            "sentences": [f"a {colour} square moves down"],
            "attributes": {"object": colour, "location": location},
        }
    (root / "captions.json").write_text(json.dumps(entries))
    (root / "split.json").write_text(json.dumps({"train": ["v0.mp4", "v1.mp4", "v2.mp4"], "val": ["v3.mp4"]}))
    return root


def test_attribute_format_groups_and_per_frame_labels(described, tmp_path):
    items = read_captions(described / "captions.json")
    assert items[0].sentences == ["a red square moves down"] and items[0].attributes["object"] == "red"
    groups = attribute_groups(items)
    assert groups == {"location": ["bottom", "top"], "object": ["blue", "green", "red"]}
    ds = CaptionDataset(described, items[:1], Vocabulary.build(["a"]), train=False, frames=3, resize=32,
                        size=32, groups=groups)  # fmt: skip
    labels = ds[0]["attributes"]  # frames 0, 6 (rounded 5.5), 11: top, bottom, bottom; red everywhere
    assert labels.tolist() == [[1, 2], [0, 2], [0, 2]]
    # a group a file does not label is ignored, a per-frame list must cover every frame
    item = items[0]
    item.attributes = {"object": "red", "location": ["top"] * 5}
    ds = CaptionDataset(described, [item], Vocabulary.build(["a"]), train=False, frames=3, resize=32,
                        size=32, groups={**groups, "tool": ["knife"]}, strict=True)  # fmt: skip
    with pytest.raises(CaptionDataError, match=r"v0\.mp4: attribute 'location' lists 5 values .* 12 frames"):
        ds[0]
    item.attributes = {"object": "red"}
    assert ds[0]["attributes"][:, 2].tolist() == [NO_LABEL] * 3 and ds[0]["attributes"][0, 1] == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"v0.mp4": {"sentences": ["a"], "attributes": {"a.b": "x"}}}))
    with pytest.raises(CaptionDataError, match=r"entry 'v0\.mp4': attributes must map group names"):
        read_captions(bad)


def test_feature_path_is_the_default():
    assert CaptionOptions().decoder_input == "features"
    model = build_captioner("2f", num_classes=9, backbone="none", feature_dim=12, hidden_size=8, embed_size=4)
    assert model.attribute_heads is None and model.decoder.visual.in_features == 12
    f = torch.randn(2, 3, 12)
    torch.testing.assert_close(model.encode(f), f.mean(dim=1))


def test_attribute_decoder_trains_through_the_engine_and_describes(described, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train", "task=caption",
        f"task_options={{root: {described}, split_file: {described / 'split.json'}, frames: 4, min_count: 1, "
        "resize: 32, size: 32, max_len: 8, decoder_input: attributes}",
        "model.name=lrcn2f_captioner",
        "model.kwargs={backbone: resnet18, pretrained: false, hidden_size: 32, embed_size: 16, dropout: 0.0}",
        "progress=false", "tensorboard=false", "plots=false", "data.workers=0", "runtime.device=cpu",
        "data.batch_size=3", "optim.name=adamw", "optim.lr=0.01", "schedule.epochs=2", f"out_dir={out}",
    ]  # fmt: skip
    assert cli_main(args) == 0
    ckpt = load_checkpoint(out / "last.safetensors")
    groups = {"location": ["bottom", "top"], "object": ["blue", "green", "red"]}
    assert ckpt.task_state["attributes"] == groups
    assert {"train_attr_acc", "val_attr_acc", "val_CIDEr"} <= set(ckpt.metrics)
    model, task = load_task(out / "last.safetensors")
    assert list(model.attribute_heads) == ["location", "object"]
    assert model.decoder.visual.in_features == 2 + 3  # the attribute probabilities, not the 512 features
    ds = CaptionDataset(described, read_captions(described / "captions.json")[:1], task.vocab, train=False,
                        frames=4, resize=32, size=32, groups=task.groups)  # fmt: skip
    batch = collate_captions([ds[0]])
    from vidrec.data.transforms import normalize_rgb

    with torch.no_grad():
        cond = model.encode(normalize_rgb(batch["rgb"]))  # (1, 5): per group, probabilities summing to 1
    assert cond.shape == (1, 5) and torch.allclose(cond[:, :2].sum(-1), torch.ones(1))
    assert torch.allclose(cond[:, 2:].sum(-1), torch.ones(1)) and bool((cond >= 0).all())
    capsys.readouterr()
    assert cli_main(["caption", str(out / "last.safetensors"), str(described / "v0.mp4"), "--beam", "1"]) == 0
    line = capsys.readouterr().out.strip()
    words = line.split(": ", 1)[1].split()
    assert line.startswith(str(described / "v0.mp4")) and words and set(words) <= set(task.vocab.itos)


def test_attributes_to_sentence_overfit():
    """6 (colour, place) combinations, each with its own sentence: the decoder, reading only the attribute
    probabilities, learns to say each; a one-hot attribute vector fed straight in says the same."""
    colours, places = ["red", "green", "blue"], ["left", "right"]
    combos = [(c, p) for c in colours for p in places]
    sentences = [f"the {c} ball rolls {p}" for c, p in combos]
    vocab = Vocabulary.build(sentences)
    torch.manual_seed(0)
    decoder = CaptionDecoder(
        "2f", vocab_size=len(vocab), cond_dim=5, embed_size=16, hidden_size=32, dropout=0.0
    )
    model = Captioner(encoder=None, feature_dim=8, decoder=decoder, attributes={"place": 2, "colour": 3})
    t = 4
    feats = torch.zeros(len(combos), t, 8)  # frame features: colour and place one-hot, plus noise
    labels = torch.zeros(len(combos), t, 2, dtype=torch.long)  # (B, T, G): place, colour
    for i, (c, p) in enumerate(combos):
        feats[i, :, colours.index(c)] = 1.0
        feats[i, :, 3 + places.index(p)] = 1.0
        labels[i, :, 0], labels[i, :, 1] = places.index(p), colours.index(c)
    feats += 0.1 * torch.randn_like(feats)
    ids = [torch.tensor(vocab.encode(s)) for s in sentences]
    caps = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)  # (6, L)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(250):
        logits, attr = model(feats, caps, with_attributes=True)
        loss = caption_loss(logits, caps) + attribute_loss(attr, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    said = [vocab.decode(row) for row in greedy(model.decoder, model.encode(feats), max_len=10)]
    assert said == sentences
    one_hot = torch.zeros(len(combos), 5)  # [place (2) | colour (3)]
    for i, (c, p) in enumerate(combos):
        one_hot[i, places.index(p)], one_hot[i, 2 + colours.index(c)] = 1.0, 1.0
    assert [vocab.decode(row) for row in greedy(model.decoder, one_hot, max_len=10)] == sentences
