"""PreRNN's sequential face alignment on real talking-face videos: per-frame CNN vs traditional RNN vs
PreRNN on the same ImageNet MobileNetV2, 3 seeds, mean +- std of NME, AUC@0.08 and jitter.

The `faces` part of ``benchmarks/prernn_tasks.py`` (``python benchmarks/prernn_tasks.py faces DIR``); it runs
on its own too: ``python benchmarks/prernn_faces.py faces ../shared/data/faces_video``.

Data: a folder of videos with ``<stem>.landmarks.json`` (`vidrec.data.landmarks`). On
../shared/data/faces_video the points are dlib PREDICTIONS, pseudo ground truth: every number below is
agreement with dlib, whose own error it includes. Split (`split_tracks`): ``--split blocks`` (default):
each video's first frames train and its last ``--val-fraction`` validate, a clip-long gap between them;
``--split video``: whole videos validate (with faces_video's two videos that is ONE training face, and
every model then does worse on the other face than the mean shape: see the docs).

Models, all on ImageNet MobileNetV2 frozen up to ``features.17`` (its output on every face crop is computed
once and cached), training ``features.18`` (1x1 conv 320->1280, BN, ReLU6) and a 136-wide classifier:
- cnn: `single_frame_mobilenet_v2`, one frame at a time;
- rnn: the traditional RNN, a FRESH conv LSTM of the same width at ``features.18.0`` (`build_rnn_baseline`,
  PyTorch's init, per-gate input weights, 1x1 hidden-to-hidden maps);
- prernn: `prernn_rnn_conv_mobilenet_v2`, that layer made recurrent with its pre-trained weights kept
  (trainable gate start for GRU/LSTM, 1x1 hidden-to-hidden maps).
The recurrent cell is ``--cell`` (default rnn: vanilla; GRU/LSTM cost 3-4x more at 1280 channels). Every
model's last Linear starts at zero weights and the mean training shape as bias (the same start for all).

Crops: the face box of each frame's dlib detector rectangle (``--box detector``, side x ``--margin`` 1.2;
independent of the points, as at test time) or of its true points (``--box points``); ``--jitters``
versions of every training frame, one (scale, shift) jitter per version (``--jitter-scale``,
``--jitter-shift``); a training clip of ``--frames`` consecutive frames uses one version on every frame
(one jitter per clip, as `vidrec train`). Validation: non-overlapping clips, no jitter. L1 on centred
crop coordinates, AdamW.

Printed: NME (inter-ocular and inter-pupil), AUC@0.08, failure rate (NME > 0.08), jitter (frame-to-frame
motion of the predicted points minus the truth's, / inter-ocular distance; `vidrec.tasks.landmarks`),
the predictions' own motion, training time; a bar plot PNG and a CED plot; ``RESULT prernn_tasks_faces ...``.
``--eval-dir OTHER`` also scores every trained model on all videos of another folder of the same format;
``faces-eval CHECKPOINT DIR`` scores a `vidrec train` landmarks checkpoint on any such folder.

Default sizes (about 20 min on a loaded 2-core CPU): 64-pixel crops (2x2 maps), 16-frame clips, 4 jitter
versions, 60 steps of 4 clips, AdamW lr 3e-5, vanilla cells, detector boxes x 1.2, seeds 0 1 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidrec import benchdocs
from vidrec.data.landmarks import (
    Box,
    FaceTrack,
    crop_face,
    draw_jitter,
    face_boxes,
    find_videos,
    read_track,
    split_tracks,
)
from vidrec.data.transforms import normalize_rgb
from vidrec.models.layers import num_steps
from vidrec.progress import progress
from vidrec.tasks.landmarks import coord_loss, landmark_metrics, per_step_points, plot_ced

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # prernn_tasks.py beside this file, however this one was loaded
    sys.path.insert(0, str(HERE))
from prernn_tasks import fmt, mean_std, print_table  # noqa: E402 - the benchmarks' shared table plumbing

MODELS = ("cnn", "rnn", "prernn")
METRICS = ("val_nme", "val_nme_ip", "val_auc08", "val_fail08", "val_jitter", "val_motion")


# ----------------------------------------------------------------------------- models


def build(name: str, seed: int, cell: str = "rnn", *, pretrained: bool = True) -> nn.Module:
    """One of `MODELS` with a 136-wide head (`cell`: the recurrent models' cell); `seed` draws its fresh
    weights."""
    from vidrec.models.prernn import build_rnn_baseline
    from vidrec.models.registry import get_model

    torch.manual_seed(seed)
    if name == "cnn":
        return get_model("single_frame_mobilenet_v2", num_classes=136, pretrained=pretrained)
    if name == "rnn":
        return build_rnn_baseline("mobilenet_v2", "features.18.0", cell, num_classes=136,
                                  pretrained=pretrained, freeze_trunk=True, kernel_size=1)  # fmt: skip
    opts = {"num_classes": 136, "pretrained": pretrained, "freeze_trunk": True, "kernel_size": 1}
    if cell == "rnn":
        return get_model("prernn_rnn_conv_mobilenet_v2", **opts)
    from vidrec.models.prernn import build_prernn

    opts.pop("num_classes")
    return build_prernn("mobilenet_v2", "features.18.0", cell, num_classes=136, **opts)


@torch.no_grad()
def mean_shape_start(model: nn.Module, data: list[dict]) -> nn.Module:
    """`model` whose last Linear gives the mean training shape (zero weights, bias = mean target)."""
    head = _net(model).classifier[-1]
    head.weight.zero_()
    head.bias.copy_(torch.cat([d["targets"].flatten(0, 1) for d in data]).mean(0).flatten())
    return model


def _net(model: nn.Module) -> nn.Module:
    """The torchvision MobileNetV2 inside a PreRNN / SingleFrame model."""
    return model.net if hasattr(model, "net") else model.backbone.net


def head_forward(model: nn.Module, maps: torch.Tensor) -> torch.Tensor:
    """Cached ``features.17`` maps `(B, T, 320, h, w)` -> points `(B, T, 68, 2)` (centred crop units): the
    model's own ``features.18``, pooling and classifier, the same arithmetic as its forward on pixels."""
    b, t = maps.shape[:2]
    net = _net(model)
    with num_steps(net, t):
        y = net.features[18](rearrange(maps, "b t ... -> (b t) ..."))  # (B*T, 1280, h, w)
    logits = net.classifier(F.adaptive_avg_pool2d(y, 1).flatten(1))  # (B*T, 136)
    return per_step_points(rearrange(logits, "(b t) k -> b t k", b=b), t)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    net = _net(model)
    return [*net.features[18].parameters(), *net.classifier.parameters()]


# ----------------------------------------------------------------------------- cached crops


def frames_of(track: FaceTrack) -> np.ndarray:
    """Every frame `(F, H, W, 3)` of the track's part of its video."""
    from vidrec.io import read_frames

    return read_frames(track.video, list(range(track.first, track.first + len(track))))


@torch.no_grad()
def cache_maps(
    trunk: nn.Module, frames: np.ndarray, boxes: list[Box], size: int, batch: int = 32, desc: str = "crops"
) -> torch.Tensor:
    """``features.17`` maps `(F, 320, h, w)` of each frame's crop in its box."""
    out = []
    for s in progress(range(0, len(frames), batch), desc=desc, unit="batch"):
        crops = np.stack([crop_face(f, b, size) for f, b in zip(frames[s : s + batch], boxes[s : s + batch])])
        x = normalize_rgb(torch.from_numpy(crops).permute(0, 3, 1, 2))  # (b, 3, S, S)
        out.append(trunk(x))
    return torch.cat(out)


def prepare(track: FaceTrack, trunk: nn.Module, args: argparse.Namespace, *, jitters: int) -> dict:
    """Cached maps `(V, F, 320, h, w)` (V crop versions: 1 unjittered, or `jitters` jittered), crop-space
    targets `(V, F, 68, 2)` (centred units), boxes `(V, F, 3)` and the image points `(F, 68, 2)`."""
    frames, pts = frames_of(track), track.points
    rng = np.random.default_rng(1234)
    maps, targets, boxes = [], [], []
    for v in range(max(jitters, 1)):
        jitter = (
            draw_jitter(rng, scale=args.jitter_scale, shift=args.jitter_shift) if jitters else (1.0, 0, 0)
        )
        bx = [b.moved(*jitter) for b in face_boxes(track, margin=args.margin, source=args.box)]
        maps.append(cache_maps(trunk, frames, bx, args.size, desc=f"{track.video.stem} v{v}"))
        targets.append(np.stack([b.to_crop(p, args.size) for b, p in zip(bx, pts)]) / args.size - 0.5)
        boxes.append(np.stack([b.array() for b in bx]))
    return {
        "maps": torch.stack(maps),
        "targets": torch.from_numpy(np.stack(targets).astype(np.float32)),
        "boxes": np.stack(boxes),
        "points": pts,
    }


def pretrained_trunk() -> nn.Module:
    from vidrec.models.backbones import Backbone

    return Backbone("mobilenet_v2", pretrained=True).net.features[:18].eval()


# ----------------------------------------------------------------------------- train / evaluate


def train_one(model: nn.Module, data: list[dict], args: argparse.Namespace, seed: int) -> float:
    """`args.steps` AdamW steps on random clips of the cached training tracks; returns seconds."""
    params = trainable(model)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    t, model = args.frames, model.train()
    start = time.perf_counter()
    for _ in progress(range(args.steps), desc="train", unit="step"):
        xs, ys = [], []
        for _ in range(args.batch):
            d = data[rng.integers(len(data))]
            v, s = rng.integers(d["maps"].shape[0]), rng.integers(d["maps"].shape[1] - t + 1)
            xs.append(d["maps"][v, s : s + t])
            ys.append(d["targets"][v, s : s + t])
        loss = coord_loss(head_forward(model, torch.stack(xs)), torch.stack(ys), kind="l1")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(model: nn.Module, data: list[dict], frames: int) -> dict[str, float]:
    """The landmarks task's metrics on non-overlapping clips of every track (image pixels)."""
    model.eval()
    preds, truths = [], []
    for d in data:
        n = d["maps"].shape[1] // frames * frames
        maps = rearrange(d["maps"][0, :n], "(c t) ... -> c t ...", t=frames)  # (C, T, 320, h, w)
        pred = head_forward(model, maps).numpy().reshape(n, 68, 2)  # centred crop units
        box = d["boxes"][0, :n]  # (n, 3)
        preds.append(((pred + 0.5) * box[:, None, 2:3] + box[:, None, :2]).reshape(-1, frames, 68, 2))
        truths.append(d["points"][:n].reshape(-1, frames, 68, 2))
    return landmark_metrics(np.concatenate(preds), np.concatenate(truths))


def faces(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    tracks = [read_track(v) for v in find_videos(args.faces_dir)]
    train_tracks, val_tracks = split_tracks(
        tracks, val_fraction=args.val_fraction, gap=args.frames, by=args.split
    )
    trunk = pretrained_trunk()
    print(
        f"train: {[t.video.name for t in train_tracks]}  val: {[t.video.name for t in val_tracks]}",
        flush=True,
    )
    train = [prepare(t, trunk, args, jitters=args.jitters) for t in train_tracks]
    val = [prepare(t, trunk, args, jitters=0) for t in val_tracks]
    others = [prepare(read_track(v), trunk, args, jitters=0) for d in args.eval_dir for v in find_videos(d)]
    results: dict[str, list[dict]] = {m: [] for m in args.models}
    errors: dict[str, np.ndarray] = {}
    for seed in args.seeds:
        for name in args.models:
            model = mean_shape_start(build(name, seed, args.cell), train)
            seconds = train_one(model, train, args, seed)
            m = evaluate(model, val, args.frames)
            errors.setdefault(name, m.pop("errors"))
            if others:
                m["other_nme"] = evaluate(model, others, args.frames)["val_nme"]
            results[name].append({**m, "seconds": seconds})
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()), flush=True)
    report(results, errors, args)


