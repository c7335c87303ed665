"""`VideoWriter` encodes frames one at a time: the same file `write_video` makes from the whole array, a
GIF with one palette, nothing under the final name until it is closed, and nothing at all on an error."""

from __future__ import annotations

import numpy as np
import pytest

from vidrec.io import VideoWriter, probe, read_frames, write_video


def _frames(n: int = 20) -> np.ndarray:
    """(n, 32, 48, 3) uint8: a bright square moving right on a dark background."""
    frames = np.full((n, 32, 48, 3), 30, np.uint8)
    for t in range(n):
        frames[t, 8:24, t : t + 16] = 220
    return frames


def test_frame_by_frame_is_the_file_write_video_makes(tmp_path):
    frames = _frames()
    with VideoWriter(tmp_path / "stream.mp4", fps=10, deterministic=True) as out:
        for i, f in enumerate(frames):
            out.write(f)
            assert not (tmp_path / "stream.mp4").exists() and out.frames == i + 1  # only on close
    write_video(tmp_path / "whole.mp4", frames, fps=10, deterministic=True)
    assert probe(tmp_path / "stream.mp4").num_frames == 20
    np.testing.assert_array_equal(
        read_frames(tmp_path / "stream.mp4", range(20)), read_frames(tmp_path / "whole.mp4", range(20))
    )


def test_gif_streams_with_one_palette(tmp_path):
    with VideoWriter(tmp_path / "a.gif", fps=10) as out:
        for f in _frames(40):  # more than the 16 frames the palette is built from
            out.write(f)
    got = read_frames(tmp_path / "a.gif", range(40))
    assert got.shape == (40, 32, 48, 3) and np.abs(got.astype(int) - _frames(40)).max() < 16


def test_an_error_leaves_no_file_and_bad_frames_are_named(tmp_path):
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "x.mp4", fps=10) as out:
        out.write(_frames()[0])
        raise RuntimeError("stopped")
    with pytest.raises(ValueError, match="frame 1 is"), VideoWriter(tmp_path / "x.mp4", fps=10) as out:
        out.write(_frames()[0])
        out.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="no frames to write"), VideoWriter(tmp_path / "x.mp4", fps=10):
        pass
    with pytest.raises(ValueError, match="even frame sizes"), VideoWriter(tmp_path / "x.mp4", fps=10) as out:
        out.write(np.zeros((15, 16, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file
