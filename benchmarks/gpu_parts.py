"""The measurements of `benchmarks/gpu.py` (imported once its requirements check has passed).

Each part takes the run's `Sizes` and a `Budget` and returns plain rows (dicts) for the JSON file.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from train_throughput import make_videos

from vidrec.data import VideoDataset, VideoRecord, build_sampler
from vidrec.data.transforms import train_transform
from vidrec.dff.model import as_dff
from vidrec.dff.schedule import FixedInterval
from vidrec.engine.config import config_from_dict
from vidrec.engine.distributed import DistInfo
from vidrec.engine.evaluate import model_inputs
from vidrec.engine.loaders import make_loaders
from vidrec.engine.predict import Preprocess, rgb_frames, stream_windows
from vidrec.engine.train import channels_last
from vidrec.io import VideoReader
from vidrec.io.gpu_decode import CUDA_TOLERANCE, TorchcodecReader, cuda_decoding_problem
from vidrec.models import get_model, list_models
from vidrec.models.captioner import caption_loss
from vidrec.models.outputs import classification_loss
from vidrec.models.registry import get_builder

MODELS = ("lrcn_resnet18", "two_stream_resnet50", "st_resnet50", "segnet_mobilenet_v2", "lrcn2u_captioner")
MODES = ("fp32", "bf16", "bf16+channels_last", "bf16+compile")
SHARES = {"train": 0.45, "feed": 0.33, "dff": 0.12, "latency": 0.10}  # of the run's budget
FEED_MODEL = "lrcn_resnet18"  # the model trained end to end from videos (the fastest: it starves first)


@dataclass(frozen=True)
class Sizes:
    """Shapes of one run: full on a GPU, tiny with --smoke. Clip models: `frames` x 3 x `size`^2."""

    batch: dict[str, int]
    frames: dict[str, int]
    size: dict[str, int]
    seg_hw: tuple[int, int]  # segnet training images (H, W)
    steps: int  # timed steps per row, at most
    warmup: int
    row_seconds: float  # a row stops timing after this long (at least one step)
    workers: tuple[int, ...]  # DataLoader workers of the end-to-end rows
    videos: int
    video_frames: int
    dff_hw: tuple[int, int]
    dff_frames: int
    stream_frames: int
    window: tuple[int, int]  # (window, stride) of the stream
    compile_backend: str
    modes: dict[str, tuple[str, ...]]  # mode -> the models trained in it
    compile_need_s: float  # a torch.compile row starts only with this many seconds left in its part
    prepare_workers: int  # processes of `vidrec prepare`


FULL = Sizes(
    batch={"lrcn_resnet18": 32, "two_stream_resnet50": 32, "st_resnet50": 8, "segnet_mobilenet_v2": 16,
           "lrcn2u_captioner": 32},
    frames={"lrcn_resnet18": 16, "two_stream_resnet50": 3, "st_resnet50": 5, "lrcn2u_captioner": 8},
    size={"lrcn_resnet18": 112, "two_stream_resnet50": 224, "st_resnet50": 224, "lrcn2u_captioner": 224},
    seg_hw=(480, 854), steps=20, warmup=3, row_seconds=5.0, workers=(1, 4, 8, 16), videos=32,
    video_frames=75, dff_hw=(480, 854), dff_frames=60, stream_frames=250, window=(16, 8),
    compile_backend="inductor", modes=dict.fromkeys(MODES, MODELS), compile_need_s=75.0, prepare_workers=16,
)  # fmt: skip
SMOKE = Sizes(
    batch=dict.fromkeys(MODELS, 2),
    frames={"lrcn_resnet18": 2, "two_stream_resnet50": 1, "st_resnet50": 2, "lrcn2u_captioner": 2},
    size=dict.fromkeys(MODELS, 32),
    seg_hw=(48, 64), steps=1, warmup=0, row_seconds=1.0, workers=(1, 2), videos=2, video_frames=20,
    dff_hw=(48, 64), dff_frames=4, stream_frames=20, window=(4, 2), compile_backend="eager",
    # every model in fp32; each kind of loss (classify, segment, caption) in bf16; the other modes on one
    modes={"fp32": MODELS, "bf16": (MODELS[0], *MODELS[3:]), "bf16+channels_last": MODELS[:1],
           "bf16+compile": MODELS[:1]},
    compile_need_s=0.0, prepare_workers=1,
)  # fmt: skip


@dataclass
class Budget:
    """Seconds per part (`SHARES` of `total`); a row past its part's share is skipped with a line."""

    total: float
    start: float = field(default_factory=time.perf_counter)
    skipped: list[str] = field(default_factory=list)
    deadline: float = 0.0
    part: str = ""

    def begin(self, part: str) -> None:
        self.part = part
        self.deadline = min(time.perf_counter() + SHARES[part] * self.total, self.start + self.total)

    def allows(self, row: str, *, first: bool = False, need: float = 0.0) -> bool:
        """True while the part has `need` seconds left; a part's first row always runs (so every part's
        code runs, also when an earlier part overran)."""
        if first or time.perf_counter() + need < self.deadline:
            return True
        left, share = max(0.0, self.deadline - time.perf_counter()), SHARES[self.part] * self.total
        needs = f" (it needs {need:.0f} s)" if need else ""
        self.note(f"skipped {self.part}/{row}: {left:.0f} s left of the part's {share:.0f} s{needs}")
        return False

    def note(self, line: str) -> None:
        print(line, flush=True)
        self.skipped.append(line)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(step: Callable[[], None], sizes: Sizes, device: torch.device, *, warmup: int) -> tuple[float, int]:
    """(steps/s, steps timed): `warmup` untimed steps, then up to `sizes.steps` within `row_seconds`."""
    for _ in range(warmup):
        step()
    sync(device)
    tic, n = time.perf_counter(), 0
    while n < sizes.steps and (n == 0 or time.perf_counter() - tic < sizes.row_seconds):
        step()
        n += 1
    sync(device)
    return n / (time.perf_counter() - tic), n


