"""Flow colour wheel, arrows, heat-map overlays, animations and contact sheets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vidrec.engine.predict import Preprocess
from vidrec.io import probe
from vidrec.visualize import render
from vidrec.visualize.flowviz import colour_wheel, draw_arrows, flow_to_colour, wheel_legend


def _colour(u: float, v: float, max_mag: float = 1.0) -> np.ndarray:
    return flow_to_colour(np.array([[[u, v]]], dtype=np.float32), max_mag=max_mag)[0, 0].astype(int)


def test_middlebury_wheel_colours_of_the_four_directions():
    wheel = colour_wheel()
    assert wheel.shape == (55, 3) and wheel.min() >= 0 and wheel.max() <= 255
    assert list(_colour(0, 0)) == [255, 255, 255]  # no motion is white
    assert list(_colour(1, 0)) == [255, 0, 0]  # right: red
    right, down, left, up = _colour(1, 0), _colour(0, 1), _colour(-1, 0), _colour(0, -1)
    assert down[0] == 255 and down[1] > 200 and down[2] == 0  # down: yellow-orange
    assert left[0] == 0 and left[1] > 150 and left[2] == 255  # left: cyan-blue
    assert up[2] == 255 and up[1] == 0 and 0 < up[0] < 150  # up: blue-violet
    assert len({tuple(c) for c in (right, down, left, up)}) == 4


def test_colour_saturates_with_magnitude_and_darkens_beyond_the_maximum():
    weak, strong, beyond = _colour(0.2, 0), _colour(1.0, 0), _colour(2.0, 0)
    assert weak[1] > strong[1] and weak[2] > strong[2]  # weaker motion is paler (closer to white)
    assert list(beyond) == [int(255 * 0.75), 0, 0]
    field = np.random.default_rng(0).normal(size=(8, 8, 2))
    assert np.array_equal(flow_to_colour(field), flow_to_colour(field * 3.0))  # scale-free by default
    legend = wheel_legend(33)
    assert legend.shape == (33, 33, 3) and list(legend[16, 16]) == [255, 255, 255]


def test_arrows_point_along_the_flow():
    flow = np.zeros((32, 32, 2), np.float32)
    flow[..., 0] = 6.0  # everything moves right
    canvas = draw_arrows(flow, np.zeros((32, 32, 3), np.uint8), step=16, colour=(255, 255, 255))
    row = canvas[8, :, 0]  # the row through the first grid point (x = 8)
    assert row[9:14].max() > 0 and row[:7].max() == 0  # drawn to the right of its start only
    with pytest.raises(ValueError, match="differ in size"):
        draw_arrows(flow, np.zeros((8, 8, 3), np.uint8))


def test_rgb_frames_undo_the_normalisation():
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 20, 20, 3), dtype=np.uint8)
    prep = Preprocess(resize=20, size=20)
    x = prep.normalize(prep(frames), "cpu")  # (T, 3, 20, 20), ImageNet-normalised
    back = render.rgb_frames(x)
    assert np.abs(back.astype(int) - frames.astype(int)).max() <= 1
    stretched = render.rgb_frames(x * 0.01, stretch=True)
    assert stretched.max() - stretched.min() > 200  # a faint optimised image fills the range
    flat = render.rgb_frames(torch.zeros(1, 3, 4, 4), stretch=True)  # all zero: the ImageNet mean colour
    assert list(flat[0, 0, 0]) == [124, 116, 104]


def test_flow_fields_are_in_time_order():
    x = torch.zeros(2, 6, 4, 4)  # T=2 stacks of L=3 fields
    for t in range(2):
        for k in range(3):
            x[t, 2 * k] = 10 * t + k  # x component carries the field's time index
    fields = render.flow_fields(x)
    assert fields.shape == (6, 4, 4, 2)
    assert [float(f[0, 0, 0]) for f in fields] == [0, 1, 2, 10, 11, 12]


def test_overlay_leaves_cold_pixels_alone():
    frames = np.full((2, 8, 8, 3), 100, np.uint8)
    heat = np.zeros((2, 8, 8), np.float32)
    heat[1, :4] = 1.0
    out = render.overlay(frames, heat)
    assert np.array_equal(out[0], frames[0]) and np.array_equal(out[1, 4:], frames[1, 4:])
    assert not np.array_equal(out[1, :4], frames[1, :4])


def test_animations_and_sheets_are_written_and_never_overwritten(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, size=(5, 17, 23, 3), dtype=np.uint8)
    gif = render.save_animation(frames, tmp_path / "a.gif", fps=4)
    mp4 = render.save_animation(frames, tmp_path / "a.mp4", fps=4)  # odd sizes are padded
    assert probe(gif).num_frames == 5 and probe(mp4).num_frames == 5
    with pytest.raises(FileExistsError, match="--overwrite"):
        render.save_animation(frames, gif)
    render.save_animation(frames[:2], gif, overwrite=True)
    assert probe(gif).num_frames == 2
    sheet = render.contact_sheet([("a", frames), ("b", frames[:2])], tmp_path / "s.png", title="t")
    assert Image.open(sheet).size[0] > 200
    with pytest.raises(FileExistsError):
        render.contact_sheet([("a", frames)], sheet)
