"""Fixtures of the detection tests: one torch thread, a generated annotated video."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Small tensors on a shared machine: every test here on one torch thread (`one_thread`)."""


@pytest.fixture(scope="session")
def boxes_video(tmp_path_factory):
    """A folder holding `clip.mp4` (24 frames, 96 x 128, two moving rectangles) and its `gt.txt`."""
    from detect_helpers import write_video_with_gt

    folder = tmp_path_factory.mktemp("boxes_video")
    write_video_with_gt(folder)
    return folder
