"""Where torchvision's RAFT weights are read from (vidrec never downloads them).

Apart from `vidrec.flow.raft` so that importing `vidrec.flow` loads no torch, and the file can be checked
(``vidrec flow --method raft``, DFF's RAFT flow net) before any model is built.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RaftWeightsMissing", "raft_weights_path", "require_raft_weights"]


class RaftWeightsMissing(FileNotFoundError):
    """RAFT weights are not on disk (vidrec never downloads them)."""


def raft_weights_path(model: str = "small", weights: str | os.PathLike = "DEFAULT") -> Path:
    """Where RAFT weights are read from: a given file, or torchvision's cache under `$TORCH_HOME`."""
    if weights not in ("DEFAULT",):
        return Path(weights)
    import torch
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    enum = {"small": Raft_Small_Weights, "large": Raft_Large_Weights}[model]
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.DEFAULT.url).name


def require_raft_weights(model: str = "small", weights: str | os.PathLike = "DEFAULT") -> Path:
    """`raft_weights_path(model, weights)`, or `RaftWeightsMissing` saying where to put the file."""
    path = raft_weights_path(model, weights)
    if not path.is_file():
        raise RaftWeightsMissing(
            f"RAFT-{model} weights not found at {path}. vidrec never downloads weights: put torchvision's "
            f"file there (TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}), or pass a local "
            "state-dict path with weights=PATH (CLI: --raft-weights PATH)."
        )
    return path
