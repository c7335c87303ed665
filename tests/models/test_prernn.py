"""PreRNN (methods.md §2.4): equals the pre-trained CNN at init, keeps W_x and b, keeps the layer's shape."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torchvision.models as tvm
from einops import rearrange

from vidrec.models import PreRNN, RecurrentLayer, convert_to_recurrent
from vidrec.models.layers import num_steps


def mlp() -> nn.Module:
    """A small FC net with BN and ReLU after the converted layer (`1`)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))


NETS = {
    "mobilenet_conv": (lambda: tvm.mobilenet_v2(num_classes=5), "features.18.0", 32),  # conv + BN + ReLU6
    "mobilenet_fc": (lambda: tvm.mobilenet_v2(num_classes=5), "classifier.1", 32),  # fc, no activation
    "mlp_fc_bn": (mlp, "1", 2),  # fc + BN1d + ReLU
    "resnet18_conv": (lambda: tvm.resnet18(num_classes=5), "layer4.1.conv1", 32),  # bn1 + shared relu
}
CASES = [(net, cell, iw) for net in NETS for cell in ("rnn", "gru", "lstm") for iw in ("shared", "per_gate")]
CASES += [("vgg16_fc6", "gru", "shared"), ("vgg16_fc7", "lstm", "shared")]


def build(net_name: str):
    if net_name.startswith("vgg16"):
        return (
            tvm.vgg16(num_classes=5),
            {"vgg16_fc6": "classifier.0", "vgg16_fc7": "classifier.3"}[net_name],
            32,
        )
    factory, layer, size = NETS[net_name]
    return factory(), layer, size


def randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics so that a BN dropped or applied twice would show."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


@pytest.mark.parametrize(("net_name", "cell", "input_weights"), CASES)
def test_prernn_equals_cnn_at_init(net_name, cell, input_weights):
    torch.manual_seed(0)
    cnn, layer_name, size = build(net_name)
    randomise_bn(cnn)
    cnn.eval()
    original = cnn.get_submodule(layer_name)
    w, b = original.weight.detach().clone(), None if original.bias is None else original.bias.detach().clone()
    rec_net = copy.deepcopy(cnn)
    rec = convert_to_recurrent(rec_net, layer_name, cell=cell, input_weights=input_weights, start="exact")
    model = PreRNN(net=rec_net, num_classes=5).eval()
    x = torch.randn(2, 4, 3, size, size)  # (B, T, C, H, W)
    frames = rearrange(x, "b t c h w -> (b t) c h w")
    seen = {}
    cnn.get_submodule(layer_name).register_forward_hook(lambda m, i, o: seen.__setitem__("cnn", o.shape))
    rec.register_forward_hook(lambda m, i, o: seen.__setitem__("rec", o.shape))
    with torch.no_grad():
        expected = rearrange(cnn(frames), "(b t) k -> b t k", b=2)
        got = model(x)
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert seen["rec"] == seen["cnn"]  # hidden state has the replaced layer's output shape
    assert torch.equal(rec.input.weight, w) and rec.input.weight.dtype == w.dtype
    assert b is None or torch.equal(rec.input.bias, b)


def test_nonzero_recurrence_changes_later_steps_only():
    torch.manual_seed(0)
    cnn = tvm.mobilenet_v2(num_classes=5)
    randomise_bn(cnn)
    cnn.eval()
    net = copy.deepcopy(cnn)
    convert_to_recurrent(net, "features.18.0", cell="rnn", hidden_init="small")
    x = torch.randn(1, 3, 3, 32, 32)
    with torch.no_grad():
        got = PreRNN(net=net, num_classes=5).eval()(x)
        ref = cnn(x[0])
    assert torch.equal(got[0, 0], ref[0])  # h_0 = 0: the first step is the CNN
    assert (got[0, 1:] - ref[1:]).abs().max() > 1e-3 * ref.abs().max()  # the recurrence matters afterwards


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_prernn_is_causal_and_resets_per_clip(cell):
    torch.manual_seed(0)
    net = mlp()
    convert_to_recurrent(net, "1", cell=cell, hidden_init="small")
    model = PreRNN(net=net, num_classes=5).eval()
    x = torch.randn(2, 5, 3, 2, 2)
    y = x.clone()
    y[:, 3:] = torch.randn_like(y[:, 3:])
    with torch.no_grad():
        out, out_changed = model(x), model(y)
        separate = torch.cat([model(x[:1]), model(x[1:])])
    torch.testing.assert_close(out[:, :3], out_changed[:, :3], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, 3:], out_changed[:, 3:])
    torch.testing.assert_close(out, separate, rtol=1e-5, atol=1e-6)


