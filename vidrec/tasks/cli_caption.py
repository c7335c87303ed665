"""`vidrec caption CHECKPOINT FILE...`: a sentence for each image or video (a `task: caption` checkpoint).

Images are one frame; a video gives `--frames` frames spread over it (default: the training setting).
`--timeline` describes a video window by window (`--window` frames every `--stride` frames, the last
window aligned to the end), printing each sentence as soon as it is made. A file that cannot be read is
reported (path and reason) and skipped; the exit code is then 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vidrec.cli import UsageError, add_model_factory_argument, input_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .safetensors checkpoint of a `task: caption` run")
    parser.add_argument("files", nargs="+", help="images (.jpg, .png, ...) and/or video files")
    parser.add_argument("--beam", type=int, default=3, help="beam width; 1 = greedy decoding (default 3)")
    parser.add_argument(
        "--sample", type=int, default=0,
        help="instead of beam search, sample this many sentences at --temperature and keep the most likely "
        "(the paper's decoding: 100 at 1.5); 0 = off (default 0)",
    )  # fmt: skip
    parser.add_argument("--temperature", type=float, default=1.5, help="sampling temperature (default 1.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument(
        "--max-len", type=int, default=0, help="most words + <eos>; 0: the training setting (default 0)"
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=0,
        help="frames per video or window; 0: the training setting (default 0)",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="videos: one sentence per window (default off)"
    )
    parser.add_argument(
        "--window", type=int, default=16, help="--timeline window length in frames (default 16)"
    )
    parser.add_argument(
        "--stride", type=int, default=8, help="--timeline window stride in frames (default 8)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_model_factory_argument(parser)


def windows(num_frames: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of `window` frames every `stride`, the last one ending at the video's end."""
    if num_frames <= window:
        return [(0, num_frames)]
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return [(s, s + window) for s in starts]


def run(args: argparse.Namespace) -> int:
    from vidrec.engine.checkpoint import load_task
    from vidrec.tasks.caption import vocab_of

    if args.beam < 1 or args.sample < 0 or args.temperature <= 0 or args.window < 1 or args.stride < 1:
        raise UsageError("--beam, --window and --stride must be >= 1, --sample >= 0 and --temperature > 0")
    files = [input_file(f, "input") for f in args.files]  # checked before the model is built
    model, task = load_task(args.checkpoint, args.device, factory=args.model_factory, tasks=("caption",))
    vocab_of(task)  # a checkpoint without its vocabulary is refused once, before any file
    failed = 0
    for path in files:
        try:
            for label, sentence in describe_file(model, task, path, args):
                print(f"{path}{label}: {sentence}", flush=True)
        except (UsageError, RuntimeError, OSError, ValueError) as err:
            failed += 1
            print(f"skipped {path}: {err}", file=sys.stderr)
    return 2 if failed else 0


def describe_file(model: torch.nn.Module, task, path: Path, args: argparse.Namespace):
    """`(label, sentence)` for an image or a video, or for each window of a video with ``args.timeline``
    (label: ``""`` or `` [frames a-b, s-t s]``), made as soon as its clip is read; `args` as this command
    parses them (`vidrec app` parses its own settings with `add_arguments` too)."""
    from vidrec.tasks.caption import vocab_of

    o = task.options
    describe = Describer(model, vocab_of(task), args, max_len=args.max_len or o.max_len)
    for label, clip in _clips(path, args, frames=args.frames or o.frames, resize=o.resize, size=o.size):
        yield label, describe(clip)


def _clips(path: Path, args: argparse.Namespace, *, frames: int, resize: int, size: int):
    """(label, uint8 clip (T, 3, S, S)) for the whole file, or per window with --timeline."""
    from vidrec.io import probe
    from vidrec.tasks.caption_data import frame_indices, is_image, load_clip, load_image

    if is_image(path):
        yield "", load_image(path, resize=resize, size=size)
        return
    meta = probe(path)
    if not args.timeline:
        yield (
            "",
            load_clip(
                path, frames=frames, resize=resize, size=size, indices=frame_indices(meta.num_frames, frames)
            ),
        )
        return
    fps = meta.fps or 1.0
    for start, end in windows(meta.num_frames, args.window, args.stride):
        idx = [start + i for i in frame_indices(end - start, frames)]
        label = f" [frames {start}-{end - 1}, {start / fps:.1f}-{end / fps:.1f} s]"
        yield label, load_clip(path, resize=resize, size=size, indices=idx)


class Describer:
    """uint8 clip ``(T, 3, S, S)`` -> sentence, with the decoding the arguments chose."""

    def __init__(self, model: torch.nn.Module, vocab, args: argparse.Namespace, *, max_len: int) -> None:
        self.model, self.vocab, self.args, self.max_len = model, vocab, args, max_len

    @torch.no_grad()
    def __call__(self, clip: torch.Tensor) -> str:
        from vidrec.data.transforms import normalize_rgb
        from vidrec.text.decode import beam, sample_best

        device = next(self.model.parameters()).device
        cond = self.model.encode(normalize_rgb(clip.to(device)).unsqueeze(0))  # (1, F)
        a = self.args
        if a.sample:
            ids = sample_best(
                self.model.decoder,
                cond,
                n=a.sample,
                temperature=a.temperature,
                max_len=self.max_len,
                seed=a.seed,
            )
        else:
            ids = beam(self.model.decoder, cond, width=a.beam, max_len=self.max_len)
        return self.vocab.decode(ids[0])
