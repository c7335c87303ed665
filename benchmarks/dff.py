"""Deep Feature Flow on DAVIS-2016: J, F and frames/s of per-frame segmentation vs DFF at key intervals
l = 1, 2, 5, 10 and the adaptive schedule (at most the key frames of l = 10), with a learned flow net and
with DIS flow, on CPU at one thread and at all cores; the cost of every part of a key and a propagated
frame. Issue 23: at l = 10, >= 5x the per-frame frames/s for <= 2 J points lost.

What runs (sizes are the defaults; all printed):
1. Frames of the training and validation sequences (the fixed split of `vidrec.data.davis`, or
   --train-sequences / --val-sequences) are read once at --size (the --per-frame checkpoint's working
   size, else 240 x 432).
2. Per-frame net: `segnet_mobilenet_v2` (ImageNet MobileNetV2 dilated to output stride 16, the light task
   net: 1x1 conv 1280 -> 128, ReLU, 1x1 conv -> 2). Given --per-frame CKPT (what `vidrec train
   segment_davis` writes) that model is measured (with its motion cue when it has one: its frames are
   then each stacked with their neighbours, `vidrec.models.motion`; with its ``flip_test``, every row's
   key frames average the features of the frame and its mirror image, unless --no-flip-test); otherwise
   its feature net is kept FROZEN (BatchNorm in eval), its features of the training frames cached, and
   the task net trained on them (--head-epochs).
3. Learned flow DFF around the per-frame net's parts: `FlowNetLite` (the pair pooled to 1/4, flow on the
   stride-16 grid) pretrained self-supervised on the training frames (--pretrain-steps, 1000), then trained
   with the scale field S (and with --bias-field the bias field B) on (key, current) pairs, key 1..9 frames
   back, loss on the current frame (--dff-steps, 3000, Adam --dff-lr 3e-4 with a cosine decay; the task loss
   plus --feature-loss x the smooth-L1 distance to the current frame's own reduced map; methods.md 4.5), the
   feature net frozen (cached) and the task net too (the per-frame one; --pair-head trains it as well). It
   propagates the task net's 128-channel reduced map (`DFF(reduced=True)`). With --bias-field the same DFF
   without B is trained and measured too (rows DFF-noB; --no-ablation skips it). Given --dff CKPT (`vidrec
   dff train`), that model.
   DIS flow: the per-frame net's parts with OpenCV DIS at 1/4 resolution, no training.
4. Cost: `vidrec.dff.cost.part_costs` on a validation pair: FLOPs and median ms of every part (feature net,
   flow, scale field, warp, bias field, task net, upsampling) of the key and the non-key path, at each
   --threads;
   r = cost(key) / cost(non-key) in FLOPs and in wall time, and s(l) = l / (1 + (l - 1) / r).
5. Every model walks each validation sequence with `DFF.run` at each --threads; J and F as the DAVIS
   toolkit scores them (logits upsampled to the native 480p masks, each sequence's first and last frame
   left out unless --all-frames), frames/s of the model alone (frames decoded beforehand, the best of
   --repeats walks, 2); the bidirectional rows (offline) take the key frames of l = 5 and 10 and blend,
   on each frame between two key frames, the features propagated from both, weighted by nearness and per
   pixel by each side's warp error (`vidrec.dff.schedule.Bidirectional`, tau 0.1). The adaptive
   schedule (budget 2 key frames per 20, max gap 15), once per --signals, takes its threshold from the
   training sequences: the one whose key-frame rate there is closest to l = 10's (the same budget).

--device cuda --dtype bf16 runs steps 2-5 on a GPU (bf16 under autocast); not measured yet (no GPU here).
--write-docs writes the tables into the `dff` section of docs/benchmarks.md (`vidrec.benchdocs`), or
`dff_segment_davis` with --per-frame.

Usage: python benchmarks/dff.py ../shared/data/davis2016 --out ../runs/bench_dff
Writes table.md, results.json and dff_speed_accuracy.png under --out; ends with `RESULT dff ...`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidrec.data.davis import find_sequences, split_names
from vidrec.data.transforms import normalize_frames, normalize_rgb
from vidrec.dff import DFF, SIGNALS, Adaptive, BiasField, Bidirectional, FixedInterval, ScaleField
from vidrec.dff.cost import flop_ratio, part_costs, path_totals
from vidrec.dff.davis_eval import evaluate_sequences, load_sequence, summarize
from vidrec.dff.flownets import DISFlow, FlowNetLite
from vidrec.dff.model import PROPAGATED_BIAS, map_frames, refreshable
from vidrec.dff.model import feature_grid as model_feature_grid
from vidrec.models.motion import stack_neighbours
from vidrec.models.segnet import SegHead, segnet_mobilenet_v2
from vidrec.progress import progress

INTERVALS = (1, 2, 5, 10)
BIDIRECTIONAL = (5, 10)  # offline rows: the key frames of l, each frame between two blending both
PROPAGATION = ("flow", "scale field", "warp", "bias field")  # what a bidirectional frame runs twice
ALL_CORES = os.cpu_count() or 1


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("root", help="a DAVIS-layout folder (JPEGImages/480p, Annotations/480p)")
    p.add_argument("--train-sequences", nargs="*", default=None, help="default: the fixed training split")
    p.add_argument("--val-sequences", nargs="*", default=None, help="default: the fixed validation split")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="working size (default: the --per-frame checkpoint's task_options.size, else 240 432)",
    )
    p.add_argument("--head-epochs", type=int, default=6, help="per-frame task-net epochs (default 6)")
    p.add_argument(
        "--pretrain-steps", type=int, default=1000, help="flow-net self-supervised steps (default 1000)"
    )
    p.add_argument("--dff-steps", type=int, default=3000, help="DFF end-to-end steps on pairs (default 3000)")
    p.add_argument(
        "--dff-lr", type=float, default=3e-4, help="Adam lr of the pair steps, cosine decay (default 3e-4)"
    )
    p.add_argument(
        "--bias-field",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="the learned DFF adds B, a 1x1 conv on the flow net's features, to the scaled warp (default "
        "off: measured with and without, B earned nothing; docs/dff.md)",
    )
    p.add_argument(
        "--ablation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with B, also train and measure the same DFF without it (rows DFF-noB, fixed l; default on)",
    )
    p.add_argument(
        "--feature-loss",
        type=float,
        default=1.0,
        help="weight of the smooth-L1 distance between the propagated reduced map and the current frame's "
        "own (default 1; 0: the task loss alone)",
    )
    p.add_argument("--batch", type=int, default=8, help="batch size of all training steps (default 8)")
    p.add_argument("--max-offset", type=int, default=9, help="key 1..N frames before the current (default 9)")
    p.add_argument(
        "--key-after",
        type=float,
        default=0.0,
        help="fraction of training pairs whose key is 1..N frames after the current one, as a bidirectional "
        "walk propagates backwards too (default 0: the paper's pairs)",
    )
    p.add_argument(
        "--pair-head",
        action="store_true",
        help="train the task net on pairs too (default: frozen, the per-frame one; co-training it on 300 "
        "pairs cost ~5 J points on every frame, key frames included)",
    )
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
        "--per-frame",
        default=None,
        help="a segment-task checkpoint (vidrec train segment_davis) to measure instead of training one",
    )
    p.add_argument(
        "--dff", default=None, help="a DFF segment-task checkpoint (vidrec dff train) instead of training one"
    )
    p.add_argument(
        "--all-frames",
        action="store_true",
        help="score every frame (default: leave out each sequence's first and last, as the DAVIS toolkit)",
    )
    p.add_argument(
        "--signals",
        nargs="+",
        choices=("flow", "warp"),
        default=["warp", "flow"],
        help="adaptive schedules' signals, a row each; RESULT's adaptive_J is the first (default warp flow)",
    )
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, ALL_CORES}),
        help=f"torch and OpenCV threads of the measured runs, each in turn (default 1 {ALL_CORES}); "
        "training uses the last",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="walks of the validation sequences per row and thread count; frames/s is the best (default 2)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast (default fp32)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--out", default="runs/bench_dff", help="output folder (default runs/bench_dff)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument(
        "--no-flip-test",
        action="store_true",
        help="key frames without the mirror-averaged features a --per-frame checkpoint's flip_test asks for",
    )
    p.add_argument(
        "--no-largest-object",
        action="store_true",
        help="outputs without the largest-region filter a --per-frame checkpoint's largest_object asks for",
    )
    p.add_argument(
        "--foreground-bias",
        type=float,
        default=None,
        metavar="B",
        help="added to every row's foreground logits in eval (default: the --per-frame checkpoint's "
        "model.kwargs.foreground_bias, else 0; docs/guides/segmentation.md)",
    )
    p.add_argument(
        "--no-fresh-motion",
        action="store_true",
        help="propagated frames warp the key frame's motion cue (default: a model with a motion cue gives "
        "each its own, DIS fast preset; `vidrec.dff.model.DFF` fresh_motion)",
    )
    p.add_argument(
        "--fresh-from",
        type=int,
        default=None,
        help="with the fresh cue, propagated frames this many frames or more from their nearest key frame "
        "compute it, nearer ones warp the key frame's (default: vidrec.dff.model.FRESH_FROM)",
    )
    p.add_argument(
        "--propagated-bias",
        type=float,
        default=PROPAGATED_BIAS,
        help="added to the DFF rows' propagated frames' foreground logits (default "
        f"{PROPAGATED_BIAS:g}: off, vidrec.dff.model.PROPAGATED_BIAS; docs/dff.md)",
    )
    p.add_argument(
        "--warp-padding",
        choices=("border", "zeros"),
        default="border",
        help="what the DFF rows' warp reads where the flow leaves the key frame, in eval: the nearest edge "
        "features (border, default, as vidrec dff) or zeros (the paper's; training always uses zeros)",
    )
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="write the tables into docs/benchmarks.md (section dff; dff_segment_davis with --per-frame)",
    )
    return p.parse_args(argv)


def checkpoint_size(path: str | None) -> tuple[int, int] | None:
    """The working size (H, W) a per-frame checkpoint's run trained for (its task_options.size), if any."""
    if not path:
        return None
    from vidrec.engine.checkpoint import load_checkpoint

    size = (load_checkpoint(path).config.get("task_options") or {}).get("size")
    return tuple(size) if size else None


