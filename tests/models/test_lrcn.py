"""LRCN (methods.md §1.6): causal, per-clip reset, streaming equals batch, the release's init and lr mults."""

from __future__ import annotations

import pytest
import torch

from vidrec.models import get_model, video_probs


@pytest.fixture(scope="module")
def lrcn():
    """An LRCN whose LSTM weights are scaled up, so that the recurrence visibly matters."""
    torch.manual_seed(0)
    model = get_model("lrcn_resnet18", num_classes=5).eval()
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.uniform_(-0.3, 0.3)
    return model


def test_causal(lrcn):
    x = torch.randn(2, 4, 3, 32, 32)
    y = x.clone()
    y[:, 2:] = torch.randn_like(y[:, 2:])
    with torch.no_grad():
        a, b = lrcn(x), lrcn(y)
    assert a.shape == (2, 4, 5)
    torch.testing.assert_close(a[:, :2], b[:, :2], rtol=0, atol=1e-6)
    assert (a[:, 2:] - b[:, 2:]).abs().max() > 1e-4


def test_state_resets_per_clip(lrcn):
    x = torch.randn(3, 3, 3, 32, 32)
    with torch.no_grad():
        batched = lrcn(x)
        separate = torch.cat([lrcn(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, separate, rtol=1e-5, atol=1e-6)


def test_streaming_step_matches_forward(lrcn):
    x = torch.randn(2, 4, 3, 32, 32)
    state, steps = None, []
    with torch.no_grad():
        for t in range(4):
            logits, state = lrcn.step(x[:, t], state)
            steps.append(logits)
        full = lrcn(x)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-6)


def test_release_init_and_lr_multipliers(lrcn):
    for name, p in get_model("lrcn_resnet18", num_classes=5).rnn.named_parameters():
        if name.startswith("bias"):
            assert torch.count_nonzero(p) == 0, name  # bias_hh too (Caffe has one bias)
        else:
            assert p.abs().max() <= 0.01
    groups = lrcn.param_groups(1e-3)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-2, 2e-2])
    assert groups[1]["params"][0] is lrcn.head.weight and groups[2]["params"][0] is lrcn.head.bias
    assert sum(len(g["params"]) for g in groups) == len(list(lrcn.parameters()))


def test_prediction_is_mean_of_step_softmaxes(lrcn):
    with torch.no_grad():
        out = lrcn(torch.randn(2, 3, 3, 32, 32))
    torch.testing.assert_close(video_probs(out), out.softmax(-1).mean(1))


def test_flow3_modality_and_bad_modality():
    model = get_model("lrcn_resnet18", num_classes=5, modality="flow3")
    assert model.modalities == ("flow3",)
    with pytest.raises(ValueError, match="flow3"):
        get_model("lrcn_resnet18", num_classes=5, modality="flow")


def test_single_frame_shares_the_cnn_per_frame():
    torch.manual_seed(0)
    model = get_model("single_frame_mobilenet_v2", num_classes=5).eval()
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        ref = model.backbone(x[1])
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(out[1], ref, rtol=1e-5, atol=1e-6)


def test_frozen_baseline_trains_only_the_rnn_and_head():
    model = get_model("rnn_baseline_mobilenet_v2", num_classes=5, cell="gru").train()
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert not model.encoder.training
    model(torch.randn(2, 3, 3, 32, 32)).sum().backward()
    assert model.rnn.weight_hh_l0.grad.abs().sum() > 0
