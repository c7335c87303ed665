"""The motion cue (`vidrec.models.motion`): neighbours stacked alike everywhere, the camera's motion taken
out, the object that moves unlike it found, and the segmenter / DFF / data paths that carry it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidrec.data.transforms import normalize_frames
from vidrec.models.motion import (
    MotionCue,
    camera_residual,
    neighbour_indices,
    stack_neighbours,
    stream_neighbours,
    takes_neighbours,
)
from vidrec.models.segnet import dff_segnet_mobilenet_v2, segnet_mobilenet_v2


@pytest.mark.parametrize("length", [1, 2, 3, 6])
def test_streamed_neighbours_equal_the_stacked_ones(length):
    frames = torch.randint(0, 255, (length, 3, 4, 5), dtype=torch.uint8)
    stacked = stack_neighbours(frames)
    assert stacked.shape == (length, 9, 4, 5)
    streamed = torch.cat(list(stream_neighbours(f[None] for f in frames)))
    assert torch.equal(streamed, stacked)
    for i in range(length):
        prev, nxt = neighbour_indices(i, length)
        assert torch.equal(stacked[i, 3:6], frames[prev]) and torch.equal(stacked[i, 6:], frames[nxt])
    if length > 1:  # an end takes its other neighbour, never itself
        assert neighbour_indices(0, length)[0] == 1 and neighbour_indices(length - 1, length)[1] == length - 2


def test_camera_residual_removes_an_affine_camera_and_keeps_what_moves_apart():
    h, w = 60, 80
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    camera = np.stack([0.02 * gx + 1.5, -0.01 * gy + 0.5], axis=-1)  # zoom-like pan
    assert camera_residual(camera).max() < 1e-3
    flow = camera.copy()
    flow[20:35, 30:45] += (4.0, -3.0)  # an object moving on its own
    res = camera_residual(flow)
    assert res[22:33, 32:43].min() > 4.5 and np.median(res) < 1e-3
    assert res.dtype == np.float32 and res.shape == (h, w)
    tiny = np.zeros((4, 6, 2), np.float32) + (2.0, -1.0)  # too small to sample: the median flow is the camera
    tiny[1, 2] = (5.0, 3.0)
    res = camera_residual(tiny)
    assert res[1, 2] == pytest.approx(5.0) and np.delete(res.ravel(), 8).max() == 0


def _panning_scene(t: int, h: int = 96, w: int = 128) -> np.ndarray:
    """A textured background panned 2 px a frame, a textured square moving 4 px a frame against it."""
    rng = np.random.default_rng(0)
    world = rng.integers(0, 255, (h, w + 64, 3)).astype(np.uint8)
    world = np.repeat(np.repeat(world[::4, ::4], 4, 0), 4, 1)[:h, : w + 64]  # 4-px blocks: trackable
    frame = world[:, 2 * t : 2 * t + w].copy()
    patch = np.repeat(np.repeat(rng.integers(0, 255, (6, 6, 3)).astype(np.uint8), 4, 0), 4, 1)
    x0 = 20 + 6 * t
    frame[36:60, x0 : x0 + 24] = patch
    return frame


def test_the_cue_is_high_on_the_moving_object_and_low_on_the_panned_background():
    frames = torch.stack([torch.from_numpy(_panning_scene(t)).permute(2, 0, 1) for t in range(3)])
    x = normalize_frames(stack_neighbours(frames)[1:2])  # frame 1 with frames 0 and 2
    cue = MotionCue()(x)
    assert cue.shape == (1, 2, 96, 128)
    relative = cue[0, 0]
    inside = relative[42:54, 40:52].mean()  # the square of frame 1 (x 26..50), away from its edges
    outside = torch.cat([relative[:24].flatten(), relative[-16:].flatten()]).mean()
    assert inside > 4 * outside


def test_a_one_neighbour_cue_is_the_two_neighbour_cue_of_that_neighbour_twice():
    frames = torch.stack([torch.from_numpy(_panning_scene(t)).permute(2, 0, 1) for t in range(3)])
    x = normalize_frames(stack_neighbours(frames)[1:2])  # frame 1 with frames 0 and 2
    for side in (1, 2):
        own = x[:, 3 * side : 3 * side + 3]
        twice = torch.cat([x[:, :3], own, own], dim=1)
        one = MotionCue(neighbours=(side,))(x)
        assert torch.allclose(one, MotionCue()(twice), atol=1e-3)  # RANSAC draws its own samples
        assert not torch.allclose(one, MotionCue()(x), atol=1e-3)  # the other flow changes the cue
    with pytest.raises(ValueError, match="neighbours"):
        MotionCue(neighbours=(0,))


def test_a_motion_segnet_takes_neighbours_and_dff_runs_the_cue_on_key_frames_only(monkeypatch):
    torch.manual_seed(0)
    seg = segnet_mobilenet_v2(motion=16).eval()
    assert takes_neighbours(seg) and not takes_neighbours(segnet_mobilenet_v2())
    frames = torch.randint(0, 255, (4, 3, 64, 96), dtype=torch.uint8)
    x = normalize_frames(stack_neighbours(frames))
    with torch.no_grad():
        assert seg(x).shape == (4, 2, 64, 96)
        assert seg.feature_net(x).shape == (4, 1280 + 16, 4, 6)
        with pytest.raises(ValueError, match=r"\(B, 9, H, W\)"):
            seg(normalize_frames(frames))
    dff = dff_segnet_mobilenet_v2(motion=16, flow="dis").eval()
    dff.load_state_dict(seg.state_dict(), strict=False)  # a per-frame checkpoint initialises it
    calls = []
    cue_forward = type(dff.feature_net.cue).forward
    monkeypatch.setattr(
        type(dff.feature_net.cue), "forward", lambda s, t: calls.append(1) or cue_forward(s, t)
    )
    from vidrec.dff.schedule import FixedInterval

    outs = [out for out, _ in dff.run(iter(x[:, None].unbind(0)), FixedInterval(3))]
    assert len(outs) == 4 and len(calls) == 2  # key frames 0 and 3
    with torch.no_grad():
        assert torch.allclose(outs[0], seg(x[:1]), atol=1e-5)  # a key frame is the per-frame net


def test_davis_items_stack_neighbours_cropped_flipped_and_jittered_alike(tmp_path):
    from davis_helpers import write_sequence

    from vidrec.data.davis import Augment, DavisFrames, DavisPairs, find_sequences

    root = tmp_path / "davis"
    write_sequence(root, "seq-a", 6)
    seqs = find_sequences(root, ["seq-a"])
    plain = DavisFrames(seqs, size=(32, 48))
    stacked = DavisFrames(seqs, size=(32, 48), neighbours=True)
    item = stacked[0]
    assert item["image"].shape == (9, 32, 48)
    assert torch.equal(item["image"][:3], plain[0]["image"]) and torch.equal(
        item["image"][3:6], plain[1]["image"]
    )
    # augmentation draws one scale, crop, flip and jitter for the three frames: with identical frames
    # (the last frame's neighbours are frame 4 twice) the two neighbour slices stay identical
    torch.manual_seed(0)
    aug = DavisFrames(
        seqs, neighbours=True, augment=Augment((32, 48), scale=(0.7, 1.3), crop=(24, 40), color=0.3)
    )
    for _ in range(5):
        img = aug[5]["image"]
        assert img.shape == (9, 24, 40) and torch.equal(img[3:6], img[6:9])
    pair = DavisPairs(seqs, size=(32, 48), max_offset=2, neighbours=True)[3]
    assert pair["key_image"].shape == (9, 32, 48) and pair["image"].shape == (3, 32, 48)


def test_the_segment_task_trains_a_motion_segnet_and_its_checkpoint_comes_back_taking_neighbours(tmp_path):
    from davis_helpers import write_sequence

    from vidrec.dff.davis_eval import evaluate_sequences
    from vidrec.dff.model import as_dff
    from vidrec.dff.schedule import FixedInterval
    from vidrec.engine.checkpoint import load_task
    from vidrec.engine.config import load_config
    from vidrec.engine.train import train

    root = tmp_path / "davis"
    for i, (name, n) in enumerate((("seq-a", 8), ("seq-b", 6))):
        write_sequence(root, name, n, seed=i)
    cfg = load_config(
        None,
        [
            "task=segment",
            f"data.root={root}",
            "model.name=segnet_mobilenet_v2",
            "model.kwargs={motion: 8}",
            "data.batch_size=4",
            "task_options={size: [32, 48], train_sequences: [seq-a], val_sequences: [seq-b], crop: [24, 40]}",
            "optim.lr_mult={feature_net.branch: 10}",
            "schedule.name=constant",
            "schedule.epochs=1",
            f"out_dir={tmp_path / 'run'}",
            *["progress=false", "tensorboard=false", "plots=false", "data.workers=0", "runtime.device=cpu"],
        ],
    )
    result = train(cfg)
    assert 0.0 <= result.history[-1]["val_J"] <= 1.0
    model = load_task(tmp_path / "run" / "last.safetensors")[0].eval()
    assert takes_neighbours(model) and takes_neighbours(as_dff(model, flow_net=_dis()))
    from vidrec.data.davis import find_sequences

    scores = evaluate_sequences(
        as_dff(model, flow_net=_dis()), find_sequences(root, ["seq-b"]), FixedInterval(3), size=(32, 48),
        progress=False,
    )  # fmt: skip
    assert scores[0].frames == 6 and scores[0].keys == 2


def _dis():
    from vidrec.dff.flownets import DISFlow

    return DISFlow()
