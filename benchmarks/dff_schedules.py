"""Key-frame schedules for Deep Feature Flow: fixed interval l vs our adaptive policy at equal cost, on
real DAVIS-2016 video, with frozen ImageNet features (no segmentation training needed).

Set-up (everything frozen, so the only thing that differs between rows is which frames are key frames):
- feature net: ImageNet MobileNetV2 up to its stride-16 stage (`features[:14]`, 96 channels);
- task net: a linear probe (1x1 conv, foreground logit) fitted on the per-frame features of the TRAIN
  sequences (the fixed split of `vidrec.data.davis` if present, else the list below);
- flow: DIS (vidrec's tuned settings, 1/4 resolution) or a pretrained `FlowNetLite` (`--flow-weights`);
- scored on the VAL sequences: J (mean IoU per sequence, then over sequences) of the probe's masks, and the
  relative feature error ||f_dff - f_per_frame|| / ||f_per_frame|| of the propagated frames.

Equal cost: the adaptive policy `Adaptive(budget=1, window=2, threshold=t)` (a key frame when the signal
passes t, never two in a row) runs for a sweep of thresholds t, which traces J against the fraction of key
frames; each fixed l is compared with that curve linearly interpolated at l's own key-frame count (no
threshold is picked on the scored sequences: the whole curve is printed and plotted).

Also printed: ms per frame of the feature net and of the flow source on this machine, and the per-frame
speed-up they imply at each row's key fraction p: 1 / (p + (1 - p) / r) (= s(l) = l / (1 + (l - 1) / r) of
methods.md 4.4 for p = 1 / l; r = feature ms / (flow + warp ms); the probe head costs nothing here).

The last line: `RESULT dff_schedules flow=... J_per_frame=... J_fixed_lL=... J_adaptive_at_lL=...` per l.

Example: python benchmarks/dff_schedules.py --root ../shared/data/davis2016 --flow dis
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidrec.data.transforms import normalize_rgb
from vidrec.dff.flownets import DISFlow, load_flownet
from vidrec.dff.schedule import Adaptive, FixedInterval
from vidrec.dff.warp import resize_flow, warp
from vidrec.progress import progress

ALL = (
    "bmx-trees", "breakdance", "camel", "car-roundabout", "car-shadow", "cows", "dance-twirl",
    "drift-chicane", "goat", "horsejump-high", "libby", "motocross-jump", "paragliding-launch",
    "scooter-black",
)  # fmt: skip
VAL = tuple(s for i, s in enumerate(ALL) if i % 4 == 1)  # the split of vidrec.data.davis
TRAIN = tuple(s for s in ALL if s not in VAL)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--root", type=Path, default=Path("../shared/data/davis2016"), help="a DAVIS-layout folder"
    )
    p.add_argument("--train", nargs="+", default=list(TRAIN), help="sequences the probe is fitted on")
    p.add_argument(
        "--val", nargs="+", default=list(VAL), help="sequences scored (default: the fixed val split)"
    )
    p.add_argument("--size", type=int, nargs=2, default=[240, 432], metavar=("H", "W"), help="frame size")
    p.add_argument("--intervals", type=int, nargs="+", default=[2, 5, 10], help="fixed intervals l")
    p.add_argument(
        "--signal", choices=("flow", "warp"), default="flow", help="adaptive signal (default flow)"
    )
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=None,
        help="adaptive thresholds swept (default: 0.25 .. 4 feature px for flow, 0.05 .. 0.8 for warp)",
    )
    p.add_argument(
        "--max-gap",
        type=int,
        default=None,
        help="adaptive: a key frame after this many frames (default none)",
    )
    p.add_argument("--flow", choices=("dis", "learned"), default="dis", help="flow source (default dis)")
    p.add_argument(
        "--flow-weights", type=Path, default=None, help="FlowNetLite .safetensors for --flow learned"
    )
    p.add_argument("--max-frames", type=int, default=40, help="frames per TRAIN sequence (default 40)")
    p.add_argument("--plot", type=Path, default=None, help="write the J vs key-frame-fraction PNG here")
    p.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads (default 1)")
    return p.parse_args(argv)


# -- data and frozen parts --------------------------------------------------------------------------------
def load_sequence(
    root: Path, name: str, size: list[int], max_frames: int | None
) -> tuple[torch.Tensor, np.ndarray]:
    """(normalised frames (T, 3, H, W), bool masks (T, H, W)) of one DAVIS sequence, resized to `size`."""
    h, w = size
    files = sorted((root / "JPEGImages" / "480p" / name).glob("*.jpg"))[:max_frames]
    if not files:
        raise SystemExit(f"no frames in {root / 'JPEGImages' / '480p' / name}; check --root and the names")
    rgb = [cv2.resize(cv2.imread(str(f))[..., ::-1], (w, h), interpolation=cv2.INTER_AREA) for f in files]
    masks = [cv2.imread(str(root / "Annotations" / "480p" / name / f"{f.stem}.png"), 0) for f in files]
    masks = [cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) > 127 for m in masks]
    frames = normalize_rgb(torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).contiguous())
    return frames, np.stack(masks)


def feature_net() -> nn.Module:
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights="IMAGENET1K_V1").features[:14].eval()  # stride 16, 96 channels


@torch.no_grad()
def features(net: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    return torch.cat([net(frames[i : i + 8]) for i in range(0, len(frames), 8)])


def fit_probe(feats: torch.Tensor, masks: np.ndarray, steps: int = 300) -> nn.Conv2d:
    """A 1x1 conv foreground logit fitted by logistic regression on the mask fraction of each feature cell."""
    target = F.adaptive_avg_pool2d(torch.from_numpy(masks).float()[:, None], feats.shape[-2:])  # (T, 1, h, w)
    probe = nn.Conv2d(feats.shape[1], 1, 1)
    opt = torch.optim.Adam(probe.parameters(), lr=0.01)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(probe(feats), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe.eval()


def jaccard(probe: nn.Module, feats: torch.Tensor, masks: np.ndarray) -> float:
    """Mean IoU over the frames of one sequence (an empty union counts as 1)."""
    with torch.no_grad():
        logits = F.interpolate(probe(feats), size=masks.shape[-2:], mode="bilinear", align_corners=False)
    pred = (logits[:, 0] > 0).numpy()
    inter, union = (pred & masks).sum((1, 2)), (pred | masks).sum((1, 2))
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


# -- walking a sequence with a schedule -------------------------------------------------------------------
class FlowCache:
    """Flow (current -> key) and signal per (sequence, key, current), computed once across all schedules."""

    def __init__(self, flow_net: nn.Module) -> None:
        self.flow_net, self.cache = flow_net, {}

    def __call__(
        self, seq: str, frames: torch.Tensor, k: int, i: int, grid
    ) -> tuple[torch.Tensor, float, float]:
        if (seq, k, i) not in self.cache:
            with torch.no_grad():
                flow, _ = self.flow_net(frames[k : k + 1], frames[i : i + 1])
                flow = resize_flow(flow, grid)
            from vidrec.dff.model import flow_signal, warp_signal

            sig = (flow_signal(flow, None, None), warp_signal(flow, frames[k : k + 1], frames[i : i + 1]))
            self.cache[(seq, k, i)] = (flow, *sig)
        return self.cache[(seq, k, i)]


def walk(seq: str, frames: torch.Tensor, feats: torch.Tensor, schedule, flows: FlowCache, signal: str):
    """(propagated features (T, C, h, w), key-frame indices) of one sequence under `schedule`."""
    schedule.reset()
    out, keys, key = [], [], None
    for i in range(len(frames)):
        flow = sig = None
        if key is not None and schedule.needs_signal:
            flow, s_flow, s_warp = flows(seq, frames, key, i, feats.shape[-2:])
            sig = s_flow if signal == "flow" else s_warp
        if schedule.decide(i, sig) or key is None:
            key = i
            keys.append(i)
            out.append(feats[i])
            continue
        if flow is None:
            flow = flows(seq, frames, key, i, feats.shape[-2:])[0]
        out.append(warp(feats[key : key + 1], flow)[0])
    return torch.stack(out), keys


# -- timing ---------------------------------------------------------------------------------------------
def time_parts(
    net: nn.Module, flow_net: nn.Module, frames: torch.Tensor, repeats: int = 10
) -> tuple[float, float]:
    """(feature net ms, flow + warp ms) per frame at batch 1."""
    with torch.no_grad():
        f = net(frames[:1])
        t = time.perf_counter()
        for i in range(repeats):
            net(frames[i % len(frames)][None])
        feat_ms = (time.perf_counter() - t) / repeats * 1e3
        t = time.perf_counter()
        for i in range(repeats):
            flow, _ = flow_net(frames[:1], frames[(i + 1) % len(frames)][None])
            warp(f, resize_flow(flow, f.shape[-2:]))
        flow_ms = (time.perf_counter() - t) / repeats * 1e3
    return feat_ms, flow_ms


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    torch.manual_seed(0)
    net = feature_net()
    flow_net = DISFlow() if args.flow == "dis" else load_flownet(args.flow_weights).eval()
    flows = FlowCache(flow_net)
    data = {}
    for split, names, cap in (("train", args.train, args.max_frames), ("val", args.val, None)):
        for name in progress(names, desc=f"features ({split})", unit="seq"):
            frames, masks = load_sequence(args.root, name, args.size, cap)
            data[(split, name)] = (frames, features(net, frames), masks)
    train = {n: v for (s, n), v in data.items() if s == "train"}
    val = {n: v for (s, n), v in data.items() if s == "val"}
    probe = fit_probe(
        torch.cat([v[1] for v in train.values()]), np.concatenate([v[2] for v in train.values()])
    )

    total = sum(len(v[0]) for v in val.values())
    rows = [("per-frame", 1, total, _score(probe, val, None, flows, args.signal))]
    for l in args.intervals:
        score = _score(probe, val, FixedInterval(l), flows, args.signal)
        rows.append((f"fixed l={l}", l, score[2], score))
    sweep = (
        [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]
        if args.signal == "flow"
        else [0.05, 0.1, 0.2, 0.3, 0.5, 0.8]
    )
    for t in progress(args.thresholds or sweep, desc="adaptive sweep", unit="threshold"):
        score = _score(
            probe,
            val,
            Adaptive(budget=1, window=2, threshold=t, signal=args.signal, max_gap=args.max_gap),
            flows,
            args.signal,
        )
        rows.append((f"adaptive t={t:g}", 0, score[2], score))
    feat_ms, flow_ms = time_parts(net, flow_net, next(iter(val.values()))[0])
    _report(args, rows, feat_ms, flow_ms, total)


def at_cost(rows, keys: int) -> float | None:
    """J of the adaptive curve linearly interpolated at `keys` key frames (None outside its range)."""
    pts = sorted((k, j) for n, _, k, (j, _, _) in rows if n.startswith("adaptive"))
    if not pts or not pts[0][0] <= keys <= pts[-1][0]:
        return None
    return float(np.interp(keys, [p[0] for p in pts], [p[1] for p in pts]))


def _score(probe, val: dict, schedule, flows: FlowCache, signal: str) -> tuple[float, float, int]:
    """(J over sequences, mean relative feature error of propagated frames, key frames)."""
    js, errs, keys = [], [], 0
    for name, (frames, feats, masks) in val.items():
        if schedule is None:
            out, k = feats, list(range(len(frames)))
        else:
            out, k = walk(name, frames, feats, schedule, flows, signal)
        js.append(jaccard(probe, out, masks))
        prop = [i for i in range(len(frames)) if i not in set(k)]
        if prop:
            num = (out[prop] - feats[prop]).flatten(1).norm(dim=1)
            errs.append(float((num / feats[prop].flatten(1).norm(dim=1)).mean()))
        keys += len(k)
    return float(np.mean(js)), float(np.mean(errs)) if errs else 0.0, keys


def _report(args, rows, feat_ms: float, flow_ms: float, frames: int) -> None:
    r = feat_ms / flow_ms
    print(
        f"\nDAVIS val {', '.join(args.val)}: {frames} frames at {args.size[0]}x{args.size[1]}; "
        f"flow {args.flow}, signal {args.signal}, max gap {args.max_gap}; feature net {feat_ms:.1f} ms, "
        f"flow + warp {flow_ms:.1f} ms per frame (r = {r:.2f})"
    )
    cols = f"{'schedule':<18} {'keys':>5} {'key %':>6} {'J':>6} {'feat err':>8} {'speed-up':>8}"
    print(cols + f" {'adaptive J same cost':>21}")
    result = [
        f"flow={args.flow}",
        f"signal={args.signal}",
        f"max_gap={args.max_gap}",
        f"J_per_frame={rows[0][3][0]:.4f}",
    ]
    for name, l, keys, (j, err, _) in rows:
        p = keys / frames
        speed = 1 / (p + (1 - p) / r)
        same = at_cost(rows, keys) if name.startswith("fixed") else None
        cmp = f"{same:>21.3f}" if same is not None else f"{'':>21}"
        print(f"{name:<18} {keys:>5d} {100 * p:>5.1f}% {j:>6.3f} {err:>8.3f} {speed:>8.2f} {cmp}")
        if name.startswith("fixed"):
            result += [
                f"J_fixed_l{l}={j:.4f}",
                f"J_adaptive_at_l{l}=" + ("nan" if same is None else f"{same:.4f}"),
            ]
    if args.plot:
        _plot(args.plot, rows, frames)
    print("RESULT dff_schedules " + " ".join(result))


def _plot(path: Path, rows, frames: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind, marker in (("fixed", "o"), ("adaptive", "s")):
        pts = sorted((100 * k / frames, j) for n, _, k, (j, _, _) in rows if n.startswith(kind))
        ax.plot(*zip(*pts, strict=True), marker=marker, label=kind)
    ax.axhline(rows[0][3][0], color="grey", ls="--", label="per-frame")
    ax.set_xlabel("key frames (% of frames)")
    ax.set_ylabel("J (linear probe)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
