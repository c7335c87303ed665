"""Deep Feature Flow for video object detection on one annotated video (PETS 2009 S2L1): box AP and
frames/s of a per-frame FCOS detector vs DFF at key intervals l = 2, 5, 10 with a learned flow net and with
DIS flow, on CPU. Issue 24's goals: per-frame AP@0.5 >= 0.75 on frames never trained on; at l = 10
>= 3.5x the per-frame frames/s for <= 2 AP@0.5 points lost; the run in 40 minutes on the 2-core machine.

What runs (sizes are the defaults; all printed):
1. The frames of --train-frames and --val-frames (1-based, inclusive, contiguous) are decoded once at
   --size (360 x 480) and kept in memory; the boxes come from the MOT file GT (`vidrec.data.mot`).
2. Per-frame detector (`fcos_mobilenet_v2`: ImageNet MobileNetV2 + FPN, strides 8/16/32, FCOS head): the
   first --frozen MobileNetV2 blocks (7: up to stride 8) are FROZEN and their output for the training
   frames (and their mirror images) is computed once and cached; the later blocks, the FPN and the head
   are trained --epochs epochs (AdamW, cosine), BatchNorm kept at its ImageNet statistics. This keeps the
   run inside 40 minutes on a loaded 2-core machine (`vidrec train detect_pets09` trains it all).
3. Learned flow: `FlowNetLite` (stride 8, the pair pooled by --flow-downscale: 4 = 1/4 of the image)
   pretrained self-supervised on the training frames (--pretrain-steps,
   `vidrec.dff.pretrain.train_flownet`), then DFF trained end to end on (key, current) pairs, key
   0..--max-offset frames back, FCOS's loss on the current frame: flow net and scale field (at --lr), the
   trainable blocks, FPN and head (at --lr / 10) (--dff-steps). DIS flow: the per-frame detector's parts
   with OpenCV DIS on the pair pooled by --dis-downscale, no training.
4. Cost: `vidrec.dff.cost.part_costs` (split by `vidrec.dff.detect.cost_steps`) on a validation pair 9
   frames apart: FLOPs and median ms of every part (key: feature net, head, postprocess; non-key: flow,
   scale field, warp, head, postprocess), r = key / non-key and s(l) = l / (1 + (l - 1) / r), printed
   beside the measured speed-up.
5. Every model walks the validation frames in order with `PyramidDFF.run` (l = 1 is per-frame); box AP as
   COCO scores it (`vidrec.engine.det_metrics.BoxAP`, conf-0 boxes as crowd/ignore regions), frames/s
   of the model alone (frames decoded beforehand; per-frame timed before and after the others, mean).

Usage: python benchmarks/dff_detect.py ../shared/data/pets09_s2l1/vtest.avi \
    ../shared/data/pets09_s2l1/gt_train.txt --train-frames 1-350 --val-frames 351-500 --out DIR
Writes table.md, results.json, dff_detect_speed_accuracy.png, pr_curves.png and the trained weights
(per_frame.safetensors: `fcos_mobilenet_v2`, dff_learned.safetensors: `dff_fcos_mobilenet_v2`) under
--out; ends with
`RESULT dff_detect ...`; --write-docs sets the `dff_detect` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from vidrec.data.mot import load_frames, parse_frames, read_mot
from vidrec.data.transforms import normalize_rgb
from vidrec.dff.cost import amortised_speed_up, flop_ratio, part_costs, path_totals
from vidrec.dff.detect import PyramidDFF, cost_steps, warp_pyramid
from vidrec.dff.flownets import DISFlow, FlowNetLite
from vidrec.dff.model import ScaleField
from vidrec.dff.schedule import FixedInterval
from vidrec.engine.det_metrics import BoxAP
from vidrec.models.detector import PYRAMID_BLOCKS, Detector, fcos_mobilenet_v2
from vidrec.progress import progress

INTERVALS = (2, 5, 10)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("video", help="the video (e.g. ../shared/data/pets09_s2l1/vtest.avi)")
    p.add_argument("gt", help="its MOT ground truth (e.g. ../shared/data/pets09_s2l1/gt_train.txt)")
    p.add_argument("--train-frames", required=True, help="training frames A-B, 1-based, inclusive")
    p.add_argument("--val-frames", required=True, help="validation frames C-D, never trained on")
    p.add_argument("--size", type=int, nargs=2, default=[360, 480], metavar=("H", "W"))
    p.add_argument("--frozen", type=int, default=7, help="MobileNetV2 blocks frozen and cached (default 7)")
    p.add_argument("--epochs", type=int, default=3, help="per-frame training epochs (default 3)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--pretrain-steps", type=int, default=1000, help="flow-net self-supervised steps")
    p.add_argument("--dff-steps", type=int, default=2000, help="DFF end-to-end steps on pairs")
    p.add_argument(
        "--flow-downscale", type=int, default=4, help="the learned flow net's pair pooling (default 4)"
    )
    p.add_argument("--dis-downscale", type=int, default=2, help="DIS's pair pooling (default 2)")
    p.add_argument("--topk", type=int, default=100, help="FCOS candidates per level before NMS (default 100)")
    p.add_argument("--cost-repeats", type=int, default=15, help="timed calls per part (default 15)")
    p.add_argument("--max-offset", type=int, default=9, help="pairs: key 0..N frames before the current")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared, loaded machine 2 threads were 10x slower)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for table.md, results.json and the plots")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out/results.json")
    p.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- data


def targets_of(gt, frames: range, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(boxes, ignore regions) of each frame in working pixels."""
    h, w = size
    scale = np.array([w / gt.size[1], h / gt.size[0]] * 2, np.float32)
    return [tuple(a * scale for a in gt.frame(f)) for f in frames]


