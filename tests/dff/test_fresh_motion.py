"""A fresh motion cue on propagated frames (``DFF(fresh_motion=True)``): a key frame's reduced map splits
exactly into an appearance part and a motion part; propagated frames warp the appearance part and add
their own motion cue's part; key frames, and so the per-frame row, do not change."""

from __future__ import annotations

import cv2
import pytest
import torch
from torch import nn

from vidrec.data.transforms import normalize_frames
from vidrec.dff import DFF, as_dff
from vidrec.dff.cost import part_costs
from vidrec.dff.flownets import make_flow_net
from vidrec.dff.model import feature_grid, map_frames, refreshable, walk
from vidrec.dff.schedule import Bidirectional, FixedInterval
from vidrec.models.motion import stack_neighbours
from vidrec.models.segnet import segnet_mobilenet_v2


class ZeroFlow(nn.Module):
    """A flow net that says nothing moved: (zero flow on a 1/16 grid, no scale features)."""

    def forward(self, key: torch.Tensor, cur: torch.Tensor):
        b, _, h, w = cur.shape
        return cur.new_zeros(b, 2, -(-h // 16), -(-w // 16)), None


def frames(n: int = 6, seed: int = 0) -> list[torch.Tensor]:
    """`n` frames (1, 9, 64, 96), each with its neighbours: a bright square moving right on noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, 64, 96, generator=g) * 0.3
    clip = []
    for t in range(n):
        f = base.clone()
        f[:, 20:44, 10 + 6 * t : 34 + 6 * t] = 0.9
        clip.append(f)
    stacked = stack_neighbours((torch.stack(clip) * 255).to(torch.uint8))  # (T, 9, H, W) uint8
    return [normalize_frames(x[None]) for x in stacked]


def seg_model():
    torch.manual_seed(0)
    return segnet_mobilenet_v2(hidden=8, motion=4).eval()


@pytest.fixture(scope="module")
def seg():
    return seg_model()


def test_key_frame_splits_exactly_and_is_the_per_frame_net(seg):
    dff = as_dff(seg, flow_net=make_flow_net("dis", stride=16)).eval()
    assert refreshable(dff)
    dff.fresh_motion = True
    clip = frames()
    with torch.no_grad():
        parts = dff.key_features(clip[0])
        assert set(parts) == {"appearance", "motion"}
        reduced = seg.task_net.reduce(seg.feature_net(clip[0]))
        assert torch.allclose(parts["appearance"] + parts["motion"], reduced, atol=1e-5)
        assert parts["motion"].abs().sum() > 0  # the cue's part is not empty
        for x, (out, is_key) in zip(clip, dff.run(iter(clip), FixedInterval(1)), strict=True):
            assert is_key and torch.allclose(out, seg(x), atol=1e-4)  # every frame a key frame: the segmenter


def test_propagated_frame_warps_appearance_and_adds_its_own_cue(seg, monkeypatch):
    dff = DFF(seg.feature_net, ZeroFlow(), seg.task_net, reduced=True, fresh_motion=True, fresh_from=1).eval()
    clip = frames()
    with torch.no_grad():
        key = dff.key_features(clip[0])
        outs = [o for o, _ in dff.run(iter(clip), FixedInterval(3))]
        grid = key["appearance"].shape[-2:]
        for i in (1, 2):  # zero flow: the key frame's appearance part, the frame's own motion part
            want = dff.head(key["appearance"] + dff.fresh_motion_map(clip[i], grid), (64, 96))
            assert torch.allclose(outs[i], want, atol=1e-5)
        # without it the key frame's whole map is carried, the frame's own cue plays no part
        dff.fresh_motion = False
        stale = [o for o, _ in dff.run(iter(clip), FixedInterval(3))]
        assert torch.allclose(stale[1], stale[0], atol=1e-5)  # zero flow: a copy of the key frame
        assert not torch.allclose(outs[1], stale[1], atol=1e-4)
    # the cue computed the key frame's way (the medium preset) on the key frame itself gives back its output
    monkeypatch.setattr("vidrec.dff.model.FRESH_CUE_PRESET", cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dff = DFF(seg.feature_net, ZeroFlow(), seg.task_net, reduced=True, fresh_motion=True, fresh_from=1).eval()
    with torch.no_grad():
        again = [o for o, _ in dff.run(iter([clip[0], clip[0]]), FixedInterval(2))]
    assert torch.allclose(again[1], again[0], atol=1e-4)


def test_bidirectional_walk_blends_appearance_and_adds_the_cue_once(seg):
    dff = DFF(seg.feature_net, ZeroFlow(), seg.task_net, reduced=True, fresh_motion=True, fresh_from=1).eval()
    clip = frames(5)
    with torch.no_grad():
        outs = [o for o, _ in dff.run(iter(clip), Bidirectional(4, tau=0.0))]
        a0, a4 = dff.key_features(clip[0])["appearance"], dff.key_features(clip[4])["appearance"]
        grid = a0.shape[-2:]
        for i in (1, 2, 3):
            w = (4 - i) / 4
            want = dff.head(w * a0 + (1 - w) * a4 + dff.fresh_motion_map(clip[i], grid), (64, 96))
            assert torch.allclose(outs[i], want, atol=1e-5)


def test_frames_near_a_key_frame_keep_its_cue(seg):
    """fresh_from = 3: frames 1 or 2 from the nearest key frame warp its whole map, the rest their own cue."""
    kw = {"reduced": True, "fresh_motion": True, "fresh_from": 3}
    fresh = DFF(seg.feature_net, ZeroFlow(), seg.task_net, **kw).eval()
    stale = DFF(seg.feature_net, ZeroFlow(), seg.task_net, reduced=True).eval()
    every = DFF(seg.feature_net, ZeroFlow(), seg.task_net, **{**kw, "fresh_from": 1}).eval()
    clip = frames(7)
    for schedule, near in ((FixedInterval(6), (1, 2)), (Bidirectional(6, tau=0.0), (1, 2, 4, 5))):
        with torch.no_grad():
            got, old, new = ([o for o, _ in m.run(iter(clip), schedule)] for m in (fresh, stale, every))
        for i in range(1, 6):
            want = old[i] if i in near else new[i]  # causal: frame 5 is 5 from key 0; bidirectional: 1 from 6
            assert torch.allclose(got[i], want, atol=1e-5), (schedule, i)
        assert not torch.allclose(old[3], new[3], atol=1e-4)  # the two ways differ: the test can tell
    with pytest.raises(ValueError, match="fresh_from"):
        DFF(seg.feature_net, ZeroFlow(), seg.task_net, fresh_from=0)


def test_fresh_motion_needs_a_motion_cue_and_the_clis_turn_it_on():
    torch.manual_seed(1)
    plain = segnet_mobilenet_v2(hidden=8).eval()
    dff = as_dff(plain, flow_net=make_flow_net("dis", stride=16))
    assert not refreshable(dff)
    with pytest.raises(ValueError, match="motion cue"):
        dff.fresh_motion = True
    from dff_args import dff_from_cli as built

    motion = segnet_mobilenet_v2(hidden=8, motion=4).eval()
    assert built(motion, []).fresh_motion
    assert not built(motion, ["--no-fresh-motion"]).fresh_motion
    assert not built(plain, []).fresh_motion  # nothing to refresh: off, no error


def test_cost_counts_the_cue_on_the_non_key_path(seg):
    dff = as_dff(seg, flow_net=make_flow_net("dis", stride=16)).eval()
    clip = frames(2)
    parts = {(c.path, c.part): c for c in part_costs(dff, clip[0], clip[1], repeats=1)}
    assert ("non-key", "motion cue") not in parts
    dff.fresh_motion = True
    parts = {(c.path, c.part): c for c in part_costs(dff, clip[0], clip[1], repeats=1)}
    cue = parts[("non-key", "motion cue")]
    assert cue.flops > 0 and cue.ms > 0  # the branch's convs count; DIS and the camera fits show in ms


@pytest.mark.parametrize("interval", [8, 3])
def test_frames_side_by_side_give_the_one_thread_walk(interval):
    """At n > 1 threads the bidirectional walk runs n key frames' feature nets at once and then the frames
    held between them, side by side (`vidrec.dff.model.map_frames`; the DIS flow net keeps an OpenCV
    object per thread), and the cue's flows run in a pool (`vidrec.models.motion`): the outputs, warp
    errors and fresh cues included, are the one-thread walk's (l = 3 on 9 frames: key frames 0, 3, 6 in
    one go at 3 threads, in two at 2, and two frames after the last key frame)."""
    dff = as_dff(seg_model(), flow_net=make_flow_net("dis", stride=16)).eval()
    dff.fresh_motion, dff.fresh_from = True, 2
    clip = frames(9)
    before = torch.get_num_threads()
    outs = {}
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            with torch.no_grad():
                outs[threads] = list(dff.run(iter(clip), Bidirectional(interval, tau=0.1)))
    finally:
        torch.set_num_threads(before)
    keys = [k for _, k in outs[1]]
    assert keys == [i % interval == 0 for i in range(9)]
    for threads in (2, 3):
        assert [k for _, k in outs[threads]] == keys
        for i, ((a, _), (b, _)) in enumerate(zip(outs[1], outs[threads], strict=True)):
            assert a.shape == (1, 2, 64, 96) and torch.allclose(a, b, atol=1e-5), (threads, i)
    assert not torch.allclose(outs[1][3][0], outs[1][4][0], atol=1e-4)  # frames differ by > 2e-4


def test_map_frames_keeps_order_and_runs_each_frame_at_one_torch_thread():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        seen = map_frames(lambda x: (x, torch.get_num_threads(), torch.is_grad_enabled()), list(range(7)))
        assert [x for x, _, _ in seen] == list(range(7))
        assert {n for _, n, _ in seen} == {1}  # the workers' own torch threads
        assert all(grad for _, _, grad in seen)  # grad mode is per thread: fn makes its own
        assert torch.get_num_threads() == 2  # the caller keeps its threads
        assert map_frames(lambda x: torch.get_num_threads(), [0, 1, 2], workers=3) == [1, 1, 1]
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert map_frames(lambda x: torch.get_num_threads(), [0, 1]) == [1, 1]  # a plain loop
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("schedule", [FixedInterval(3), Bidirectional(3, tau=0.1)], ids=["causal", "bi"])
def test_walk_pools_each_frame_once_for_the_flow_net(schedule, monkeypatch):
    """The learned flow net pools its input pair (`FlowNetLite.pool`); the walk hands it every frame pooled
    once (`DFF.flow_input`), so a key frame is not pooled again for each frame it serves, and the outputs
    are those of the flow net pooling each pair itself."""
    torch.manual_seed(1)
    flow_net = make_flow_net("learned", stride=16)
    nn.init.normal_(flow_net.predict.weight, std=0.05)  # a flow that moves (zero at initialisation)
    dff = as_dff(seg_model(), flow_net=flow_net).eval()
    dff.fresh_motion, dff.fresh_from = True, 2
    clip = frames(8)
    key, cur = clip[0][:, :3], clip[2][:, :3]
    flow, feats = flow_net(key, cur)
    flow2, feats2 = flow_net(flow_net.pool(key), flow_net.pool(cur), pooled=True)
    assert flow.abs().max() > 1e-3 and torch.equal(flow, flow2) and torch.equal(feats, feats2)

    pooled = []
    real_pool = flow_net.pool
    monkeypatch.setattr(flow_net, "pool", lambda x: pooled.append(x.shape) or real_pool(x))
    with torch.no_grad():
        outs = list(dff.run(iter(clip), schedule))
    assert len(pooled) == len(clip)  # each frame once, key frames included
    # the same walk with the flow net pooling each (key, frame) pair itself
    with torch.no_grad():
        plain = list(
            walk(
                dff,
                iter(clip),
                schedule,
                flow=lambda k, img, feat: dff.estimate_flow(k, img, feature_grid(feat)),
                warp_features=dff.warp_features,
                head=lambda feat, img, propagated=False: dff.head(
                    dff.with_motion(feat, img), img.shape[-2:], propagated=propagated
                ),
            )
        )
    assert len(pooled) > len(clip)
    assert [k for _, k in outs] == [k for _, k in plain] == [i % 3 == 0 for i in range(8)]
    for (a, _), (b, _) in zip(outs, plain, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