def build(name: str, device: torch.device, *, num_classes: int = 10) -> nn.Module:
    """The registered model in train mode, without weights files (speed does not depend on them)."""
    params = inspect.signature(get_builder(name)).parameters
    kwargs = {"pretrained": False} if "pretrained" in params else {}
    return get_model(name, num_classes=num_classes, **kwargs).to(device).train()


# ----------------------------------------------------------------------------- part 1: training


def batch_for(name: str, sizes: Sizes, device: torch.device) -> tuple[dict, int]:
    """Pre-made training inputs on the device, and the images (frames) one step reads."""
    b = sizes.batch[name]
    if name == "segnet_mobilenet_v2":
        h, w = sizes.seg_hw
        x = torch.randn(b, 3, h, w, device=device)  # (B, 3, H, W)
        return {"x": x, "mask": torch.randint(0, 2, (b, h, w), device=device)}, b
    t, s = sizes.frames[name], sizes.size[name]
    x = torch.randn(b, t, 3, s, s, device=device)  # (B, T, 3, S, S)
    batch = {"x": x, "y": torch.randint(0, 10, (b,), device=device)}
    if name in ("two_stream_resnet50", "st_resnet50"):  # flow stacks of 10 (x, y) pairs: C = 20
        batch["x"] = {"rgb": x, "flow": torch.randn(b, t, 20, s, s, device=device)}
    if name == "lrcn2u_captioner":
        batch["captions"] = torch.randint(2, 10, (b, 12), device=device)  # (B, L) word ids
    return batch, b * t * (2 if isinstance(batch["x"], dict) else 1)  # both streams' frames count


def loss_of(name: str, model: nn.Module, batch: dict) -> torch.Tensor:
    if name == "segnet_mobilenet_v2":
        return F.cross_entropy(model(batch["x"]), batch["mask"])
    if name == "lrcn2u_captioner":
        return caption_loss(model(batch["x"], batch["captions"]), batch["captions"])
    return classification_loss(model(batch["x"]), batch["y"])


