"""Training throughput: clips/s end to end from video files vs the compute bound vs torchvision's pipeline.

Three rows, same model, same clip shape, same batch size, same number of DataLoader workers, one run:

- **compute bound**: the model trained on one pre-made batch kept on the device (no data loading);
- **vidrec**: `vidrec.data.VideoDataset` (PyAV frame-exact decoding of only the sampled frames, resize in
  the decoder, random crop + flip) -> `DataLoader` -> forward / backward / step;
- **torchvision reference**: `torchvision.datasets.video_utils.VideoClips` (decodes through torchcodec)
  with the transforms of torchvision's `references/video_classification` training preset
  (resize, random horizontal flip, normalise, random crop) -> the same loop.

Two more rows time the data pipelines alone (batches drawn from the same DataLoaders, no model): the
clips/s a pipeline can feed, which is what bounds a fast accelerator. On a small CPU machine the model
and the loader workers share the cores, so the end-to-end rows mostly measure the model. A last row
runs vidrec's loader in one process (no workers): its clips/s per core sizes how many cores it takes to
feed the device the benchmark runs on (its compute bound), or any device rate given with
`--device-images-per-s` (e.g. the images/s a GPU trains the model at).

Noise: every row is measured once per round and the rounds are repeated (`--repeats`), so a slow phase of
a shared machine hits all rows alike; each row reports its best round and the spread over rounds
((max - min) / max), and the ratios use the best rounds.

vidrec's loader sends uint8 clips and normalises them on the device, as `vidrec train` does; the reference
normalises in its workers, as torchvision's reference script does.

Input videos are generated (UCF101-like: 320x240, 25 fps, MPEG-4 part 2 with GOP 12 as UCF101's files,
or H.264 with `--codec h264`) under `--workdir`. The last line is
`RESULT train_throughput e2e_vs_compute=X e2e_vs_reference=Y loader_vs_reference=L clips_per_s=Z
cores_to_feed=C`.

Peers: torchcodec needs FFmpeg's shared libraries (`apt-get install -y ffmpeg`) and
`pip install torchcodec` (`make bench`); a reference row that cannot run prints why and is skipped.

Example: python benchmarks/train_throughput.py --model lrcn_resnet18 --frames 8 --size 112 --workers 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vidrec import benchdocs

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lrcn_resnet18", help="registered model name (default lrcn_resnet18)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    p.add_argument("--size", type=int, default=112, help="crop size (default 112)")
    p.add_argument("--resize", type=int, default=128, help="short side before cropping (default 128)")
    p.add_argument("--batch", type=int, default=4, help="clips per step (default 4)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--steps", type=int, default=8, help="timed steps per row and round (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per row and round (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="rounds; each row keeps its best round (default 3)")
    p.add_argument(
        "--device-images-per-s",
        type=float,
        default=0.0,
        help="also size the loader for a device training this model at this many images (frames) per "
        "second at this clip shape, e.g. a GPU's measured rate; 0: only the device it runs on (default 0)",
    )
    p.add_argument("--videos", type=int, default=16, help="generated videos (default 16)")
    p.add_argument(
        "--video-frames", type=int, default=75, help="frames per generated video (default 75: 3 s)"
    )
    p.add_argument(
        "--codec",
        choices=["mpeg4", "h264"],
        default="mpeg4",
        help="generated files: mpeg4 = MPEG-4 part 2 in avi with a keyframe every 12 frames, as UCF101's; "
        "h264 = H.264 in mp4 with x264's defaults (keyframes 250 apart) (default mpeg4)",
    )
    p.add_argument("--workdir", default="runs/bench_train_throughput", help="where the videos are written")
    p.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- inputs


def make_videos(folder: Path, n: int, frames: int, codec: str = "h264") -> list[Path]:
    """`n` 320x240 videos with moving textured content (kept between runs)."""
    import cv2

    from vidrec.data.synthetic import CLASSES, make_clip
    from vidrec.io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in tqdm(range(n), desc="videos", leave=False):
        path = folder / f"video_{i:03d}_{frames}_{codec}.{'avi' if codec == 'mpeg4' else 'mp4'}"
        if not path.is_file():
            clip = make_clip(CLASSES[i % len(CLASSES)], np.random.default_rng(i), frames=frames, size=240)
            clip = np.stack([cv2.resize(f, (320, 240)) for f in clip])
            if codec == "mpeg4":
                write_video(path, clip, 25, codec="mpeg4", gop=12)
            else:
                write_video(path, clip, 25)
        paths.append(path)
    return paths


def vidrec_dataset(paths: list[Path], args: argparse.Namespace) -> Dataset:
    """vidrec's training pipeline: random dense clip, decode only those frames, random crop + flip."""
    from vidrec.data import VideoDataset, VideoRecord, build_sampler
    from vidrec.data.transforms import train_transform

    # As many items an epoch as VideoClips has clips (a video of F frames: F // T of them), so that both
    # loaders restart their epochs equally often.
    repeats = max(1, args.video_frames // args.frames)
    records = [VideoRecord(p.name, i % 6, p.stem) for i, p in enumerate(paths)] * repeats
    sampler = build_sampler("dense", clip_len=args.frames, train=True)
    transform = train_transform(args.size, kind="crop", normalize=False)  # random crop + flip, uint8 out
    return VideoDataset(records, root=paths[0].parent, sampler=sampler, transform=transform, size=args.resize)


class ReferenceClips(Dataset):
    """torchvision's reference: `VideoClips` + the `references/video_classification` training preset."""

    def __init__(self, paths: list[Path], args: argparse.Namespace) -> None:
        import torchvision.transforms.v2 as T
        from torchvision.datasets.video_utils import VideoClips

        self.clips = VideoClips(
            [str(p) for p in paths],
            clip_length_in_frames=args.frames,
            frames_between_clips=args.frames,
            num_workers=0,
        )
        self.transform = T.Compose(
            [
                T.Resize(args.resize, antialias=False),
                T.RandomHorizontalFlip(),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(MEAN, STD),
                T.RandomCrop(args.size),
            ]
        )

    def __len__(self) -> int:
        return self.clips.num_clips()

    def __getitem__(self, i: int) -> dict:
        video, _, _, video_idx = self.clips.get_clip(i)  # (T, H, W, C) uint8
        x = self.transform(video.permute(0, 3, 1, 2))  # (T, C, H, W)
        return {"rgb": x, "label": video_idx % 6}


# ----------------------------------------------------------------------------- measuring


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    from vidrec.models.outputs import classification_loss

    loss = classification_loss(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], step: Callable, args, device) -> float:
    """clips/s over `args.steps` steps after `args.warmup` untimed ones."""
    it = iter(batches)
    for _ in range(args.warmup):
        step(*next(it))
    _sync(device)
    tic = time.perf_counter()
    for _ in tqdm(range(args.steps), desc="steps", leave=False):
        step(*next(it))
    _sync(device)
    return args.steps * args.batch / (time.perf_counter() - tic)


