"""How the engine reads a recognizer's output, whatever the architecture.

A recognizer returns one of:
- logits `(B, K)`: one score per clip (single-frame CNN averaged over segments, TSN, ST-ResNet stream);
- logits `(B, T, K)`: one score per time step (LRCN: loss at every step, prediction = mean of softmaxes);
- a dict `{stream: logits}` of the above for multi-stream models, fused with `fusion_weights`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Output = torch.Tensor | dict[str, torch.Tensor]


def _loss_one(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 3:  # (B, T, K): the video label at every step
        b, t, k = logits.shape
        return F.cross_entropy(logits.reshape(b * t, k), target.repeat_interleave(t))
    return F.cross_entropy(logits, target)


def classification_loss(out: Output, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; per-step outputs use the label at every step; streams' losses are summed."""
    if isinstance(out, dict):
        return sum(_loss_one(v, target) for v in out.values())
    return _loss_one(out, target)


def _probs_one(logits: torch.Tensor) -> torch.Tensor:
    probs = logits.float().softmax(dim=-1)
    return probs.mean(dim=1) if probs.dim() == 3 else probs  # (B, K)


def video_probs(out: Output, fusion_weights: dict[str, float] | None = None) -> torch.Tensor:
    """Class probabilities `(B, K)`: softmax, mean over steps, weighted mean over streams."""
    if not isinstance(out, dict):
        return _probs_one(out)
    weights = fusion_weights or {name: 1.0 for name in out}
    missing = set(out) - set(weights)
    if missing:
        raise ValueError(f"fusion_weights has no weight for streams {sorted(missing)}")
    total = sum(weights[name] for name in out)
    return sum(weights[name] * _probs_one(v) for name, v in out.items()) / total
