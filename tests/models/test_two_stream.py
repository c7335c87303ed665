"""Two-stream / TSN: segment consensus, stream outputs, fusion weights, joint training."""

from __future__ import annotations

import pytest
import torch

from vidrec.models import classification_loss, get_model, video_probs


def test_tsn_is_the_mean_over_segments():
    torch.manual_seed(0)
    model = get_model("tsn_resnet50", num_classes=5).eval()
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        per_segment = torch.stack([model.backbone(x[:, s]) for s in range(3)], 1)
    torch.testing.assert_close(out, per_segment.mean(1), rtol=1e-5, atol=1e-6)


def test_tsn_flow_modality_has_2l_channels():
    model = get_model("tsn_resnet50", num_classes=5, modality="flow", flow_length=3)
    assert model.modalities == ("flow",) and model.backbone.net.conv1.in_channels == 6


def test_two_stream_outputs_fusion_and_joint_gradients():
    torch.manual_seed(0)
    model = get_model(
        "two_stream_mobilenet_v2", num_classes=5, flow_length=2, fusion_weights={"rgb": 1, "flow": 2}
    )
    x = {"rgb": torch.randn(2, 3, 3, 32, 32), "flow": torch.randn(2, 3, 4, 32, 32)}
    out = model(x)
    assert set(out) == {"rgb", "flow"} and all(v.shape == (2, 5) for v in out.values())
    classification_loss(out, torch.tensor([1, 2])).backward()
    assert model.rgb.backbone.net.features[0][0].weight.grad.abs().sum() > 0
    assert model.flow.backbone.net.features[0][0].weight.grad.abs().sum() > 0
    fused = video_probs({k: v.detach() for k, v in out.items()}, model.fusion_weights)
    expected = (out["rgb"].softmax(-1) + 2 * out["flow"].softmax(-1)).detach() / 3
    torch.testing.assert_close(fused, expected)


def test_two_stream_errors():
    model = get_model("two_stream_mobilenet_v2", num_classes=5)
    assert model.fusion_weights == pytest.approx({"rgb": 1 / 3, "flow": 2 / 3})
    with pytest.raises(KeyError, match="flow"):
        model({"rgb": torch.randn(1, 1, 3, 32, 32)})
    with pytest.raises(ValueError, match="fusion_weights"):
        get_model("two_stream_mobilenet_v2", num_classes=5, fusion_weights={"rgb": 1.0})


@pytest.mark.parametrize("name", ["two_stream_mobilenet_v2", "two_stream_resnet50"])
def test_dropout_on_the_motion_stream_only(name):
    """methods.md 3.1: dropout 0.8 in the motion stream, none in the appearance stream."""
    torch.manual_seed(0)
    model = get_model(name, num_classes=5, flow_length=1).train()
    x = {"rgb": torch.randn(2, 2, 3, 32, 32), "flow": torch.randn(2, 2, 2, 32, 32)}
    a, b = model(x), model(x)
    assert torch.equal(a["rgb"], b["rgb"])  # no dropout anywhere in the RGB stream
    assert not torch.equal(a["flow"], b["flow"])
    assert model.flow.dropout.p == 0.8 and model.rgb.dropout.p == 0.0


def test_tsn_dropout_default_depends_on_modality():
    assert get_model("tsn_resnet50", num_classes=5).dropout.p == 0.0
    assert get_model("tsn_resnet50", num_classes=5, modality="flow").dropout.p == 0.8
    assert get_model("tsn_resnet50", num_classes=5, dropout=0.5).dropout.p == 0.5
