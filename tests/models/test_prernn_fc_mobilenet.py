"""PreRNN's FC variant on MobileNetV2 (`prernn_fc_mobilenet_v2`): its last layer applied to pooled
features and made recurrent starts as that network (exactly with the saturated start), and `fresh`
re-initialises it."""

from __future__ import annotations

import torch
from einops import rearrange

from vidrec.models.backbones import Backbone
from vidrec.models.prernn import RecurrentLayer, pooled_last_layer
from vidrec.models.registry import get_model


def _cnn_like(model) -> torch.nn.Module:
    """The same weights with the recurrent layer undone: pooled features -> Linear -> BN -> ReLU6."""
    net = Backbone("mobilenet_v2", pretrained=False, num_classes=5).net
    pooled_last_layer(net)
    trained = model.net.state_dict()
    state = {k.replace("features.18.2.input.", "features.18.2."): v for k, v in trained.items()}
    state |= {k.replace("features.18.2.norm.", "features.18.3."): v for k, v in trained.items()}
    net.load_state_dict({k: v for k, v in state.items() if k in net.state_dict()})
    return net.eval()


def test_exact_start_is_the_pooled_cnn_bit_for_bit_and_trainable_is_close():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 3, 32, 32)  # (B, T, C, H, W)
    exact = get_model("prernn_fc_mobilenet_v2", num_classes=5, cell="lstm", start="exact", pretrained=True)
    exact.eval()
    assert isinstance(exact.net.features[18][2], RecurrentLayer)
    cnn = _cnn_like(exact)
    with torch.no_grad():
        ref = rearrange(cnn(rearrange(x, "b t c h w -> (b t) c h w")), "(b t) k -> b t k", b=1)
        assert ref[0, 0].std() > 0 and not torch.equal(ref[0, 0], ref[0, 1])  # the frames differ
        assert torch.equal(exact(x), ref)
        rec = exact.net.features[18][2]
        rec.gate_bias.copy_(rec.gate_bias.sign() * 4.0)  # the trainable start's biases
        first = exact(x)[:, 0]
        assert (first - ref[:, 0]).abs().max() <= 0.05 * ref.abs().max()


def test_fresh_is_the_traditional_rnn_of_the_same_shape():
    torch.manual_seed(0)
    pre = get_model("prernn_fc_mobilenet_v2", num_classes=5, cell="gru", freeze_trunk=True)
    torch.manual_seed(0)
    fresh = get_model("prernn_fc_mobilenet_v2", num_classes=5, cell="gru", fresh="pytorch", freeze_trunk=True)
    a, b = pre.net.features[18][2], fresh.net.features[18][2]
    assert a.input.weight.shape == b.input.weight.shape == (1280, 320)
    assert a.recurrent.weight.abs().sum() == 0 and b.recurrent.weight.abs().sum() > 0  # U = 0 vs fresh
    assert not torch.equal(a.input.weight, b.input.weight) and b.gate_input is not None
    assert not any(p.requires_grad for p in fresh.net.features[:18].parameters())
