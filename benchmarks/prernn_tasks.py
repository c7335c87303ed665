"""PreRNN's tasks on real data, the papers' comparisons, 3 seeds each, mean +- std.

``faces FACES_DIR`` / ``faces-eval CHECKPOINT FACES_DIR``: sequential face alignment (per-frame CNN vs
traditional RNN vs PreRNN, NME / AUC@0.08 / jitter); they live in ``benchmarks/prernn_faces.py``, whose
docstring gives the protocol and the sizes.

``gestures CSV_DIR``: real webcam fingertip trajectories (point_history.csv + labels.csv, e.g.
../shared/data/hand_gesture) rendered as 16-frame clips (`vidrec.data.gestures`: a blob, no trail) and
split in contiguous blocks per class with a 16-row gap (`split_blocks`). Every model stands on the same
ImageNet MobileNetV2, frozen up to ``features.17`` (the layers before the last one; its output is
computed once per clip and cached), and trains what comes after it:

- single_frame: the CNN's last layer (1x1 conv, BN, ReLU6) + classifier per frame, mean of softmaxes;
- lrcn: LSTM (256) on the pooled features of the whole frozen CNN, per-step loss (LRCN);
- rnn_{fc,conv}_{gru,lstm}: the traditional RNN, a FRESH recurrent layer (PyTorch's init) of the same
  width at the same place as PreRNN's (`prernn_fc_mobilenet_v2(fresh=...)`, `rnn_baseline_conv_*`);
- prernn_{fc,conv}_{rnn,gru,lstm}: the last layer made recurrent (PreRNN), trainable gate start;
  fc = applied to pooled features (`pooled_last_layer`), conv = on the 2x2 map, 1x1 hidden maps;
- prernn_*_lstm_exact: the exact-saturated start (the CNN bit for bit, gates cannot learn).

Printed per model: accuracy, per-class accuracy, the clockwise vs counter-clockwise pair accuracy (on
Clockwise / Counter Clockwise validation clips, is the right one of the two scored above the other? chance
0.5), the cw <-> ccw confusion (share of those clips given the other one) and training time; a bar plot
PNG; ``RESULT prernn_tasks_gestures ...``. ``--eval-csv OTHER.csv`` also scores every trained model on all
rows of another file of the same format. ``gestures-eval CHECKPOINT CSV`` scores a `vidrec train`
checkpoint (e.g. of ``vidrec train gestures_prernn_conv``) on any such CSV, end to end from pixels, on
the background the checkpoint was trained on (its ``data.background``; ``--background`` overrides it).

Sizes of the default run: 64x64 clips on a plain background (on the textured one, frozen 64-px ImageNet
features left the first models near chance after 3 epochs), every 16th window of each block
(neighbouring windows share 15 of 16 points; 208 training / 53 validation clips), 3 epochs, batch 16,
AdamW lr 1e-3, seeds 0 1 2, the 9 models of `DEFAULT_MODELS` (the conv GRU / LSTM cost ~4x their FC
twins: name them with --models on a bigger machine). On the loaded 2-core development VM this takes
well over 30 min; the run writes ``gestures.partial.json`` after every training run and
``gestures-report`` tabulates what finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidrec import benchdocs
from vidrec.data.gestures import (
    GestureDataset,
    read_gesture_labels,
    read_point_history,
    split_blocks,
    stored_background,
)
from vidrec.data.transforms import normalize_rgb
from vidrec.models.layers import num_steps
from vidrec.models.outputs import classification_loss, video_probs
from vidrec.models.registry import get_model
from vidrec.progress import progress

# ----------------------------------------------------------------------------- shared plumbing


def mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value)."""
    a = np.asarray(values, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def fmt(values: list[float], digits: int = 3) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f}+-{s:.{digits}f}"


def print_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain side-by-side table (also returned as text)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    text = "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
    print(text, flush=True)
    return text


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """The same table as `print_table`, in Markdown, for docs/benchmarks.md."""
    lines = ["| " + " | ".join(str(c) for c in r) + " |" for r in [header, *rows]]
    return "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]])


