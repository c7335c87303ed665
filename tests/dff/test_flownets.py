"""Flow sources: self-supervised pretraining of FlowNetLite learns a synthetic shift (loss falls, flow ~
d / 16 as methods.md 4.7.5 asks of FlowNet), weights round-trip through safetensors, DIS and RAFT keep the
flow-net contract (current -> key, feature pixels after DFF's resize), RAFT without weights says where."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from vidrec.data.transforms import normalize_rgb
from vidrec.dff.cost import count_flops
from vidrec.dff.flownets import DISFlow, FlowNetLite, RaftFlowNet, load_flownet, make_flow_net, save_flownet
from vidrec.dff.pretrain import find_clips, pretrain_flownet, train_flownet
from vidrec.dff.warp import resize_flow
from vidrec.flow.raft_weights import RaftWeightsMissing

SHIFT = 8  # px: the current frame shows the key frame moved left by 8 px, cur(p) = key(p + 8)


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def _shifted_pair(h: int = 64, w: int = 96) -> np.ndarray:
    """uint8 `(2, h, w, 3)`: [key, current], current(y, x) = key(y, x + SHIFT)."""
    big = _texture(h + 32, w + 32 + SHIFT)
    return np.stack([big[16 : 16 + h, 16 : 16 + w], big[16 : 16 + h, 16 + SHIFT : 16 + SHIFT + w]])


def _tensors(pair: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = normalize_rgb(torch.from_numpy(pair).permute(0, 3, 1, 2))  # (2, 3, H, W)
    return x[:1], x[1:]


def test_pretraining_loss_falls_and_the_flow_learns_a_synthetic_shift():
    torch.manual_seed(0)
    pair = _shifted_pair()
    net = FlowNetLite(stride=16, width=8)
    losses = train_flownet(
        net, [pair], steps=60, batch=1, lr=1e-3, max_gap=1, augment=False, show_progress=False
    )
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    with torch.no_grad():
        flow, feats = net(*_tensors(pair))
    assert flow.shape == (1, 2, 4, 6) and feats.shape == (1, net.scale_channels, 4, 6)
    mean = flow.mean(dim=(0, 2, 3))
    assert abs(mean[0] - SHIFT / 16) < 0.1 and abs(mean[1]) < 0.1, mean  # feature px at stride 16


def test_flownet_at_stride_8_from_a_quarter_resolution_pair_learns_a_synthetic_shift(tmp_path):
    """Issue 24: the detector's stride-8 pyramid takes flow from the pair at 1/4 of the image (one more
    decoder level), not at 1/2: the flow lands on the stride-8 grid in its cells, at under half the cost,
    and its weights round-trip with the extra level."""
    torch.manual_seed(0)
    pair = _shifted_pair()
    net = FlowNetLite(stride=8, width=8, downscale=4)
    losses = train_flownet(
        net, [pair], steps=60, batch=1, lr=1e-3, max_gap=1, augment=False, show_progress=False
    )
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    with torch.no_grad():
        flow, feats = net(*_tensors(pair))
    assert flow.shape == (1, 2, 8, 12) and feats.shape == (1, net.scale_channels, 8, 12)  # 64 x 96 / 8
    mean = flow[..., 1:-1, 1:-1].mean(dim=(0, 2, 3))
    assert abs(mean[0] - SHIFT / 8) < 0.15 and abs(mean[1]) < 0.15, mean  # 8 px = 1 cell at stride 8
    half = FlowNetLite(stride=8, width=8)  # the stride-8 default: the pair at 1/2
    key, cur = _tensors(pair)
    assert count_flops(lambda: half(key, cur)) > 2 * count_flops(lambda: net(key, cur))
    back = load_flownet(save_flownet(net, tmp_path / "q.safetensors"))
    assert back.downscale == 4 and torch.equal(back(key, cur)[0], net(key, cur)[0])


def test_flownet_weights_round_trip_through_safetensors(tmp_path):
    net = FlowNetLite(stride=8, width=4)
    torch.nn.init.normal_(net.predict.weight)
    path = save_flownet(net, tmp_path / "flow.safetensors", extra={"steps": 3})
    back = load_flownet(path)
    assert back.stride == 8 and back.width == 4
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values(), strict=True)
    )
    assert not list(tmp_path.glob(".*tmp*"))  # written through a temp file, none left
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a FlowNetLite weight file"):
        load_flownet(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        make_flow_net("learned", weights=tmp_path / "absent.safetensors")


def test_flownet_sees_the_pair_at_a_quarter_of_the_stride_and_predicts_on_the_feature_grid(tmp_path):
    """Issue 23: by default the pair is pooled to stride / 4 (1/4 of the image at stride 16, not the paper's
    half), so the decoder ends on the feature grid; a weight file from before (no "downscale" in its
    config) keeps the half resolution it was trained at."""
    key, cur = torch.randn(2, 1, 3, 64, 96)
    for stride, pooled in ((8, 2), (16, 4), (32, 8)):
        net = FlowNetLite(stride=stride, width=4)
        flow, feats = net(key, cur)
        assert net.downscale == pooled and flow.shape == (1, 2, 64 // stride, 96 // stride)
        assert feats.shape == (1, net.scale_channels, 64 // stride, 96 // stride)
    half = FlowNetLite(stride=16, width=4, downscale=2)  # the paper's half resolution, pooled once more
    assert half(key, cur)[0].shape == (1, 2, 4, 6)
    quarter = FlowNetLite(stride=16, width=4)
    assert count_flops(lambda: half(key, cur)) > 3.5 * count_flops(lambda: quarter(key, cur))
    with pytest.raises(ValueError, match="downscale must be 1, 2, 4 or 8"):
        FlowNetLite(stride=8, downscale=8)  # the flow would be coarser than the stride
    from safetensors.torch import save_file

    old = {"kind": "vidrec.dff.FlowNetLite", "config": json.dumps({"stride": 16, "width": 4})}
    save_file(half.state_dict(), str(tmp_path / "old.safetensors"), metadata=old)
    assert load_flownet(tmp_path / "old.safetensors").downscale == 2
    assert load_flownet(save_flownet(net, tmp_path / "new.safetensors")).downscale == 8


def test_dis_flow_points_from_the_current_frame_to_the_key_frame():
    pair = _shifted_pair(128, 160)
    flow, feats = DISFlow(downscale=2)(*_tensors(pair))
    assert feats is None and flow.shape == (1, 2, 64, 80)  # px of the half-size image
    inner = resize_flow(flow, (8, 10))[..., 2:-2, 2:-2]  # feature px at stride 16, away from the borders
    assert torch.allclose(inner[:, 0], torch.tensor(SHIFT / 16), atol=0.1)
    assert inner[:, 1].abs().max() < 0.1


def test_raft_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RaftWeightsMissing, match="never downloads"):
        RaftFlowNet()
    with pytest.raises(RaftWeightsMissing, match="absent.pth"):
        make_flow_net("raft", weights=tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="flow source must be one of"):
        make_flow_net("farneback")


def test_pretrain_from_a_folder_of_jpeg_sequences_writes_safetensors(tmp_path):
    for seq in ("a", "b"):
        folder = tmp_path / "JPEGImages" / seq
        folder.mkdir(parents=True)
        big = _texture(80, 120, seed=ord(seq))
        for t in range(4):
            cv2.imwrite(str(folder / f"{t:05d}.jpg"), big[8:72, 4 * t : 4 * t + 96])
    assert [p.name for p in find_clips(tmp_path)] == ["a", "b"]
    links = tmp_path / "train"  # a folder of symlinks to chosen sequences, as for a split
    links.mkdir()
    (links / "b").symlink_to(tmp_path / "JPEGImages" / "b", target_is_directory=True)
    assert [p.name for p in find_clips(links)] == ["b"]
    out = tmp_path / "flownet.safetensors"
    net, losses = pretrain_flownet(tmp_path, out, size=(64, 96), steps=3, batch=2, show_progress=False)
    assert out.is_file() and len(losses) == 3 and all(np.isfinite(losses))
    assert load_flownet(out).stride == 16
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no videos or frame folders"):
        pretrain_flownet(tmp_path / "empty", out)
