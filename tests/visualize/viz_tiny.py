"""Tiny recognizers for the visualisation tests (milliseconds per step on CPU)."""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from vidrec.models.two_stream import TwoStream


class TinyStream(nn.Module):
    """Per-frame CNN with segment consensus: `(B, T, C, H, W) -> (B, K)`; time folded into batch."""

    def __init__(self, in_chans: int, num_classes: int = 3, modality: str = "rgb") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, stride=2)
        self.head = nn.Linear(8, num_classes)
        self.modalities, self.num_classes = (modality,), num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        f = torch.relu(self.conv2(torch.relu(self.conv1(rearrange(x, "b t c h w -> (b t) c h w")))))
        logits = self.head(f.mean(dim=(2, 3)))  # (B*T, K)
        return rearrange(logits, "(b t) k -> b t k", b=b).mean(dim=1)


class OneFrame(nn.Module):
    """Runs its CNN on every frame but classifies from frame `frame` only: `(B, T, 3, H, W) -> (B, K)`."""

    modalities = ("rgb",)

    def __init__(self, frame: int, num_classes: int = 3) -> None:
        super().__init__()
        self.frame, self.num_classes = frame, num_classes
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        f = torch.relu(self.conv(rearrange(x, "b t c h w -> (b t) c h w")))  # (B*T, 6, H, W)
        f = rearrange(f.mean(dim=(2, 3)), "(b t) d -> b t d", b=b)
        return self.head(f[:, self.frame])  # (B, K): only one frame counts


def tiny_two_stream(flow_length: int = 2, num_classes: int = 3, seed: int = 0) -> TwoStream:
    """vidrec's TwoStream (late fusion) over two tiny streams."""
    torch.manual_seed(seed)
    return TwoStream(
        rgb=TinyStream(3, num_classes), flow=TinyStream(2 * flow_length, num_classes, modality="flow")
    )
