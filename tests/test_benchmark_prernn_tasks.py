"""Pure parts of benchmarks/prernn_tasks.py: the scores (the clockwise / counter-clockwise pair) and the
cached-feature path, which must compute what the model computes on pixels."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load():
    spec = importlib.util.spec_from_file_location("bench_prernn_tasks", BENCH / "prernn_tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scores_count_the_cw_ccw_pair_apart_from_the_other_classes():
    bench = _load()
    names = ["Stop", "Clockwise", "Counter Clockwise", "Move"]
    y = torch.tensor([1, 1, 2, 2, 0, 3])
    probs = torch.tensor([
        [0.1, 0.6, 0.2, 0.1],  # cw right
        [0.5, 0.1, 0.3, 0.1],  # cw -> Stop, but cw < ccw in the pair: pair wrong, not swapped
        [0.1, 0.7, 0.1, 0.1],  # ccw -> cw: swapped
        [0.1, 0.1, 0.2, 0.6],  # ccw -> Move, ccw > cw: pair right
        [0.7, 0.1, 0.1, 0.1],
        [0.1, 0.1, 0.1, 0.7],
    ])  # fmt: skip
    s = bench.scores(probs, y, names)
    assert s["acc"] == pytest.approx(3 / 6) and s["acc_Clockwise"] == 0.5 and s["acc_Counter Clockwise"] == 0
    assert s["cw_ccw_confusion"] == pytest.approx(1 / 4) and s["cw_ccw_pair_acc"] == pytest.approx(2 / 4)
    m, sd = bench.mean_std([0.5, 0.7, 0.9])
    assert m == pytest.approx(0.7) and sd == pytest.approx(0.2)


@pytest.mark.parametrize("name", ["prernn_fc_gru", "single_frame", "lrcn"])
def test_cached_features_give_the_models_own_output(name, monkeypatch):
    bench = _load()
    from vidrec.models import registry

    real = registry.get_model
    monkeypatch.setattr(bench, "get_model", lambda n, **kw: real(n, **(kw | {"pretrained": False})))
    torch.manual_seed(0)
    model, kind = bench.gesture_models()[name](4)
    model.eval()
    # the model's own trunk (up to features.17) makes the cache, as the benchmark's pretrained one does
    net = model.encoder.backbone.net if kind == "pooled" else bench._mobilenet_net(model)
    x = torch.randn(2, 3, 3, 32, 32)  # (B, T, C, H, W)
    with torch.no_grad():
        feats = net.features[:18](x.flatten(0, 1))  # (B*T, 320, 1, 1)
        if kind == "pooled":
            feats = torch.nn.functional.adaptive_avg_pool2d(net.features[18](feats), 1).flatten(1)
        cached = bench.head_forward(model, kind, feats.unflatten(0, (2, 3)))
        assert torch.allclose(cached, model(x), atol=1e-5)