def train_row(name: str, mode: str, sizes: Sizes, device: torch.device) -> dict:
    """One model in one mode on pre-made tensors (its compute bound): clips/s, images/s, peak memory."""
    torch.manual_seed(0)
    model = build(name, device)
    if "channels_last" in mode:
        model = channels_last(model)  # as runtime.channels_last does
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    run = torch.compile(model, backend=sizes.compile_backend) if "compile" in mode else model
    batch, images = batch_for(name, sizes, device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode != "fp32"):
            loss = loss_of(name, run, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    tic = time.perf_counter()
    rate, n = timed(
        step, sizes, device, warmup=sizes.warmup + (2 if "compile" in mode and sizes.warmup else 0)
    )
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    b = sizes.batch[name]
    return {"model": name, "mode": mode, "batch": b, "clips_per_s": rate * b, "images_per_s": rate * images,
            "peak_gib": peak, "steps": n, "seconds": time.perf_counter() - tic}  # fmt: skip


def part_train(sizes: Sizes, device: torch.device, budget: Budget) -> list[dict]:
    """Every model in the eager modes first, then `torch.compile` (slow to compile) while time is left."""
    rows: list[dict] = []
    for mode, names in sizes.modes.items():
        for name in names:
            need = sizes.compile_need_s if "compile" in mode else 0.0  # compiling takes a minute or more
            if not budget.allows(f"{name} {mode}", first=not rows, need=need):
                continue
            print(f"train: {name} {mode}", flush=True)
            try:
                rows.append(train_row(name, mode, sizes, device))
            except Exception as err:  # noqa: BLE001 - out of memory, a compile failure: say it, go on
                budget.note(f"train {name} {mode}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------- part 2: feeding the GPU


def clip_dataset(paths: list[Path], frames: int, size: int, repeat: int, **options) -> VideoDataset:
    """vidrec's training dataset over `paths`: a random dense clip, resized to 8/7 of the crop at decode,
    random crop + flip, uint8 out; `repeat` copies of the list make an epoch long enough."""
    records = [VideoRecord(p.name, i % 6, p.stem) for i, p in enumerate(paths)] * repeat
    return VideoDataset(
        records,
        root=paths[0].parent,
        sampler=build_sampler("dense", clip_len=frames, train=True),
        transform=train_transform(size, kind="crop", normalize=False),
        size=size * 8 // 7,  # 128 for a 112 crop, 256 for 224
        **options,
    )


def train_batches(ds: VideoDataset, *, batch: int, workers: int, device: torch.device, decode: str = "cpu"):
    """Endless (x, y) on `device` as `vidrec train` makes them: `make_loaders` (pinned when the device
    is CUDA), then `model_inputs` (non-blocking copy of the uint8 clip, normalised on the device)."""
    raw = {"train_list": "unused.txt", "workers": workers, "batch_size": batch, "decode_device": decode}
    loader, sampler, _ = make_loaders(config_from_dict({"data": raw}), ds, None, DistInfo(), device=device)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        for b in loader:
            x, _ = model_inputs(b, ("rgb",), device)
            yield x, torch.as_tensor(b["label"]).to(device, non_blocking=True)
        epoch += 1


def e2e_rate(batches: Iterator, sizes: Sizes, device: torch.device, model=None, opt=None) -> float:
    """clips/s of `model` training in bf16 on `batches`, or of the loader alone without a model."""

    def step() -> None:
        x, y = next(batches)
        if model is not None:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = classification_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    try:
        rate, _ = timed(step, sizes, device, warmup=sizes.warmup)
    finally:
        batches.close()  # ends the DataLoader's workers now
    return rate * sizes.batch[FEED_MODEL]


def trainer_rate(paths: list[Path], sizes: Sizes, device: torch.device, workers: int, work: Path) -> float:
    """clips/s of `vidrec train` itself on `paths` (FEED_MODEL, bf16, `workers`): the whole loop, with its
    per-step loss check and metrics; the median of its steps.csv windows after the first (start-up)."""
    from vidrec.engine.train import train

    t, s, b = sizes.frames[FEED_MODEL], sizes.size[FEED_MODEL], sizes.batch[FEED_MODEL]
    steps = sizes.warmup + 4 * max(sizes.steps // 4, 1) + 1
    lines = [f"{p.name} {i % 6}\n" for i, p in enumerate(paths)] * (steps * b // len(paths) + 1)
    listing, classes = work / f"train_{len(lines)}.txt", work / "classes.txt"
    listing.write_text("".join(lines))
    classes.write_text("".join(f"class{i}\n" for i in range(6)))
    raw = {
        "data": {"train_list": str(listing), "root": str(paths[0].parent), "classes": str(classes),
                 "frames": t, "size": s, "resize": s * 8 // 7, "batch_size": b, "workers": workers,
                 "prepared": "off"},
        "model": {"name": FEED_MODEL, "kwargs": {"pretrained": False}},
        "runtime": {"device": device.type, "amp": "bf16"},
        "schedule": {"epochs": 1}, "max_steps_per_epoch": steps, "log_every_steps": max(sizes.steps // 4, 1),
        "out_dir": str(work / f"train_run_{time.time_ns()}"), "progress": False, "tensorboard": False,
        "plots": False,
    }  # fmt: skip
    result = train(config_from_dict(raw))
    with open(result.out_dir / "steps.csv", newline="") as f:
        rates = [float(row["clips_per_s"]) for row in csv.DictReader(f)]
    return statistics.median(rates[1:] or rates)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread, as in a DataLoader worker: the loader's rate per core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cuda_decode_check(paths: list[Path]) -> str | None:
    """Why GPU decoding cannot run here (one line); else None, once its frames are checked against the
    CPU decoder's (native size) within CUDA_TOLERANCE."""
    problem = cuda_decoding_problem()
    if problem is not None:
        return problem
    worst = 0.0
    for path in paths[:4]:
        with TorchcodecReader(path, device="cuda") as gpu, VideoReader(path, threads=1) as cpu:
            idx = [0, len(cpu) // 2, len(cpu) - 1]
            ref = torch.from_numpy(cpu.get_frames(idx)).permute(0, 3, 1, 2).cuda()  # (N, 3, H, W)
            worst = max(worst, (gpu.get_frames(idx).float() - ref.float()).abs().mean().item())
    if worst > CUDA_TOLERANCE:
        return f"the CUDA decoder differs from the CPU's by {worst:.2f} > {CUDA_TOLERANCE} grey levels"
    print(f"GPU decoding: mean |diff| to the CPU decoder {worst:.2f} grey levels (<= {CUDA_TOLERANCE})")
    return None


def frame_store(folder: Path, out: Path, short_side: int, workers: int) -> Path:
    """`vidrec prepare --format frames` of `folder` at the training short side (resumes, kept)."""
    from vidrec.cli import main

    store = out / f"{folder.name}_frames_{short_side}"
    cmd = ["prepare", str(folder), "--out", str(store), "--format", "frames", "--short-side", str(short_side)]
    if main([*cmd, "--workers", str(workers), "--no-register"]) != 0:
        raise RuntimeError(f"vidrec prepare failed into {store}")
    return store


def part_feed(sizes: Sizes, device: torch.device, budget: Budget, work: Path, bound: float | None) -> dict:
    """`FEED_MODEL` end to end at each worker count vs its compute bound `bound` (clips/s), then `vidrec
    train` itself at the most workers (its loop's per-step work on top); the loader's images/s per core at
    112 and 224 px; the frame store; GPU decoding."""
    paths = make_videos(work / f"videos_{sizes.video_frames}", sizes.videos, sizes.video_frames, "mpeg4")
    t, s, b = sizes.frames[FEED_MODEL], sizes.size[FEED_MODEL], sizes.batch[FEED_MODEL]
    repeat = max(1, (sizes.steps + sizes.warmup + 2) * b // len(paths) + 1)
    out: dict = {"e2e": [], "trainer": {}, "loader_per_core": [], "decode": []}
    torch.manual_seed(0)
    model = build(FEED_MODEL, device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    for workers in sizes.workers:
        if not budget.allows(f"e2e {workers} workers", first=not out["e2e"]):
            continue
        print(f"feed: {FEED_MODEL} bf16 from videos, {workers} workers", flush=True)
        batches = train_batches(clip_dataset(paths, t, s, repeat), batch=b, workers=workers, device=device)
        rate = e2e_rate(batches, sizes, device, model, opt)
        out["e2e"].append(
            {"workers": workers, "clips_per_s": rate, "vs_compute": rate / bound if bound else None}
        )
    workers = sizes.workers[-1]
    if budget.allows(f"vidrec train loop, {workers} workers"):
        print(f"feed: vidrec train itself, {workers} workers", flush=True)
        rate = trainer_rate(paths, sizes, device, workers, work)
        out["trainer"] = {
            "workers": workers,
            "clips_per_s": rate,
            "vs_compute": rate / bound if bound else None,
        }
    for frames, size in ((t, s), (max(1, t // 2), 2 * s)):  # LRCN's clip; a 224 px one (half the frames)
        if budget.allows(f"loader per core {size} px"):
            print(f"feed: loader alone, one core, {frames} x {size} px", flush=True)
            batches = train_batches(
                clip_dataset(paths, frames, size, repeat), batch=b, workers=0, device=device
            )
            with one_thread():
                clips = e2e_rate(batches, sizes, device)
            out["loader_per_core"].append({"frames": frames, "size": size, "images_per_s": clips * frames})
    if budget.allows("frame store"):
        print("feed: frame store of vidrec prepare, one core", flush=True)
        store = frame_store(paths[0].parent, work, s * 8 // 7, sizes.prepare_workers)
        batches = train_batches(
            clip_dataset(paths, t, s, repeat, prepared=store), batch=b, workers=0, device=device
        )
        with one_thread():
            rate = e2e_rate(batches, sizes, device)
        out["decode"].append({"source": "frame store (vidrec prepare --format frames), one core",
                              "clips_per_s": rate, "note": "exact"})  # fmt: skip
    if budget.allows("GPU decoding"):
        why = cuda_decode_check(paths)
        row = {"source": "GPU decoding (torchcodec, data.decode_device=cuda), 1 process"}
        if why is not None:
            print(f"GPU decoding not measured: {why}", flush=True)
            out["decode"].append({**row, "clips_per_s": None, "note": why})
        else:
            ds = clip_dataset(paths, t, s, repeat, decode_device="cuda")
            batches = train_batches(ds, batch=b, workers=0, device=device, decode="cuda")
            rate = e2e_rate(batches, sizes, device)
            out["decode"].append({**row, "clips_per_s": rate, "note": f"within {CUDA_TOLERANCE} grey levels"})
    return out


# ----------------------------------------------------------------------------- part 3: DFF at 480p


def dff_rate(
    dff: nn.Module, frames: list[torch.Tensor], interval: int, bf16: bool, device: torch.device
) -> float:
    """frames/s of `dff.run` (a `DFF` or `PyramidDFF`) over `frames` with key interval `interval`, after a
    two-frame warm-up."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for _ in dff.run(frames[:2], FixedInterval(interval)):
            pass
        sync(device)
        tic = time.perf_counter()
        for _ in dff.run(frames, FixedInterval(interval)):
            pass
        sync(device)
    return len(frames) / (time.perf_counter() - tic)


def detection_dffs(device: torch.device, budget: Budget) -> dict[str, nn.Module]:
    """Deep Feature Flow for detection (`vidrec.dff.detect.as_pyramid_dff`: the pyramid propagated, the
    head on every frame) of each registered DFF detection model; one line for one that cannot be built."""
    found = {}
    for name in list_models():
        builder = get_builder(name)
        if getattr(builder, "task", "") != "detect" or not getattr(builder, "paired", False):
            continue
        try:
            from vidrec.dff.detect import as_pyramid_dff

            found[f"detection ({name})"] = as_pyramid_dff(build(name, device).eval())
        except Exception as err:  # noqa: BLE001 - another branch's model: report it and go on
            budget.note(f"detection {name} not measured: {type(err).__name__}: {err}")
    return found


def part_dff(sizes: Sizes, device: torch.device, budget: Budget) -> list[dict]:
    from vidrec.tasks import task_names

    torch.manual_seed(0)
    frames = [torch.randn(1, 3, *sizes.dff_hw, device=device) for _ in range(sizes.dff_frames)]
    dffs = {"segmentation (dff_segnet_mobilenet_v2)": as_dff(build("dff_segnet_mobilenet_v2", device).eval())}
    if "detect" in task_names():
        dffs |= detection_dffs(device, budget)
    else:
        print("no detect task", flush=True)
    rows: list[dict] = []
    for what, dff in dffs.items():
        for dtype in ("fp32", "bf16"):
            for interval in (1, 10):
                if not budget.allows(f"{what} l={interval} {dtype}", first=not rows):
                    continue
                print(f"dff: {what} l={interval} {dtype}", flush=True)
                try:
                    rate = dff_rate(dff, frames, interval, dtype == "bf16", device)
                except Exception as err:  # noqa: BLE001 - one model's failure: say it, measure the others
                    budget.note(f"dff {what} l={interval} {dtype}: {type(err).__name__}: {err}")
                    continue
                rows.append({"model": what, "interval": interval, "dtype": dtype, "frames_per_s": rate,
                             "hw": list(sizes.dff_hw)})  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- part 4: stream latency


def part_latency(sizes: Sizes, device: torch.device, work: Path) -> dict:
    """`vidrec predict --stream` at batch 1: an LRCN steps once per frame through a video file."""
    path = make_videos(work / "stream", 1, sizes.stream_frames, "h264")[0]
    model = build(FEED_MODEL, device).eval()
    s = sizes.size[FEED_MODEL]
    pre = Preprocess(resize=s * 8 // 7, size=s)
    window, stride = sizes.window
    tic = time.perf_counter()
    with torch.inference_mode():
        frames = rgb_frames(path, preprocess=pre)
        windows = list(
            stream_windows(model, frames, window=window, stride=stride, recurrent=True, preprocess=pre)
        )
    seconds = time.perf_counter() - tic
    ms = sorted(w.latency_s * 1000 for w in windows)
    n, p95 = windows[-1].end_frame, ms[int(0.95 * (len(ms) - 1))]
    return {"frames": n, "frames_per_s": n / seconds, "windows": len(ms),
            "latency_ms_p50": statistics.median(ms), "latency_ms_p95": p95}  # fmt: skip
