"""`vidrec models`: every model listed, FLOPs counted by FlopCounterMode at paper sizes."""

from __future__ import annotations

import argparse

import torch
import torchvision.models as tvm
from torch.utils.flop_counter import FlopCounterMode

from vidrec.models import list_models
from vidrec.models.cli import add_arguments, describe, run


def test_single_frame_flops_are_16_mobilenet_frames():
    row = describe("single_frame_mobilenet_v2", flops=True)
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        tvm.mobilenet_v2(num_classes=101)(torch.zeros(1, 3, 224, 224))
    assert row.gflops * 1e9 == 16 * counter.get_total_flops()
    assert row.params_m * 1e6 == sum(p.numel() for p in tvm.mobilenet_v2(num_classes=101).parameters())


def test_cli_lists_every_model_as_markdown(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--flops", "--markdown"])) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model |") and len(lines) == 2 + len(list_models())
    assert all(line.count("|") == 5 and "| - |" not in line for line in lines[2:])
