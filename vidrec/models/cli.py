"""`vidrec models [--flops] [--markdown]`: registered models with parameter counts and FLOPs.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (multiply-adds x 2, conv/matmul ops)
on one clip of each model's paper input size (`input_shapes` beside its builder), on the meta device:
nothing is computed or allocated, so the whole table takes seconds.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from vidrec.models import get_model, list_models
from vidrec.models.registry import get_builder
from vidrec.progress import progress

NUM_CLASSES = 101  # UCF101


@dataclass(frozen=True)
class ModelRow:
    name: str
    params_m: float
    input_shapes: dict[str, tuple[int, ...]]
    gflops: float | None


def count_flops(model: torch.nn.Module, shapes: dict[str, tuple[int, ...]], *, paired: bool = False) -> int:
    """FLOPs of one forward pass on a batch of one clip of `shapes` ({modality: (T, C, H, W)}); a
    `paired` model (key, current images) is given the same image twice."""
    x = {m: torch.zeros(1, *shapes[m], device="meta") for m in model.modalities}
    x = x if len(model.modalities) > 1 else x[model.modalities[0]]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, x) if paired else model(x)
    return counter.get_total_flops()


def describe(name: str, *, flops: bool) -> ModelRow:
    """Parameter count (and FLOPs) of `name` built for 101 classes."""
    with torch.device("meta"):
        model = get_model(name, num_classes=NUM_CLASSES).eval()
    shapes = get_builder(name).input_shapes
    params = sum(p.numel() for p in model.parameters())
    gflops = count_flops(model, shapes, paired=get_builder(name).paired) / 1e9 if flops else None
    return ModelRow(name, params / 1e6, {m: shapes[m] for m in model.modalities}, gflops)


def _shape_text(shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{m} {'x'.join(map(str, s))}" for m, s in shapes.items())


def format_table(rows: list[ModelRow], *, markdown: bool) -> str:
    """The rows as a markdown table or aligned plain text."""
    header = ["model", "params (M)", "input (T x C x H x W)", "GFLOPs / clip"]
    body = [
        [
            r.name,
            f"{r.params_m:.2f}",
            _shape_text(r.input_shapes),
            "-" if r.gflops is None else f"{r.gflops:.1f}",
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flops", action="store_true", help="count FLOPs at each model's paper input size")
    parser.add_argument(
        "--markdown", action="store_true", help="print a markdown table (as in docs/models.md)"
    )


def run(args: argparse.Namespace) -> int:
    rows = [describe(name, flops=args.flops) for name in progress(list_models(), desc="models", leave=False)]
    print(format_table(rows, markdown=args.markdown))
    return 0