def bar_plot(path: Path, names: list[str], series: dict[str, list[list[float]]], title: str) -> None:
    """Grouped bars (mean, std error bars over seeds) per model for each metric in `series`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(8, 0.8 * len(names)), 4.5))
    width = 0.8 / len(series)
    x = np.arange(len(names))
    for i, (label, per_model) in enumerate(series.items()):
        stats = [mean_std(v) for v in per_model]
        ax.bar(
            x + i * width, [m for m, _ in stats], width, yerr=[s for _, s in stats], capsize=2, label=label
        )
    ax.set_xticks(x + width * (len(series) - 1) / 2, names, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def result_line(name: str, values: dict[str, float]) -> str:
    return f"RESULT {name} " + " ".join(f"{k}={v:.4g}" for k, v in values.items())


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


# ----------------------------------------------------------------------------- gestures: models


def _mobilenet_net(model: nn.Module) -> nn.Module:
    """The torchvision MobileNetV2 inside a PreRNN / SingleFrame model."""
    return model.net if hasattr(model, "net") else model.backbone.net


def gesture_models(cells_fc: bool = True) -> dict[str, Callable[[int], tuple[nn.Module, str]]]:
    """name -> builder(num_classes) -> (model, input kind: "map" = features.17 output, "pooled")."""
    common = {"pretrained": True}
    conv = {"pretrained": True, "freeze_trunk": True, "kernel_size": 1}

    def prernn_conv(cell: str, start: str = "trainable"):
        return lambda k: (
            get_model(f"prernn_{cell}_conv_mobilenet_v2", num_classes=k, start=start, **conv),
            "map",
        )

    def prernn_fc(cell: str, start: str = "trainable", fresh: str | None = None):
        def build(k):
            opts = {} if fresh else {"start": start}
            m = get_model("prernn_fc_mobilenet_v2", num_classes=k, cell=cell, fresh=fresh, freeze_trunk=True,
                          **opts, **common)  # fmt: skip
            return m, "map"

        return build

    def rnn_conv(cell: str):
        return lambda k: (
            get_model("rnn_baseline_conv_mobilenet_v2", num_classes=k, cell=cell, **conv),
            "map",
        )

    def lrcn(k):
        return get_model("lrcn_mobilenet_v2", num_classes=k, hidden_size=256, **common), "pooled"

    def single(k):
        return get_model("single_frame_mobilenet_v2", num_classes=k, **common), "map"

    models = {"single_frame": single, "lrcn": lrcn}
    models |= {"prernn_fc_lstm": prernn_fc("lstm"), "rnn_fc_lstm": prernn_fc("lstm", fresh="pytorch")}
    models |= {"prernn_fc_lstm_exact": prernn_fc("lstm", "exact")}
    models |= {"prernn_fc_rnn": prernn_fc("rnn"), "prernn_fc_gru": prernn_fc("gru")}
    models |= {
        "rnn_fc_gru": prernn_fc("gru", fresh="pytorch"),
        "rnn_fc_rnn": prernn_fc("rnn", fresh="pytorch"),
    }
    models |= {f"prernn_conv_{c}": prernn_conv(c) for c in ("rnn", "gru", "lstm")}
    models |= {"rnn_conv_lstm": rnn_conv("lstm"), "prernn_conv_lstm_exact": prernn_conv("lstm", "exact")}
    return models


# what a default run trains: the conv GRU / LSTM cost ~4x their FC twins (a 2x2 map), which a loaded
# 2-core CPU cannot fit 3 seeds of in ~20 min; name them with --models on a bigger machine
DEFAULT_MODELS = [
    "single_frame", "lrcn", "prernn_fc_rnn", "rnn_fc_rnn", "prernn_fc_lstm", "rnn_fc_lstm",
    "prernn_fc_lstm_exact", "prernn_fc_gru", "prernn_conv_rnn",
]  # fmt: skip


def head_forward(model: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    """Per-step logits (B, T, K) of `model` from cached inputs: "map" = `features.17` output
    (B, T, 320, h, w) through `features.18`, pooling and the classifier; "pooled" = (B, T, 1280) through
    LRCN's LSTM, dropout and head. The same arithmetic as the model's forward on pixels."""
    b, t = x.shape[:2]
    if kind == "pooled":
        hidden, _ = model.rnn(x)
        return model.head(model.dropout(hidden))
    net = _mobilenet_net(model)
    with num_steps(net, t):
        y = net.features[18](rearrange(x, "b t ... -> (b t) ..."))  # (B*T, 1280, h', w')
    y = F.adaptive_avg_pool2d(y, 1).flatten(1)
    return rearrange(net.classifier(y), "(b t) k -> b t k", b=b)


def trainable(model: nn.Module, kind: str) -> list[nn.Parameter]:
    """The parameters after the frozen trunk."""
    if kind == "pooled":
        return [*model.rnn.parameters(), *model.head.parameters()]
    net = _mobilenet_net(model)
    return [*net.features[18].parameters(), *net.classifier.parameters()]


# ----------------------------------------------------------------------------- gestures: data


@torch.no_grad()
def cache_features(
    ds: GestureDataset, trunk: nn.Module, last: nn.Module, batch: int = 64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(map (N, T, 320, h, w), pooled (N, T, 1280), labels (N,)) of every item of `ds` (frozen CNN)."""
    maps, pooled, labels = [], [], []
    for start in progress(range(0, len(ds), batch), desc="cnn features", unit="batch"):
        items = [ds[i] for i in range(start, min(start + batch, len(ds)))]
        x = normalize_rgb(torch.stack([it["rgb"] for it in items]))  # (B, T, 3, H, W)
        f = trunk(rearrange(x, "b t c h w -> (b t) c h w"))  # (B*T, 320, h, w)
        p = F.adaptive_avg_pool2d(last(f), 1).flatten(1)  # (B*T, 1280)
        maps.append(rearrange(f, "(b t) ... -> b t ...", b=len(items)))
        pooled.append(rearrange(p, "(b t) d -> b t d", b=len(items)))
        labels += [it["label"] for it in items]
    return torch.cat(maps), torch.cat(pooled), torch.tensor(labels)