def set_threads(n: int) -> None:
    """torch's and OpenCV's (DIS) threads."""
    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def autocast(device: torch.device, dtype: str):
    """bf16 autocast on `device`, or nothing for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


# ----------------------------------------------------------------------------- training (frozen feature net)


@torch.no_grad()
def cache_features(feature_net, frames: list[torch.Tensor], device) -> list[torch.Tensor]:
    """Feature maps (T, C, h, w) float16 on the CPU of each sequence's uint8 frames (T, 3, H, W) (each
    with its neighbours when the feature net has a motion cue, `vidrec.models.motion`)."""
    out = []
    for seq in progress(frames, desc="cache features"):
        seq = neighbours_for(feature_net, seq)
        out.append(
            torch.cat(
                [
                    feature_net(normalize_frames(seq[i : i + 8].to(device))).half().cpu()
                    for i in range(0, len(seq), 8)
                ]
            )
        )
    return out


def neighbours_for(feature_net, frames: torch.Tensor) -> torch.Tensor:
    """`frames` (T, 3, H, W) stacked with their neighbours (T, 9, H, W) when `feature_net` takes them."""
    return stack_neighbours(frames) if getattr(feature_net, "neighbours", False) else frames


def upsampled_ce(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, masks)


def train_head(feats, masks, *, epochs: int, batch: int, seed: int, device) -> SegHead:
    """The per-frame task net on cached features (Adam, lr 1e-3)."""
    torch.manual_seed(seed)
    head = SegHead(feats[0].shape[1], 2).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    index = [(s, i) for s, f in enumerate(feats) for i in range(len(f))]
    rng = random.Random(seed)
    for _ in progress(range(epochs), desc="per-frame head (epochs)"):
        rng.shuffle(index)
        for b in range(0, len(index) - batch + 1, batch):
            items = index[b : b + batch]
            x = torch.stack([feats[s][i] for s, i in items]).float().to(device)
            y = torch.stack([masks[s][i] for s, i in items]).to(device)
            loss = upsampled_ce(head(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def train_dff_pairs(
    dff: DFF,
    frames,
    feats,
    masks,
    *,
    steps,
    batch,
    max_offset,
    seed,
    device,
    lr: float = 3e-4,
    feature_loss: float = 0.0,
    train_head: bool = False,
    key_after: float = 0.0,
) -> list[float]:
    """DFF on (key, current) pairs, the loss on the current frame: flow net, scale field and bias field
    (and the task net, its reduction too, with `train_head`); cached features stand in for the frozen
    feature net's. The loss is the task loss against the masks plus `feature_loss` x the smooth-L1
    distance between the propagated map and the one the current frame's own features give (what the
    per-frame net would propagate from it).

    The key is 1..`max_offset` frames back (clipped to the sequence start): inference never propagates a
    key frame to itself, so offset 0 (the release's ``eq_flag`` pairs) would spend steps on a copy; a
    `key_after` fraction of the pairs takes it 1..`max_offset` frames after instead (clipped to the end).
    Adam at `lr` with a cosine decay over `steps`."""
    flow_net, head = dff.flow_net, dff.task_net
    rng = random.Random(seed)
    torch.manual_seed(seed)
    head.requires_grad_(train_head)  # frozen: the gradient still reaches the flow net through it
    fields = [*dff.scale.parameters(), *(dff.bias_field.parameters() if dff.bias_field is not None else [])]
    params = [*flow_net.parameters(), *fields, *(head.parameters() if train_head else [])]
    opt = torch.optim.Adam(params, lr=lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    flow_net.train(), head.train()
    losses = []
    for _ in progress(range(steps), desc="DFF pairs (steps)"):
        items = []
        for _ in range(batch):
            s = rng.randrange(len(frames))
            i = rng.randrange(1, len(frames[s]))
            offset = rng.randint(1, max_offset)
            after = key_after and rng.random() < key_after and i < len(frames[s]) - 1
            items.append((s, i, min(len(frames[s]) - 1, i + offset) if after else max(0, i - offset)))
        cur = normalize_rgb(torch.stack([frames[s][i] for s, i, _ in items]).to(device))
        key = normalize_rgb(torch.stack([frames[s][k] for s, _, k in items]).to(device))
        key_feat = torch.stack([feats[s][k] for s, _, k in items]).float().to(device)
        key_feat = head.reduce(key_feat) if dff.reduced else key_feat  # what DFF caches and propagates
        flow, scale_in = dff.estimate_flow(key, cur, key_feat.shape[-2:])  # current -> key, feature px
        feat = dff.warp_features(key_feat, flow, scale_in)  # S * warp + B
        target = torch.stack([masks[s][i] for s, i, _ in items]).to(device)
        loss = upsampled_ce(dff.task(feat), target)
        if feature_loss:
            with torch.no_grad():
                own = torch.stack([feats[s][i] for s, i, _ in items]).float().to(device)
                own = head.reduce(own) if dff.reduced else own
            loss = loss + feature_loss * F.smooth_l1_loss(feat, own)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay.step()
        losses.append(float(loss.detach()))
    flow_net.eval(), head.eval()
    return losses


# ----------------------------------------------------------------------------- measuring

THRESHOLDS = {"flow": (0.05, 0.1, 0.2, 0.4, 0.8, 1.6), "warp": (0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7)}


def adaptive(threshold: float, signal: str) -> Adaptive:
    return Adaptive(budget=2, window=20, threshold=threshold, signal=signal, max_gap=15)


@torch.inference_mode()
def key_rate(dff: DFF, videos: list[list[torch.Tensor]], schedule, memo: dict | None = None) -> float:
    """The fraction of key frames `schedule` picks over `videos` (normalised `(1, 3, H, W)` frames): what
    `DFF.run` decides, without the feature net (the signal needs only the flow to the last key frame).
    `memo` keeps the signal of each (video, key, frame) pair across calls (a threshold sweep)."""
    signal_fn = SIGNALS[schedule.signal] if schedule.needs_signal else None
    memo = {} if memo is None else memo
    keys = total = 0
    grid = None
    for v, frames in enumerate(videos):
        schedule.reset()
        key = None
        for index, img in enumerate(frames):
            signal = None
            if signal_fn is not None and key is not None:
                pair = (v, key, index, schedule.signal)
                if pair not in memo:
                    grid = grid or feature_grid(dff, img)
                    flow = dff.estimate_flow(frames[key], img, grid)[0]
                    memo[pair] = signal_fn(flow, frames[key], img)
                signal = memo[pair]
            if schedule.decide(index, signal) or key is None:
                key, keys = index, keys + 1
            total += 1
    return keys / max(total, 1)


def feature_grid(dff: DFF, img: torch.Tensor) -> tuple[int, int]:
    """The feature grid (h, w) of a frame `(1, 3, H, W)` (given as its own neighbours to a motion cue)."""
    x = img.repeat(1, 3, 1, 1) if getattr(dff.feature_net, "neighbours", False) else img
    return model_feature_grid(dff.key_features(x))


def calibrate_threshold(dff: DFF, videos, *, rate: float, signal: str) -> tuple[float, float]:
    """(threshold, its key-frame rate) of the adaptive schedule whose rate on `videos` is nearest `rate`."""
    best, memo = None, {}
    for t in THRESHOLDS[signal]:
        r = key_rate(dff, videos, adaptive(t, signal), memo)
        if best is None or abs(r - rate) < abs(best[1] - rate):
            best = (t, r)
    return best


def measure_costs(models: dict, pair: tuple[torch.Tensor, torch.Tensor], threads: list[int], amp) -> dict:
    """{model name: {"parts": [[path, part, flops, {threads: ms}]], "r_flops", "r_wall": {threads: r}}}."""
    out = {}
    for name, (flow, dff) in models.items():
        if flow == "-":
            continue
        by_threads = {}
        for n in threads:
            set_threads(n)
            with amp:
                by_threads[n] = part_costs(dff, *pair, repeats=7)
        first = by_threads[threads[0]]
        out[name] = {
            "flow": flow,
            "parts": [
                [c.path, c.part, c.flops, {n: by_threads[n][k].ms for n in threads}]
                for k, c in enumerate(first)
            ],
            "totals": {
                path: [t.flops, {n: path_totals(by_threads[n])[path].ms for n in threads}]
                for path, t in path_totals(first).items()
            },
            "r_flops": flop_ratio(first),
            "r_wall": {n: flop_ratio(by_threads[n], wall=True) for n in threads},
        }
    return out


SIDE_BY_SIDE = "l=1, frames side by side"


class FramesSideBySide:
    """The per-frame model with its frames side by side: chunks of n frames (n = torch's threads) over
    `vidrec.dff.model.map_frames`, one torch thread per frame, as the bidirectional walk runs the frames it
    holds between two key frames. A reference row: the per-frame row (the speed-ups' base) runs one frame
    at a time with torch's threads inside each op, as `vidrec predict` does."""

    def __init__(self, dff: DFF) -> None:
        self.dff, self.feature_net = dff, dff.feature_net  # `takes_neighbours` looks at feature_net

    def _one(self, img: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.dff.per_frame(img)

    def run(self, frames, schedule):
        chunk: list[torch.Tensor] = []
        for img in frames:
            chunk.append(img)
            if len(chunk) == torch.get_num_threads():
                yield from ((out, True) for out in map_frames(self._one, chunk))
                chunk = []
        yield from ((out, True) for out in map_frames(self._one, chunk))


def measure_all(
    models: dict, val, size, loaded, thresholds: dict, *, threads, repeats: int = 1, **kw
) -> list[dict]:
    """One row per (model, schedule): J and F (of the last thread count's run), frames/s per thread count,
    the best of `repeats` walks (the same outputs each time; the fastest is the least disturbed)."""
    rows = []
    fixed = [(f"l={n}", lambda n=n: FixedInterval(n)) for n in INTERVALS]
    fixed += [(f"bidirectional l={n}", lambda n=n: Bidirectional(n)) for n in BIDIRECTIONAL]
    for name, (flow, dff) in models.items():
        ada = [
            (f"adaptive {sig}", lambda t=t, sig=sig: adaptive(t, sig))
            for sig, (t, _) in thresholds.get(name, {}).items()
        ]
        walks = [(label, make, dff) for label, make in fixed + ada]
        if flow == "-":  # the per-frame rows: one frame at a time, and frames side by side
            walks = [("l=1", lambda: FixedInterval(1), dff)]
            if max(threads) > 1:
                walks.append((SIDE_BY_SIDE, lambda: FixedInterval(1), FramesSideBySide(dff)))
        for label, make, model in walks:
            if flow != "-" and label == "l=1":
                continue  # l = 1 is the per-frame row, op for op (test_interval_one_equals_per_frame_...)
            fps = {}
            for n in threads:
                set_threads(n)
                for _ in range(repeats):
                    res = evaluate_sequences(model, val, make(), size=size, loaded=loaded, **kw)
                    s = summarize(res)
                    fps[n] = max(fps.get(n, 0.0), s["fps"])
            rows.append(
                {
                    "model": name,
                    "flow": flow,
                    "schedule": label,
                    **s,
                    "fps": fps,
                    "per_sequence": {r.name: [r.J, r.F, r.keys] for r in res},
                }
            )
            rates = ", ".join(f"{v:.1f} frames/s at {n} threads" for n, v in fps.items())
            print(
                f"  {name:10s} {label:9s} J {s['J']:.3f} F {s['F']:.3f} {rates} "
                f"keys {s['keys']}/{s['frames']}",
                flush=True,
            )
    return rows


def plot(rows: list[dict], path: Path, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    base = next(r for r in rows if r["flow"] == "-")
    styles = iter(("o-", "^-.", "s--", "v:"))
    for name in dict.fromkeys(r["model"] for r in rows if r["flow"] != "-"):
        own = [r for r in rows if r["model"] == name]
        method = own[0]["flow"]
        pts = [base] + [r for r in own if r["schedule"] in ("l=2", "l=5", "l=10")]
        ax.plot(
            [r["fps"][threads] for r in pts],
            [r["J"] for r in pts],
            next(styles, "x-"),
            label=f"{name}, {method} flow (l = 1, 2, 5, 10)",
        )
        for r in pts[1:]:
            ax.annotate(
                r["schedule"],
                (r["fps"][threads], r["J"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        bi = [r for r in own if r["schedule"].startswith("bidirectional")]
        if bi:
            ax.plot(
                [r["fps"][threads] for r in bi],
                [r["J"] for r in bi],
                "P",
                markersize=9,
                label=f"{name}, bidirectional (l = {', '.join(r['schedule'].split('=')[1] for r in bi)})",
            )
        for r in own:
            if r["schedule"].startswith("adaptive"):
                ax.plot(r["fps"][threads], r["J"], "*", markersize=12, label=f"{name}, {r['schedule']}")
    ax.plot(base["fps"][threads], base["J"], "kD", markersize=8, label="per-frame")
    ax.axhline(base["J"] - 0.02, color="grey", lw=0.8, ls=":", label="per-frame J - 2 points")
    ax.set_xlabel(f"frames/s (model only, {threads} threads)")
    ax.set_ylabel("J (mean over validation sequences)")
    ax.set_title("DFF on DAVIS-2016 validation: speed vs accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _r_for(row: dict, costs: dict, n: int) -> tuple[float, float]:
    """(r in FLOPs, r in wall time at `n` threads) of a row's model; (nan, nan) for the per-frame row. A
    bidirectional row's propagated frame runs the flow, S, the warp (and B) twice: r counts them twice."""
    c = costs.get(row["model"])
    if not c:
        return float("nan"), float("nan")
    r_flops, r_wall = c["r_flops"], c["r_wall"][n]
    if row["schedule"].startswith("bidirectional"):
        twice = [p for p in c["parts"] if p[0] == "non-key" and p[1] in PROPAGATION]
        key_flops, key_ms = c["totals"]["key"]
        flops, ms = c["totals"]["non-key"]
        r_flops = key_flops / (flops + sum(p[2] for p in twice))
        r_wall = key_ms[n] / (ms[n] + sum(p[3][n] for p in twice))
    return (float("nan") if c["flow"] == "dis" else r_flops), r_wall  # OpenCV: no FLOPs


def _s(row: dict, r: float) -> float:
    """s at the row's key-frame rate p: 1 / (p + (1 - p) / r) (= s(l) for p = 1 / l)."""
    p = row["keys"] / max(row["frames"], 1)
    return 1 / (p + (1 - p) / r) if r == r else float("nan")


def _x(v: float) -> str:
    return "-" if v != v else ("inf" if v == float("inf") else f"{v:.2f}x")


def base_fps(rows: list[dict], threads: list[int]) -> dict[int, float]:
    """The speed-ups' base at each thread count: the faster per-frame row (one frame at a time, or frames
    side by side)."""
    return {n: max(r["fps"][n] for r in rows if r["flow"] == "-") for n in threads}


def result_line(rows: list[dict], costs: dict, threads: list[int], signal: str) -> str:
    """The ``RESULT dff ...`` line: J of the main rows, and their speed-ups over the table's base (the faster
    per-frame row, `base_fps`) at the first thread count, bidirectional l = 10 at the last too."""
    base = rows[0]
    get = {(r["model"], r["schedule"]): r for r in rows}
    l10r, dis10 = get[("DFF", "l=10")], get[("DFF-DIS", "l=10")]
    bi10 = get[("DFF", "bidirectional l=10")]
    ada = get[("DFF", f"adaptive {signal}")]
    n, most = threads[0], threads[-1]
    fast = base_fps(rows, threads)
    return (
        f"RESULT dff per_frame_J={base['J']:.3f} l10_J={l10r['J']:.3f} "
        f"l10_speedup={l10r['fps'][n] / fast[n]:.2f} "
        f"l10_J_lost_points={100 * (base['J'] - l10r['J']):.1f} adaptive_J={ada['J']:.3f} "
        f"adaptive_keys={ada['keys']} l10_keys={l10r['keys']} bi10_J={bi10['J']:.3f} "
        f"bi10_speedup={bi10['fps'][n] / fast[n]:.2f} dis_l10_J={dis10['J']:.3f} "
        f"dis_l10_speedup={dis10['fps'][n] / fast[n]:.2f} threads={n} "
        f"bi10_speedup_{most}t={bi10['fps'][most] / fast[most]:.2f} "
        f"r_flops={costs['DFF']['r_flops']:.1f}"
    )


def table(rows: list[dict], costs: dict, threads: list[int]) -> str:
    """The main table: J, F, frames/s and speed-up per thread count, J lost, r and s(l)."""
    base = next(r for r in rows if r["flow"] == "-")
    fastest = base_fps(rows, threads)
    one = threads[0]
    fps_cols = " | ".join(f"frames/s {n}t | speed-up {n}t" for n in threads)
    lines = [
        f"| model | flow | schedule | key frames | J | F | {fps_cols} | J lost (points) | r FLOPs | "
        f"s FLOPs | r wall {one}t | s wall {one}t |",
        "|---" * (11 + 2 * len(threads)) + "|",
    ]
    for r in rows:
        rf, rw = _r_for(r, costs, one)
        fps = " | ".join(f"{r['fps'][n]:.1f} | {r['fps'][n] / fastest[n]:.2f}x" for n in threads)
        lines.append(
            f"| {r['model']} | {r['flow']} | {r['schedule']} | {r['keys']}/{r['frames']} | {r['J']:.3f} | "
            f"{r['F']:.3f} | {fps} | {100 * (base['J'] - r['J']):+.1f} | {_x(rf).rstrip('x')} | "
            f"{_x(_s(r, rf))} | {_x(rw).rstrip('x')} | {_x(_s(r, rw))} |"
        )
    return "\n".join(lines)


def cost_table(costs: dict, threads: list[int]) -> str:
    """Per part and path: MFLOPs and ms at each thread count, per model; then the totals and r."""
    ms_cols = " | ".join(f"ms {n}t" for n in threads)
    lines = [f"| model | path | part | MFLOPs | {ms_cols} |", "|---" * (4 + len(threads)) + "|"]
    for name, c in costs.items():
        for path, part, flops, ms in c["parts"]:
            times = " | ".join(f"{ms[n]:.2f}" for n in threads)
            lines.append(f"| {name} | {path} | {part} | {flops / 1e6:.1f} | {times} |")
        for path, (flops, ms) in c["totals"].items():
            times = " | ".join(f"**{ms[n]:.2f}**" for n in threads)
            lines.append(f"| {name} | {path} | **total** | **{flops / 1e6:.1f}** | {times} |")
        walls = " | ".join(f"{c['r_wall'][n]:.1f}" for n in threads)
        r_flops = "- (DIS uncounted)" if c["flow"] == "dis" else _x(c["r_flops"]).rstrip("x")
        lines.append(f"| {name} | r = key / non-key | | {r_flops} | {walls} |")
    return "\n".join(lines)


def section_name(args) -> str:
    """The docs/benchmarks.md section of a run: `dff_segment_davis` with --per-frame, else `dff`."""
    return "dff_segment_davis" if args.per_frame else "dff"


def docs_section(args, info: dict, text: str, costs_text: str, result: str) -> str:
    from vidrec.benchdocs import command, machine

    cmd = command()
    flip_text = " (flip_test: a key frame averages the features of the frame and its mirror image)"
    flip_text = flip_text if info.get("flip_test") else ""
    if info.get("largest_object"):
        flip_text += "; every output keeps its foreground in its largest connected region (largest_object)"
    if info.get("fresh_motion"):
        flip_text += (
            "; DFF's propagated frames warp the key frame's appearance part and add their own motion cue's "
            f"(DIS fast preset) from {info['fresh_from']} frames from the nearest key frame on, nearer ones "
            "warp the key frame's (`DFF(fresh_motion=True)`)"
        )
    if info.get("foreground_bias"):
        flip_text += (
            f"; every output adds {info['foreground_bias']:g} to its foreground logits before the filter "
            "(`foreground_bias`)"
        )
    if info.get("propagated_bias"):
        flip_text += (
            f"; DFF's propagated frames add {info['propagated_bias']:g} to their foreground logits "
            "(`DFF(propagated_bias=...)`, key frames unchanged)"
        )
    if info.get("warp_padding", "zeros") != "zeros":
        flip_text += (
            f"; DFF's warp reads the {info['warp_padding']} where the flow leaves the key frame, in eval "
            "(`DFF.warp_padding`)"
        )
    title = (
        "Deep Feature Flow on DAVIS-2016 with a `vidrec train segment_davis` checkpoint "
        "(`benchmarks/dff.py --per-frame`)"
        if args.per_frame
        else "Deep Feature Flow on DAVIS-2016 (`benchmarks/dff.py`)"
    )
    return (
        f"## {title}\n\n"
        f"`{cmd}`\n\n"
        f"Machine: {machine()}; {info['load']}. Train {', '.join(info['train'])}; validation "
        f"{', '.join(info['val'])}; frames at {info['size'][0]} x {info['size'][1]}, scored at the "
        f"{info['scored']}; {info['device']} {info['dtype']}; "
        f"{info['total_seconds'] / 60:.0f} min in all. "
        f"Per-frame model: {info['per_frame_source']}{flip_text}. Adaptive: {info['adaptive_text']}.\n\n"
        "Speed-up: frames/s over the faster per-frame row at the same thread count (the model alone, "
        "frames decoded beforehand): at one thread the two per-frame rows do the same work; at n threads "
        "the first runs one frame at a time with the threads inside each op (as `vidrec predict` does), "
        "the second n frames side by side at one thread each. The bidirectional walk at n threads runs "
        "whole frames side by side too (n key frames' feature nets at once, then the frames held between "
        "them); the causal rows run one frame at a time. r: cost(key frame) / cost(propagated frame), in "
        "FLOPs (FlopCounterMode; DIS and the warp count 0) and in wall time; s = 1 / (p + (1 - p) / r) at "
        "the row's key-frame rate p (s(l) = l / (1 + (l - 1) / r) for fixed l), to read beside the "
        "measured speed-up. Bidirectional rows (offline, `Bidirectional(l)`): the key frames of l, each "
        "frame between two key frames blends the features propagated from both (weights by nearness and, "
        "per pixel, each side's warp error), so "
        "its r counts the flow, S and the warp twice.\n\n"
        f"{text}\n\nThe cost of each part (median of 7 calls on one validation pair):\n\n{costs_text}\n\n"
        f"```text\n{result}\n```\n"
    )


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) at the end on {ALL_CORES} cores"


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = list(args.threads)
    set_threads(threads[-1])
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    amp = autocast(device, args.dtype)
    out = Path(args.out)
    if (out / "results.json").exists() and not args.overwrite:
        sys.exit(f"{out}/results.json exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    size = tuple(args.size or checkpoint_size(args.per_frame) or (240, 432))
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
        f"threads {threads}, {device} {args.dtype}, seed {args.seed}",
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
        "threads": threads,
        "device": str(device),
        "dtype": args.dtype,
        "seed": args.seed,
        "train": [s.name for s in train_seqs],
        "val": [s.name for s in val_seqs],
    }
    from vidrec.engine.checkpoint import load_task

    if args.per_frame:
        seg = load_task(args.per_frame)[0].eval()
        info["per_frame_source"] = f"the checkpoint {args.per_frame}"
    else:
        seg = None
        info["per_frame_source"] = (
            f"frozen ImageNet MobileNetV2 (output stride 16), task net trained {args.head_epochs} epochs on "
            "its cached features"
        )
    flip = bool(getattr(seg, "flip_test", False)) and not args.no_flip_test  # key frames mirror-averaged
    info["flip_test"] = flip
    largest = bool(getattr(seg, "largest_object", False)) and not args.no_largest_object
    info["largest_object"] = largest
    fg_bias = args.foreground_bias
    fg_bias = float(getattr(seg, "foreground_bias", 0.0)) if fg_bias is None else fg_bias
    info["foreground_bias"] = fg_bias
    feature_net = (seg.feature_net if seg else segnet_mobilenet_v2(pretrained=True).feature_net).to(device)
    feature_net.eval().requires_grad_(False)
    feats = None
    if seg is not None:
        head = seg.task_net.to(device)
    else:
        feats = cache_features(feature_net, frames, device)
        head = train_head(
            feats, masks, epochs=args.head_epochs, batch=args.batch, seed=args.seed, device=device
        )
    without_bias = None  # the ablation: the learned DFF without B
    if args.dff:
        from vidrec.dff import as_dff

        learned = as_dff(load_task(args.dff)[0]).to(device).eval()
        learned.flip_test = flip  # every row's key frames the same way
        learned.largest_object = largest  # and every row's outputs
        info["dff_source"] = f"the checkpoint {args.dff}"
    else:
        from vidrec.dff.pretrain import train_flownet

        if feats is None:
            feats = cache_features(feature_net, frames, device)
        flow_net = FlowNetLite(stride=16)
        clips = [f.permute(0, 2, 3, 1).numpy() for f in frames]  # (T, H, W, 3) uint8
        pre = train_flownet(
            flow_net, clips, steps=args.pretrain_steps, batch=args.batch, seed=args.seed, device=device
        )
        pretrained = {k: v.clone() for k, v in flow_net.state_dict().items()}

        def learned_dff(bias: bool, feats) -> tuple[DFF, list[float]]:
            """DFF around the pretrained flow net (a fresh copy), S (and B), trained on pairs."""
            net = FlowNetLite(stride=16)
            net.load_state_dict(pretrained)
            dff_head = copy.deepcopy(head)  # the per-frame head (its context branches too), trained apart
            hidden = head.reduce.out_channels  # S and B over the reduced map
            dff = DFF(
                feature_net,
                net,
                dff_head,
                feature_stride=16,
                scale_field=ScaleField(net.scale_channels, hidden),
                bias_field=BiasField(net.scale_channels, hidden) if bias else None,
                reduced=True,
                flip_test=flip,
                largest_object=largest,
            ).to(device)
            losses = train_dff_pairs(
                dff,
                frames,
                feats,
                masks,
                steps=args.dff_steps,
                batch=args.batch,
                max_offset=args.max_offset,
                key_after=args.key_after,
                seed=args.seed,
                device=device,
                lr=args.dff_lr,
                feature_loss=args.feature_loss,
                train_head=args.pair_head,
            )
            return dff.eval(), losses

        learned, losses = learned_dff(args.bias_field, feats)
        if args.bias_field and args.ablation:
            without_bias = learned_dff(False, feats)[0]
        info["pretrain_loss"] = [float(np.mean(pre[:10])), float(np.mean(pre[-10:]))]
        info["dff_loss"] = [float(np.mean(losses[:10])), float(np.mean(losses[-10:]))]
        info["dff_source"] = (
            f"FlowNetLite pretrained {args.pretrain_steps} steps, then it, S"
            f"{' and B' if args.bias_field else ''} trained {args.dff_steps} steps on pairs (lr "
            f"{args.dff_lr:g}, cosine; task loss + {args.feature_loss:g} x feature loss; "
            f"{'with' if args.pair_head else 'under'} the per-frame task net"
            f"{', trained too' if args.pair_head else ', frozen'})"
        )
    del feats
    dff_kw = {"feature_stride": 16, "reduced": True, "flip_test": flip, "largest_object": largest,
              "foreground_bias": fg_bias}  # fmt: skip
    dis = DFF(feature_net, DISFlow(), head, **dff_kw).eval()
    fresh = refreshable(learned) and not args.no_fresh_motion  # propagated frames: their own motion cue
    for model in (learned, without_bias, dis):
        if model is not None:
            model.fresh_motion = fresh
            model.fresh_from = args.fresh_from or model.fresh_from
            model.propagated_bias = args.propagated_bias  # eval only: training above never sees it
            model.foreground_bias = fg_bias  # the same
            model.warp_padding = args.warp_padding  # the same
    info["fresh_motion"] = fresh
    info["propagated_bias"] = args.propagated_bias
    info["warp_padding"] = args.warp_padding
    info["fresh_from"] = learned.fresh_from
    # l = 1 never runs the flow: the per-frame baseline is DFF's key path, the per-frame net exactly
    per_frame = DFF(feature_net, DISFlow(), head, **dff_kw).eval()
    info["train_seconds"] = time.perf_counter() - start
    print(
        f"training done in {info['train_seconds']:.0f} s; measuring on {len(val_seqs)} sequences", flush=True
    )
    kw = {"all_frames": args.all_frames, "device": device}
    models = {"per-frame": ("-", per_frame), "DFF": ("learned", learned)}
    if without_bias is not None:
        models["DFF-noB"] = ("learned", without_bias)
    models["DFF-DIS"] = ("dis", dis)
    first = load_sequence(val_seqs[0], size)[0]
    first = neighbours_for(feature_net, first)  # the key path runs the feature net (and its motion cue)
    pair = tuple(normalize_frames(first[i : i + 1].to(device)) for i in (0, min(5, len(first) - 1)))
    with torch.inference_mode():
        costs = measure_costs(models, pair, threads, amp)
    set_threads(threads[-1])
    calib = train_seqs  # the key-frame rate needs only the flow net: all training sequences
    videos = [[normalize_rgb(f[None].to(device)) for f in seq] for seq in frames]
    l10 = 1 / 10 if not videos else key_rate(learned, videos, FixedInterval(10))
    thresholds = {}
    with amp:
        for name, dff in (("DFF", learned), ("DFF-DIS", dis)):
            thresholds[name] = {
                sig: calibrate_threshold(dff, videos, rate=l10, signal=sig) for sig in args.signals
            }
        rows = measure_all(
            models, val_seqs, size, loaded, thresholds, threads=threads, repeats=args.repeats, **kw
        )
    info["adaptive"] = {
        "calibrated_on": [s.name for s in calib],
        "l10_key_rate": l10,
        "thresholds": thresholds,
    }
    info["adaptive_text"] = (
        "budget 2 key frames per 20, max gap 15, signal flow (mean flow magnitude, feature px) or warp "
        "(photometric error of the key frame warped onto the current one, on the feature grid); each "
        "threshold is the one whose key-frame rate on "
        f"{', '.join(info['adaptive']['calibrated_on'])} is closest to l = 10's ({l10:.3f}): "
        + "; ".join(
            f"{name} {sig} {t:g} (rate {r:.3f})"
            for name, d in thresholds.items()
            for sig, (t, r) in d.items()
        )
    )
    text, costs_text = table(rows, costs, threads), cost_table(costs, threads)
    print("\n" + text + "\n\n" + costs_text)
    plot(rows, out / "dff_speed_accuracy.png", threads[0])
    info["total_seconds"] = time.perf_counter() - start
    info["load"] = load_text()
    result = result_line(rows, costs, threads, args.signals[0])
    (out / "table.md").write_text(text + "\n\n" + costs_text + "\n")
    (out / "results.json").write_text(json.dumps({"info": info, "costs": costs, "rows": rows}, indent=1))
    if args.write_docs:
        from vidrec.benchdocs import write_section

        section = section_name(args)
        page = write_section(section, docs_section(args, info, text, costs_text, result))
        print(f"wrote the {section} section of {page}")
    print(f"wrote {out}/table.md, results.json, dff_speed_accuracy.png; {info['total_seconds']:.0f} s in all")
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