def from_loader(ds: Dataset, args, device: torch.device):
    """Endless (x, y) batches on `device` from a shuffled DataLoader."""
    from vidrec.data import collate_skip

    loader = DataLoader(
        ds,
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        collate_fn=collate_skip,
        persistent_workers=args.workers > 0,
        pin_memory=device.type == "cuda",
    )
    from vidrec.data.transforms import normalize_rgb

    while True:
        for batch in loader:
            x = normalize_rgb(batch["rgb"].to(device, non_blocking=True))  # uint8 -> float on the device
            yield x, torch.as_tensor(batch["label"]).to(device)


def pre_made(args, device: torch.device):
    x = torch.randn(args.batch, args.frames, 3, args.size, args.size, device=device)
    y = torch.zeros(args.batch, dtype=torch.long, device=device)
    while True:
        yield x, y


def measure_rows(rows: dict[str, Callable[[], float | str]], repeats: int) -> dict[str, list[float] | str]:
    """Each row's rate once per round, `repeats` rounds, rows interleaved within a round.

    A row that returns a string (why it cannot run) is not measured again.
    """
    out: dict[str, list[float] | str] = {name: [] for name in rows}
    for r in range(repeats):
        for name, measure in rows.items():
            if isinstance(out[name], str):
                continue
            print(f"round {r + 1}/{repeats}: {name}", flush=True)
            value = measure()
            out[name] = value if isinstance(value, str) else [*out[name], value]
    return out


def best_and_spread(samples: list[float]) -> tuple[float, float]:
    """(best rate, (max - min) / max over the rounds)."""
    best = max(samples)
    return best, (best - min(samples)) / best


def cores_to_feed(device_clips_per_s: float, per_core_clips_per_s: float) -> float:
    """Loader cores a device needs: its training rate over what one core's loader makes."""
    return device_clips_per_s / per_core_clips_per_s


COMPUTE, E2E, REF = (
    "compute bound (pre-made tensors)",
    "vidrec (videos -> DataLoader)",
    "torchvision VideoClips reference",
)
LOADER, REF_LOADER = "vidrec loader alone (no model)", "reference loader alone (no model)"
ONE_CORE = "vidrec loader, 1 process (no model)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vidrec.models import get_model

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    paths = make_videos(Path(args.workdir), args.videos, args.video_frames, args.codec)
    torch.manual_seed(0)
    model = get_model(args.model, num_classes=6).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(x, y):
        return train_step(model, opt, x, y)

    # Every source is made once and kept alive (persistent workers), so rounds do not restart workers.
    loader_args = argparse.Namespace(**{**vars(args), "steps": args.steps * 4})
    one_core_args = argparse.Namespace(**{**vars(loader_args), "workers": 0})
    made, e2e_src = pre_made(args, device), from_loader(vidrec_dataset(paths, args), args, device)
    loader_src = from_loader(vidrec_dataset(paths, args), args, device)
    one_core_src = from_loader(vidrec_dataset(paths, args), one_core_args, device)
    reference = _reference_sources(paths, args, device)
    rows: dict[str, Callable[[], float | str]] = {
        COMPUTE: lambda: time_steps(made, step, args, device),
        E2E: lambda: time_steps(e2e_src, step, args, device),
        REF: lambda: (
            reference if isinstance(reference, str) else time_steps(reference[0], step, args, device)
        ),
        LOADER: lambda: time_steps(loader_src, _no_step, loader_args, device),
        REF_LOADER: lambda: (
            reference
            if isinstance(reference, str)
            else time_steps(reference[1], _no_step, loader_args, device)
        ),
        ONE_CORE: lambda: time_steps(one_core_src, _no_step, one_core_args, device),
    }
    section = _print_table(measure_rows(rows, args.repeats), args, device)
    if args.write_docs:
        head = [
            "## Training throughput (`benchmarks/train_throughput.py`)",
            "",
            f"`{benchdocs.command(argv)}`:",
        ]
        benchdocs.write_section("train_throughput", "\n".join([*head, *section]))
    return 0


