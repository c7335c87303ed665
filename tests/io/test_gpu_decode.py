"""GPU decoding (`data.decode_device=cuda`, `vidrec.io.gpu_decode`): what runs without a GPU.

torchcodec's CPU decoder stands in for its CUDA decoder where the frames must be checked (same demuxing,
same frame indices; `benchmarks/gpu.py` checks the CUDA decoder against `CUDA_TOLERANCE` on a GPU).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import torch

from vidrec.data import VideoDataset, VideoRecord, build_sampler
from vidrec.data.synthetic import CLASSES, make_clip
from vidrec.data.transforms import train_transform
from vidrec.io import VideoReader, gpu_decode, write_video
from vidrec.io.gpu_decode import RESIZE_TOLERANCE, TorchcodecReader, cuda_decoding_problem


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    """A 320x240 H.264 mp4 and an MPEG-4 part 2 avi (GOP 12, as UCF101's) of 30 textured moving frames."""
    folder = tmp_path_factory.mktemp("gpu_decode")
    frames = make_clip(CLASSES[0], np.random.default_rng(0), frames=30, size=240)
    frames = np.stack([cv2.resize(f, (320, 240)) for f in frames])
    mp4, avi = folder / "v.mp4", folder / "v.avi"
    write_video(mp4, frames, 25)
    write_video(avi, frames, 25, codec="mpeg4", gop=12)
    return {"h264": str(mp4), "mpeg4": str(avi)}


def test_cuda_decoding_is_refused_in_one_line_saying_what_is_missing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problem = cuda_decoding_problem()
    assert "torch.cuda is not available" in problem and "data.decode_device=cpu" in problem
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # as if not installed
    problem = cuda_decoding_problem()
    assert "torchcodec is not installed" in problem and "pip install 'vidrec[gpu]'" in problem
    assert "\n" not in problem


def _torchcodec_or_skip() -> None:
    problem = gpu_decode.torchcodec_problem()
    if problem is not None:
        pytest.skip(problem)


@pytest.mark.parametrize("codec", ["h264", "mpeg4"])
def test_torchcodec_frames_equal_pyav_native_and_within_tolerance_resized(clips, codec):
    """The same frame indices as PyAV's exact decode: bit-exact at the native size; resized on the
    device with another filter (antialiased bilinear vs libswscale AREA), within RESIZE_TOLERANCE."""
    _torchcodec_or_skip()
    indices = [29, 0, 3, 17, 3]  # out of order, repeated, across GOPs
    with TorchcodecReader(clips[codec], device="cpu") as tc, VideoReader(clips[codec], threads=1) as av:
        assert len(tc) == len(av) == 30
        got, ref = tc.get_frames(indices), torch.from_numpy(av.get_frames(indices)).permute(0, 3, 1, 2)
    assert got.dtype == torch.uint8 and torch.equal(got, ref)
    with (
        TorchcodecReader(clips[codec], size=128, device="cpu") as tc,
        VideoReader(clips[codec], size=128) as av,
    ):
        got, ref = tc.get_frames(indices), torch.from_numpy(av.get_frames(indices)).permute(0, 3, 1, 2)
    assert got.shape == ref.shape == (5, 3, 128, 171)
    diff = (got.float() - ref.float()).abs().mean().item()
    assert 0 < diff < RESIZE_TOLERANCE


def test_torchcodec_reader_reports_bad_files_and_indices(clips, tmp_path):
    _torchcodec_or_skip()
    from vidrec.io import VideoDecodeError

    with pytest.raises(VideoDecodeError, match="file not found"):
        TorchcodecReader(tmp_path / "missing.mp4", device="cpu")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodeError, match="torchcodec cannot open it"):
        TorchcodecReader(junk, device="cpu")
    with TorchcodecReader(clips["h264"], device="cpu") as tc, pytest.raises(IndexError, match=r"\[30\]"):
        tc.get_frames([0, 30])


class _TensorReader:
    """What TorchcodecReader returns, `(N, 3, H, W)` tensors, from PyAV's frames (no torchcodec needed)."""

    def __init__(self, path, *, size, device, threads):
        self.reader, self.device = VideoReader(path, size=size, threads=threads), device

    def __len__(self) -> int:
        return len(self.reader)

    def get_frames(self, indices):
        return torch.from_numpy(self.reader.get_frames(indices)).permute(0, 3, 1, 2).contiguous()

    def close(self) -> None:
        self.reader.close()


def test_dataset_with_a_device_decoder_gives_the_items_of_the_cpu_decoder(clips, monkeypatch):
    """decode_device=cuda opens the torchcodec reader, whose (N, 3, H, W) frames go through the same
    sampler and transform: with the same frames, the same items (crops, flips, uint8)."""
    opened = []

    def fake(path, **kw):
        opened.append(kw["device"])
        return _TensorReader(path, **kw)

    monkeypatch.setattr(gpu_decode, "TorchcodecReader", fake)
    records = [VideoRecord("v.mp4", 1, "v"), VideoRecord("v.avi", 2, "w")]
    common = {
        "root": clips["h264"].rsplit("/", 1)[0],
        "sampler": build_sampler("dense", clip_len=4, train=True),
        "transform": train_transform(64, kind="crop", normalize=False),
        "size": 96,
        "prepared": None,
    }
    cpu, dev = VideoDataset(records, **common), VideoDataset(records, decode_device="cuda", **common)
    for i in range(2):
        a, b = cpu[i], dev[i]
        assert b["rgb"].dtype == torch.uint8 and b["rgb"].shape == (4, 3, 64, 64)
        assert torch.equal(a["rgb"], b["rgb"]) and a["label"] == b["label"]
    assert opened == [torch.device("cuda")] * 2
