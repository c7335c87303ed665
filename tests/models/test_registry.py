"""Every registered model: output shape, backward, finite values, eval determinism; registry errors."""

from __future__ import annotations

import pytest
import torch

from vidrec.models import classification_loss, get_model, list_models, video_probs
from vidrec.models.registry import get_builder

K = 5
PUBLISHED = [
    "single_frame_mobilenet_v2",
    "single_frame_resnet50",
    "lrcn_mobilenet_v2",
    "lrcn_alexnet",
    "lrcn_resnet18",
    "prernn_gru_fc_vgg16",
    "prernn_lstm_fc_vgg16",
    "prernn_rnn_conv_mobilenet_v2",
    "prernn_lstm_conv_mobilenet_v2",
    "prernn_gru_conv_resnet18",
    "rnn_baseline_mobilenet_v2",
    "rnn_baseline_fc_vgg16",
    "rnn_baseline_conv_mobilenet_v2",
    "rnn_baseline_conv_resnet18",
    "single_frame_alexnet",
    "tsn_resnet50",
    "two_stream_resnet50",
    "two_stream_mobilenet_v2",
    "st_resnet50",
]


def tiny_input(name: str, model, *, b: int = 2, t: int = 3):
    """A small batch matching the builder's paper input channels (64 px for AlexNet, 32 px otherwise)."""
    size = 64 if "alexnet" in name else 32
    shapes = get_builder(name).input_shapes
    x = {m: torch.randn(b, t, shapes[m][1], size, size) for m in model.modalities}
    return x if len(model.modalities) > 1 else x[model.modalities[0]]


def test_published_variants_are_registered():
    assert set(list_models()) >= set(PUBLISHED)


def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError, match="lrcn_mobilenet_v2"):
        get_model("lrcn_mobilenet_v3", num_classes=K)


@pytest.mark.parametrize("name", [n for n in list_models() if get_builder(n).task == "classify"])
def test_model_contract(name):
    torch.manual_seed(0)
    model = get_model(name, num_classes=K)
    assert model.num_classes == K and model.modalities
    x = tiny_input(name, model)
    model.train()
    out = model(x)
    outs = out.values() if isinstance(out, dict) else [out]
    for o in outs:
        assert o.shape[0] == 2 and o.shape[-1] == K and o.dim() in (2, 3)
        assert torch.isfinite(o).all()
    loss = classification_loss(out, torch.tensor([0, 3]))
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"parameters outside the graph (would break DDP): {unused[:5]}"
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    probs = video_probs(a, getattr(model, "fusion_weights", None))
    assert probs.shape == (2, K) and torch.allclose(probs.sum(-1), torch.ones(2))
    assert torch.equal(video_probs(b, getattr(model, "fusion_weights", None)), probs)