def test_gru_gradients_reach_recurrent_weights():
    torch.manual_seed(0)
    net = mlp()
    rec = convert_to_recurrent(net, "1", cell="gru")
    PreRNN(net=net, num_classes=5).train()(torch.randn(3, 4, 3, 2, 2)).sum().backward()
    assert rec.recurrent.weight.grad.abs().sum() > 0


def test_only_new_parameters_are_recurrent():
    net = tvm.mobilenet_v2(num_classes=5)
    before = {id(p) for p in net.parameters()}
    rec = convert_to_recurrent(net, "features.18.0", cell="lstm", input_weights="per_gate")
    new = {n for n, p in rec.named_parameters() if id(p) not in before}
    assert new == {"recurrent.weight", "recurrent_gates.weight", "gate_input.weight", "gate_bias"}


def test_errors_are_helpful():
    net = tvm.mobilenet_v2(num_classes=5)
    with pytest.raises(TypeError, match="features.18.1"):
        convert_to_recurrent(net, "features.18.1")  # a BatchNorm
    rec = convert_to_recurrent(net, "features.18.0")
    with pytest.raises(RuntimeError, match="num_steps"):
        net(torch.randn(2, 3, 32, 32))
    with num_steps(net, 2):
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert isinstance(rec, RecurrentLayer)


# ----------------------------------------------------------------------------- gates that learn (2.4, 1)


def conv_bn_net() -> nn.Module:
    """A small conv net whose converted conv (`0`) is followed by BN and ReLU."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4),
    )  # fmt: skip


GATED = [
    (net, cell, iw) for net in ("mlp", "conv") for cell in ("gru", "lstm") for iw in ("shared", "per_gate")
]


def _small(net_name: str) -> tuple[nn.Module, str]:
    return (mlp(), "1") if net_name == "mlp" else (conv_bn_net(), "0")


@pytest.mark.parametrize(("net_name", "cell", "input_weights"), GATED)
def test_default_start_every_gate_parameter_gets_a_gradient_on_the_first_step(net_name, cell, input_weights):
    torch.manual_seed(0)
    net, layer = _small(net_name)
    rec = convert_to_recurrent(net, layer, cell=cell, input_weights=input_weights)
    x = torch.randn(3, 4, 3, 2, 2) if net_name == "mlp" else torch.randn(3, 4, 3, 6, 6)
    logits = PreRNN(net=net, num_classes=5).train()(x)
    nn.functional.cross_entropy(logits.flatten(0, 1), torch.arange(12) % logits.shape[-1]).backward()
    gate_params = {n: p for n, p in rec.named_parameters() if n.startswith(("gate", "recurrent_gates"))}
    assert {"gate_bias", "recurrent_gates.weight"} <= set(gate_params)
    for name, p in gate_params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_default_start_first_output_is_close_to_the_cnn(cell):
    """ReLU layer: the first step is the CNN's activation scaled by gates >= σ(4) (LSTM: i·o >= σ(4)²)."""
    torch.manual_seed(0)
    cnn = conv_bn_net()
    randomise_bn(cnn)
    cnn.eval()
    net = copy.deepcopy(cnn)
    convert_to_recurrent(net, "0", cell=cell)
    x = torch.randn(2, 3, 3, 8, 8)
    with torch.no_grad():
        ref = cnn[:3](x[:, 0])  # (B, 6, 8, 8): the CNN's activation at step 1
        with num_steps(net, 1):
            got = net[:3](x[:, 0])
    floor = torch.sigmoid(torch.tensor(4.0)) ** (2 if cell == "lstm" else 1)
    assert torch.all(got <= ref + 1e-6) and torch.all(got >= floor * ref - 1e-6)
    assert not torch.equal(got, ref)  # a trainable start is not the exact one


