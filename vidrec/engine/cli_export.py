"""`vidrec export CKPT --format onnx|export|torchscript --out FILE`.

The exported graph takes uint8 RGB pixels and normalises them itself (`--float-input`: the old contract,
normalised float32); see `vidrec.engine.export` for the input contract.
"""

from __future__ import annotations

import argparse

from vidrec.cli import UsageError, add_model_factory_argument, add_overwrite_argument, output_path
from vidrec.engine.export import FORMATS, example_inputs, export_model, run_exported, run_onnx


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .safetensors checkpoint written by `vidrec train`")
    parser.add_argument(
        "--format", choices=FORMATS, default="onnx", help="onnx, export (.pt2) or torchscript"
    )
    parser.add_argument("--out", required=True, help="output file (.onnx / .pt2 / .pt)")
    parser.add_argument("--frames", type=int, default=0, help="example clip length; 0: the training one")
    parser.add_argument("--size", type=int, default=0, help="example crop size; 0: the training one")
    parser.add_argument(
        "--channels",
        nargs="*",
        default=[],
        metavar="MODALITY=C",
        help="channels of flow inputs, e.g. flow=20",
    )
    add_model_factory_argument(parser)
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    add_overwrite_argument(parser)
    parser.add_argument("--no-check", action="store_true", help="skip the parity check against PyTorch")
    parser.add_argument(
        "--float-input",
        action="store_true",
        help="leave the normalisation out of the graph: rgb is float32 already normalised with the ImageNet "
        "mean/std (default: rgb is uint8 pixels (B, T, 3, H, W), normalised inside the graph)",
    )


def _channels(items: list[str]) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in (item.split("=") for item in items)}
    except ValueError as err:
        raise UsageError(f"--channels expects MODALITY=INT items, got {items}") from err


def run(args: argparse.Namespace) -> int:
    import torch

    from vidrec.engine.checkpoint import load_for_inference

    output_path(args.out, "--out", overwrite=args.overwrite, inputs=(args.checkpoint,))
    model, cfg, _ = load_for_inference(
        args.checkpoint, "cpu", factory=args.model_factory, tasks=("classify",)
    )
    inputs = example_inputs(
        model,
        frames=args.frames or cfg.data.frames,
        size=args.size or cfg.data.size,
        channels=_channels(args.channels),
        uint8_rgb=not args.float_input,
    )
    normalize = not args.float_input
    out = export_model(model, inputs, args.out, fmt=args.format, opset=args.opset, normalize=normalize)
    shapes = [
        f"{m} {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"
        for m, x in zip(model.modalities, inputs)
    ]
    print(f"wrote {out} ({args.format}); inputs {shapes} (batch axis dynamic)")
    if "rgb" in model.modalities:
        print(
            "rgb input: "
            + (
                "uint8 pixels, normalised in the graph"
                if normalize
                else "float32, already normalised with the ImageNet mean/std"
            )
        )
    if args.no_check or args.format == "torchscript":
        return 0
    from vidrec.engine.export import ProbabilityModel

    with torch.no_grad():
        ref = ProbabilityModel(model.eval(), normalize=normalize)(*inputs)
    got = run_onnx(out, inputs) if args.format == "onnx" else run_exported(out, inputs)
    err = (got - ref).abs().max().item()
    print(f"parity with PyTorch: max |diff| = {err:.2e}")
    return 0 if err < 1e-3 else 1
