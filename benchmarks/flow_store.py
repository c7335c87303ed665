"""Flow stores: bytes per 100 flow frames, exactness and read time of `vidrec flow --format` ffv1 (the
default) vs npy (the old default) vs denseflow JPEGs, on the flow of real clips, in one run.

For each clip the flow is extracted once (DIS, the CLI's default settings: 256 short side, bound 20), then
written by `vidrec.flow.save_flow` in each store. Reported per store: bytes per 100 flow frames (data
files only; the JSON is ~250 bytes), the largest code error against the extracted codes, and the time
to read a two-stream training item (3 segments x 10 consecutive flow frames) with `load_flow`, best of
`--repeat`. The UCF101 projection scales bytes per flow frame to 2.5M frames at 340x256. The last line is
`RESULT flow_store ffv1_mb_per_100=X npy_mb_per_100=Y denseflow_mb_per_100=Z npy_over_ffv1=R ...`.

Example: python benchmarks/flow_store.py ../shared/data/clips
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vidrec import benchdocs
from vidrec.flow import flow_video, load_flow, save_flow

STORES = ("ffv1", "npy", "denseflow")
UCF101_FRAMES = 2.5e6
UCF101_SIZE = (256, 340)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("clips", type=Path, help="folder of real video clips (e.g. ../shared/data/clips)")
    p.add_argument("--short-side", type=int, default=256, help="flow size, as `vidrec flow` (default 256)")
    p.add_argument("--repeat", type=int, default=5, help="timed reads per store (default 5)")
    p.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    return p.parse_args(argv)


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size


def _read_time(path: Path, n: int, repeat: int) -> float:
    """Seconds to read 3 x 10 consecutive flow frames at spread starts (a two-stream item), best of."""
    starts = np.linspace(0, max(n - 10, 0), 3).astype(int)
    wanted = [min(s + k, n - 1) for s in starts for k in range(10)]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        load_flow(path, wanted)
        best = min(best, time.perf_counter() - t)
    return best


def measure(clip: Path, short_side: int, repeat: int, tmp: Path) -> dict[str, dict]:
    q = flow_video(clip, short_side=short_side)
    rows = {}
    for store in STORES:
        path = save_flow(tmp / store, clip.stem, q, bound=20.0, method="dis", fps=25.0, format=store)
        back = load_flow(path)
        rows[store] = {
            "bytes": _bytes(path),
            "frames": len(q),
            "max_err": int(np.abs(back.astype(np.int16) - q).max()),
            "read_s": _read_time(path, len(q), repeat),
            "hw": q.shape[1:3],
        }
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clips = sorted(p for p in args.clips.iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mkv"))
    if not clips:
        raise SystemExit(f"{args.clips}: no .mp4/.avi/.mkv clips")
    totals = {s: {"bytes": 0, "frames": 0, "max_err": 0, "read_s": 0.0} for s in STORES}
    print("| clip | flow size | store | MB per 100 flow frames | max code error | read 3x10 frames (ms) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            for store, r in measure(clip, args.short_side, args.repeat, Path(tmp)).items():
                per100 = r["bytes"] / r["frames"] * 100 / 1e6
                h, w = r["hw"]
                print(f"| {clip.name} | {w}x{h} | {store} | {per100:.3f} | {r['max_err']} | "
                      f"{r['read_s'] * 1e3:.1f} |")  # fmt: skip
                t = totals[store]
                t["bytes"] += r["bytes"] * (UCF101_SIZE[0] * UCF101_SIZE[1]) / (h * w)  # at 340x256
                t["frames"] += r["frames"]
                t["max_err"] = max(t["max_err"], r["max_err"])
                t["read_s"] += r["read_s"] / len(clips)
    table = [
        "| store | MB per 100 flow frames at 340x256 | UCF101 (2.5M frames) GB | max code error "
        "| read 3x10 frames (ms) |",
        "|---|---|---|---|---|",
    ]
    per100 = {}
    for store, t in totals.items():
        per100[store] = t["bytes"] / t["frames"] * 100 / 1e6
        ucf = t["bytes"] / t["frames"] * UCF101_FRAMES / 1e9
        table.append(
            f"| {store} | {per100[store]:.3f} | {ucf:.1f} | {t['max_err']} | {t['read_s'] * 1e3:.1f} |"
        )
    print("\n" + "\n".join(table))
    if args.write_docs:
        text = [
            "## Flow stores (`benchmarks/flow_store.py`)",
            "",
            f"`{benchdocs.command(argv)}`: the DIS flow of {len(clips)} real clips at a {args.short_side} "
            "short side, written in each `vidrec flow --format`; sizes scaled to 340x256; a read is",
            "3 x 10 consecutive flow frames (a two-stream item), mean of the clips.",
            "",
            *table,
            "",
            f"Machine: {benchdocs.machine()}.",
        ]
        benchdocs.write_section("flow_store", "\n".join(text))
    print(
        f"RESULT flow_store ffv1_mb_per_100={per100['ffv1']:.3f} npy_mb_per_100={per100['npy']:.3f} "
        f"denseflow_mb_per_100={per100['denseflow']:.3f} npy_over_ffv1={per100['npy'] / per100['ffv1']:.1f} "
        f"ffv1_max_code_error={totals['ffv1']['max_err']} "
        f"ffv1_read_ms={totals['ffv1']['read_s'] * 1e3:.1f} npy_read_ms={totals['npy']['read_s'] * 1e3:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