def pretrained_trunk() -> tuple[nn.Module, nn.Module]:
    from vidrec.models.backbones import Backbone

    net = Backbone("mobilenet_v2", pretrained=True).net.eval()
    return net.features[:18], net.features[18]


# ----------------------------------------------------------------------------- gestures: train / eval


def train_one(model, kind, data, *, epochs: int, batch: int, lr: float, seed: int) -> float:
    """Train the trainable part on cached inputs; returns seconds."""
    x, y = data
    params = trainable(model, kind)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch):
            loss = classification_loss(head_forward(model, kind, x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def predict(model, kind, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
    model.eval()
    return torch.cat(
        [video_probs(head_forward(model, kind, x[i : i + batch])) for i in range(0, len(x), batch)]
    )


def scores(probs: torch.Tensor, y: torch.Tensor, names: list[str]) -> dict[str, float]:
    """accuracy, per-class accuracy (acc_<name>) and the cw<->ccw confusion."""
    pred = probs.argmax(1)
    out = {"acc": float((pred == y).float().mean())}
    for c, name in enumerate(names):
        out[f"acc_{name}"] = float((pred[y == c] == c).float().mean()) if (y == c).any() else float("nan")
    cw, ccw = _cw_ccw(names)
    if cw is not None:
        pair = (y == cw) | (y == ccw)
        swapped = ((y == cw) & (pred == ccw)) | ((y == ccw) & (pred == cw))
        out["cw_ccw_confusion"] = float(swapped.sum() / pair.sum().clamp(min=1))
        # the pair decision alone: is the right one of the two scored above the other? (chance 0.5)
        other = torch.where(y == cw, ccw, cw)
        right = probs.gather(1, y[:, None])[:, 0] > probs.gather(1, other[:, None])[:, 0]
        out["cw_ccw_pair_acc"] = float(right[pair].float().mean())
    return out


def _cw_ccw(names: list[str]) -> tuple[int | None, int | None]:
    low = [n.lower() for n in names]
    if "clockwise" in low and "counter clockwise" in low:
        return low.index("clockwise"), low.index("counter clockwise")
    return None, None


def gestures(args: argparse.Namespace) -> None:
    root = Path(args.csv_dir)
    labels, points = read_point_history(root / "point_history.csv")
    names = read_gesture_labels(root / "labels.csv")
    train_rows, val_rows = split_blocks(labels)
    train_rows, val_rows = train_rows[:: args.row_stride], val_rows[:: args.row_stride]
    sizes = f"16x{args.size}x{args.size}, {args.epochs} epochs, batch {args.batch}, seeds {args.seeds}"
    print(f"{root}: {len(labels)} windows, classes {names}; contiguous blocks per class, 16-row gap; "
          f"every {args.row_stride}th window: {len(train_rows)} train / {len(val_rows)} val clips of "
          f"{sizes}", flush=True)  # fmt: skip
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    trunk, last = pretrained_trunk()
    t0 = time.perf_counter()
    common = {"size": args.size, "background": args.background, "seed": 0}
    sets = {
        "train": cache_features(GestureDataset((labels, points), indices=train_rows, **common), trunk, last),
        "val": cache_features(GestureDataset((labels, points), indices=val_rows, **common), trunk, last),
    }
    for path in args.eval_csv:
        sets[f"csv:{Path(path).name}"] = cache_features(GestureDataset(path, **common), trunk, last)
    print(f"cached frozen-CNN features in {time.perf_counter() - t0:.0f} s", flush=True)
    builders = gesture_models()
    chosen = args.models or DEFAULT_MODELS
    results: dict[str, list[dict[str, float]]] = {}
    for name in chosen:
        for seed in args.seeds:
            set_seed(seed)
            model, kind = builders[name](len(names))
            pick = 0 if kind == "map" else 1
            train_x, train_y = sets["train"][pick], sets["train"][2]
            secs = train_one(
                model, kind, (train_x, train_y), epochs=args.epochs, batch=args.batch, lr=args.lr, seed=seed
            )
            res = scores(predict(model, kind, sets["val"][pick]), sets["val"][2], names) | {"train_s": secs}
            for key in sets:
                if key.startswith("csv:"):
                    res[f"{key}_acc"] = scores(predict(model, kind, sets[key][pick]), sets[key][2], names)[
                        "acc"
                    ]
            results.setdefault(name, []).append(res)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "gestures.partial.json").write_text(
                json.dumps({"classes": names, "runs": results})
            )
            print(f"  {name} seed {seed}: acc {res['acc']:.3f} cw/ccw pair acc "
                  f"{res.get('cw_ccw_pair_acc', float('nan')):.3f} ({secs:.0f} s)", flush=True)  # fmt: skip
    docs = ""
    if args.write_docs:
        docs = (f"{len(train_rows)} training / {len(val_rows)} validation clips ({root.name}: contiguous "
                f"blocks per class, 16-row gap, every {args.row_stride}th window), {sizes}, "
                f"{args.background} background, AdamW lr {args.lr}, {args.threads} thread(s).")  # fmt: skip
    report_gestures(results, names, Path(args.out), docs)


def report_gestures(
    results: dict[str, list[dict[str, float]]], names: list[str], out: Path, docs: str = ""
) -> None:
    """Table, bar plot, JSON and RESULT line; with `docs` (the run's settings in words) also the
    ``prernn_tasks_gestures`` section of docs/benchmarks.md."""
    out.mkdir(parents=True, exist_ok=True)
    keys = ["acc", *[f"acc_{n}" for n in names], "cw_ccw_pair_acc", "cw_ccw_confusion"]
    extra = sorted({k for rs in results.values() for k in rs[0] if k.startswith("csv:")})
    header = ["model", *keys, *extra, "train_s"]
    rows = [[m, *[fmt([r[k] for r in rs]) for k in keys + extra], fmt([r["train_s"] for r in rs], 0)]
            for m, rs in results.items()]  # fmt: skip
    print(
        f"\nGesture recognition, validation blocks, mean+-std over {len(next(iter(results.values())))} seeds"
    )
    print_table(header, rows)
    (out / "gestures.json").write_text(json.dumps(results, indent=1))
    series = {"accuracy": [[r["acc"] for r in rs] for rs in results.values()]}
    if all("cw_ccw_pair_acc" in rs[0] for rs in results.values()):
        series["cw vs ccw pair accuracy"] = [[r["cw_ccw_pair_acc"] for r in rs] for rs in results.values()]
        series["cw<->ccw confusion"] = [[r["cw_ccw_confusion"] for r in rs] for rs in results.values()]
    title = "gestures, validation blocks (mean, std over seeds)"
    bar_plot(out / "gestures.png", list(results), series, title)
    print(f"wrote {out / 'gestures.png'} and {out / 'gestures.json'}")
    summary = {f"{m}_acc": mean_std([r["acc"] for r in rs])[0] for m, rs in results.items()}
    summary |= {f"{m}_cwccw_pair": mean_std([r.get("cw_ccw_pair_acc", float("nan")) for r in rs])[0]
                for m, rs in results.items()}  # fmt: skip
    result = result_line("prernn_tasks_gestures", summary)
    print(result)
    if docs:
        seeds = len(next(iter(results.values())))
        text = [
            "## PreRNN, LRCN and plain RNNs on real gesture trajectories (`benchmarks/prernn_tasks.py`)",
            "",
            f"`{benchdocs.command()}`",
            "",
            f"{docs} Accuracy on the validation blocks (the latest recordings of each class, never",
            f"trained on), mean+-std over {seeds} seeds; cw/ccw: the clockwise vs counter-clockwise pair",
            "accuracy and confusion; train_s: seconds of training per run on cached frozen-CNN features.",
            "",
            markdown_table(header, rows),
            "",
            f"Machine: {benchdocs.machine()}.",
            "",
            f"`{result}`",
        ]
        benchdocs.write_section("prernn_tasks_gestures", "\n".join(text))


def gestures_report(args: argparse.Namespace) -> None:
    """The table, plot and RESULT line again from a (possibly partial) run's gestures.partial.json."""
    saved = json.loads(Path(args.json).read_text())
    report_gestures(saved["runs"], saved["classes"], Path(args.json).parent)


def gestures_eval(args: argparse.Namespace) -> None:
    """A `vidrec train` checkpoint on every row of a CSV, end to end from rendered pixels."""
    from vidrec.engine.checkpoint import load_checkpoint, load_task
    from vidrec.engine.evaluate import model_inputs

    model, task = load_task(args.checkpoint, factory=args.model_factory)
    names = task.class_names()
    size = args.size or task.cfg.data.size
    background = args.background or stored_background(load_checkpoint(args.checkpoint).config)
    how = "--background" if args.background else "the checkpoint's data.background"
    print(f"clips: {size}x{size} px, {background} background ({how})", flush=True)
    ds = GestureDataset(args.csv, size=size, background=background, seed=task.cfg.runtime.seed)
    probs, ys = [], []
    with torch.no_grad():
        for start in progress(range(0, len(ds), args.batch), desc="clips", unit="batch"):
            items = [ds[i] for i in range(start, min(start + args.batch, len(ds)))]
            batch = {"rgb": torch.stack([it["rgb"] for it in items])}
            x, _ = model_inputs(batch, ("rgb",), "cpu")
            probs.append(video_probs(model(x)))
            ys += [it["label"] for it in items]
    res = scores(torch.cat(probs), torch.tensor(ys), names)
    print_table(["metric", "value"], [[k, f"{v:.3f}"] for k, v in res.items()])
    print(result_line("prernn_tasks_gestures_eval", res))


# ----------------------------------------------------------------------------- command line


def _faces_module():
    """benchmarks/prernn_faces.py (the face-alignment subcommands), loaded from beside this file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("prernn_faces", Path(__file__).with_name("prernn_faces.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("prernn_faces", module)
    spec.loader.exec_module(module)
    return module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _faces_module().add_parsers(sub)  # faces, faces-eval
    g = sub.add_parser("gestures", help="the gesture comparison (single frame, LRCN, RNN, PreRNN)")
    g.add_argument(
        "csv_dir", help="folder with point_history.csv and labels.csv (../shared/data/hand_gesture)"
    )
    g.add_argument(
        "--out",
        default="runs/prernn_tasks",
        help="folder of the JSON and the bar plot (default: %(default)s)",
    )
    g.add_argument("--size", type=int, default=64, help="clip frame size in pixels (default: %(default)s)")
    g.add_argument(
        "--background",
        choices=("plain", "textured"),
        default="plain",
        help="clip background (default: %(default)s)",
    )
    g.add_argument(
        "--row-stride", type=int, default=16, help="use every Nth window of each block (default: %(default)s)"
    )
    g.add_argument("--epochs", type=int, default=3, help="training epochs per run (default: %(default)s)")
    g.add_argument("--batch", type=int, default=16, help="clips per step (default: %(default)s)")
    g.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: %(default)s)")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: %(default)s)")
    g.add_argument(
        "--models",
        nargs="+",
        choices=list(gesture_models()),
        help=f"models to train (default: {' '.join(DEFAULT_MODELS)})",
    )
    g.add_argument(
        "--eval-csv", action="append", default=[], help="also score every model on all rows of this CSV"
    )
    g.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    g.add_argument(
        "--write-docs",
        action="store_true",
        help="write the table into docs/benchmarks.md (section prernn_tasks_gestures)",
    )
    g.set_defaults(func=gestures)
    r = sub.add_parser("gestures-report", help="table and plot from a run's gestures.partial.json")
    r.add_argument("json", help="OUT/gestures.partial.json of a `gestures` run (complete or interrupted)")
    r.set_defaults(func=gestures_report)
    e = sub.add_parser("gestures-eval", help="score a `vidrec train` gesture checkpoint on a CSV")
    e.add_argument("checkpoint", help="best.safetensors / last.safetensors of a gestures run")
    e.add_argument("csv", help="a point_history.csv-format file (every row is scored)")
    e.add_argument(
        "--size", type=int, default=0, help="clip size; 0: the checkpoint's data.size (default: %(default)s)"
    )
    e.add_argument(
        "--background",
        choices=("plain", "textured"),
        default="",
        help="clip background (default: the one the checkpoint trained on, its data.background)",
    )
    e.add_argument("--batch", type=int, default=32, help="clips per forward (default: %(default)s)")
    e.add_argument(
        "--model-factory", default="", help="trust the `module:function` model factory the checkpoint names"
    )
    e.set_defaults(func=gestures_eval)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
