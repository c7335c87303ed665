"""Tiny DFF parts for the tests: a strided-conv feature net, a 1x1 task net, a FlowNetLite."""

from __future__ import annotations

import torch
from torch import nn

from vidrec.dff.flownets import FlowNetLite
from vidrec.dff.model import DFF, ScaleField


def tiny_dff(*, seed: int = 0, channels: int = 6, classes: int = 2) -> DFF:
    """A DFF at stride 16 whose flow net predicts a non-zero flow (so propagation is not a copy)."""
    torch.manual_seed(seed)
    feature_net = nn.Sequential(nn.Conv2d(3, channels, 16, stride=16), nn.ReLU())
    task_net = nn.Conv2d(channels, classes, 1)
    flow_net = FlowNetLite(stride=16, width=4)
    nn.init.normal_(flow_net.predict.weight, std=0.5)  # a random flow, not the zero initialisation
    nn.init.normal_(flow_net.predict.bias, std=0.5)
    scale = ScaleField(flow_net.scale_channels, channels)
    return DFF(feature_net, flow_net, task_net, feature_stride=16, scale_field=scale)
