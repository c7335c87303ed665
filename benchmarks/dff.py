"""Deep Feature Flow on DAVIS-2016: J, F and frames/s of per-frame segmentation vs DFF at key intervals
l = 1, 2, 5, 10 and our adaptive schedule (at most the key frames of l = 10), with a learned flow net and
with DIS flow, on CPU. Issue 12's goal: at l = 10, >= 5x the per-frame frames/s for <= 2 J points lost.

What runs (sizes are the defaults; all printed):
1. Frames of the training and validation sequences (the fixed split of `vidrec.data.davis`, or
   --train-sequences / --val-sequences) are read once at --size (240 x 432).
2. Feature net: ImageNet MobileNetV2 dilated to output stride 16 (`segnet_mobilenet_v2`), kept FROZEN
   here (BatchNorm in eval) so its features of the training frames are computed once and cached; this
   keeps the run in ~20 min on a loaded 2-core machine. (`vidrec dff train` trains it end to end.)
3. Per-frame net: the light task net trained on the cached features (--head-epochs).
4. Learned flow: `FlowNetLite` pretrained self-supervised on the training frames (--pretrain-steps,
   `vidrec.dff.pretrain.train_flownet`), then trained end to end with the task net and the scale field on
   (key, current) pairs, key 0..9 frames back, loss on the current frame (--dff-steps; methods.md 4.5).
   DIS flow: the per-frame net's parts with OpenCV DIS, no training.
5. Every model walks each validation sequence with `DFF.run`; J and F as the DAVIS toolkit scores them
   (logits upsampled to the native 480p masks, each sequence's first and last frame left out unless
   --all-frames), frames/s of the model alone (frames decoded beforehand). The adaptive schedule (budget 2
   key frames per 20, flow signal, max gap 15) takes its threshold from the training sequences: the one
   whose key-frame rate is closest to l = 10's.

Given --per-frame / --dff checkpoints of the segment task (from `vidrec train segment_davis` /
`vidrec dff train`), steps 2-4 are skipped and those models are measured.

Usage: python benchmarks/dff.py ../shared/data/davis2016 --out runs/bench_dff
Writes table.md, results.json and dff_speed_accuracy.png under --out; ends with `RESULT dff ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidrec.data.davis import find_sequences, split_names
from vidrec.data.transforms import normalize_rgb
from vidrec.dff import DFF, Adaptive, FixedInterval, ScaleField, warp
from vidrec.dff.davis_eval import evaluate_sequences, load_sequence, summarize
from vidrec.dff.flownets import DISFlow, FlowNetLite
from vidrec.models.segnet import FEATURE_CHANNELS, SegHead, segnet_mobilenet_v2
from vidrec.progress import progress

INTERVALS = (1, 2, 5, 10)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("root", help="a DAVIS-layout folder (JPEGImages/480p, Annotations/480p)")
    p.add_argument("--train-sequences", nargs="*", default=None, help="default: the fixed training split")
    p.add_argument("--val-sequences", nargs="*", default=None, help="default: the fixed validation split")
    p.add_argument(
        "--size", type=int, nargs=2, default=[240, 432], metavar=("H", "W"), help="default 240 432"
    )
    p.add_argument("--head-epochs", type=int, default=6, help="per-frame task-net epochs (default 6)")
    p.add_argument(
        "--pretrain-steps", type=int, default=300, help="flow-net self-supervised steps (default 300)"
    )
    p.add_argument("--dff-steps", type=int, default=300, help="DFF end-to-end steps on pairs (default 300)")
    p.add_argument("--batch", type=int, default=8, help="batch size of all training steps (default 8)")
    p.add_argument("--max-offset", type=int, default=9, help="key 0..N frames before the current (default 9)")
    p.add_argument(
        "--train-frames", type=int, default=0, help="the first N frames of each training sequence (0: all)"
    )
    p.add_argument(
        "--val-frames",
        type=int,
        default=0,
        help="score the first N frames of each validation sequence (0: all; default 0)",
    )
    p.add_argument(
        "--per-frame", default=None, help="a segment-task checkpoint to measure instead of training"
    )
    p.add_argument("--dff", default=None, help="a DFF segment-task checkpoint to measure instead of training")
    p.add_argument(
        "--all-frames",
        action="store_true",
        help="score every frame (default: leave out each sequence's first and last, as the DAVIS toolkit)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--out", default="runs/bench_dff", help="output folder (default runs/bench_dff)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- training (frozen feature net)


@torch.no_grad()
def cache_features(feature_net, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """Feature maps (T, C, h, w) float16 of each sequence's uint8 frames (T, 3, H, W)."""
    out = []
    for seq in progress(frames, desc="cache features"):
        out.append(
            torch.cat([feature_net(normalize_rgb(seq[i : i + 8])).half() for i in range(0, len(seq), 8)])
        )
    return out


