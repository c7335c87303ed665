"""Starting a model from another's trained weights (issue 10, points 1, 2, 5): LRCN stage (a) -> (b),
a trained stream loaded as a backbone, ST-ResNet from two trained TSN streams."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vidrec.models import get_model
from vidrec.models.backbones import Backbone
from vidrec.models.init import init_from


def test_lrcn_starts_from_the_single_frame_model_bit_for_bit():
    """methods.md 1.6.3: at LRCN's initialisation conv1..fc6 equal the single-frame model's."""
    torch.manual_seed(0)
    stage_a = get_model("single_frame_alexnet", num_classes=7)
    lrcn = get_model("lrcn_alexnet", num_classes=7, hidden_size=8)
    fresh_head = lrcn.head.weight.detach().clone()
    report = init_from(lrcn, {f"model.{k}": v for k, v in stage_a.state_dict().items()}, source="a")
    a_net, b_net = stage_a.backbone.net, lrcn.encoder.backbone.net
    for name in ("features.0", "features.3", "features.6", "features.8", "features.10", "classifier.1"):
        for p in ("weight", "bias"):
            key = f"{name}.{p}"
            assert torch.equal(b_net.state_dict()[key], a_net.state_dict()[key]), key
    assert torch.equal(lrcn.head.weight, fresh_head)  # the head starts fresh
    assert report.skipped["head.weight"].startswith("classifier head")
    assert report.skipped["rnn.weight_ih_l0"] == "not in the source"
    assert "model.backbone.net.classifier.4.weight" in report.unused  # fc7 is not part of LRCN-fc6
    assert "kept init: rnn.weight_hh_l0 (not in the source)" in report.summary()


def test_lrcn_cnn_with_fc7_fc8_in_place_of_the_lstm_is_the_single_frame_model():
    """methods.md 1.6.3: removing the LSTM (fc6 -> fc7 -> fc8 head) gives the single-frame baseline: LRCN's
    per-frame CNN, started from stage (a), followed by stage (a)'s fc7 and fc8 gives its logits exactly."""
    torch.manual_seed(0)
    stage_a = get_model("single_frame_alexnet", num_classes=7).eval()
    lrcn = get_model("lrcn_alexnet", num_classes=7, hidden_size=8).eval()
    init_from(lrcn, {f"model.{k}": v for k, v in stage_a.state_dict().items()}, source="a")
    clip = torch.randn(2, 3, 3, 67, 67)  # (B, T, C, H, W)
    with torch.no_grad():
        fc6 = lrcn.encoder(clip.flatten(0, 1))  # (B*T, 4096): LRCN's LSTM input
        without_lstm = stage_a.backbone.net.classifier[3:](fc6).unflatten(0, (2, 3))  # drop6, fc7, fc8
        single = stage_a(clip)  # (B, T, K)
    assert fc6.shape == (6, 4096) and single.shape == (2, 3, 7)
    assert torch.equal(without_lstm, single)


def test_heads_and_mismatched_shapes_are_reported_not_loaded():
    torch.manual_seed(0)
    src = get_model("single_frame_mobilenet_v2", num_classes=5)
    dst = get_model("single_frame_mobilenet_v2", num_classes=5, modality="rgb")
    dst.backbone.net.features[0][0] = torch.nn.Conv2d(4, 32, 3, 2, 1, bias=False)  # another input width
    report = init_from(dst, src.state_dict())
    assert "shape (32, 3, 3, 3) in the source" in report.skipped["backbone.net.features.0.0.weight"]
    assert report.skipped["backbone.net.classifier.1.weight"].startswith("classifier head")
    kept = init_from(dst, src.state_dict(), keep_heads=True)
    assert "backbone.net.classifier.1.weight" in kept.loaded
    assert torch.equal(dst.backbone.net.classifier[1].weight, src.backbone.net.classifier[1].weight)


def test_ambiguous_tails_are_not_guessed():
    """A two-stream source has each torchvision name twice: it must not feed a one-stream model."""
    two = get_model("two_stream_mobilenet_v2", num_classes=5, flow_length=1)
    one = get_model("single_frame_mobilenet_v2", num_classes=5)
    report = init_from(one, two.state_dict())
    assert not report.loaded
    assert report.skipped["backbone.net.features.1.conv.0.0.weight"] == "several source tensors match"


def test_caffenet_dropout_order_in_lrcn_alexnet():
    """methods.md 1.1: fc6 -> ReLU -> Dropout(0.9) -> LSTM; no dropout before fc6."""
    torch.manual_seed(0)
    model = get_model("lrcn_alexnet", num_classes=3, hidden_size=8).train()
    net = model.encoder.backbone.net
    seen = {}
    net.avgpool.register_forward_hook(lambda m, i, o: seen.__setitem__("pool5", o.flatten(1)))
    net.classifier[1].register_forward_hook(lambda m, i, o: seen.__setitem__("fc6_in", i[0]))
    feats = model.encoder(torch.randn(4, 3, 67, 67))
    assert torch.equal(seen["fc6_in"], seen["pool5"])  # was Dropout(0.5) here
    assert model.encoder.dropout.p == 0.9
    zeros = float((feats == 0).float().mean())
    assert zeros > 0.85  # ReLU zeros plus 90% dropout
    single = get_model("single_frame_alexnet", num_classes=3).backbone.net.classifier
    assert isinstance(single[0], torch.nn.Identity) and single[3].p == 0.9
    assert isinstance(single[5][1], torch.nn.Dropout)  # drop7 before fc8, as CaffeNet


def test_backbone_loads_a_trained_flow_stream_with_its_head(tmp_path):
    """A file with 2L-channel conv1 and a K-class head loads strictly (it used to fail on both)."""
    torch.manual_seed(0)
    trained = Backbone("resnet18", in_chans=4, num_classes=7)
    path = tmp_path / "flow_stream.safetensors"
    save_file({k: v.contiguous() for k, v in trained.net.state_dict().items()}, str(path))
    loaded = Backbone("resnet18", pretrained=str(path), in_chans=4, num_classes=7)
    for k, v in trained.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v), k


def test_st_resnet_starts_from_two_trained_tsn_streams(tmp_path):
    torch.manual_seed(0)
    rgb = get_model("tsn_resnet50", num_classes=6)
    flow = get_model("tsn_resnet50", num_classes=6, modality="flow", flow_length=2)
    paths = {}
    for name, model in (("appearance", rgb), ("motion", flow)):
        paths[name] = str(tmp_path / f"{name}.safetensors")
        save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, paths[name])
    st = get_model("st_resnet50", num_classes=6, flow_length=2, pretrained=paths)
    assert torch.equal(st.motion.net.conv1.weight, flow.backbone.net.conv1.weight)  # (64, 4, 7, 7)
    assert torch.equal(st.motion.net.fc.weight, flow.backbone.net.fc.weight)  # trained heads kept
    assert torch.equal(st.appearance.net.layer3[0].conv2.weight, rgb.backbone.net.layer3[0].conv2.weight)
    w2d = flow.backbone.net.layer2[1].conv1.weight  # grown into [W/3, W/3, W/3]
    assert torch.equal(st.motion.net.layer2[1].conv1.conv.weight[:, :, 1], w2d / 3)
    with pytest.raises(ValueError, match="input channels"):  # an RGB stream as the motion stream
        get_model("st_resnet50", num_classes=6, flow_length=2, pretrained={"motion": paths["appearance"]})