def _no_step(x: torch.Tensor, y: torch.Tensor) -> None:
    """A training step that does nothing: times the data pipeline alone."""


def _reference_sources(paths, args, device) -> tuple | str:
    """(end-to-end source, loader-alone source) of the reference pipeline, or why it cannot run."""
    try:
        tic = time.perf_counter()
        ds = ReferenceClips(paths, args)
        print(
            f"VideoClips indexed {len(paths)} videos in {time.perf_counter() - tic:.1f} s (not counted below)"
        )
        ds[0]  # fail here, with its own message, if torchcodec cannot decode
    except Exception as err:  # noqa: BLE001 - any import / FFmpeg failure skips the row, with its reason
        reason = f"skipped: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        print(f"torchvision reference {reason} (install: apt-get install -y ffmpeg; pip install torchcodec)")
        return reason
    return from_loader(ds, args, device), from_loader(ds, args, device)


def _print_table(results: dict[str, list[float] | str], args, device: torch.device) -> list[str]:
    """Print the rows, the feeding estimate and the RESULT line; returns them as Markdown lines."""
    best = {k: best_and_spread(v)[0] for k, v in results.items() if not isinstance(v, str)}
    what = (
        f"model {args.model}, clips {args.frames}x3x{args.size}x{args.size}, batch {args.batch}, "
        f"workers {args.workers}, device {device}, torch threads {torch.get_num_threads()}, "
        f"{args.codec} files, best of {args.repeats} interleaved rounds"
    )
    print("\n" + what)
    print(f"{'pipeline':<38} {'clips/s':>9} {'spread':>7} {'vidrec / row':>13}")
    table = ["| pipeline | clips/s (best round) | spread | vidrec / row |", "|---|---|---|---|"]
    for name, value in results.items():
        if isinstance(value, str):
            print(f"{name:<38} {value}")
            table.append(f"| {name} | {value} | | |")
            continue
        rate, spread = best_and_spread(value)
        base = best.get(LOADER if "alone" in name else E2E if name != ONE_CORE else ONE_CORE, float("nan"))
        print(f"{name:<38} {rate:9.2f} {spread:7.1%} {base / rate:13.2f}")
        table.append(f"| {name} | {rate:.2f} | {spread:.1%} | {base / rate:.2f} |")
    feeding = _print_feeding(best, args, device)
    e2e, compute = best[E2E], best[COMPUTE]
    vs_ref = f"{e2e / best[REF]:.3f}" if REF in best else "nan"
    loader_vs_ref = f"{best[LOADER] / best[REF_LOADER]:.3f}" if REF_LOADER in best else "nan"
    result = (
        f"RESULT train_throughput e2e_vs_compute={e2e / compute:.3f} e2e_vs_reference={vs_ref} "
        f"loader_vs_reference={loader_vs_ref} clips_per_s={e2e:.2f} "
        f"cores_to_feed={cores_to_feed(compute, best[ONE_CORE]):.2f}"
    )
    print(result)
    machine = f"`{result}`. Machine: {benchdocs.machine()}."
    return [what + ".", "", *table, "", *(f"{line}." for line in feeding), "", machine]


def _print_feeding(best: dict[str, float], args, device: torch.device) -> list[str]:
    """How many loader cores the device needs, from the one-process loader rate; the printed lines."""
    per_core = best[ONE_CORE]
    compute = best[COMPUTE]
    lines = [
        f"Feeding the device: one loader core makes {per_core:.1f} clips/s ({per_core * args.frames:.0f} "
        f"images/s); this {device.type} trains at {compute:.1f} clips/s (the compute bound), so it takes "
        f"{cores_to_feed(compute, per_core):.2f} loader cores to feed it"
    ]
    if args.device_images_per_s:
        clips = args.device_images_per_s / args.frames
        lines.append(
            f"A device training at {args.device_images_per_s:.0f} images/s ({clips:.0f} clips/s of "
            f"{args.frames} frames) at this clip shape would take {cores_to_feed(clips, per_core):.0f} "
            "loader cores (a larger crop costs the loader more per image: size it at the training shape)"
        )
    print("\n" + "\n".join(lines))
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