def report(results: dict[str, list[dict]], errors: dict[str, np.ndarray], args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keys = [*METRICS, *(["other_nme"] if args.eval_dir else []), "seconds"]
    what = (f"face alignment on {args.faces_dir} (dlib pseudo ground truth), split by {args.split}, "
            f"{len(args.seeds)} seeds, {args.size}-px crops, {args.frames}-frame clips, {args.steps} steps x "
            f"{args.batch} clips, {args.cell} cells")  # fmt: skip
    print(f"\n{what}\n")
    rows = [
        [name] + [fmt([r[k] for r in runs], 1 if k == "seconds" else 4) for k in keys]
        for name, runs in results.items()
    ]
    table = print_table(["model", *[k.removeprefix("val_") for k in keys]], rows)
    (out / "faces.json").write_text(
        json.dumps({"args": vars(args), "results": results}, indent=1, default=str)
    )
    (out / "faces_table.txt").write_text(table + "\n")
    bar_plot(out / "faces.png", results)
    plot_ced(errors, out / "faces_ced.png")
    means = {f"{n}_{k.removeprefix('val_')}": mean_std([r[k] for r in rs])[0] for n, rs in results.items()
             for k in ("val_nme", "val_auc08", "val_jitter")}  # fmt: skip
    print(f"\nplots: {out / 'faces.png'}, {out / 'faces_ced.png'}")
    result = "RESULT prernn_tasks_faces " + " ".join(f"{k}={v:.4g}" for k, v in means.items())
    print(result, flush=True)
    if getattr(args, "write_docs", False):
        text = [
            "## PreRNN: sequential face alignment (`benchmarks/prernn_tasks.py faces`)",
            "",
            f"`{benchdocs.command()}`: {what}; mean ± std over seeds. **The points are dlib's",
            "predictions (pseudo ground truth)**: every number is agreement with dlib. Jitter: mean",
            "|motion of the predicted points - motion of the true points| between frames / inter-ocular",
            "distance.",
            "",
            "```text",
            table,
            "```",
            "",
            f"`{result}`. Machine: {benchdocs.machine()}.",
        ]
        benchdocs.write_section("prernn_faces", "\n".join(text))


def bar_plot(path: Path, results: dict[str, list[dict]]) -> None:
    """NME, AUC@0.08 and jitter per model: means with std error bars over seeds, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.5))
    for ax, (key, label) in zip(axes, [("val_nme", "NME (inter-ocular), lower better"),
                                       ("val_auc08", "AUC@0.08, higher better"),
                                       ("val_jitter", "jitter, lower better")]):  # fmt: skip
        stats = [mean_std([r[key] for r in results[n]]) for n in names]
        ax.bar(
            names,
            [m for m, _ in stats],
            yerr=[s for _, s in stats],
            capsize=3,
            color=["C0", "C1", "C2"][: len(names)],
        )
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("face alignment vs dlib pseudo ground truth (mean +- std over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def faces_eval(args: argparse.Namespace) -> None:
    """Score a `vidrec train` landmarks checkpoint on every video of a folder (all of them validation)."""
    from torch.utils.data import DataLoader

    from vidrec.data.landmarks import LandmarkClips
    from vidrec.engine.checkpoint import load_task

    model, task = load_task(args.checkpoint)
    if task.name != "landmarks":
        raise ValueError(f"{args.checkpoint} is a task={task.name} checkpoint, not a landmarks one")
    ds = LandmarkClips([read_track(v) for v in find_videos(args.faces_dir)], task.crop, train=False)
    loader = DataLoader(ds, batch_size=args.batch, collate_fn=task.collate())
    m = task.validate(model, loader, device=torch.device("cpu"), amp=False, progress=True)
    m.pop("val_skipped")
    print_table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in m.items()])
    print(
        "RESULT prernn_tasks_faces_eval "
        + " ".join(f"{k.removeprefix('val_')}={v:.4g}" for k, v in m.items())
    )


# ----------------------------------------------------------------------------- command line


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``faces`` and ``faces-eval`` subcommands (also used by benchmarks/prernn_tasks.py)."""
    f = sub.add_parser("faces", help="face alignment: per-frame CNN vs traditional RNN vs PreRNN")
    f.add_argument("faces_dir", help="videos with <stem>.landmarks.json (../shared/data/faces_video)")
    f.add_argument(
        "--out", default="runs/prernn_tasks", help="folder of the JSON and plots (default: %(default)s)"
    )
    f.add_argument("--split", choices=("blocks", "video"), default="blocks", help="(default: %(default)s)")
    f.add_argument(
        "--val-fraction", type=float, default=0.25, help="share kept for validation (default: %(default)s)"
    )
    f.add_argument(
        "--box",
        choices=("detector", "points"),
        default="detector",
        help="face box: the stored detector rectangle, or the true points' box (default: %(default)s)",
    )
    f.add_argument(
        "--margin", type=float, default=1.2, help="box side / rectangle side (default: %(default)s)"
    )
    f.add_argument("--size", type=int, default=64, help="face crop size in pixels (default: %(default)s)")
    f.add_argument("--frames", type=int, default=16, help="frames per clip (default: %(default)s)")
    f.add_argument(
        "--jitters",
        type=int,
        default=4,
        help="jittered crop versions per training frame (default: %(default)s)",
    )
    f.add_argument("--jitter-scale", type=float, default=0.1, help="box scale jitter (default: %(default)s)")
    f.add_argument(
        "--jitter-shift", type=float, default=0.05, help="box shift jitter, box sides (default: %(default)s)"
    )
    f.add_argument(
        "--cell",
        choices=("rnn", "gru", "lstm"),
        default="rnn",
        help="recurrent cell of rnn and "
        "prernn (default: %(default)s; an LSTM costs 4x a vanilla RNN at 1280 channels)",
    )
    f.add_argument("--steps", type=int, default=60, help="training steps per run (default: %(default)s)")
    f.add_argument("--batch", type=int, default=4, help="clips per step (default: %(default)s)")
    f.add_argument("--lr", type=float, default=3e-5, help="AdamW learning rate (default: %(default)s)")
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: %(default)s)")
    f.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="(default: all)")
    f.add_argument("--eval-dir", action="append", default=[], help="also score every model on this folder")
    f.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    f.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    f.set_defaults(func=faces)
    e = sub.add_parser("faces-eval", help="score a `vidrec train` landmarks checkpoint on a video folder")
    e.add_argument("checkpoint", help="best.safetensors / last.safetensors of a task=landmarks run")
    e.add_argument("faces_dir", help="videos with <stem>.landmarks.json; every clip of every video is scored")
    e.add_argument("--batch", type=int, default=4, help="clips per forward (default: %(default)s)")
    e.set_defaults(func=faces_eval)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
