"""TSN-8 sparse decoding speed: vidrec vs torchcodec, decord and a full PyAV decode, same files, one run.

Generates UCF101-like videos (320x240, 5-10 s, 25 fps, moving textured content) as H.264 in mp4
(x264 defaults: keyint 250, scene cuts, 3 B-frames) and MPEG-4 part 2 in avi (GOP 12 and GOP 300),
then reads 8 frames per video (one random frame in each of 8 equal segments, as TSN training does),
resized to a 224 short side, with ONE decoder thread everywhere (throughput per core). vidrec's frames
are checked to equal those of a full sequential decode in the same run.

With `--files DIR [DIR ...]` (folders searched recursively, or list files) it runs the same TSN-8
comparison on real videos instead: a row per file (codec, size, frames, mean keyframe interval, each
method's videos per CPU-second, vidrec over the better of decord and torchcodec, and whether vidrec's
frames equal a full sequential decode at every index set), then the geometric mean of the ratios.
Frames are compared as stored (no display rotation), as the peers return them.

Peers: `pip install decord==0.6.0 torchcodec` and FFmpeg's shared libraries for torchcodec
(`apt-get install ffmpeg`, as root). A peer that cannot load is skipped with the reason printed.

Usage: python benchmarks/decode.py [--videos 12] [--out /tmp/vidrec_decode_bench] [--threads 1]
       python benchmarks/decode.py --files ../shared/data/clips ../shared/data/msrvtt_sample/videos
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from tqdm import tqdm

from vidrec import benchdocs
from vidrec.io import VideoReader, read_frames
from vidrec.io.cli import list_videos
from vidrec.io.dense import dense_encode
from vidrec.io.video import INTERPOLATION, output_size

HEIGHT, WIDTH, FPS, SEGMENTS, SHORT_SIDE = 240, 320, 25, 8, 224
SETS = {  # name -> (extension, codec, codec options / gop)
    "h264_mp4_x264default": (".mp4", "libx264", {"x264-params": "keyint=250"}),
    "mpeg4_avi_gop12": (".avi", "mpeg4", {"g": "12"}),
    "mpeg4_avi_gop300": (".avi", "mpeg4", {"g": "300"}),
}


# -- test videos ------------------------------------------------------------------------------------------
def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multi-scale smoothed noise with edges: something an encoder has to work for."""
    img = np.zeros((h, w, 3), np.float32)
    for scale, weight in ((64, 0.5), (16, 0.3), (4, 0.2)):
        small = rng.random((h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        img += weight * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    stripes = (np.sin(np.arange(w) / rng.uniform(3, 9)) > 0.6).astype(np.float32)
    img[:, :, :] += 0.25 * stripes[None, :, None] * rng.random(3)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def synth_video(rng: np.random.Generator, frames: int) -> np.ndarray:
    """`(T, 240, 320, 3)` uint8: a panning textured scene, moving textured objects, flicker and noise."""
    bg = _texture(rng, HEIGHT * 2, WIDTH * 2)
    objects = [
        (_texture(rng, 60, 60), rng.uniform(-4, 4, 2), rng.uniform(0, [HEIGHT - 60, WIDTH - 60]))
        for _ in range(3)
    ]
    pan = rng.uniform(-1.5, 1.5, 2)
    out = np.empty((frames, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(frames):
        y, x = (int(HEIGHT / 2 + pan[0] * t) % HEIGHT, int(WIDTH / 2 + pan[1] * t) % WIDTH)
        frame = bg[y : y + HEIGHT, x : x + WIDTH].astype(np.int16)
        for tex, vel, pos in objects:
            oy, ox = ((pos + vel * t) % [HEIGHT - 60, WIDTH - 60]).astype(int)
            frame[oy : oy + 60, ox : ox + 60] = tex
        frame += int(8 * np.sin(t / 10)) + rng.integers(-3, 4, frame.shape, dtype=np.int16)
        out[t] = np.clip(frame, 0, 255)
    return out


def encode(path: Path, frames: np.ndarray, codec: str, options: dict) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS, options=dict(options))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 800_000  # about UCF101's xvid bitrate
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def make_videos(out: Path, n: int) -> dict[str, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    sets: dict[str, list[Path]] = {name: [] for name in SETS}
    rng = np.random.default_rng(0)
    lengths = rng.integers(5 * FPS, 10 * FPS + 1, n)
    for i in tqdm(range(n), desc="generating videos"):
        frames = None
        for name, (ext, codec, options) in SETS.items():
            path = out / f"{name}_{i:03d}_{lengths[i]}f{ext}"
            if not path.exists():
                frames = synth_video(np.random.default_rng(i), int(lengths[i])) if frames is None else frames
                encode(path, frames, codec, options)
            sets[name].append(path)
    return sets


def tsn_indices(num_frames: int, rng: np.random.Generator) -> list[int]:
    """One random frame in each of 8 equal segments (TSN, Wang et al. 2016)."""
    edges = np.linspace(0, num_frames, SEGMENTS + 1)
    return [min(int(rng.uniform(a, b)), num_frames - 1) for a, b in zip(edges[:-1], edges[1:])]


# -- decoders under test -------------------------------------------------------------------------------
HW = output_size(SHORT_SIDE, height=HEIGHT, width=WIDTH)  # (224, 299) for the generated videos
SIZES: dict[str, tuple[int, int]] = {}  # output (H, W) of real files, filled before timing


def hw_of(path: Path) -> tuple[int, int]:
    return SIZES.get(str(path), HW)


def vidrec_read(path: Path, indices: list[int], threads: int) -> np.ndarray:
    # as stored, as the peers return frames (no real file here carries a display rotation anyway)
    return read_frames(path, indices, size=SHORT_SIDE, threads=threads, autorotate=False)


_PYAV_REFORMATTER = VideoReformatter()


def pyav_full(path: Path, indices: list[int], threads: int) -> np.ndarray:
    """Decode every frame, convert (and resize) only the picked ones."""
    want, picked, (height, width) = set(indices), {}, hw_of(path)
    reformatter = _PYAV_REFORMATTER  # one swscale context kept across frames and videos, as vidrec does
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        for i, frame in enumerate(container.decode(stream)):
            if i in want:
                rgb = reformatter.reformat(  # planar RGB, vidrec's faster scaled conversion, same pixels
                    frame, format="gbrp", width=width, height=height, interpolation=INTERPOLATION
                )
                picked[i] = rgb.to_ndarray()
    return np.stack([picked[i] for i in indices])


def load_peers(threads: int) -> dict[str, Callable]:
    peers: dict[str, Callable] = {"pyav_full_decode": pyav_full}
    try:
        import decord

        def decord_read(path, indices, threads=threads):
            height, width = hw_of(path)
            reader = decord.VideoReader(str(path), width=width, height=height, num_threads=threads)
            return reader.get_batch(indices).asnumpy()

        peers["decord_get_batch"] = decord_read
    except Exception as e:  # noqa: BLE001 - any load failure means: skip with the reason
        print(f"SKIP decord: {type(e).__name__}: {e}")
    try:
        import torch
        from torchcodec.decoders import VideoDecoder

        torch.set_num_threads(1)

        def torchcodec_read(path, indices, threads=threads):
            # its decoder-side Resize transform measured slower than decoding full size + torch resize
            decoder = VideoDecoder(str(path), num_ffmpeg_threads=threads)
            frames = decoder.get_frames_at(indices).data.float()  # (N, 3, H, W)
            frames = torch.nn.functional.interpolate(
                frames, size=hw_of(path), mode="bilinear", antialias=True
            )
            return frames.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

        peers["torchcodec_get_frames_at"] = torchcodec_read
    except Exception as e:  # noqa: BLE001
        print(f"SKIP torchcodec: {type(e).__name__}: {e}")
    return peers


DENSE = "vidrec_dense_reencoded"


def make_dense(jobs: list[tuple[Path, list[int]]], folder: Path, gop: int) -> tuple[list, str]:
    """Re-encode every video once with `vidrec.io.dense_encode`; returns the new jobs and the one-off cost."""
    folder.mkdir(parents=True, exist_ok=True)
    start, new_jobs = time.perf_counter(), []
    for path, indices in jobs:
        new_jobs.append((dense_encode(path, folder / f"{path.stem}.mp4", gop=gop), indices))
    seconds = (time.perf_counter() - start) / len(jobs)
    growth = sum(p.stat().st_size for p, _ in new_jobs) / sum(p.stat().st_size for p, _ in jobs)
    return new_jobs, f"gop {gop}, one-off {seconds:.2f} s/video (default threads), files {growth:.1f}x larger"


# -- measuring ------------------------------------------------------------------------------------------
def time_methods(methods: dict[str, tuple[Callable, list]], threads: int, repeats: int) -> dict[str, float]:
    """Best of `repeats` CPU seconds (this process, all its threads) to read every job of each method.

    CPU time, not wall time: it is what a method costs per core, and other processes sharing the
    machine do not inflate it. Methods are interleaved within each repeat so drifts hit all alike.
    """
    best = dict.fromkeys(methods, float("inf"))
    for fn, jobs in methods.values():
        fn(*jobs[0], threads)  # warm-up
    for _ in range(repeats):
        for name, (fn, jobs) in methods.items():
            start = time.process_time()
            for path, indices in jobs:
                fn(path, indices, threads)
            best[name] = min(best[name], time.process_time() - start)
    return best


def check_exact(
    jobs: list[tuple[Path, list[int]]], peers: dict[str, Callable], threads: int
) -> dict[str, str]:
    """vidrec must equal the full decode exactly; peers' differences (own colour conversion) are shown."""
    notes = {}
    for path, indices in jobs:
        ref = pyav_full(path, indices, threads)
        got = vidrec_read(path, indices, threads)
        if not np.array_equal(got, ref):
            raise AssertionError(f"vidrec frames differ from the full decode on {path} at {indices}")
    for name, fn in peers.items():
        path, indices = jobs[0]
        diff = np.abs(fn(path, indices, threads).astype(int) - pyav_full(path, indices, threads)).mean()
        notes[name] = "exact" if diff == 0 else f"mean |diff| {diff:.2f}"
    notes["vidrec"] = "exact (all videos)"
    return notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=12, help="videos per format (default 12)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/vidrec_decode_bench"), help="where videos go")
    parser.add_argument("--threads", type=int, default=1, help="decoder threads for every method (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes, best kept (default 5)")
    parser.add_argument("--dense-gop", type=int, default=8, help="GOP of the re-encoded row (0: off)")
    parser.add_argument(
        "--files",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="real videos instead of generated ones: folders (recursive) or list files (default: off)",
    )
    parser.add_argument(
        "--index-sets",
        type=int,
        default=4,
        help="--files: TSN-8 index sets read per file and pass (default 4)",
    )
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if args.files:
        run_files(args, argv)
        return
    sets = make_videos(args.out, args.videos)
    peers = load_peers(args.threads)
    rng = np.random.default_rng(1)
    totals: dict[str, float] = {}
    per_set: dict[str, dict[str, float]] = {}
    resize = f"{HW[0]}x{HW[1]} ({INTERPOLATION.lower()})"
    print(f"\nTSN-{SEGMENTS} sampling, resize to {resize}, decoder threads={args.threads}")
    for set_name, paths in sets.items():
        jobs = [(p, tsn_indices(int(p.stem.split("_")[-1][:-1]), rng)) for p in paths]
        notes = check_exact(jobs, peers, args.threads)
        methods = {"vidrec": (vidrec_read, jobs)} | {name: (fn, jobs) for name, fn in peers.items()}
        if args.dense_gop:
            dense_jobs, note = make_dense(jobs, args.out / f"dense_gop{args.dense_gop}", args.dense_gop)
            check_exact(dense_jobs, {}, args.threads)
            methods[DENSE] = (vidrec_read, dense_jobs)
            notes[DENSE] = f"exact w.r.t. the re-encoded file; {note}"
        times = time_methods(methods, args.threads, args.repeats)
        print_table(set_name, len(jobs), times, notes)
        per_set[f"{set_name} ({len(jobs)})"] = {name: len(jobs) / t for name, t in times.items()}
        for name, t in times.items():
            totals[name] = totals.get(name, 0.0) + t
    n_all = args.videos * len(sets)
    print_table("all sets", n_all, totals, {})
    per_set[f"all ({n_all})"] = {name: n_all / t for name, t in totals.items()}
    best_peer = min((t, name) for name, t in totals.items() if name not in ("vidrec", DENSE))
    ratio = best_peer[0] / totals["vidrec"]
    print(f"best peer: {best_peer[1]}")
    speed = n_all / totals["vidrec"]
    result = f"RESULT decode_tsn8 vidrec_vs_best_peer={ratio:.2f} vidrec_videos_per_s={speed:.1f}"
    print(result)
    if args.write_docs:
        what = (
            f"TSN-{SEGMENTS} sampling resized to {resize}, {args.threads} decoder thread(s), videos per "
            f"CPU-second, best of {args.repeats} interleaved passes; every vidrec output checked equal to a "
            "full sequential decode"
        )
        benchdocs.write_section("decode", sets_section(per_set, what, result, benchdocs.command(argv)))


def sets_section(per_set: dict[str, dict[str, float]], what: str, result: str, command: str) -> str:
    """docs/benchmarks.md section of the generated sets: videos/s of every method, vidrec / best peer."""
    methods = list(next(iter(per_set.values())))
    lines = [
        "## Decoding (`benchmarks/decode.py`)",
        "",
        f"`{command}`: {what}.",
        "",
        "| files | " + " | ".join(methods) + " | vidrec / best peer |",
        "|---|" + "---|" * (len(methods) + 1),
    ]
    for name, rates in per_set.items():
        best = max(r for m, r in rates.items() if m not in ("vidrec", DENSE))
        cells = " | ".join(f"{rates[m]:.1f}" for m in methods)
        lines.append(f"| {name} | {cells} | {rates['vidrec'] / best:.2f}x |")
    lines += ["", f"`{result}`. Machine: {benchdocs.machine()}."]
    return "\n".join(lines)


def print_table(title: str, n: int, times: dict[str, float], notes: dict[str, str]) -> None:
    best_peer = min(t for name, t in times.items() if name not in ("vidrec", DENSE))
    print(f"\n{title} ({n} videos)")
    print(f"{'method':<26} {'videos/s':>9} {'frames/s':>9} {'vs vidrec':>10}  output   (per CPU-second)")
    for name, t in sorted(times.items(), key=lambda kv: kv[1]):
        rel = times["vidrec"] / t
        print(f"{name:<26} {n / t:>9.1f} {SEGMENTS * n / t:>9.1f} {rel:>9.2f}x  {notes.get(name, '')}")
    print(f"vidrec speed-up over the best peer: {best_peer / times['vidrec']:.2f}x")


# -- real files ------------------------------------------------------------------------------------------
PEERS = ("decord_get_batch", "torchcodec_get_frames_at")  # the third-party decoders of the goal


def describe(path: Path) -> dict | None:
    """Codec, size, frames and mean keyframe interval of a file (None, printed, when it does not read)."""
    try:
        with VideoReader(path, threads=1, autorotate=False) as reader:
            meta, index = reader.meta, reader._index
            SIZES[str(path)] = output_size(SHORT_SIDE, height=meta.height, width=meta.width)
            gop = index.num_packets / max(len(index.key_pos), 1)
            return {
                "codec": meta.codec,
                "size": f"{meta.width}x{meta.height}",
                "frames": len(reader),
                "gop": gop,
            }
    except Exception as e:  # noqa: BLE001 - reported and left out, as a dataset would
        print(f"SKIP {path}: {type(e).__name__}: {e}")
        return None


def check_file(path: Path, index_sets: list[list[int]], threads: int) -> str:
    """'exact' when vidrec equals the full decode at every index set, else what differs."""
    for indices in index_sets:
        try:
            got = vidrec_read(path, indices, threads)
        except Exception as e:  # noqa: BLE001
            return f"ERROR {type(e).__name__}"
        if not np.array_equal(got, pyav_full(path, indices, threads)):
            return f"DIFFERS at {indices}"
    return "exact"


def run_files(args: argparse.Namespace, argv: list[str] | None = None) -> None:
    paths = [Path(p) for p in list_videos([str(f) for f in args.files])]
    infos = {p: info for p in tqdm(paths, desc="indexing", leave=False) if (info := describe(p))}
    peers = load_peers(args.threads)
    rng = np.random.default_rng(1)
    rows = []
    for path, info in tqdm(infos.items(), desc="files", leave=False):
        sets = [tsn_indices(info["frames"], rng) for _ in range(args.index_sets)]
        exact = check_file(path, sets, args.threads)
        jobs = [(path, indices) for indices in sets]
        methods = {"vidrec": (vidrec_read, jobs)} | {name: (fn, jobs) for name, fn in peers.items()}
        times = time_methods(methods, args.threads, args.repeats)
        rows.append((path, info, exact, {name: len(jobs) / t for name, t in times.items()}))
    table, result = print_files_table(rows, list(peers))
    if args.write_docs:
        text = [
            "## Decoding real files (`benchmarks/decode.py --files`)",
            "",
            f"`{benchdocs.command(argv)}`: TSN-{SEGMENTS} reads at a {SHORT_SIDE} short side, "
            f"{args.index_sets} index sets per file, best of {args.repeats} interleaved passes, videos per "
            "CPU-second; the last column says whether vidrec's frames equal a full sequential decode.",
            "",
            *table,
            "",
            f"`{result}`. Machine: {benchdocs.machine()}.",
        ]
        benchdocs.write_section("decode_files", "\n".join(text))


def print_files_table(rows: list, peer_names: list[str]) -> tuple[list[str], str]:
    """Print the per-file table; returns it as Markdown lines, and the RESULT line."""
    third = [p for p in peer_names if p in PEERS]
    short = {
        "pyav_full_decode": "pyav_all",
        "decord_get_batch": "decord",
        "torchcodec_get_frames_at": "torchcodec",
    }
    head = f"{'file':<34} {'codec':<6} {'size':>9} {'frames':>6} {'gop':>5} {'vidrec':>7}"
    head += "".join(f" {short.get(p, p):>10}" for p in peer_names) + f" {'ratio':>6}  vidrec frames"
    print(f"\nTSN-{SEGMENTS} reads of real files, {SHORT_SIDE} short side, videos per CPU-second (best pass)")
    print(head)
    ratios = []
    table = [
        "| file | codec | size | frames | mean GOP | vidrec | "
        + " | ".join(short.get(p, p) for p in peer_names)
        + " | vidrec / best third-party peer | vidrec frames |",
        "|---|" + "---|" * (len(peer_names) + 7),
    ]
    for path, info, exact, speed in rows:
        best = max((speed[p] for p in third), default=float("nan"))
        ratio = speed["vidrec"] / best
        ratios.append(ratio)
        line = f"{path.name[-34:]:<34} {info['codec']:<6} {info['size']:>9} {info['frames']:>6}"
        line += f" {info['gop']:>5.0f}"
        line += f" {speed['vidrec']:>7.1f}" + "".join(f" {speed[p]:>10.1f}" for p in peer_names)
        print(f"{line} {ratio:>5.2f}x  {exact}")
        cells = " | ".join(f"{speed[p]:.1f}" for p in peer_names)
        table.append(
            f"| {path.name} | {info['codec']} | {info['size']} | {info['frames']} | {info['gop']:.0f} | "
            f"{speed['vidrec']:.1f} | {cells} | {ratio:.2f}x | {exact} |"
        )
    good = [r for r in ratios if math.isfinite(r) and r > 0]
    geo = math.exp(sum(map(math.log, good)) / len(good)) if good else float("nan")
    n_exact = sum(row[2] == "exact" for row in rows)
    print(
        f"geometric mean of vidrec / best of {'+'.join(short[p] for p in third) or 'none'}: {geo:.2f}x "
        f"(min {min(good, default=float('nan')):.2f}x, max {max(good, default=float('nan')):.2f}x)"
    )
    result = (
        f"RESULT decode_tsn8_files files={len(rows)} exact={n_exact} vidrec_vs_best_peer_geomean={geo:.2f}"
    )
    print(result)
    return table, result


if __name__ == "__main__":
    main()
