"""Export a recognizer to ONNX or `torch.export` (`.pt2`) for deployment.

The exported graph is the recognizer followed by `video_probs`: it takes one `(B, T, C, H, W)` tensor per
modality (in the model's `modalities` order, named after them) and returns class probabilities `(B, K)`
(softmax, mean over LRCN's time steps, streams fused with the model's `fusion_weights`), so every
architecture deploys with the same output. The batch axis is dynamic in both formats.

Input contract. By default (`normalize=True`) the normalisation is part of the graph: `rgb` is **uint8**
pixels `(B, T, 3, H, W)`, RGB order, resized and centre-cropped as in training (`vidrec.engine.predict.
Preprocess`), and the graph converts them to float and normalises them with the ImageNet mean/std, exactly
as training did on its device, and a `flow` stack is float32 **pixels**, divided in the graph by
`FLOW_PX_SCALE` as the dataset does (`vidrec.data.transforms.NORMALIZATION`). With `normalize=False` every
input is float32 as the model takes it (`(x / 255 - mean) / std`, flow px / 9.04). `flow3` is float either
way, LRCN's image minus 128 already normalised (`NORMALIZATION["flow3"]`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from vidrec.data.transforms import normalize_modality, normalize_rgb
from vidrec.models.outputs import video_probs

Format = Literal["onnx", "export", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "export", "torchscript")
_DEFAULT_CHANNELS = {"rgb": 3, "flow3": 3}


class ProbabilityModel(nn.Module):
    """`recognizer` + `video_probs`, with one positional tensor per modality.

    With `normalize`, a uint8 `rgb` input is converted and normalised first (`normalize_rgb`) and a `flow`
    stack in pixels is normalised (`NORMALIZATION["flow"]`).
    """

    def __init__(
        self, recognizer: nn.Module, fusion_weights: dict[str, float] | None = None, *, normalize: bool = True
    ):
        super().__init__()
        self.recognizer = recognizer
        self.modalities = tuple(getattr(recognizer, "modalities", ("rgb",)))
        self.fusion_weights = fusion_weights or getattr(recognizer, "fusion_weights", None)
        self.normalize = normalize

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:  # each (B, T, C, H, W) -> (B, K)
        if self.normalize:
            xs = tuple(self._normalize(m, x) for m, x in zip(self.modalities, xs))
        x = xs[0] if len(xs) == 1 else dict(zip(self.modalities, xs))
        return video_probs(self.recognizer(x), self.fusion_weights)

    @staticmethod
    def _normalize(modality: str, x: torch.Tensor) -> torch.Tensor:
        if modality == "rgb":
            return normalize_rgb(x)
        return normalize_modality("flow", x) if modality == "flow" else x  # flow3 comes normalised


def example_inputs(
    model: nn.Module,
    *,
    frames: int,
    size: int,
    batch: int = 2,
    channels: dict[str, int] | None = None,
    uint8_rgb: bool = True,
) -> tuple[torch.Tensor, ...]:
    """Random inputs `(batch, frames, C, size, size)` for each of the model's modalities.

    `channels` gives C per modality; RGB and LRCN's flow image default to 3, a flow stack must be given
    (`{"flow": 2 * L}`). `uint8_rgb`: RGB as uint8 pixels (the default export contract), else float.
    """
    channels = _DEFAULT_CHANNELS | (channels or {})
    modalities = tuple(getattr(model, "modalities", ("rgb",)))
    missing = [m for m in modalities if m not in channels]
    if missing:
        raise ValueError(f"give the channel count of modalities {missing}, e.g. --channels flow=20")
    gen = torch.Generator().manual_seed(0)
    return tuple(
        torch.randint(0, 256, (batch, frames, 3, size, size), generator=gen, dtype=torch.uint8)
        if m == "rgb" and uint8_rgb
        else torch.randn(batch, frames, channels[m], size, size, generator=gen)
        for m in modalities
    )


def export_model(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    out: str | Path,
    *,
    fmt: Format = "onnx",
    fusion_weights: dict[str, float] | None = None,
    opset: int = 17,
    normalize: bool = True,
) -> Path:
    """Write `model` (+ `video_probs`) to `out` in `fmt`; returns the path.

    Args:
        model: a recognizer; it is exported in eval mode on CPU.
        inputs: example tensors, one per modality (`example_inputs`); use a batch of at least 2 so the
            batch axis is not specialised to 1.
        out: output file (`.onnx`, `.pt2` or `.pt`).
        fmt: `onnx` (TorchScript-based `torch.onnx.export`, dynamic batch axis), `export` (`torch.export`
            program saved with `torch.export.save`) or `torchscript` (`torch.jit.trace`).
        fusion_weights: stream weights; default the model's own.
        opset: ONNX opset.
        normalize: put the RGB normalisation in the graph; `rgb` inputs are then uint8 pixels (see the
            module docstring for the input contract).
    """
    wrapped = ProbabilityModel(model.cpu().eval(), fusion_weights, normalize=normalize).eval()
    _check_rgb_dtype(wrapped, inputs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if fmt == "onnx":
            _to_onnx(wrapped, inputs, out, opset)
        elif fmt == "export":
            torch.export.save(_to_exported_program(wrapped, inputs), out)
        elif fmt == "torchscript":
            torch.jit.trace(wrapped, inputs, check_trace=False).save(str(out))
        else:
            raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    return out


def _check_rgb_dtype(wrapped: ProbabilityModel, inputs: tuple[torch.Tensor, ...]) -> None:
    want = torch.uint8 if wrapped.normalize else torch.float32
    for m, x in zip(wrapped.modalities, inputs):
        if m == "rgb" and x.dtype != want:
            contract = "uint8 pixels (normalize=True)" if wrapped.normalize else "normalised float32"
            raise ValueError(f"the rgb example input is {x.dtype}; this export takes {contract}")


def _to_onnx(wrapped: ProbabilityModel, inputs: tuple[torch.Tensor, ...], out: Path, opset: int) -> None:
    names = list(wrapped.modalities)
    # dynamo=False: the dynamo exporter needs onnxscript, which vidrec does not depend on
    torch.onnx.export(
        wrapped,
        inputs,
        str(out),
        input_names=names,
        output_names=["probs"],
        dynamic_axes={name: {0: "batch"} for name in [*names, "probs"]},
        opset_version=opset,
        dynamo=False,
    )


def _to_exported_program(wrapped: ProbabilityModel, inputs: tuple[torch.Tensor, ...]):
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = tuple({0: batch} for _ in inputs)
    return torch.export.export(wrapped, inputs, dynamic_shapes=(shapes,))  # one entry: the *xs varargs


def run_onnx(path: str | Path, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Run an exported ONNX file on onnxruntime (CPU) and return the probabilities `(B, K)`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {arg.name: x.numpy() for arg, x in zip(session.get_inputs(), inputs)}
    return torch.from_numpy(session.run(None, feeds)[0])


def run_exported(path: str | Path, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Load a `.pt2` program with `torch.export.load` and run it."""
    with torch.no_grad():
        return torch.export.load(str(path)).module()(*inputs)
