"""``propagated_bias``: in eval mode a propagated frame's foreground logits are raised by it (causal and
bidirectional walks, every class but the background), key frames and training never change; `vidrec dff`
sets it from --propagated-bias (default `PROPAGATED_BIAS`: off)."""

from __future__ import annotations

import pytest
import torch
from dff_args import dff_from_cli
from dff_helpers import tiny_dff

from vidrec.dff import as_dff
from vidrec.dff.model import PROPAGATED_BIAS
from vidrec.dff.schedule import Bidirectional, FixedInterval
from vidrec.models.segnet import segnet_mobilenet_v2


def walk(model, frames, schedule) -> list[tuple[torch.Tensor, bool]]:
    return list(model.run(iter(frames), schedule))


@pytest.mark.parametrize("schedule", [FixedInterval(3), Bidirectional(3)], ids=["causal", "bidirectional"])
@pytest.mark.parametrize("classes", [2, 3])
def test_the_bias_raises_the_foreground_of_propagated_frames_only(frames, schedule, classes):
    model = tiny_dff(classes=classes).eval()
    plain = walk(model, frames, schedule)
    model.propagated_bias = 0.7
    biased = walk(model, frames, schedule)
    assert [k for _, k in plain] == [k for _, k in biased]
    assert not all(k for _, k in plain)  # some frames are propagated
    for (a, is_key), (b, _) in zip(plain, biased, strict=True):
        if is_key:
            assert torch.equal(a, b)  # key frames (and so l = 1, the per-frame row) never change
        else:  # a constant on the grid stays a constant through the bilinear upsampling
            assert torch.equal(b[:, 0], a[:, 0])
            assert torch.allclose(b[:, 1:], a[:, 1:] + 0.7, atol=1e-5)
    model.propagated_bias = 1e4  # every propagated pixel foreground, key frames as they were
    for (out, is_key), (a, _) in zip(walk(model, frames, schedule), plain, strict=True):
        assert torch.equal(out, a) if is_key else bool((out.argmax(1) != 0).all())


def test_the_bias_never_reaches_training(frames):
    model = tiny_dff()
    model.propagated_bias = 5.0
    with torch.no_grad():
        trained = model.train()(frames[0], frames[2])
        model.propagated_bias = 0.0
        assert torch.equal(trained, model(frames[0], frames[2]))


class Given(torch.nn.Module):
    """A task net that returns the logits it was given, whatever its input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits.clone()


def test_the_bias_comes_before_the_largest_region_filter():
    logits = torch.zeros(1, 2, 8, 8)
    logits[0, 0] = 1.0
    logits[0, 1] = -1.0  # background, also with the bias
    logits[0, 1, 0:2, 0:2] = 2.0  # 4 px of foreground
    logits[0, 1, 4:8, 4:8] = 0.5  # 16 px of background by 0.5: foreground with the bias
    model = tiny_dff().eval()
    model.task_net, model.largest_object, model.propagated_bias = Given(logits), True, 1.0
    features = torch.zeros(1, 6, 8, 8)
    key = model.task(features).argmax(1)
    prop = model.task(features, propagated=True).argmax(1)
    assert key.sum() == 4 and key[0, :2, :2].all()
    assert prop.sum() == 16 and prop[0, 4:, 4:].all()  # raised first, then the largest region kept


def test_vidrec_dff_sets_the_bias_from_its_option():
    model = segnet_mobilenet_v2(pretrained=False).eval()
    assert dff_from_cli(model, []).propagated_bias == PROPAGATED_BIAS == 0.0  # off unless asked
    assert dff_from_cli(model, ["--propagated-bias", "1"]).propagated_bias == 1.0
    assert dff_from_cli(model, ["--propagated-bias", "0.25"]).propagated_bias == 0.25
    dff = dff_from_cli(model, ["--propagated-bias", "0.25"])
    assert as_dff(dff, flow_net=dff.flow_net).propagated_bias == 0.25  # a new flow net keeps it