def upsampled_ce(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, masks)


def train_head(feats, masks, *, epochs: int, batch: int, seed: int) -> SegHead:
    """The per-frame task net on cached features (Adam, lr 1e-3)."""
    torch.manual_seed(seed)
    head = SegHead(FEATURE_CHANNELS, 2)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    index = [(s, i) for s, f in enumerate(feats) for i in range(len(f))]
    rng = random.Random(seed)
    for _ in progress(range(epochs), desc="per-frame head (epochs)"):
        rng.shuffle(index)
        for b in range(0, len(index) - batch + 1, batch):
            items = index[b : b + batch]
            x = torch.stack([feats[s][i] for s, i in items]).float()
            y = torch.stack([masks[s][i] for s, i in items])
            loss = upsampled_ce(head(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def train_dff_pairs(dff: DFF, frames, feats, masks, *, steps, batch, max_offset, seed) -> list[float]:
    """DFF end to end on (key, current) pairs: flow net, scale field and task net; cached key features
    stand in for the frozen feature net's."""
    flow_net, scale, head = dff.flow_net, dff.scale, dff.task_net
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = [*flow_net.parameters(), *scale.parameters(), *head.parameters()]
    opt = torch.optim.Adam(
        [
            {"params": [*flow_net.parameters(), *scale.parameters()], "lr": 1e-4},
            {"params": head.parameters(), "lr": 1e-4},
        ]
    )
    flow_net.train(), head.train()
    losses = []
    for _ in progress(range(steps), desc="DFF pairs (steps)"):
        items = []
        for _ in range(batch):
            s = rng.randrange(len(frames))
            i = rng.randrange(len(frames[s]))
            items.append((s, i, max(0, i - rng.randint(0, max_offset))))
        cur = normalize_rgb(torch.stack([frames[s][i] for s, i, _ in items]))
        key = normalize_rgb(torch.stack([frames[s][k] for s, _, k in items]))
        key_feat = torch.stack([feats[s][k] for s, _, k in items]).float()
        same = torch.tensor([i == k for _, i, k in items]).view(-1, 1, 1, 1)
        flow, s_field = dff.flow(key, cur, key_feat.shape[-2:])  # current -> key, feature px; S
        feat = warp(key_feat, flow, s_field)
        feat = torch.where(same, key_feat, feat)  # eq_flag: the key is the current frame
        loss = upsampled_ce(head(feat), torch.stack([masks[s][i] for s, i, _ in items]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    flow_net.eval(), head.eval()
    return losses


# ----------------------------------------------------------------------------- measuring


def calibrate_threshold(dff, seqs, size, loaded, *, rate: float) -> tuple[float, float]:
    """(threshold, its key-frame rate) of the adaptive schedule closest to `rate` on `seqs`."""
    best = None
    for t in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
        res = evaluate_sequences(dff, seqs, adaptive(t), size=size, progress=False, loaded=loaded)
        r = summarize(res)["key_rate"]
        if best is None or abs(r - rate) < abs(best[1] - rate):
            best = (t, r)
    return best


def adaptive(threshold: float) -> Adaptive:
    return Adaptive(budget=2, window=20, threshold=threshold, signal="flow", max_gap=15)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, style in (("learned", "o-"), ("dis", "s--")):
        pts = [r for r in rows if r["flow"] == method and r["schedule"].startswith("l=")]
        ax.plot(
            [r["fps"] for r in pts],
            [r["J"] for r in pts],
            style,
            label=f"DFF, {method} flow (l = 1, 2, 5, 10)",
        )
        for r in pts:
            ax.annotate(
                r["schedule"], (r["fps"], r["J"]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        for r in rows:
            if r["flow"] == method and r["schedule"] == "adaptive":
                ax.plot(r["fps"], r["J"], "*", markersize=12, label=f"adaptive, {method} flow")
    base = next(r for r in rows if r["flow"] == "-")
    ax.plot(base["fps"], base["J"], "kD", markersize=8, label="per-frame")
    ax.axhline(base["J"] - 0.02, color="grey", lw=0.8, ls=":", label="per-frame J - 2 points")
    ax.set_xlabel("frames/s (CPU, model only)")
    ax.set_ylabel("J (mean over validation sequences)")
    ax.set_title("DFF on DAVIS-2016 validation: speed vs accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def measure_all(models: dict, val, size, loaded, threshold, *, all_frames: bool = False) -> list[dict]:
    rows = []
    schedules = [(f"l={n}", lambda n=n: FixedInterval(n)) for n in INTERVALS]
    schedules.append(("adaptive", lambda: adaptive(threshold[0])))
    for name, (flow, dff) in models.items():
        for label, make in schedules if flow != "-" else [("l=1", lambda: FixedInterval(1))]:
            res = evaluate_sequences(dff, val, make(), size=size, loaded=loaded, all_frames=all_frames)
            s = summarize(res)
            rows.append(
                {
                    "model": name,
                    "flow": flow,
                    "schedule": label,
                    **s,
                    "per_sequence": {r.name: [r.J, r.F, r.keys] for r in res},
                }
            )
            print(
                f"  {name:10s} {label:9s} J {s['J']:.3f} F {s['F']:.3f} {s['fps']:.1f} frames/s "
                f"keys {s['keys']}/{s['frames']}",
                flush=True,
            )
    return rows


def table(rows: list[dict]) -> str:
    base = next(r for r in rows if r["flow"] == "-")
    lines = [
        "| model | flow | schedule | key frames | J | F | frames/s | speed-up | J lost (points) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['flow']} | {r['schedule']} | {r['keys']}/{r['frames']} | {r['J']:.3f} | "
            f"{r['F']:.3f} | {r['fps']:.1f} | {r['fps'] / base['fps']:.2f}x | "
            f"{100 * (base['J'] - r['J']):+.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if (out / "results.json").exists() and not args.overwrite:
        sys.exit(f"{out}/results.json exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    size = tuple(args.size)
    train_seqs = find_sequences(args.root, args.train_sequences or split_names("train"))
    val_seqs = find_sequences(args.root, args.val_sequences or split_names("val"))
    if args.train_frames:
        train_seqs = [
            dataclasses.replace(s, frames=s.frames[: args.train_frames], masks=s.masks[: args.train_frames])
            for s in train_seqs
        ]
    if args.val_frames:
        val_seqs = [
            dataclasses.replace(s, frames=s.frames[: args.val_frames], masks=s.masks[: args.val_frames])
            for s in val_seqs
        ]
    start = time.perf_counter()
    print(
        f"train: {[s.name for s in train_seqs]} ({sum(map(len, train_seqs))} frames)\n"
        f"val: {[s.name for s in val_seqs]} ({sum(map(len, val_seqs))} frames); size {size}, "
        f"{args.threads} threads, seed {args.seed}",
        flush=True,
    )
    loaded: dict = {}
    train_data = [  # masks at the working size: training targets, not scored
        load_sequence(s, size, mask_size=size) for s in progress(train_seqs, desc="read training frames")
    ]
    frames = [f for f, _ in train_data]
    masks = [torch.from_numpy(m).long() for _, m in train_data]
    info: dict = {
        "size": list(size),
        "scored": "native mask size, "
        + ("every frame" if args.all_frames else "first and last frames left out"),
        "threads": args.threads,
        "seed": args.seed,
        "train": [s.name for s in train_seqs],
        "val": [s.name for s in val_seqs],
    }
    if args.per_frame and args.dff:
        from vidrec.dff import as_dff
        from vidrec.engine.checkpoint import load_task

        seg = load_task(args.per_frame)[0]
        learned = as_dff(load_task(args.dff)[0])
        feature_net, head = seg.feature_net, seg.task_net
    else:
        seg = segnet_mobilenet_v2(pretrained=True, output_stride=16).eval()
        feature_net = seg.feature_net.requires_grad_(False)
        feats = cache_features(feature_net, frames)
        head = train_head(feats, masks, epochs=args.head_epochs, batch=args.batch, seed=args.seed)
        from vidrec.dff.pretrain import train_flownet

        flow_net = FlowNetLite(stride=16)
        clips = [f.permute(0, 2, 3, 1).numpy() for f in frames]  # (T, H, W, 3) uint8
        pre = train_flownet(flow_net, clips, steps=args.pretrain_steps, batch=args.batch, seed=args.seed)
        scale = ScaleField(flow_net.scale_channels, FEATURE_CHANNELS)
        dff_head = SegHead(FEATURE_CHANNELS, 2)
        dff_head.load_state_dict(head.state_dict())
        learned = DFF(feature_net, flow_net, dff_head, feature_stride=16, scale_field=scale)
        losses = train_dff_pairs(
            learned,
            frames,
            feats,
            masks,
            steps=args.dff_steps,
            batch=args.batch,
            max_offset=args.max_offset,
            seed=args.seed,
        )
        learned.eval()
        info["pretrain_loss"] = [float(np.mean(pre[:10])), float(np.mean(pre[-10:]))]
        info["dff_loss"] = [float(np.mean(losses[:10])), float(np.mean(losses[-10:]))]
        del feats
    per_frame = DFF(feature_net, DISFlow(), head, feature_stride=16).eval()  # l = 1: never runs the flow
    dis = DFF(feature_net, DISFlow(), head, feature_stride=16).eval()
    info["train_seconds"] = time.perf_counter() - start
    print(
        f"training done in {info['train_seconds']:.0f} s; measuring on {len(val_seqs)} sequences", flush=True
    )
    calib = train_seqs[:3]
    l10 = summarize(
        evaluate_sequences(learned, calib, FixedInterval(10), size=size, progress=False, loaded=loaded)
    )["key_rate"]
    threshold = calibrate_threshold(learned, calib, size, loaded, rate=l10)
    info["adaptive"] = {
        "threshold": threshold[0],
        "calibration_key_rate": threshold[1],
        "l10_key_rate": l10,
        "calibrated_on": [s.name for s in calib],
    }
    models = {"per-frame": ("-", per_frame), "DFF": ("learned", learned), "DFF-DIS": ("dis", dis)}
    rows = measure_all(models, val_seqs, size, loaded, threshold, all_frames=args.all_frames)
    text = table(rows)
    print("\n" + text)
    plot(rows, out / "dff_speed_accuracy.png")
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    base = rows[0]
    get = {(r["flow"], r["schedule"]): r for r in rows}
    l10r, ada = get[("learned", "l=10")], get[("learned", "adaptive")]
    dis10 = get[("dis", "l=10")]
    print(
        f"wrote {out}/table.md, results.json, dff_speed_accuracy.png; "
        f"{time.perf_counter() - start:.0f} s in all"
    )
    print(
        f"RESULT dff per_frame_J={base['J']:.3f} l10_J={l10r['J']:.3f} "
        f"l10_speedup={l10r['fps'] / base['fps']:.2f} "
        f"l10_J_lost_points={100 * (base['J'] - l10r['J']):.1f} adaptive_J={ada['J']:.3f} "
        f"adaptive_keys={ada['keys']} l10_keys={l10r['keys']} dis_l10_J={dis10['J']:.3f} "
        f"dis_l10_speedup={dis10['fps'] / base['fps']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
