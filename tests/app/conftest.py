"""A served runs folder for the app tests: a classify checkpoint fitted in a second, and its videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidrec.data.synthetic import CLASSES, make_clip
from vidrec.engine.checkpoint import Checkpoint, save_checkpoint
from vidrec.engine.config import config_from_dict
from vidrec.engine.predict import Preprocess
from vidrec.engine.schema import config_to_dict
from vidrec.io import VideoReader, write_video

SIZE, FRAMES = 32, 8


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """``runs/toy/best.safetensors``: the demo's single-frame model (ImageNet CNN) whose linear head is a
    nearest-centroid classifier of the per-frame features of one generated clip per class, so each of
    those clips is predicted as its class; and ``videos``: {class name: that clip}."""
    root = tmp_path_factory.mktemp("app")
    videos, rng = {}, np.random.default_rng(7)
    for name in CLASSES:
        videos[name] = write_video(
            root / "videos" / f"{name}.mp4", make_clip(name, rng, frames=16, size=48), 8
        )
    from vidrec.demo import _weights_available, single_frame_demo

    if not _weights_available():  # random CNN features do not separate the clips frame by frame
        pytest.skip("ImageNet MobileNetV2 weights are not under $TORCH_HOME; run `make assets`")
    torch.manual_seed(0)
    model = single_frame_demo(num_classes=len(CLASSES), size=SIZE, pretrained=True).eval()
    pre = Preprocess(resize=SIZE, size=SIZE)
    with torch.no_grad():
        centroids = []
        for name in CLASSES:
            with VideoReader(videos[name], size=SIZE) as reader:
                x = pre.normalize(pre(reader.get_frames(range(reader.meta.num_frames))), "cpu")
            centroids.append(model.encoder(x).mean(0))  # (D,)
        c = torch.stack(centroids)  # (K, D)
        # logit_k = s (c_k . f - |c_k|^2 / 2): the nearest centroid wins; s sets how sure the model is
        s = 8.0 / torch.cdist(c, c).add(torch.eye(len(c)) * 1e9).min().square()
        model.head.weight.copy_(s * c)
        model.head.bias.copy_(-s * (c * c).sum(1) / 2)
    raw = {
        "data": {"train_list": "train.txt", "frames": FRAMES, "size": SIZE, "resize": SIZE},
        "model": {"name": "vidrec.demo:single_frame_demo", "kwargs": {"size": SIZE}},
    }
    cfg = config_to_dict(config_from_dict(raw))
    ckpt = save_checkpoint(
        root / "runs" / "toy" / "best.safetensors",
        Checkpoint(model=model.state_dict(), config=cfg, class_names=list(CLASSES)),
    )
    return {"runs": root / "runs", "checkpoint": ckpt, "name": "runs/toy/best.safetensors", "videos": videos}