def flip_boxes(b: np.ndarray, width: int) -> np.ndarray:
    return np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], axis=1) if len(b) else b


def fcos_targets(boxes: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.from_numpy(np.ascontiguousarray(b)).reshape(-1, 4),
            "labels": torch.ones(len(b), dtype=torch.int64),
        }
        for b in boxes
    ]


# ----------------------------------------------------------------------------- the split feature net


def stem_forward(feature_net, x: torch.Tensor, frozen: int) -> torch.Tensor:
    """The frozen MobileNetV2 blocks 0..frozen-1."""
    for i in range(frozen):
        x = feature_net.body[str(i)](x)
    return x


def rest_forward(feature_net, x: torch.Tensor, frozen: int) -> OrderedDict:
    """The pyramid from the frozen blocks' output: blocks frozen..17, then the FPN."""
    taps = OrderedDict()
    if str(frozen - 1) in PYRAMID_BLOCKS:
        taps[PYRAMID_BLOCKS[str(frozen - 1)]] = x
    for i in range(frozen, 18):
        x = feature_net.body[str(i)](x)
        if str(i) in PYRAMID_BLOCKS:
            taps[PYRAMID_BLOCKS[str(i)]] = x
    return feature_net.fpn(taps)


@torch.no_grad()
def cache_stem(feature_net, frames: np.ndarray, frozen: int) -> torch.Tensor:
    """`(2, T, C, h, w)`: the frozen blocks' output of every frame and of its mirror image."""
    out = []
    for flip in (False, True):
        rows = []
        for i in progress(range(0, len(frames), 8), desc=f"cache frozen blocks{' (mirrored)' * flip}"):
            x = torch.from_numpy(frames[i : i + 8]).permute(0, 3, 1, 2)
            rows.append(stem_forward(feature_net, normalize_rgb(x.flip(-1) if flip else x), frozen))
        out.append(torch.cat(rows))
    return torch.stack(out)


def trainable(det: Detector, frozen: int) -> list[torch.nn.Parameter]:
    body = det.feature_net.body
    for i in range(frozen):
        body[str(i)].requires_grad_(False)
    return [p for p in det.parameters() if p.requires_grad]


