"""Test-local tiny recognizer and in-memory dataset, loaded by name through the engine's plug-in points.

`model.name: "tinyvid:tiny_net"` and `data.plugin: "tinyvid:color_data"` work in a subprocess when
this folder is on PYTHONPATH; nothing is registered in vidrec.models.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset


class TinyNet(nn.Module):
    """Mean colour per frame, a small MLP per step, mean over time: `(B, T, 3, H, W) -> (B, K)`.

    `nan_after` makes the output NaN after that many training forwards; `hang_after` touches
    `marker` and sleeps after that many training forwards (so a test can SIGKILL it at a known step);
    `interrupt_after` raises KeyboardInterrupt (Ctrl-C) after that many training forwards;
    `pause_after` writes `marker` + ``.<RANK>`` in the next training forward and waits there until
    `marker` + ``.go`` exists (so a test can send a real signal while the run is at a known step).
    """

    modalities = ("rgb",)

    def __init__(
        self,
        num_classes: int,
        *,
        hidden: int = 16,
        dropout: float = 0.0,
        batchnorm: bool = False,
        per_step: bool = False,
        nan_after: int = 0,
        hang_after: int = 0,
        marker: str = "",
        interrupt_after: int = 0,
        pause_after: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes, self.per_step = num_classes, per_step
        self.fc1 = nn.Linear(3, hidden)
        self.drop = nn.Dropout(dropout)
        self.bn = nn.BatchNorm1d(hidden) if batchnorm else nn.Identity()
        self.head = nn.Linear(hidden, num_classes)
        self.nan_after, self.hang_after, self.marker, self.calls = nan_after, hang_after, marker, 0
        self.interrupt_after, self.pause_after = interrupt_after, pause_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._debug_hooks()
        h = torch.relu(self.fc1(x.mean(dim=(3, 4))))  # (B, T, hidden)
        h = self.drop(self.bn(h.flatten(0, 1)).view_as(h))  # BatchNorm over the B*T steps
        out = self.head(h)  # (B, T, K)
        out = out if self.per_step else out.mean(dim=1)
        if self.nan_after and self.calls > self.nan_after:
            out = out * float("nan")
        return out

    def _debug_hooks(self) -> None:
        self.calls += 1
        if self.interrupt_after and self.calls > self.interrupt_after:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread
        if self.hang_after and self.calls > self.hang_after:
            Path(self.marker).write_text(str(self.calls))
            time.sleep(600)
        if self.pause_after and self.calls == self.pause_after + 1:
            Path(f"{self.marker}.{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not Path(f"{self.marker}.go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)

    def param_groups(self, base_lr: float) -> list[dict]:
        """LRCN-style head multipliers, to test that the engine honours a model's groups."""
        return [
            {"params": [self.fc1.weight, self.fc1.bias], "lr": base_lr},
            {"params": [self.head.weight], "lr": base_lr * 10},
            {"params": [self.head.bias], "lr": base_lr * 20},
        ]


# `vidrec train` overrides of the smallest run: this module's data and net, 4 frames of 8 px, batches of 4,
# no workers, nothing but the checkpoints and CSV logs written
TINY = [
    "data.plugin=tinyvid:color_data",
    "model.name=tinyvid:tiny_net",
    "data.frames=4",
    "data.size=8",
    "data.batch_size=4",
    "data.workers=0",
    "progress=false",
    "tensorboard=false",
    "plots=false",
]


def tiny_net(num_classes: int, **kwargs) -> TinyNet:
    return TinyNet(num_classes, **kwargs)


class ColorClips(Dataset):
    """Class k's clips are brighter in channel k (plus noise drawn from torch's global generator)."""

    def __init__(self, n: int, num_classes: int, frames: int, size: int, *, offset: int = 0) -> None:
        self.n, self.k, self.frames, self.size, self.offset = n, num_classes, frames, size, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        label = i % self.k
        rgb = 0.5 * torch.rand(self.frames, 3, self.size, self.size)  # global RNG: tests per-item seeding
        rgb[:, label] += 0.4
        return {"rgb": rgb, "label": label, "video_id": f"clip{self.offset + i:04d}"}


def color_data(cfg) -> tuple[Dataset, Dataset, list[str]]:
    """`data.plugin` factory: 24 training and 9 validation clips of 3 classes."""
    f, s = cfg.data.frames, cfg.data.size
    return ColorClips(24, 3, f, s), ColorClips(9, 3, f, s, offset=100), ["red", "green", "blue"]