def _train_toy(cell: str, start: str = "trainable", steps: int = 8) -> tuple[nn.Module, torch.Tensor]:
    """A few SGD steps on a toy task where order matters; returns (model, outputs on a fixed probe)."""
    torch.manual_seed(0)
    net = mlp()
    torch.manual_seed(1)
    convert_to_recurrent(net, "1", cell=cell, start=start)
    model = PreRNN(net=net, num_classes=5).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(2)
    for _ in range(steps):
        x = torch.randn(8, 4, 3, 2, 2, generator=g)
        target = (x[:, 0].flatten(1).sum(1) > 0).long()  # the label is in the FIRST frame only
        loss = nn.functional.cross_entropy(model(x)[:, -1], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model, model.eval()(torch.randn(4, 4, 3, 2, 2, generator=torch.Generator().manual_seed(3)))


def test_trained_gru_and_lstm_differ_from_the_vanilla_cell():
    _, vanilla = _train_toy("rnn")
    for cell in ("gru", "lstm"):
        model, out = _train_toy(cell)
        assert (out - vanilla).abs().max() > 1e-3, cell
        rec = next(m for m in model.modules() if isinstance(m, RecurrentLayer))
        assert rec.gate_bias.grad.abs().sum() > 0  # the gates trained
    _, exact_lstm = _train_toy("lstm", start="exact")
    assert torch.equal(exact_lstm, vanilla)  # why "exact" is not the default: LSTM == vanilla, bit for bit


def test_exact_start_saturates_the_gru_update_gate():
    net = mlp()
    rec = convert_to_recurrent(net, "1", cell="gru", start="exact")
    with torch.no_grad():
        z, _ = rec._gates(torch.randn(3, 16), torch.zeros(3, 8))
    assert torch.equal(z, torch.ones_like(z))
    with pytest.raises(ValueError, match="start"):
        convert_to_recurrent(mlp(), "1", cell="gru", start="saturated")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_per_gate_copies_apply_the_same_batchnorm_as_u(cell):
    """methods.md 2.2: MIH copies of W_x get the BN of the u_t path (train and eval mode)."""
    torch.manual_seed(0)
    base = conv_bn_net()
    randomise_bn(base)
    nets = {iw: copy.deepcopy(base) for iw in ("shared", "per_gate")}
    for iw, net in nets.items():
        torch.manual_seed(1)
        convert_to_recurrent(net, "0", cell=cell, input_weights=iw, hidden_init="small")
    x = torch.randn(2, 3, 3, 6, 6)
    for mode in (True, False):
        outs = {iw: PreRNN(net=net, num_classes=4).train(mode)(x) for iw, net in nets.items()}
        torch.testing.assert_close(outs["per_gate"], outs["shared"], rtol=1e-5, atol=1e-6)
    bn = {iw: net[0].norm for iw, net in nets.items()}
    assert torch.equal(bn["per_gate"].running_mean, bn["shared"].running_mean)  # one BN update per pass
    assert bn["per_gate"].num_batches_tracked == bn["shared"].num_batches_tracked == 1


# ----------------------------------------------------------------------------- traditional-RNN baseline


def test_rnn_baseline_is_like_for_like_with_prernn():
    """Point 10: same backbone, layer, width and equations; only the recurrent layer starts fresh."""
    from vidrec.models.prernn import build_prernn, build_rnn_baseline

    torch.manual_seed(0)
    pre = build_prernn("resnet18", "layer4.1.conv1", "gru", num_classes=5, pretrained=False)
    torch.manual_seed(0)
    base = build_rnn_baseline("resnet18", "layer4.1.conv1", "gru", num_classes=5, pretrained=False)
    rec_p, rec_b = pre.net.layer4[1].conv1, base.net.layer4[1].conv1
    assert isinstance(rec_b, RecurrentLayer) and rec_b.cell == "gru"
    assert rec_b.input.weight.shape == rec_p.input.weight.shape  # the same width at the same place
    assert not torch.equal(rec_b.input.weight, rec_p.input.weight)  # fresh input weights
    assert rec_b.recurrent.weight.abs().sum() > 0 and torch.equal(
        rec_b.gate_bias, torch.zeros_like(rec_b.gate_bias)
    )
    assert torch.equal(rec_b.norm.running_var, torch.ones_like(rec_b.norm.running_var))  # no stale BN stats
    assert torch.equal(pre.net.layer3[0].conv1.weight, base.net.layer3[0].conv1.weight)  # same trunk
    assert torch.equal(pre.net.fc.weight, base.net.fc.weight)  # same layers after it
    x = torch.randn(2, 3, 3, 32, 32)
    assert base(x).shape == pre(x).shape == (2, 3, 5)


def test_rnn_baseline_any_backbone_frozen_trunk():
    from vidrec.models.prernn import build_rnn_baseline

    torch.manual_seed(0)
    model = build_rnn_baseline(
        "alexnet", "classifier.4", "lstm", num_classes=4, pretrained=False, freeze_trunk=True, init="lrcn"
    ).train()
    assert model.net.features[0].training is False  # frozen trunk stays in eval mode
    rec = model.net.classifier[4]
    assert rec.input.weight.abs().max() <= 0.01  # LRCN's U(-0.01, 0.01)
    model(torch.randn(2, 2, 3, 64, 64)).sum().backward()
    assert model.net.features[0].weight.grad is None and model.net.classifier[1].weight.grad is None
    assert rec.input.weight.grad.abs().sum() > 0 and model.net.classifier[6].weight.grad.abs().sum() > 0
    assert get_model_names_have_baselines()


def get_model_names_have_baselines() -> bool:
    from vidrec.models import list_models

    return {"rnn_baseline_fc_vgg16", "rnn_baseline_conv_mobilenet_v2", "rnn_baseline_conv_resnet18"} <= set(
        list_models()
    )
