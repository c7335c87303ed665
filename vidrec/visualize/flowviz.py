"""Optical flow as pictures: the Middlebury colour wheel (Baker et al., IJCV'11) and arrow fields.

Colour coding: hue is the direction of motion, saturation its magnitude relative to `max_mag`
(white = no motion). In image coordinates (x right, y down) motion to the right is red, downwards
orange-yellow, to the left cyan and upwards blue-violet, as in the Middlebury flow-code tool.
"""

from __future__ import annotations

import cv2
import numpy as np

# (segment length, channel that ramps up or down, the channel held at 255) around the wheel
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def colour_wheel() -> np.ndarray:
    """The 55 Middlebury wheel colours, float `(55, 3)` RGB in [0, 255], in wheel order."""
    rows = []
    for name, n in _SEGMENTS:
        ramp = np.floor(255 * np.arange(n) / n)
        up, down, full = ramp, 255 - ramp, np.full(n, 255.0)
        zero = np.zeros(n)
        rows.append(
            {
                "RY": (full, up, zero),  # red -> yellow: green rises
                "YG": (down, full, zero),  # yellow -> green: red falls
                "GC": (zero, full, up),  # green -> cyan: blue rises
                "CB": (zero, down, full),  # cyan -> blue: green falls
                "BM": (up, zero, full),  # blue -> magenta: red rises
                "MR": (full, zero, down),  # magenta -> red: blue falls
            }[name]
        )
    return np.concatenate([np.stack(r, axis=1) for r in rows], axis=0)


def flow_to_colour(flow: np.ndarray, *, max_mag: float | None = None) -> np.ndarray:
    """Colour-code a flow field `(H, W, 2)` (x, y in pixels) as uint8 RGB `(H, W, 3)`.

    Args:
        flow: float flow, x then y.
        max_mag: the magnitude shown fully saturated; None: the field's largest magnitude (so a
            whole clip should pass one shared value to keep frames comparable).
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be (H, W, 2), got shape {flow.shape}")
    u, v = np.nan_to_num(flow[..., 0]), np.nan_to_num(flow[..., 1])
    rad = np.hypot(u, v)
    scale = float(max_mag) if max_mag is not None else float(rad.max())
    scale = scale if scale > 1e-12 else 1.0
    u, v, rad = u / scale, v / scale, rad / scale
    wheel = colour_wheel() / 255.0  # (55, 3)
    n = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    pos = (angle + 1) / 2 * (n - 1)  # fractional wheel index
    k0 = np.floor(pos).astype(int) % n
    k1 = (k0 + 1) % n
    frac = (pos - np.floor(pos))[..., None]
    colour = (1 - frac) * wheel[k0] + frac * wheel[k1]  # (H, W, 3) in [0, 1]
    inside = (rad <= 1)[..., None]
    colour = np.where(inside, 1 - rad[..., None] * (1 - colour), colour * 0.75)  # saturate with radius
    return np.floor(255 * colour).astype(np.uint8)


def wheel_legend(size: int = 64) -> np.ndarray:
    """A disc showing the colour of every direction and magnitude: uint8 RGB `(size, size, 3)`."""
    ramp = np.linspace(-1.0, 1.0, size)
    xx, yy = np.meshgrid(ramp, ramp)
    legend = flow_to_colour(np.stack([xx, yy], axis=-1), max_mag=1.0)
    legend[np.hypot(xx, yy) > 1] = 255
    return legend


def draw_arrows(
    flow: np.ndarray,
    background: np.ndarray | None = None,
    *,
    step: int = 8,
    scale: float = 1.0,
    colour: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Flow `(H, W, 2)` as arrows every `step` pixels, drawn on `background` (uint8 `(H, W, 3)`).

    Args:
        background: image to draw on; None: the colour-coded flow itself.
        step: grid spacing in pixels; each arrow shows the mean flow of its cell.
        scale: arrow length per pixel of flow.
    """
    flow = np.asarray(flow, dtype=np.float32)
    h, w = flow.shape[:2]
    canvas = flow_to_colour(flow) if background is None else np.ascontiguousarray(background).copy()
    if canvas.shape[:2] != (h, w):
        raise ValueError(f"background {canvas.shape[:2]} and flow {(h, w)} differ in size")
    cells = cv2.blur(flow, (step, step))  # cell means, so a 1-pixel spike does not decide an arrow
    for y in range(step // 2, h, step):
        for x in range(step // 2, w, step):
            dx, dy = cells[y, x] * scale
            if abs(dx) + abs(dy) < 0.05 * step:
                continue
            end = (int(round(x + dx)), int(round(y + dy)))
            cv2.arrowedLine(canvas, (x, y), end, colour, 1, cv2.LINE_AA, tipLength=0.3)
    return canvas