class TinyTwoStream(nn.Module):
    """Reads `{"rgb", "flow"}` and returns `{stream: (B, K)}` logits, like the two-stream recognizers."""

    modalities = ("rgb", "flow")

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fusion_weights = {"rgb": 1.0, "flow": 2.0}
        self.rgb, self.flow = nn.Linear(3, num_classes), nn.Linear(2, num_classes)

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "rgb": self.rgb(x["rgb"].mean(dim=(1, 3, 4))),  # (B, T, 3, H, W) -> (B, K)
            "flow": self.flow(x["flow"].mean(dim=(1, 3, 4))),  # (B, T, 2, H, W) -> (B, K)
        }


def tiny_two_stream(num_classes: int) -> TinyTwoStream:
    return TinyTwoStream(num_classes)


class TwoStreamClips(ColorClips):
    """`ColorClips` plus a flow stream whose mean x-displacement encodes the label too."""

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        flow = torch.randn(self.frames, 2, self.size, self.size)
        flow[:, 0] += item["label"] - 1.0
        return {**item, "flow": flow}


def two_stream_data(cfg) -> tuple[Dataset, Dataset, list[str]]:
    f, s = cfg.data.frames, cfg.data.size
    return TwoStreamClips(24, 3, f, s), TwoStreamClips(9, 3, f, s, offset=100), ["a", "b", "c"]


class Unreadable(Dataset):
    """`n` items that all fail to decode: `None`, as `VideoDataset` returns for a skipped video."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> None:
        return None


def unreadable_train_data(cfg) -> tuple[Dataset, Dataset, list[str]]:
    """Every training video is unreadable (e.g. data.root points at the wrong folder)."""
    return Unreadable(8), ColorClips(9, 3, cfg.data.frames, cfg.data.size), ["red", "green", "blue"]


def unreadable_val_data(cfg) -> tuple[Dataset, Dataset, list[str]]:
    """Training reads fine, every validation video is unreadable."""
    return ColorClips(24, 3, cfg.data.frames, cfg.data.size), Unreadable(3), ["red", "green", "blue"]


def tiny_lrcn(num_classes: int, **kwargs):
    """A few-hundred-parameter LRCN (conv encoder + LSTM + head) with `step()`, for streaming tests."""
    from vidrec.models.lrcn import LRCN

    enc = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return LRCN(encoder=enc, rnn=nn.LSTM(4, 8, batch_first=True), head=nn.Linear(8, num_classes))


class CountingConv(nn.Conv2d):
    """A conv that counts the frames it has seen, over every instance (`frames`; a test resets it)."""

    frames = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CountingConv.frames += x.shape[0]
        return super().forward(x)


class TinyFrozen(nn.Module):
    """A frozen conv trunk (`frozen_prefix`, the feature-cache protocol) -> GRU -> per-step logits."""

    modalities = ("rgb",)

    def __init__(self, num_classes: int, *, hidden: int = 8, freeze: bool = True) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            CountingConv(3, 4, 3, stride=2),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )  # (N, 16)
        self.rnn = nn.GRU(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)
        self.num_classes, self.freeze, self.prefix_cached = num_classes, freeze, False
        if freeze:
            self.trunk.requires_grad_(False)

    def train(self, mode: bool = True) -> TinyFrozen:
        super().train(mode)
        if self.freeze:
            self.trunk.eval()
        return self

    def frozen_prefix(self) -> nn.Module | None:
        return self.trunk if self.freeze else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        f = x if self.prefix_cached else self.trunk(x.flatten(0, 1)).unflatten(0, (b, -1))  # (B, T, 16)
        hidden, _ = self.rnn(f)
        return self.head(hidden)  # (B, T, K)


def tiny_frozen(num_classes: int, **kwargs) -> TinyFrozen:
    return TinyFrozen(num_classes, **kwargs)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment of a `python -m vidrec.cli` child: this module and the repo importable, one thread."""
    here = Path(__file__).resolve().parent
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(here), str(here.parents[1]), env.get("PYTHONPATH", "")])
    return env


class RankUnreadable(ColorClips):
    """`ColorClips` whose first `bad` items fail to decode (`None`) on rank 1 only: under DDP one rank then
    meets batches that are wholly skipped while the other rank's batches are fine."""

    def __init__(self, *args, bad: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bad = bad

    def __getitem__(self, i: int) -> dict | None:
        if os.environ.get("RANK") == "1" and i < self.bad:
            return None
        return super().__getitem__(i)


def rank_unreadable_data(cfg) -> tuple[Dataset, Dataset, list[str]]:
    """Half the training clips are unreadable on rank 1 only."""
    f, s = cfg.data.frames, cfg.data.size
    return RankUnreadable(24, 3, f, s, bad=12), ColorClips(9, 3, f, s, offset=100), ["red", "green", "blue"]
