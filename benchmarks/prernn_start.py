"""PreRNN's gate start on real video (methods.md 2.4, property 1): how far each start is from the CNN,
and whether its gates can learn.

For each cell (GRU, LSTM) at ImageNet MobileNetV2's last conv (`features.18.0`, BN + ReLU6), the converted
network runs on 16-frame clips of real videos next to the plain CNN. Printed per start ("exact": gate biases
±1e4, "trainable": ±4, the default):
- step-1 deviation: max |logit - CNN logit| / max |CNN logit| at the first frame (h_0 = 0);
- all-steps deviation: the same over the 16 frames (the LSTM's f ⊙ c_{t-1} carries state even with U = 0);
- top-1 agreement with the CNN over all frames;
- gate-gradient norm: |d loss / d gate_bias| after one backward of a cross-entropy on the CNN's own
  top-1 labels (0 means the gates can never move).

Usage: python benchmarks/prernn_start.py ../shared/data/clips  (needs $TORCH_HOME with the MobileNetV2
weights). Ends with `RESULT prernn_start ...`.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

from vidrec import benchdocs
from vidrec.data.transforms import NORMALIZATION
from vidrec.io import probe, read_frames
from vidrec.models import PreRNN, convert_to_recurrent
from vidrec.models.backbones import Backbone


def clips(folder: Path, frames: int, size: int) -> torch.Tensor:
    """(N, T, 3, size, size) normalised clips: the first `frames` frames of every video in `folder`."""
    out = []
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".mp4", ".avi", ".mkv")):
        n = min(probe(path).num_frames, frames)
        x = torch.from_numpy(read_frames(path, list(range(n)), size=size)).permute(0, 3, 1, 2)  # (T, 3, H, W)
        h, w = x.shape[-2:]
        top, left = (h - size) // 2, (w - size) // 2
        x = x[..., top : top + size, left : left + size].float()
        out.append(NORMALIZATION["rgb"](x))
    return torch.stack(out)  # (N, T, 3, size, size)


def measure(cnn: torch.nn.Module, x: torch.Tensor, cell: str, start: str) -> dict[str, float]:
    net = copy.deepcopy(cnn)
    rec = convert_to_recurrent(net, "features.18.0", cell=cell, start=start)
    model = PreRNN(net=net, num_classes=1000).eval()
    with torch.no_grad():
        ref = rearrange(cnn(rearrange(x, "n t c h w -> (n t) c h w")), "(n t) k -> n t k", n=x.shape[0])
        out = model(x)
    scale = ref.abs().max()
    loss = F.cross_entropy(model(x).flatten(0, 1), ref.argmax(-1).flatten())
    loss.backward()
    return {
        "step1": float((out[:, 0] - ref[:, 0]).abs().max() / scale),
        "all": float((out - ref).abs().max() / scale),
        "agree": float((out.argmax(-1) == ref.argmax(-1)).float().mean()),
        "grad": float(rec.gate_bias.grad.norm()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clips", type=Path, help="folder of real videos (e.g. ../shared/data/clips)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    parser.add_argument(
        "--size", type=int, default=224, help="centre crop after a short-side resize (default 224)"
    )
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args(argv)
    if not args.clips.is_dir():
        parser.error(f"clips folder {args.clips} does not exist; pass the shared data's clips/ folder")
    torch.manual_seed(0)
    x = clips(args.clips, args.frames, args.size)
    cnn = Backbone("mobilenet_v2", pretrained=True).net.eval()
    what = f"{x.shape[0]} clips x {x.shape[1]} frames at {args.size} px, MobileNetV2 features.18.0"
    print(what + "\n")
    table = [
        "| cell | start | step-1 deviation | all-steps deviation | top-1 agreement | gate-gradient norm |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(table))
    results = {}
    for cell in ("gru", "lstm"):
        for start in ("exact", "trainable"):
            r = measure(cnn, x, cell, start)
            results[f"{cell}_{start}"] = r
            cols = f"{r['step1']:.4f} | {r['all']:.4f} | {r['agree']:.3f} | {r['grad']:.3g}"
            table.append(f"| {cell} | {start} | {cols} |")
            print(table[-1])
    parts = [
        f"{k}_step1={v['step1']:.4f} {k}_agree={v['agree']:.3f} {k}_grad={v['grad']:.3g}"
        for k, v in results.items()
    ]
    print("\nRESULT prernn_start " + " ".join(parts))
    if args.write_docs:
        text = [
            "## PreRNN's start (`benchmarks/prernn_start.py`)",
            "",
            f"`{benchdocs.command(argv)}`: {what} made recurrent; how far the converted layer starts from",
            "the pre-trained one (exact start vs trainable gates) and whether its gates get gradient.",
            "",
            *table,
            "",
            f"Machine: {benchdocs.machine()}.",
        ]
        benchdocs.write_section("prernn_start", "\n".join(text))


if __name__ == "__main__":
    main()
