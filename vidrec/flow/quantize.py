"""Flow quantisation to uint8 (denseflow's mapping) and LRCN's 3-channel flow image.

Mapping (the one yjxiong/dense_flow and open-mmlab's denseflow use, `CAST(v, -b, b)`):
`q = round(255 * (clip(v, -b, b) + b) / (2 b))`, and back `v = q * 2b / 255 - b`.
One step is `2b / 255` px, so inside the bound `|dequantize(quantize(v)) - v| <= b / 255` (half a step);
outside it the error is the clipped excess. uint8 -> float -> uint8 is the identity.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_BOUND", "dequantize", "max_quantization_error", "quantize", "to_lrcn_image"]

DEFAULT_BOUND = 20.0


def _check_bound(bound: float) -> float:
    if not bound > 0:
        raise ValueError(f"bound must be > 0 px, got {bound!r}")
    return float(bound)


def quantize(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Clip flow to `[-bound, bound]` px and map it linearly to uint8 `0..255` (same shape)."""
    bound = _check_bound(bound)
    flow = np.clip(np.asarray(flow, dtype=np.float32), -bound, bound)
    return np.rint((flow + bound) * (255.0 / (2.0 * bound))).astype(np.uint8)


def dequantize(q: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Inverse of `quantize`: uint8 codes -> float32 px (max error `bound / 255` inside the bound)."""
    bound = _check_bound(bound)
    q = np.asarray(q)
    if q.dtype != np.uint8:
        raise TypeError(f"dequantize expects uint8 codes, got {q.dtype}")
    return (q.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)).astype(np.float32)


def max_quantization_error(bound: float = DEFAULT_BOUND) -> float:
    """Largest `|dequantize(quantize(v)) - v|` for `|v| <= bound`: half a step, `bound / 255` px."""
    return _check_bound(bound) / 255.0


def to_lrcn_image(flow: np.ndarray) -> np.ndarray:
    """LRCN's flow image (Donahue et al.): uint8 `(..., H, W, 3)` from float flow `(..., H, W, 2)` px.

    Channels: `clip(16 u + 128)`, `clip(16 v + 128)`, `min(16 |f| + 128, 255)`. Pass
    `dequantize(stored)` to get the view of a stored quantised flow.
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape[-1] != 2:
        raise ValueError(f"flow must end in 2 channels (x, y), got shape {flow.shape}")
    mag = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)[..., None]
    img = np.concatenate([flow * 16.0 + 128.0, np.minimum(mag * 16.0 + 128.0, 255.0)], axis=-1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
