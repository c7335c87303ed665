"""torchvision RAFT (Teed & Deng, ECCV 2020) as a frame-pair flow backend, weights from disk only."""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.optical_flow import raft_large, raft_small

from vidrec.cli import UsageError
from vidrec.flow.raft_weights import require_raft_weights

__all__ = ["RaftFlow", "RaftWeightsError", "load_raft_weights"]


class RaftFlow:
    """RAFT on GPU or CPU.

    Args:
        model: "small" (`raft_small`) or "large" (`raft_large`).
        weights: "DEFAULT" (torchvision's file in `$TORCH_HOME/hub/checkpoints/`), a path to a state dict,
            or None for random initialisation (tests only).
        device: torch device; default CUDA when available.
        num_updates: recurrent refinement steps (torchvision's default is 12).
    """

    def __init__(
        self,
        *,
        model: str = "small",
        weights: str | os.PathLike | None = "DEFAULT",
        device: str | None = None,
        num_updates: int = 12,
    ) -> None:
        if model not in ("small", "large"):
            raise ValueError(f"RAFT model must be 'small' or 'large', got {model!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = (raft_small if model == "small" else raft_large)(weights=None, progress=False)
        if weights is not None:
            self.net.load_state_dict(load_raft_weights(model, weights))
        self.net.eval().to(self.device)
        self.num_updates = num_updates

    @torch.inference_mode()
    def __call__(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:  # noqa: A002
        """Flow float32 `(H, W, 2)` between uint8 RGB frames `(H, W, 3)`."""
        h, w = prev.shape[:2]
        pair = torch.from_numpy(np.stack([prev, next])).to(self.device)  # (2, H, W, 3)
        pair = pair.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (2, 3, H, W) in [-1, 1] as RAFT was trained
        # RAFT works at 1/8 resolution and its 4-level correlation pyramid needs >= 128 px a side:
        # pad (replicating the border) to a multiple of 8 that is at least 128
        ph, pw = max(h + -h % 8, 128) - h, max(w + -w % 8, 128) - w
        pair = F.pad(pair, (0, pw, 0, ph), mode="replicate")
        flow = self.net(pair[:1], pair[1:], num_flow_updates=self.num_updates)[-1]  # (1, 2, H', W')
        return flow[0, :, :h, :w].permute(1, 2, 0).float().cpu().numpy()


class RaftWeightsError(UsageError, ValueError):
    """A RAFT weights file that is not a plain state dict of tensors (never unpickled beyond tensors)."""


def load_raft_weights(model: str, weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The RAFT state dict at `weights` ("DEFAULT": torchvision's cached file), read with
    ``weights_only=True`` (or from .safetensors); a file holding anything else raises RaftWeightsError,
    one line that never suggests ``weights_only=False``."""
    path = require_raft_weights(model, weights)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused it: the file holds more than tensors
        raise RaftWeightsError(
            f"RAFT weights {path} hold objects other than tensors, so vidrec refuses to unpickle them "
            "(that could run code); give torchvision's state dict or a .safetensors file"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:  # not a torch file at all (truncated, other format)
        raise RaftWeightsError(
            f"RAFT weights {path} are not a torch state dict: {str(err).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RaftWeightsError(
            f"RAFT weights {path} are not a state dict of tensors; give torchvision's file"
        )
    return state
