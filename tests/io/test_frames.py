"""Frame folders: RGB JPEGs and denseflow flow pairs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from io_helpers import moving_texture

from vidrec.io import VideoDecodeError, count_frames, read_flow_folder, read_rgb_folder


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    rgb = moving_texture(6)
    flow = np.random.default_rng(0).integers(0, 256, (5, 48, 64, 2), dtype=np.uint8)
    for i, frame in enumerate(rgb, start=1):
        cv2.imwrite(str(root / f"img_{i:05d}.png"), frame[..., ::-1])  # lossless, to compare exactly
        cv2.imwrite(str(root / f"img_{i:05d}.jpg"), frame[..., ::-1])
    for i, f in enumerate(flow, start=1):
        for prefix in ("", "flow_"):
            cv2.imwrite(str(root / f"{prefix}x_{i:05d}.png"), f[..., 0])
            cv2.imwrite(str(root / f"{prefix}y_{i:05d}.png"), f[..., 1])
    return root, rgb, flow


def test_rgb_folder_exact_and_ordered(frame_folder):
    root, rgb, _ = frame_folder
    got = read_rgb_folder(root, [3, 0, 3], tmpl="img_{:05d}.png")
    np.testing.assert_array_equal(got, rgb[[3, 0, 3]])
    jpg = read_rgb_folder(root, [0, 5])  # default template: the same pixels as OpenCV's decode, as RGB
    ref = cv2.cvtColor(cv2.imread(str(root / "img_00006.jpg")), cv2.COLOR_BGR2RGB)
    assert jpg.shape == (2, 48, 64, 3)
    np.testing.assert_array_equal(jpg[1], ref)


@pytest.mark.parametrize("layout, prefix", [("xy", ""), ("flow_xy", "flow_")])
def test_flow_folder_layouts(frame_folder, layout, prefix, monkeypatch):
    root, _, flow = frame_folder
    from vidrec.io import frames

    monkeypatch.setitem(frames.FLOW_LAYOUTS, layout, (f"{prefix}x_{{:05d}}.png", f"{prefix}y_{{:05d}}.png"))
    got = read_flow_folder(root, [4, 1], layout=layout)
    assert got.shape == (2, 48, 64, 2) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, flow[[4, 1]])


def test_count_and_errors(frame_folder, tmp_path):
    root, _, _ = frame_folder
    assert count_frames(root) == 6
    assert count_frames(root, "x_{:05d}.png") == 5
    with pytest.raises(VideoDecodeError, match=r"img_00007\.jpg.*6 files"):
        read_rgb_folder(root, [6])
    with pytest.raises(ValueError, match="layout"):
        read_flow_folder(root, [0], layout="zz")
    (tmp_path / "img_00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoDecodeError, match="not a readable image"):
        read_rgb_folder(tmp_path, [0])


def test_denseflow_real_folder(shared_data):
    folder = shared_data / "frames_denseflow"
    assert count_frames(folder) == 10 and count_frames(folder, "x_{:05d}.jpg") == 5
    rgb = read_rgb_folder(folder, list(range(10)))
    flow = read_flow_folder(folder, list(range(5)), layout="xy")
    assert rgb.shape[0] == 10 and rgb.shape[-1] == 3 and flow.shape == (5, *rgb.shape[1:3], 2)
    ref = cv2.cvtColor(cv2.imread(str(folder / "img_00003.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(rgb[2], ref)
    assert 100 < flow.mean() < 156  # quantised flow centres on 128 (zero motion)
