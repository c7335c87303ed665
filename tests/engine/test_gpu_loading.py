"""Feeding a GPU: pinned uint8 batches when the device is CUDA, `data.decode_device` checked early."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidrec.engine.config import load_config
from vidrec.engine.distributed import DistInfo
from vidrec.engine.loaders import check_decode_device, make_loaders
from vidrec.engine.schema import ConfigError

BASE = ["data.train_list=train.txt"]


class _Items(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        return {"rgb": torch.full((2, 3, 4, 4), i, dtype=torch.uint8), "label": i}


@pytest.mark.parametrize(
    ("device", "decode", "pinned"), [("cuda", "cpu", True), ("cpu", "cpu", False), ("cuda", "cuda", False)]
)
def test_batches_are_pinned_when_the_device_is_cuda_and_the_cpu_decodes(device, decode, pinned):
    """Pinned memory makes `.to(device, non_blocking=True)` an asynchronous copy; it follows the training
    device, not whether this machine has a GPU (a CPU run on a GPU machine pins nothing), and CUDA
    tensors from the GPU decoder cannot be pinned."""
    cfg = load_config(None, [*BASE, "data.workers=0", "data.batch_size=2"])
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, decode_device=decode))
    train, _, val = make_loaders(cfg, _Items(), _Items(), DistInfo(), device=torch.device(device))
    assert train.pin_memory is pinned and val.pin_memory is pinned


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.decode_device=gpu"], "data.decode_device: 'gpu' is not one of ['cpu', 'cuda']"),
        (["data.decode_device=cuda"], "data.workers: must be 0 with data.decode_device=cuda"),
        (
            ["data.decode_device=cuda", "data.workers=0", "runtime.device=cpu"],
            "data.decode_device: cuda needs",
        ),
    ],
)
def test_decode_device_values_name_the_field(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [*BASE, *overrides])
    assert expected in str(err.value)


def test_cuda_decoding_without_a_gpu_is_one_line_before_anything_is_built(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(None, [*BASE, "data.decode_device=cuda", "data.workers=0"])
    with pytest.raises(ConfigError, match=r"^data.decode_device=cuda: torch.cuda is not available"):
        check_decode_device(cfg)
    check_decode_device(load_config(None, BASE))  # the CPU decoder needs nothing

    from vidrec.cli import main

    # the list file does not exist: the decoder is checked first, so this is the error reported
    assert main(["train", *BASE, "data.decode_device=cuda", "data.workers=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.decode_device=cuda: torch.cuda is not available" in err[0]


def test_uint8_batches_normalised_on_the_device_equal_the_workers_float_path(tmp_path):
    """The training path (uint8 from the workers, `model_inputs` normalises on the device) gives the
    tensor the transforms' own normalisation gives (here both on the CPU)."""
    from vidrec.data import VideoDataset, VideoRecord, build_sampler
    from vidrec.data.synthetic import make_synthetic_dataset
    from vidrec.data.transforms import train_transform
    from vidrec.engine.evaluate import model_inputs

    root = make_synthetic_dataset(tmp_path, per_class=1, frames=8, size=32, seed=1, progress=False)
    video = next(p for p in sorted(root.rglob("*")) if p.suffix in (".mp4", ".avi", ".mkv"))
    records = [VideoRecord(str(video.relative_to(root)), 0, "v")]
    common = {"root": root, "sampler": build_sampler("dense", clip_len=4, train=True), "prepared": None}
    raw = VideoDataset(records, transform=train_transform(24, kind="crop", normalize=False), **common)[0]
    ref = VideoDataset(records, transform=train_transform(24, kind="crop"), **common)[0]
    x, views = model_inputs({"rgb": raw["rgb"][None]}, ["rgb"], torch.device("cpu"))
    assert raw["rgb"].dtype == torch.uint8 and views == 1
    torch.testing.assert_close(x[0], ref["rgb"])


def test_channels_last_converts_a_model_with_3d_convolutions_and_keeps_its_outputs():
    """runtime.channels_last on a model with a Conv3d (ST-ResNet's temporal filters): its 5D weight made
    `model.to(memory_format=torch.channels_last)` fail; each conv now gets the layout of its own rank."""
    from torch import nn

    from vidrec.engine.train import channels_last

    torch.manual_seed(0)
    model = nn.ModuleDict({"spatial": nn.Conv2d(3, 4, 3), "temporal": nn.Conv3d(4, 4, (3, 1, 1))})
    with pytest.raises(RuntimeError, match="rank 4"):
        nn.ModuleDict({"t": nn.Conv3d(1, 1, 1)}).to(memory_format=torch.channels_last)

    def forward(x):  # (B, 3, T, H, W) -> spatial per frame -> temporal
        b, _, t, h, w = x.shape
        y = model["spatial"](x.transpose(1, 2).reshape(b * t, 3, h, w))  # (B*T, 4, H', W')
        return model["temporal"](y.reshape(b, t, *y.shape[1:]).transpose(1, 2))  # (B, 4, T-2, H', W')

    x = torch.randn(2, 3, 5, 8, 8)
    before = forward(x)
    assert channels_last(model) is model
    assert model["spatial"].weight.is_contiguous(memory_format=torch.channels_last)
    assert model["temporal"].weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(forward(x), before)
