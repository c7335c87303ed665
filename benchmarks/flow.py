"""Optical flow: end-point error and frames/s of vidrec's default (tuned DIS) vs OpenCV TV-L1, DIS presets,
Farneback (and RAFT on CPU when its weights are on disk), all on one thread, in one run.

Error is measured on two sets with exact ground truth:

- **flow_gt**: FlyingChairs pairs (`.ppm`) with Middlebury `.flo` ground truth;
- **warped**: real DAVIS-2016 frames (resized to 512 px wide) warped by a known smooth random field
  (random displacements on a coarse grid, upsampled bicubically): `prev = next(x + f(x))` by `cv2.remap`,
  so the flow from `prev` to `next` is exactly `f`; pixels mapping outside the image are masked out.

Speed is frames/s at one OpenCV thread (`cv2.setNumThreads(1)`), the per-core number; the UCF101
projection is 2.5M frames at 340x256 over 16 such cores. The last line is
`RESULT flow dis_epe_vs_tvl1=X dis_speed_vs_tvl1=Y ucf101_hours_16cores=Z`.

Example: python benchmarks/flow.py --data ../shared/data --warped 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from vidrec import benchdocs
from vidrec.flow import FlowEstimator, RaftWeightsMissing, read_flo

UCF101_FRAMES = 2.5e6
UCF101_SIZE = (256, 340)  # (H, W)
CORES = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="shared data folder")
    p.add_argument("--warped", type=int, default=3, help="warped real-frame pairs (default 3)")
    p.add_argument("--amplitude", type=float, default=6.0, help="max px of the random field (default 6)")
    p.add_argument(
        "--repeat", type=int, default=3, help="timed repeats per pair for fast methods (default 3)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    return p.parse_args(argv)


def load_flow_gt(root: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """FlyingChairs pairs as `(name, prev RGB, next RGB, flow, valid mask)`."""
    pairs = []
    for flo in sorted(root.glob("*_flow.flo")):
        stem = flo.name[: -len("_flow.flo")]
        a, b = (cv2.imread(str(root / f"{stem}_img{i}.ppm"), cv2.IMREAD_COLOR_RGB) for i in (1, 2))
        gt = read_flo(flo)
        pairs.append((f"chairs_{stem}", a, b, gt, np.ones(gt.shape[:2], bool)))
    return pairs


def smooth_field(h: int, w: int, rng: np.random.Generator, amplitude: float, grid: int = 4) -> np.ndarray:
    """Smooth random flow `(H, W, 2)`: uniform displacements on a coarse grid, upsampled bicubically."""
    coarse = rng.uniform(-amplitude, amplitude, size=(grid, grid + 1, 2)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def warp_pair(frame: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`prev = frame(x + flow(x))`: the flow from prev to `frame` is exactly `flow`; returns (prev, valid)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    prev = cv2.remap(frame, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return prev, valid


def load_warped(root: Path, count: int, amplitude: float, seed: int) -> list:
    """`count` DAVIS frames (one per sequence, 512 px wide) warped by known smooth random fields."""
    rng = np.random.default_rng(seed)
    seqs = sorted(p for p in (root / "JPEGImages" / "480p").iterdir() if p.is_dir())[:count]
    pairs = []
    for seq in seqs:
        frame = cv2.imread(str(sorted(seq.glob("*.jpg"))[0]), cv2.IMREAD_COLOR_RGB)
        frame = cv2.resize(
            frame, (512, round(512 * frame.shape[0] / frame.shape[1])), interpolation=cv2.INTER_AREA
        )
        flow = smooth_field(*frame.shape[:2], rng, amplitude)
        prev, valid = warp_pair(frame, flow)
        pairs.append((f"warped_{seq.name}", prev, frame, flow, valid))
    return pairs


def epe(flow: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """Mean end-point error (px) over valid pixels."""
    return float(np.linalg.norm(flow - gt, axis=-1)[valid].mean())


def evaluate(est: FlowEstimator, pairs: list, repeat: int) -> tuple[list[float], float]:
    """Per-pair EPE and the median seconds per pair (after one untimed warm-up call)."""
    errors, times = [], []
    est(pairs[0][1], pairs[0][2])
    for _, a, b, gt, valid in pairs:
        for _ in range(repeat):
            t0 = time.perf_counter()
            flow = est(a, b)
            times.append((time.perf_counter() - t0) / (a.shape[0] * a.shape[1]))
        errors.append(epe(flow, gt, valid))
    return errors, float(np.median(times))


def methods() -> list[tuple[str, str, dict, int]]:
    """(row name, method, options, repeats cap) for each row; TV-L1 (~8 s a pair) runs once per pair."""
    return [
        ("tvl1 (OpenCV defaults)", "tvl1", {}, 1),
        ("dis tuned (vidrec default)", "dis", {}, 99),
        ("dis medium", "dis", {"preset": "medium"}, 99),
        ("dis fast", "dis", {"preset": "fast"}, 99),
        ("dis ultrafast", "dis", {"preset": "ultrafast"}, 99),
        ("farneback", "farneback", {}, 99),
        ("raft_small cpu", "raft", {"model": "small", "device": "cpu"}, 1),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cv2.setNumThreads(1)
    pairs = load_flow_gt(args.data / "flow_gt") + load_warped(
        args.data / "davis2016", args.warped, args.amplitude, args.seed
    )
    names = [p[0] for p in pairs]
    print(f"{len(pairs)} pairs: {', '.join(names)}; one OpenCV thread")
    rows = {}
    for row, method, opts, cap in methods():
        try:
            est = FlowEstimator(method, **opts)
        except (RaftWeightsMissing, RuntimeError) as e:
            print(f"skip {row}: {e}")
            continue
        if method == "raft":
            import torch

            torch.set_num_threads(1)
        errors, sec_per_px = evaluate(est, pairs, min(args.repeat, cap))
        rows[row] = (errors, sec_per_px)
        print(
            f"  {row}: mean EPE {np.mean(errors):.3f}, {sec_per_px * 512 * 384 * 1e3:.1f} ms per 512x384 pair"
        )
    print_table(rows, names)
    if args.write_docs:
        benchdocs.write_section("flow", docs_section(rows, names, benchdocs.command(argv)))
    return 0


def docs_section(rows: dict, names: list[str], command: str) -> str:
    """The Markdown section of docs/benchmarks.md: mean EPE and speed of every row against TV-L1."""
    ref_err, ref_t = rows["tvl1 (OpenCV defaults)"]
    ucf_px = UCF101_SIZE[0] * UCF101_SIZE[1]
    lines = [
        "## Optical flow (`benchmarks/flow.py`)",
        "",
        f"`{command}`: one OpenCV thread; {len(names)} pairs with exact ground truth ({', '.join(names)}:",
        "FlyingChairs pairs and DAVIS frames warped by known smooth fields, 512x384). The UCF101 column",
        f"projects 2.5M frames at 340x256 over {CORES} such cores.",
        "",
        "| method | mean EPE (px) | EPE / TV-L1 | ms a pair | speed / TV-L1 | UCF101 on 16 cores |",
        "|---|---|---|---|---|---|",
    ]
    for row, (errors, t) in rows.items():
        hours = UCF101_FRAMES * t * ucf_px / CORES / 3600
        lines.append(
            f"| {row} | {np.mean(errors):.3f} | {np.mean(errors) / np.mean(ref_err):.2f} | "
            f"{t * 512 * 384 * 1e3:.1f} | {ref_t / t:.0f}x | {hours:.2f} h |"
        )
    lines += ["", f"Machine: {benchdocs.machine()}."]
    return "\n".join(lines)


def print_table(rows: dict, names: list[str]) -> None:
    ref_err, ref_t = rows["tvl1 (OpenCV defaults)"]
    ucf_px = UCF101_SIZE[0] * UCF101_SIZE[1]
    header = f"{'method':28s}" + "".join(f"{n[:14]:>15s}" for n in names)
    header += f"{'mean EPE':>10s}{'EPE/tvl1':>10s}{'fps 512x384':>12s}{'speed/tvl1':>11s}{'UCF101 h':>10s}"
    print(header)
    for row, (errors, t) in rows.items():
        hours = UCF101_FRAMES * t * ucf_px / CORES / 3600
        line = f"{row:28s}" + "".join(f"{e:15.3f}" for e in errors)
        line += f"{np.mean(errors):10.3f}{np.mean(errors) / np.mean(ref_err):10.3f}"
        line += f"{1 / (t * 512 * 384):12.1f}{ref_t / t:11.1f}{hours:10.2f}"
        print(line)
    dis_err, dis_t = rows["dis tuned (vidrec default)"]
    print(
        f"RESULT flow dis_epe_vs_tvl1={np.mean(dis_err) / np.mean(ref_err):.3f} "
        f"dis_speed_vs_tvl1={ref_t / dis_t:.1f} "
        f"ucf101_hours_16cores={UCF101_FRAMES * dis_t * ucf_px / CORES / 3600:.2f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
