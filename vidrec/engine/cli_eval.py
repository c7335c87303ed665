"""`vidrec eval CKPT [overrides] [--clips K --crops N | --protocol lrcn | --protocol st_resnet]`: test
protocols and a report.

`--protocol clips` (default): every test video gives K evenly spaced clips of the training length.
`--protocol lrcn` (methods.md 1.4): clips of `--clip-len` frames (16) every `--hop` frames (8), the last
one aligned to the video's end, so the number of clips follows the video's length (one video per batch).
`--protocol st_resnet` (methods.md 3.4): `--frames` (25) frames evenly spaced over the video, read whole
(short side `data.resize`, not cropped) and run through the model as one clip, fully convolutionally: the
class map is averaged over space and time, and the streams fused as the model fuses them (ST-ResNet,
two-stream / TSN on ResNet or MobileNetV2; one video per batch, as frame sizes differ between videos).
Each clip is cut into N crops (1, 3, 5 or 10); the views' probabilities (each the mean of the per-step
softmaxes for LRCN) are averaged per video (`vidrec.engine.evaluate`): the mean over steps, clips and
crops. Mirrored flow crops: `--flow-mirror` (auto: not negated for LRCN models, as the release's LRCN
test path does, negated for every other model). Writes
`report.md`, `report.json` and `report_confusion.png` to `--out` (default: `eval/` in the run folder),
linking the run's `curves.png` when there is one. Runs under torchrun too (results are gathered).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vidrec.cli import (
    UsageError,
    add_model_factory_argument,
    add_overwrite_argument,
    input_file,
    output_folder,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .safetensors checkpoint written by `vidrec train`")
    parser.add_argument(
        "overrides", nargs="*", default=[], help="config overrides key=value, e.g. data.val_list=test.txt"
    )
    parser.add_argument("--config", default="", help="YAML file of overrides applied on the stored config")
    parser.add_argument("--list", default="", help="list file to evaluate (default: data.val_list)")
    parser.add_argument(
        "--protocol",
        choices=["clips", "lrcn", "st_resnet"],
        default="clips",
        help="clips: K evenly spaced clips of the training length; lrcn: clips of --clip-len frames every "
        "--hop frames, the last aligned to the end (LRCN's test protocol; one video per batch); "
        "st_resnet: --frames evenly spaced whole frames (short side data.resize, no crop), dense class "
        "maps averaged over space and time (ST-ResNet's test protocol; one video per batch) "
        "(default clips)",
    )
    parser.add_argument(
        "--frames", type=int, default=25, help="frames per video with --protocol st_resnet (default 25)"
    )
    parser.add_argument(
        "--clips", type=int, default=5, help="K clips per video with --protocol clips (default 5)"
    )
    parser.add_argument(
        "--clip-len", type=int, default=16, help="frames per clip with --protocol lrcn (default 16)"
    )
    parser.add_argument(
        "--hop", type=int, default=8, help="frames between clip starts, --protocol lrcn (default 8)"
    )
    parser.add_argument(
        "--flow-mirror",
        choices=["auto", "negate", "keep"],
        default="auto",
        help="mirrored flow crops (--crops 10): negate x, or keep it as the release's LRCN test path does; "
        "auto: keep for LRCN models, negate for others (default auto)",
    )
    parser.add_argument(
        "--crops", type=int, default=1, choices=[1, 3, 5, 10], help="N crops per clip (default 1)"
    )
    parser.add_argument("--batch", type=int, default=0, help="videos per batch (default data.batch_size)")
    parser.add_argument("--workers", type=int, default=-1, help="DataLoader workers (default data.workers)")
    parser.add_argument("--fusion", nargs="*", default=[], metavar="STREAM=W", help="override fusion weights")
    add_model_factory_argument(parser)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--out", default="", help="report folder (default: <run>/eval)")
    add_overwrite_argument(parser, "an existing report in --out")


def _updated_config(cfg, args: argparse.Namespace):
    """The stored config with --config YAML and key=value overrides applied (and validated)."""
    from vidrec.engine.config import apply_overrides, config_from_dict, read_yaml
    from vidrec.engine.schema import config_to_dict

    raw = config_to_dict(cfg)
    if args.config:
        raw = _merge(raw, read_yaml(input_file(args.config, "--config")))
    return config_from_dict(apply_overrides(raw, list(args.overrides)))


def _merge(base: dict, new: dict) -> dict:
    for key, value in new.items():
        base[key] = (
            _merge(base.get(key, {}), value)
            if isinstance(value, dict) and isinstance(base.get(key), dict)
            else value
        )
    return base


def _fusion(items: list[str]) -> dict[str, float] | None:
    if not items:
        return None
    try:
        return {k: float(v) for k, v in (item.split("=") for item in items)}
    except ValueError as err:
        raise UsageError(f"--fusion expects STREAM=WEIGHT items, got {items}") from err


def eval_records(list_file: str, *, root: str, class_names: list[str], classes_file: str = "") -> list:
    """The records of `list_file` with labels indexing the checkpoint's `class_names` (its outputs).

    Name labels map by name. Integer labels are read with the list's own class file (`classes_file`, else
    `classes.txt` beside the list) and mapped by name; without any class file they index `class_names`.
    A class the checkpoint does not know is an error, never a silently wrong label.
    """
    import dataclasses

    from vidrec.data import read_list_file

    beside = Path(list_file).parent / "classes.txt"
    source = classes_file if classes_file and Path(classes_file).is_file() else ""
    source = source or (str(beside) if beside.is_file() and beside != Path(list_file) else "")
    records, names = read_list_file(list_file, root=root, classes=source or list(class_names))
    if names == list(class_names):
        return records
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({names[r.label] for r in records} - set(index))
    if unknown:
        raise UsageError(
            f"{list_file}: classes {unknown[:5]} (from {source}) are not among the checkpoint's "
            f"{len(class_names)} classes; evaluate a list of the classes it was trained on"
        )
    return [dataclasses.replace(r, label=index[names[r.label]]) for r in records]


def eval_set(cfg, class_names: list[str], list_file: str = "") -> tuple[list, str]:
    """(records labelled by the checkpoint's `class_names`, where they come from): `list_file`, else the
    validation set of the stored ``data.format`` (ucf101 / hmdb51: the split's test list)."""
    from vidrec.tasks.classify import data_root, read_records, relabel

    if cfg.data.format == "list" or list_file:
        list_file = list_file or cfg.data.val_list
        if not list_file:
            raise UsageError("no list to evaluate: give --list FILE or data.val_list=FILE")
        root = str(data_root(cfg))
        records = eval_records(list_file, root=root, class_names=class_names, classes_file=cfg.data.classes)
        return records, list_file
    _, val, names = read_records(cfg)
    source = cfg.data.val_list or f"data.format={cfg.data.format} split {cfg.data.split} test list"
    if val is None:
        raise UsageError(f"{source}: no validation videos under data.root={data_root(cfg)}; give --list FILE")
    return relabel(val, names, class_names, source=source), source


def clip_sampler(
    cfg, *, protocol: str = "clips", clips: int = 5, clip_len: int = 16, hop: int = 8, frames: int = 25
):
    """The test-clip sampler of a protocol: K clips of `data.frames`, LRCN's `clip_len` every `hop`, or
    ST-ResNet's one clip of `frames` frames spread evenly from the first to the last."""
    from vidrec.data import build_sampler

    if protocol == "st_resnet":
        return build_sampler("uniform", num=frames, train=False)
    stride = cfg.data.stride
    stride = (stride[0] + stride[1]) // 2 if isinstance(stride, list) else stride  # a range: its middle
    if protocol == "lrcn":
        return build_sampler("test_clips", clip_len=clip_len, stride=stride, hop=hop)
    return build_sampler("test_clips", clip_len=cfg.data.frames, stride=stride, num_clips=clips)


def eval_loader(
    cfg,
    modalities: tuple[str, ...],
    *,
    records: list,
    clips: int,
    crops: int,
    batch: int,
    workers: int,
    protocol: str = "clips",
    clip_len: int = 16,
    hop: int = 8,
    negate_flow: bool = True,
    frames: int = 25,
):
    """A loader of `(B, V, T, C, H, W)` batches (V = clips x crops) over `records`, read as training
    reads them (data.root, flow_root, flow_length, frames_root, resize); absent videos are dropped.
    With `protocol="lrcn"` V depends on the video's length, so a batch holds one video. With
    `protocol="st_resnet"` a batch is one video's `(1, frames, C, H, W)` whole frames (short side
    `data.resize`, uncropped)."""
    from torch.utils.data import DataLoader, DistributedSampler

    from vidrec.data import VideoDataset, collate_skip
    from vidrec.data.transforms import full_frame_transform, test_transform
    from vidrec.engine import distributed as D
    from vidrec.tasks.classify import data_root

    d = cfg.data
    batch = 1 if protocol in ("lrcn", "st_resnet") else batch
    if protocol == "st_resnet":
        transform = full_frame_transform(normalize=False)  # uint8 RGB, whole frames
    else:
        transform = test_transform(d.size, crops=crops, normalize=False, negate_flow=negate_flow)
    ds = VideoDataset(
        records,
        root=data_root(cfg),
        modalities=modalities,
        sampler=clip_sampler(cfg, protocol=protocol, clips=clips, clip_len=clip_len, hop=hop, frames=frames),
        transform=transform,
        flow_root=d.flow_root or None,
        frames_root=d.frames_root or None,
        prepared=None if d.prepared == "off" else d.prepared,
        size=d.resize,
        flow_length=d.flow_length,
    )
    info = D.env_info()
    dist_sampler = DistributedSampler(ds, info.world_size, info.rank, shuffle=False) if info.enabled else None
    return DataLoader(
        ds, batch_size=batch, sampler=dist_sampler, num_workers=workers, collate_fn=collate_skip
    )


def negate_mirrored_flow(choice: str, model) -> bool:
    """`--flow-mirror`: auto keeps x for LRCN models (the release's LRCN test path), negates otherwise."""
    if choice != "auto":
        return choice == "negate"
    from vidrec.models.lrcn import LRCN

    return not isinstance(model, LRCN)


def run(args: argparse.Namespace) -> int:
    import torch

    from vidrec.engine import distributed as D
    from vidrec.engine.checkpoint import load_for_inference
    from vidrec.engine.distributed import resolve_device
    from vidrec.engine.evaluate import evaluate, is_fully_convolutional
    from vidrec.visualize.report import report_files, write_report

    device = resolve_device(args.device)
    info = D.init_distributed(device.type, "auto")
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
    if info.is_main:  # before the work: every file of an existing report is kept unless --overwrite
        output_folder(
            out, "report", overwrite=args.overwrite, files=report_files(), inputs=(args.checkpoint,)
        )
    if args.protocol == "st_resnet" and (args.crops != 1 or args.frames < 1):
        raise UsageError("--protocol st_resnet reads whole frames: drop --crops, and give --frames >= 1")
    model, cfg, class_names = load_for_inference(
        args.checkpoint, device, factory=args.model_factory, tasks=("classify",)
    )
    if args.protocol == "st_resnet" and not is_fully_convolutional(model):
        raise UsageError(
            "--protocol st_resnet needs a fully convolutional model (st_resnet50, two-stream / TSN on "
            f"ResNet or MobileNetV2); {args.checkpoint} holds a {type(model).__name__}: use --protocol clips"
        )
    cfg = _updated_config(cfg, args)
    records, list_file = eval_set(cfg, class_names, args.list)
    modalities = tuple(cfg.data.modalities) or tuple(model.modalities)
    loader = eval_loader(
        cfg,
        modalities,
        records=records,
        clips=args.clips,
        crops=args.crops,
        batch=args.batch or cfg.data.batch_size,
        workers=cfg.data.workers if args.workers < 0 else args.workers,
        protocol=args.protocol,
        clip_len=args.clip_len,
        hop=args.hop,
        negate_flow=negate_mirrored_flow(args.flow_mirror, model),
        frames=args.frames,
    )
    from vidrec.tasks.classify import drop_missing_videos

    missing = drop_missing_videos(cfg, loader.dataset, f"evaluation set ({list_file})")
    result = evaluate(model, loader, device=device, fusion_weights=_fusion(args.fusion))
    result.skipped = sorted(set(result.skipped) | set(missing))
    result.metrics["num_skipped"] = len(result.skipped)
    if info.is_main:
        curves = Path(args.checkpoint).resolve().parent / "curves.png"
        extra = {
            "protocol": args.protocol,
            "crops": args.crops,
            "list": list_file,
            "checkpoint": args.checkpoint,
        }
        extra.update(
            {
                "lrcn": {"clip_len": args.clip_len, "hop": args.hop},
                "st_resnet": {"frames": args.frames, "short_side": cfg.data.resize, "crops": "whole frame"},
            }.get(args.protocol, {"clips": args.clips})
        )
        md = write_report(
            out,
            result,
            class_names=class_names,
            config=cfg,
            extra=extra,
            curves_png=curves if curves.is_file() else None,
            title=f"eval {args.checkpoint}",
        )
        m = result.metrics
        print(
            f"top-1 {m['top1']:.4f}  top-5 {m['top5']:.4f}  mean class acc {m['mean_class_acc']:.4f}  "
            f"videos {m['num_videos']}  skipped {m['num_skipped']}"
        )
        print(f"report: {md}")
    D.cleanup()
    return 0
