"""Fixtures of the vidrec.io tests: the generated videos, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from io_helpers import VIDEO_SPECS, X264_SHORT, encode, moving_texture


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Every video of VIDEO_SPECS, generated once."""
    root = tmp_path_factory.mktemp("videos")
    return {name: make(root / name) for name, make in VIDEO_SPECS.items()}


@pytest.fixture(scope="session")
def truncated_videos(tmp_path_factory) -> dict[str, Path]:
    """Files cut so that their last GOP(s) are gone: mkv (index-free) and mp4 (index at the end)."""
    root = tmp_path_factory.mktemp("truncated")
    out = {}
    for name in ("h264_gop10.mkv", "h264_gop10.mp4", "h264_gop10_faststart.mp4", "mpeg4_gop12.avi"):
        full = root / f"full_{name}"
        codec, opts = ("mpeg4", {}) if name.endswith(".avi") else ("libx264", X264_SHORT)
        muxer = {"movflags": "faststart"} if "faststart" in name else {}
        encode(full, moving_texture(60, seed=7), codec, gop=12, options=opts, container_options=muxer)
        data = full.read_bytes()
        out[name] = root / name
        out[name].write_bytes(data[: int(len(data) * 0.7)])
    return out
