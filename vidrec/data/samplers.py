"""Temporal samplers: pure functions from a video length to the frame indices to decode.

Every sampler has the signature ``sampler(num_frames, rng=None, *, ...) -> list[ClipSample]`` and returns
one record per clip (several for test-time multi-clip views). Indices are 0-based, always inside
``[0, num_frames)``, non-decreasing within a clip, and of the exact requested length: a video shorter than
what is asked repeats (clamps to) its last frame, it is never padded with out-of-range indices nor
returns an empty clip. Training samplers draw from ``rng`` (a ``numpy.random.Generator`` or a seed), test
samplers are deterministic and ignore it.

For optical-flow stacks pass the number of usable flow starts as ``num_frames``: a video of N frames has
N-1 flows, and a stack of L flows may start at most at flow N-1-L (so with L=1 the last frame used is
N-2). `VideoDataset` does this for you.

`functools.partial` (or `build_sampler`) turns a sampler and its options into the
``(num_frames, rng) -> list[ClipSample]`` callable that `VideoDataset` takes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ClipSample",
    "Sampler",
    "build_sampler",
    "dense_clip",
    "test_clips",
    "test_frames",
    "tsn_segments",
    "uniform_frames",
]


@dataclass(frozen=True)
class ClipSample:
    """Frame indices of one clip (`clip` numbers the clips of a multi-clip test sample)."""

    indices: tuple[int, ...]
    clip: int = 0


Sampler = Callable[[int, np.random.Generator | None], list[ClipSample]]


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check(num_frames: int, **positive: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame (or one flow) to sample from, got {num_frames}")
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _clip(indices, num_frames: int, clip: int = 0) -> ClipSample:
    """Clamp into range (short videos repeat their last frame) and freeze."""
    return ClipSample(tuple(int(i) for i in np.clip(np.asarray(indices), 0, num_frames - 1)), clip)


def tsn_segments(
    num_frames: int,
    rng: np.random.Generator | int | None = None,
    *,
    num_segments: int,
    new_length: int = 1,
    train: bool = True,
) -> list[ClipSample]:
    """TSN sampling: split the video into `num_segments` equal segments, take `new_length` consecutive
    frames from each (a random start inside the segment when training, the segment's centre when testing).

    Temporal Segment Networks (Wang et al., ECCV 2016). Returns one clip of `num_segments * new_length`
    indices, segment-major. Runs are disjoint and globally sorted when `num_frames >= num_segments *
    new_length`; shorter videos give overlapping (or repeated) runs, each run still sorted.
    """
    _check(num_frames, num_segments=num_segments, new_length=new_length)
    # segment i holds frames ceil(i * N / S) .. ceil((i + 1) * N / S) - 1 (exact integer arithmetic)
    first = -(-np.arange(num_segments + 1) * num_frames // num_segments)  # (S + 1,)
    lo = first[:-1]
    hi = np.maximum(lo, first[1:] - new_length)  # last start that keeps the run inside its segment
    if train:
        starts = lo + np.floor(_rng(rng).uniform(size=num_segments) * (hi - lo + 1)).astype(np.int64)
    else:
        starts = (lo + hi) // 2
    starts = np.clip(starts, 0, max(num_frames - new_length, 0)).astype(np.int64)
    return [_clip((starts[:, None] + np.arange(new_length)).ravel(), num_frames)]


def _stride_for(stride: int | tuple[int, int], train: bool, rng) -> int:
    if isinstance(stride, int):
        return stride
    lo, hi = stride
    return int(_rng(rng).integers(lo, hi + 1)) if train else (lo + hi) // 2


def dense_clip(
    num_frames: int,
    rng: np.random.Generator | int | None = None,
    *,
    clip_len: int,
    stride: int | tuple[int, int] = 1,
    train: bool = True,
    pad: str = "repeat_last",
) -> list[ClipSample]:
    """`clip_len` frames `stride` apart from a random start (training) or centred (testing).

    LRCN trains on 16 consecutive frames from a random start (Donahue et al., CVPR 2015).
    `stride` may be a range `(lo, hi)`: training draws it uniformly (ST-ResNet's random temporal
    stride 5..15), testing uses the middle. A video shorter than the span starts at 0 and either repeats
    its last frame (`pad="repeat_last"`) or loops back to the start (`pad="loop"`).
    """
    step = _stride_for(stride, train, rng)
    _check(num_frames, clip_len=clip_len, stride=step)
    if pad not in ("repeat_last", "loop"):
        raise ValueError(f"pad must be 'repeat_last' or 'loop', got {pad!r}")
    offsets = np.arange(clip_len) * step
    room = num_frames - offsets[-1] - 1  # number of extra start positions
    if room >= 0:
        start = int(_rng(rng).integers(0, room + 1)) if train else room // 2
        return [_clip(start + offsets, num_frames)]
    if pad == "loop":
        return [ClipSample(tuple(int(i) for i in offsets % num_frames))]
    return [_clip(offsets, num_frames)]


def uniform_frames(
    num_frames: int, rng: np.random.Generator | int | None = None, *, num: int, train: bool = False
) -> list[ClipSample]:
    """`num` frames spread evenly from the first to the last frame; training jitters each frame
    inside its share of the video (TSN sampling with one frame per segment)."""
    if train:
        return tsn_segments(num_frames, rng, num_segments=num, train=True)
    _check(num_frames, num=num)
    return [_clip(np.round(np.linspace(0, num_frames - 1, num)), num_frames)]


def test_clips(
    num_frames: int,
    rng: np.random.Generator | int | None = None,
    *,
    clip_len: int,
    stride: int = 1,
    num_clips: int | None = None,
    hop: int | None = None,
) -> list[ClipSample]:
    """Test-time clips of `clip_len` frames (`stride` apart), evenly spaced over the video.

    Give either `num_clips` (K clips from the start to the end of the video) or `hop` (a clip every
    `hop` frames, the last one aligned to the video's end; LRCN tests 16-frame clips with hop 8).
    With `hop` the number of clips depends on the video length, so batch such items one video at a time.
    Returns one `ClipSample` per clip, numbered by `clip`.
    """
    _check(num_frames, clip_len=clip_len, stride=stride)
    if (num_clips is None) == (hop is None):
        raise ValueError(f"give exactly one of num_clips and hop, got num_clips={num_clips}, hop={hop}")
    offsets = np.arange(clip_len) * stride
    last = max(num_frames - offsets[-1] - 1, 0)  # last start that keeps the clip inside the video
    if num_clips is not None:
        _check(num_frames, num_clips=num_clips)
        starts = np.round(np.linspace(0, last, num_clips)).astype(np.int64)
    else:
        _check(num_frames, hop=hop)
        starts = np.arange(0, last + 1, hop)
        starts = starts if starts[-1] == last else np.append(starts, last)
    return [_clip(s + offsets, num_frames, k) for k, s in enumerate(starts)]


def test_frames(
    num_frames: int, rng: np.random.Generator | int | None = None, *, num: int = 25, new_length: int = 1
) -> list[ClipSample]:
    """`num` evenly spaced test views of `new_length` consecutive frames each (two-stream networks test
    on 25 frames, or 25 flow stacks; Simonyan & Zisserman, NeurIPS 2014). One `ClipSample` per view."""
    return test_clips(num_frames, clip_len=new_length, num_clips=num)


_SAMPLERS: dict[str, Callable[..., list[ClipSample]]] = {
    "tsn": tsn_segments,
    "dense": dense_clip,
    "uniform": uniform_frames,
    "test_clips": test_clips,
    "test_frames": test_frames,
}


def build_sampler(name: str, **options) -> Sampler:
    """The sampler `name` ("tsn", "dense", "uniform", "test_clips", "test_frames") with its options bound.

    Example: ``build_sampler("dense", clip_len=16, train=True)``.
    """
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {sorted(_SAMPLERS)}")
    return functools.partial(_SAMPLERS[name], **options)


# not pytest tests, even when a test module imports them by name
test_clips.__test__ = False  # type: ignore[attr-defined]
test_frames.__test__ = False  # type: ignore[attr-defined]
