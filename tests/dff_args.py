"""`vidrec dff run / eval`'s model building in tests: a checkpoint's model through the CLI's own arguments."""

from __future__ import annotations

import argparse

from torch import nn

from vidrec.dff.cli_common import add_schedule_arguments, build_dff


def dff_from_cli(model: nn.Module, argv: list[str]):
    """`build_dff(model, args)` with `args` parsed from `argv` as `vidrec dff` parses them (DIS flow, CPU)."""
    p = argparse.ArgumentParser()
    add_schedule_arguments(p)
    args = p.parse_args(argv)
    args.flow, args.flow_weights, args.device, args.checkpoint = "dis", None, "cpu", "seg.safetensors"
    return build_dff(model, args)