def train_per_frame(det: Detector, cache, targets, *, frozen, epochs, batch, lr, seed) -> list[float]:
    """Blocks frozen..17, FPN and head on the cached frozen output (AdamW, cosine), mirrored half the time."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = trainable(det, frozen)
    n = cache.shape[1]
    steps = epochs * (n // batch)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    width = IMAGE_SIZE[1]
    det.train()
    det.feature_net.body.eval()  # BatchNorm at its ImageNet statistics
    losses = []
    bar = progress(total=steps, desc="per-frame detector (steps)")
    for _ in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        for b in range(0, n - batch + 1, batch):
            items = [(i, rng.random() < 0.5) for i in order[b : b + batch]]
            x = torch.stack([cache[int(f), i] for i, f in items])
            boxes = [flip_boxes(targets[i][0], width) if f else targets[i][0] for i, f in items]
            out = det.task_net(rest_forward(det.feature_net, x, frozen), IMAGE_SIZE, fcos_targets(boxes))
            loss = sum(out.values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.update(1)
    bar.close()
    det.eval()
    return losses


IMAGE_SIZE: tuple[int, int] = (0, 0)  # the working size (H, W), set in main


def train_dff(
    dff: PyramidDFF, frames, cache, targets, *, frozen, steps, batch, lr, max_offset, seed
) -> list[float]:
    """DFF end to end on (key, current) pairs: FCOS's loss on the current frame reaches the head, the
    trainable feature blocks (through the warp), the flow net and the scale field."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = [p for p in dff.parameters() if p.requires_grad]
    flow_params = [*dff.flow_net.parameters(), *dff.scale.parameters()]
    flow_ids = {id(p) for p in flow_params}
    detector_params = [p for p in params if id(p) not in flow_ids]
    # the flow net is new to the task; the detector is trained already and only adapts to warped features
    opt = torch.optim.AdamW(
        [{"params": flow_params, "lr": lr}, {"params": detector_params, "lr": lr / 10}], weight_decay=1e-4
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    dff.train()
    dff.feature_net.body.eval()
    n, width = len(frames), IMAGE_SIZE[1]
    losses = []
    for _ in progress(range(steps), desc="DFF pairs (steps)"):
        items = []
        for _ in range(batch):
            i = rng.randrange(n)
            items.append((i, max(0, i - rng.randint(0, max_offset)), rng.random() < 0.5))
        cur, key = (pair_images(frames, items, which) for which in (0, 1))
        key_pyr = rest_forward(dff.feature_net, torch.stack([cache[int(f), k] for _, k, f in items]), frozen)
        feat = warp_pyramid(key_pyr, *dff.flow(key, cur))
        same = torch.tensor([i == k for i, k, _ in items]).view(-1, 1, 1, 1)
        feat = OrderedDict((name, torch.where(same, key_pyr[name], v)) for name, v in feat.items())
        boxes = [flip_boxes(targets[i][0], width) if f else targets[i][0] for i, _, f in items]
        loss = sum(dff.task_net(feat, IMAGE_SIZE, fcos_targets(boxes)).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    dff.eval()
    return losses


def pair_images(frames: np.ndarray, items: list[tuple[int, int, bool]], which: int) -> torch.Tensor:
    """Normalised `(B, 3, H, W)` of frame ``item[which]`` of each (current, key, mirrored) item."""
    x = torch.from_numpy(np.stack([frames[it[which]] for it in items])).permute(0, 3, 1, 2)
    return normalize_rgb(torch.stack([im.flip(-1) if it[2] else im for im, it in zip(x, items)]))


# ----------------------------------------------------------------------------- measuring


def measure(dff: PyramidDFF, frames: np.ndarray, targets, interval: int) -> dict:
    """AP and frames/s of `dff` walking `frames` in order with key interval `interval` (1 = per frame)."""
    inputs = [normalize_rgb(torch.from_numpy(f).permute(2, 0, 1)[None]) for f in frames]
    ap, keys = BoxAP(), 0
    start = time.perf_counter()
    for index, (dets, is_key) in enumerate(dff.run(iter(inputs), FixedInterval(interval))):
        keys += is_key
        ap.update(index, dets[0]["boxes"], dets[0]["scores"], targets[index][0], targets[index][1])
    seconds = time.perf_counter() - start
    ev = ap.evaluate()
    from vidrec.engine.det_metrics import _ap

    row = {"AP50": _ap(ev, 0.5), "AP": _ap(ev), "AP75": _ap(ev, 0.75), "fps": len(frames) / seconds,
           "keys": keys, "frames": len(frames), "_eval": ev}  # fmt: skip
    print(f"  {type(dff.flow_net).__name__} l={interval}: AP@0.5 {row['AP50']:.3f} AP {row['AP']:.3f} "
          f"{row['fps']:.2f} frames/s", flush=True)  # fmt: skip
    return row


def measure_costs(models: dict[str, PyramidDFF], pair, repeats: int) -> dict:
    """{flow: {"parts": [[path, part, flops, ms]], "totals": {path: [flops, ms]}, "r_flops", "r_wall"}}."""
    out = {}
    for flow, dff in models.items():
        costs = part_costs(dff, *pair, repeats=repeats, steps=cost_steps)
        out[flow] = {
            "parts": [[c.path, c.part, c.flops, c.ms] for c in costs],
            "totals": {path: [t.flops, t.ms] for path, t in path_totals(costs).items()},
            "r_flops": flop_ratio(costs),
            "r_wall": flop_ratio(costs, wall=True),
        }
    return out


def table(rows: list[dict], costs: dict) -> str:
    """AP, frames/s and the measured speed-up per row, beside r (wall time) and s(l) from the part costs."""
    base = rows[0]
    lines = [
        "| model | flow | l | AP@0.5 | AP@[.5:.95] | AP@0.75 | frames/s | speed-up | r wall | s(l) wall | "
        "key frames |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = costs.get(r["flow"])
        rw, s = (
            ("-", "-")
            if c is None
            else (f"{c['r_wall']:.1f}", f"{amortised_speed_up(r['l'], c['r_wall']):.2f}x")
        )
        lines.append(
            f"| {r['model']} | {r['flow']} | {r['l']} | {r['AP50']:.3f} | {r['AP']:.3f} | {r['AP75']:.3f} | "
            f"{r['fps']:.2f} | {r['fps'] / base['fps']:.2f}x | {rw} | {s} | {r['keys']}/{r['frames']} |"
        )
    return "\n".join(lines)


def cost_table(costs: dict) -> str:
    """Per model, path and part: MFLOPs and median ms; the totals and r = key / non-key."""
    lines = ["| flow | path | part | MFLOPs | ms |", "|---|---|---|---|---|"]
    for flow, c in costs.items():
        for path, part, flops, ms in c["parts"]:
            lines.append(f"| {flow} | {path} | {part} | {flops / 1e6:.1f} | {ms:.2f} |")
        for path, (flops, ms) in c["totals"].items():
            lines.append(f"| {flow} | {path} | **total** | **{flops / 1e6:.1f}** | **{ms:.2f}** |")
        r_flops = "- (DIS uncounted)" if flow == "dis" else f"{c['r_flops']:.1f}"
        lines.append(f"| {flow} | r = key / non-key | | {r_flops} | {c['r_wall']:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = rows[0]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([1.0], [base["AP50"]], "k*", markersize=12, label="per-frame (l = 1)")
    for flow, style in (("learned", "o-"), ("dis", "s--")):
        pts = [base] + [r for r in rows if r["flow"] == flow]
        ax.plot(
            [r["fps"] / base["fps"] for r in pts], [r["AP50"] for r in pts], style, label=f"DFF, {flow} flow"
        )
        for r in pts[1:]:
            ax.annotate(
                f"l={r['l']}", (r["fps"] / base["fps"], r["AP50"]), textcoords="offset points", xytext=(4, 4)
            )
    ax.set(xlabel="speed-up over per-frame (frames/s ratio)", ylabel="AP@0.5",
           title="DFF detection on PETS 2009 S2L1 (validation frames)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def docs_section(args, info: dict, text: str, costs_text: str, result: str) -> str:
    return "\n".join([
        "## DFF detection (PETS 2009 S2L1)",
        "",
        "Written by `benchmarks/dff_detect.py --write-docs` "
        f"(train frames {args.train_frames}, validation frames {args.val_frames}, "
        f"size {args.size[0]}x{args.size[1]}, "
        f"{args.epochs} epochs, flow pretraining {args.pretrain_steps} steps, DFF {args.dff_steps} steps, "
        f"learned flow on the pair at 1/{args.flow_downscale}, DIS at 1/{args.dis_downscale}, FCOS top "
        f"{args.topk} candidates per level, {args.threads} threads). Box AP as COCO scores it (pycocotools; "
        "conf-0 boxes as ignore regions); frames/s of the model alone on decoded frames. r: cost(key frame) "
        "/ cost(propagated frame) in wall time from the part costs below; s(l) = l / (1 + (l - 1) / r), the "
        "speed-up those costs predict, beside the measured one.",
        "",
        "```text",
        f"python benchmarks/dff_detect.py {args.video} {args.gt} --train-frames {args.train_frames} "
        f"--val-frames {args.val_frames} --out OUT --write-docs",
        "```",
        "",
        text,
        "",
        f"The cost of each part (median of {args.cost_repeats} calls on validation frames 1 and 10 as the "
        f"(key, current) pair, {args.threads} thread(s); the warp's `grid_sample`, the resizing and OpenCV's "
        "DIS count 0 FLOPs):",
        "",
        costs_text,
        "",
        f"Machine: {info['machine']}; load average {info['load_start']:.1f} at the start, "
        f"{info['load_end']:.1f} at the end (a shared machine); {info['seconds']:.0f} s in all, "
        f"{info['train_seconds']:.0f} s of it training.",
        "",
        f"`{result}`",
    ])  # fmt: skip


def main(argv=None) -> int:
    global IMAGE_SIZE
    args = parse_args(argv)
    if not 1 <= args.frozen <= 7:
        sys.exit("--frozen must be 1..7 (the stride-8 pyramid level is the output of block 6)")
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if (out / "results.json").exists() and not args.overwrite:
        sys.exit(f"{out}/results.json exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    info: dict = {
        "load_start": os.getloadavg()[0],
        "size": list(args.size),
        "threads": args.threads,
        "seed": args.seed,
    }
    from vidrec.io import probe

    meta = probe(args.video)
    gt = read_mot(args.gt, num_frames=meta.num_frames, height=meta.height, width=meta.width)
    train_range = parse_frames(args.train_frames, num_frames=meta.num_frames, what="--train-frames")
    val_range = parse_frames(args.val_frames, num_frames=meta.num_frames, what="--val-frames")
    if train_range.start < val_range.stop and val_range.start < train_range.stop:
        sys.exit("--train-frames and --val-frames overlap; validate on frames never trained on")
    if val_range.stop > gt.last_frame + 1:
        sys.exit(f"--val-frames reaches past the last annotated frame ({gt.last_frame + 1}) of {args.gt}")
    size = IMAGE_SIZE = (args.size[0], args.size[1])
    print(f"{args.video}: train {args.train_frames}, val {args.val_frames}, size {size}, {gt.count()} boxes "
          f"({gt.clipped} clipped), {args.threads} threads, seed {args.seed}", flush=True)  # fmt: skip
    train_frames = load_frames(args.video, train_range, size)
    val_frames = load_frames(args.video, val_range, size)
    train_targets, val_targets = targets_of(gt, train_range, size), targets_of(gt, val_range, size)

    det = fcos_mobilenet_v2(pretrained=True, topk_candidates=args.topk).eval()
    cache = cache_stem(det.feature_net, train_frames, args.frozen)
    losses = train_per_frame(det, cache, train_targets, frozen=args.frozen, epochs=args.epochs,
                             batch=args.batch, lr=args.lr, seed=args.seed)  # fmt: skip
    info["per_frame_loss"] = [float(np.mean(losses[:10])), float(np.mean(losses[-10:]))]

    from vidrec.dff.pretrain import train_flownet

    flow_net = FlowNetLite(stride=8, downscale=args.flow_downscale)
    pre = train_flownet(flow_net, [train_frames], steps=args.pretrain_steps, batch=args.batch // 2 or 1,
                        max_gap=args.max_offset, seed=args.seed)  # fmt: skip
    learned_det = fcos_mobilenet_v2(pretrained=False, topk_candidates=args.topk)
    learned_det.load_state_dict(det.state_dict())
    trainable(learned_det, args.frozen)
    scale = ScaleField(flow_net.scale_channels, det.feature_net.out_channels)
    learned = PyramidDFF(learned_det.feature_net, flow_net, learned_det.task_net, scale_field=scale)
    dff_losses = train_dff(
        learned, train_frames, cache, train_targets, frozen=args.frozen, steps=args.dff_steps,
        batch=args.batch // 2 or 1, lr=args.lr, max_offset=args.max_offset, seed=args.seed,
    )  # fmt: skip
    info["pretrain_loss"] = [float(np.mean(pre[:10])), float(np.mean(pre[-10:]))]
    info["dff_loss"] = [float(np.mean(dff_losses[:10])), float(np.mean(dff_losses[-10:]))]
    del cache
    from safetensors.torch import save_file

    save_file(det.state_dict(), str(out / "per_frame.safetensors"))  # fcos_mobilenet_v2's weights
    save_file(learned.state_dict(), str(out / "dff_learned.safetensors"))  # dff_fcos_mobilenet_v2's
    info["train_seconds"] = time.perf_counter() - start
    print(
        f"training done in {info['train_seconds']:.0f} s; measuring on {len(val_frames)} frames", flush=True
    )

    per_frame = PyramidDFF(det.feature_net, DISFlow(), det.task_net).eval()  # l = 1 never runs the flow
    dis = PyramidDFF(det.feature_net, DISFlow(downscale=args.dis_downscale), det.task_net).eval()
    pair = [normalize_rgb(torch.from_numpy(val_frames[i]).permute(2, 0, 1)[None]) for i in (0, 9)]
    costs = measure_costs({"learned": learned, "dis": dis}, pair, args.cost_repeats)
    first = measure(per_frame, val_frames, val_targets, 1)
    rows = [{"model": "per-frame", "flow": "-", "l": 1, **first}]
    for interval in INTERVALS:
        rows.append(
            {
                "model": "DFF",
                "flow": "learned",
                "l": interval,
                **measure(learned, val_frames, val_targets, interval),
            }
        )
        rows.append(
            {"model": "DFF", "flow": "dis", "l": interval, **measure(dis, val_frames, val_targets, interval)}
        )
    again = measure(per_frame, val_frames, val_targets, 1)
    rows[0]["fps"] = (first["fps"] + again["fps"]) / 2
    rows[0]["fps_runs"] = [first["fps"], again["fps"]]
    rows = [rows[0]] + sorted(rows[1:], key=lambda r: (r["flow"] != "learned", r["l"]))

    from vidrec.tasks.detect import plot_pr

    plot_pr(
        {f"{r['model']} {r['flow']} l={r['l']}": r["_eval"] for r in rows if r["l"] in (1, 10)},
        out / "pr_curves.png",
    )
    for r in rows:
        r.pop("_eval")
    text, costs_text = table(rows, costs), cost_table(costs)
    print("\n" + text + "\n\n" + costs_text)
    plot(rows, out / "dff_detect_speed_accuracy.png")
    info["load_end"] = os.getloadavg()[0]
    info["seconds"] = time.perf_counter() - start
    from vidrec.benchdocs import machine

    info["machine"] = machine()
    (out / "table.md").write_text(text + "\n\n" + costs_text + "\n")
    (out / "results.json").write_text(json.dumps({"info": info, "costs": costs, "rows": rows}, indent=1))
    base = rows[0]
    l10 = next(r for r in rows if r["flow"] == "learned" and r["l"] == 10)
    dis10 = next(r for r in rows if r["flow"] == "dis" and r["l"] == 10)
    r_wall = costs["learned"]["r_wall"]
    result = (
        f"RESULT dff_detect per_frame_ap50={base['AP50']:.3f} l10_ap50={l10['AP50']:.3f} "
        f"l10_speedup={l10['fps'] / base['fps']:.2f} "
        f"l10_ap50_lost_points={100 * (base['AP50'] - l10['AP50']):.1f} "
        f"per_frame_ap={base['AP']:.3f} l10_ap={l10['AP']:.3f} dis_l10_ap50={dis10['AP50']:.3f} "
        f"dis_l10_speedup={dis10['fps'] / base['fps']:.2f} r_wall={r_wall:.1f} "
        f"l10_s_wall={amortised_speed_up(10, r_wall):.2f} minutes={info['seconds'] / 60:.1f}"
    )
    if args.write_docs:
        from vidrec.benchdocs import write_section

        print(f"wrote {write_section('dff_detect', docs_section(args, info, text, costs_text, result))}")
    print(f"wrote {out}/table.md, results.json, dff_detect_speed_accuracy.png, pr_curves.png; "
          f"{info['seconds']:.0f} s in all")  # fmt: skip
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
