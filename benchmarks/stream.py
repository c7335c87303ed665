"""Streaming predict on a long live stream: frames/s, per-window latency and memory over time.

A synthetic stream (a square moving on a textured background, `--minutes` long at `--fps`) is encoded
frame by frame to an MPEG transport stream under `--workdir` (never held in memory), then read the way
`vidrec predict --follow` reads a recording in progress (`vidrec.io.live.LiveReader`, sequential decode)
and run through `vidrec.engine.predict.stream_windows` with a real recognizer, in two modes side by side:

- **stream**: `--stream`, every frame stepped once through the LRCN (`model.step`), state carried;
- **timeline**: `--timeline`, each window of `--window` frames run afresh every `--stride` frames.

Per mode: frames/s end to end (decode + preprocessing + model), when the first window came out, the
per-window latency (from the decode of a window's last frame to its prediction: median, p95, max) and
the process's resident memory (RSS, from /proc) after the first window, at the end, and its maximum.
Flat memory is the claim: nothing grows with the stream's length.

Example: python benchmarks/stream.py --minutes 10 --model lrcn_mobilenet_v2
The last line is `RESULT stream frames_per_s_stream=X latency_ms_p50_stream=Y rss_growth_mb_stream=Z ...`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

from vidrec import benchdocs
from vidrec.engine.predict import Preprocess, rgb_frames, stream_windows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="stream length in minutes (default 10)")
    p.add_argument("--fps", type=int, default=25, help="frame rate of the stream (default 25)")
    p.add_argument("--width", type=int, default=160, help="frame width of the stream (default 160)")
    p.add_argument("--height", type=int, default=120, help="frame height of the stream (default 120)")
    p.add_argument(
        "--model", default="lrcn_mobilenet_v2", help="registered LRCN model (default lrcn_mobilenet_v2)"
    )
    p.add_argument("--resize", type=int, default=128, help="short side at decode (default 128)")
    p.add_argument("--size", type=int, default=112, help="centre crop fed to the model (default 112)")
    p.add_argument("--window", type=int, default=16, help="window length in frames (default 16)")
    p.add_argument("--stride", type=int, default=8, help="window stride in frames (default 8)")
    p.add_argument("--modes", default="stream,timeline", help="modes to run (default stream,timeline)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: torch's default (default 0)")
    p.add_argument(
        "--workdir", type=Path, default=Path("runs/bench_stream"), help="where the stream file goes"
    )
    p.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    return p.parse_args(argv)


def make_stream(path: Path, *, frames: int, fps: int, width: int, height: int) -> Path:
    """Encode a synthetic moving-square stream to MPEG-TS one frame at a time (constant memory)."""
    if path.is_file() and path.stat().st_size > 0 and path.with_suffix(".done").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = 12
        for i in tqdm(range(frames), desc="encoding the stream", unit="frame"):
            img = background.copy()
            x = int((i * 3) % (width - 24))
            y = int(height / 2 + height / 4 * np.sin(i / 20)) - 12
            img[y : y + 24, x : x + 24] = (255, 32, 32)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    path.with_suffix(".done").touch()
    return path


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_mode(model, path: Path, *, recurrent: bool, args, total_frames: int) -> dict:
    pre = Preprocess(resize=args.resize, size=args.size)
    frames = rgb_frames(path, preprocess=pre, follow=True, idle_timeout=1.0)
    latencies, rss, first = [], [], None
    tic = time.perf_counter()
    n_windows = total_frames // args.stride
    bar = tqdm(total=n_windows, desc="stream" if recurrent else "timeline", unit="window")
    last_end = 0
    windows = stream_windows(
        model, frames, window=args.window, stride=args.stride, recurrent=recurrent, preprocess=pre
    )
    for w in windows:
        first = first if first is not None else time.perf_counter() - tic
        latencies.append(w.latency_s * 1000)
        last_end = w.end_frame
        if len(latencies) % 50 == 1:
            rss.append(rss_mb())
        bar.update()
    bar.close()
    seconds = time.perf_counter() - tic - 1.0  # the follow reader waits idle_timeout at the end
    rss.append(rss_mb())
    lat = sorted(latencies)
    return {
        "frames": last_end,
        "frames_per_s": last_end / seconds,
        "first_s": first,
        "p50": statistics.median(lat),
        "p95": lat[int(0.95 * (len(lat) - 1))],
        "max": lat[-1],
        "windows": len(lat),
        "rss_first": rss[0],
        "rss_end": rss[-1],
        "rss_max": max(rss),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    total = int(args.minutes * 60 * args.fps)
    name = f"stream_{args.minutes:g}min_{args.fps}fps_{args.width}x{args.height}.ts"
    path = make_stream(args.workdir / name, frames=total, fps=args.fps, width=args.width, height=args.height)
    from vidrec.models import get_model

    model = get_model(args.model, num_classes=101).to(device).eval()
    what = (f"{args.model} on {device} ({torch.get_num_threads()} threads), {total} frames "
            f"({args.minutes:g} min at {args.fps} fps, {args.width}x{args.height}), window {args.window} "
            f"stride {args.stride}, crop {args.size}")  # fmt: skip
    print(what)
    results = {}
    for mode in args.modes.split(","):
        results[mode] = run_mode(model, path, recurrent=mode == "stream", args=args, total_frames=total)
    table = table_lines(results)
    print("\n".join(table))
    parts = []
    for mode, r in results.items():
        growth = r["rss_end"] - r["rss_first"]
        parts += [f"frames_per_s_{mode}={r['frames_per_s']:.1f}", f"latency_ms_p50_{mode}={r['p50']:.1f}",
                  f"latency_ms_p95_{mode}={r['p95']:.1f}", f"rss_growth_mb_{mode}={growth:.1f}"]  # fmt: skip
    print("RESULT stream " + " ".join(parts))
    if args.write_docs:
        text = [
            "## Prediction on a live stream (`benchmarks/stream.py`)",
            "",
            f"`{benchdocs.command(argv)}`: a generated MPEG-TS stream read as a growing file; {what}.",
            "`stream` steps the LRCN once per frame; `timeline` runs each window afresh.",
            "",
            *table,
            "",
            f"Machine: {benchdocs.machine()}.",
        ]
        benchdocs.write_section("stream", "\n".join(text))


def table_lines(results: dict) -> list[str]:
    """The Markdown table of the modes' throughput, latency and memory."""
    head = ("| mode | frames | frames/s | first window after (s) | latency p50 / p95 / max (ms) "
            "| RSS after 1st window / end / max (MB) |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|"]
    for mode, r in results.items():
        lines.append(
            f"| {mode} | {r['frames']} | {r['frames_per_s']:.1f} | {r['first_s']:.2f} | "
            f"{r['p50']:.1f} / {r['p95']:.1f} / {r['max']:.1f} | "
            f"{r['rss_first']:.0f} / {r['rss_end']:.0f} / {r['rss_max']:.0f} |"
        )
    return lines


if __name__ == "__main__":
    main()
