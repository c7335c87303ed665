"""`vidrec visualize maximize | gradcam CHECKPOINT ...`: Deep-Insights pictures from a trained checkpoint.

The checkpoint is any `.safetensors` file `vidrec train` writes. Only registered models are built (the
name stored in the checkpoint is looked up in `vidrec.models`, never imported), and every weight comes
from the checkpoint (`pretrained` is switched off: no ImageNet file is read).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from vidrec.cli import UsageError, add_overwrite_argument

EXAMPLES = """examples:
  vidrec visualize maximize runs/ts/last.safetensors --class orbit_cw --out viz/ --frames 1
  vidrec visualize maximize runs/ts/last.safetensors --layer flow.backbone.net.features.6 \\
      --channel 12 --prior fast --out viz/
  vidrec visualize maximize runs/ts/last.safetensors --list-layers
  vidrec visualize gradcam runs/ts/last.safetensors video.mp4 --out viz/
"""


# ----------------------------------------------------------------------------- arguments


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the examples' line breaks."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Deep Insights for a trained checkpoint: `maximize` optimises the input clip (RGB, flow, or both "
        "jointly) that most excites a unit, under value-range, spatial and temporal regularisers, and "
        "writes GIF/MP4 animations, flow colour-wheel and arrow pictures and a PNG contact sheet; "
        "`gradcam` writes Grad-CAM heat maps per frame and per stream over a video."
    )
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _maximize_arguments(sub.add_parser("maximize", help="activation maximisation of a unit", epilog=EXAMPLES))
    _gradcam_arguments(sub.add_parser("gradcam", help="Grad-CAM over time on a video", epilog=EXAMPLES))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a .safetensors checkpoint written by `vidrec train`")
    p.add_argument("--out", default="viz", help="output folder (default: viz)")
    p.add_argument(
        "--frames", type=int, default=0, help="time steps T of the clip; 0: the training clip length"
    )
    p.add_argument("--fps", type=float, default=4.0, help="frame rate of the animations (default: 4)")
    p.add_argument("--mp4", action="store_true", help="also write MP4 files beside the GIFs")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda (default: auto)")
    add_overwrite_argument(p, "existing output files")


def _maximize_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = _Formatter
    p.description = (
        "Optimise the input from noise by gradient ascent (or --optimizer adam) to maximise one unit: a "
        "class logit (--class) or a channel of a layer (--layer/--channel, spatial mean or --position). "
        "Inputs of every stream the model reads are optimised jointly unless --optimize says otherwise."
    )
    _common(p)
    p.add_argument("--class", dest="cls", default="", help="class name or index whose logit is maximised")
    p.add_argument("--stream", default="", help="with --class: that output stream's logit; '': fused")
    p.add_argument("--layer", default="", help="layer name (see --list-layers) whose channel is maximised")
    p.add_argument("--channel", type=int, default=0, help="channel of --layer")
    p.add_argument("--position", default="", help="I,J: one position of the layer's map; '': mean")
    p.add_argument("--list-layers", action="store_true", help="print the model's layers and exit")
    p.add_argument("--optimize", default="", help="comma list of inputs to optimise, e.g. flow; '': all")
    p.add_argument("--steps", type=int, default=200, help="optimisation steps")
    p.add_argument(
        "--lr",
        type=float,
        default=0.05,
        help="step in units of each input's scale (ascent: the largest change of a value in the first "
        "step, decaying linearly to 0)",
    )
    p.add_argument(
        "--optimizer",
        choices=["ascent", "adam"],
        default="ascent",
        help="ascent: gradient ascent with a normalised step (keeps the gradient's direction); adam: "
        "per-coordinate steps (a linear unit's optimum then points along sign(w), not w)",
    )
    p.add_argument("--prior", choices=["slow", "fast"], default="slow", help="temporal prior")
    p.add_argument("--jitter", type=int, default=2, help="largest random shift per step (px)")
    p.add_argument("--seed", type=int, default=0, help="seed of the starting noise and the jitter")
    p.add_argument("--size", type=int, default=0, help="input height = width; 0: the training size")
    p.add_argument(
        "--reg",
        action="append",
        default=[],
        metavar="MOD.FIELD=VALUE",
        help="regulariser weight per input, repeatable: rgb.norm, rgb.alpha, rgb.tv_space, rgb.beta, "
        "rgb.tv_time (overrides the prior), rgb.weight (the whole term), rgb.scale; same for flow",
    )
    p.add_argument("--name", default="", help="file-name stem of the outputs; '': from the unit and prior")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _gradcam_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = _Formatter
    p.description = (
        "Grad-CAM over time: one heat map per frame and per stream for a clip of VIDEO (flow computed "
        "on the fly for flow streams), as GIF overlays and a PNG contact sheet."
    )
    _common(p)
    p.add_argument("video", help="the video file to explain")
    p.add_argument("--class", dest="cls", default="", help="class name or index explained; '': top-1")
    p.add_argument("--stream", default="", help="score one output stream's logit; '': the fused logit")
    p.add_argument(
        "--layer", action="append", default=[], metavar="STREAM=NAME", help="layer per stream (repeatable)"
    )
    p.add_argument("--flow-method", default="dis", help="flow estimator for flow inputs (dis, tvl1, ...)")
    p.add_argument(
        "--flow-bound",
        type=float,
        default=20.0,
        help="quantise the flow to uint8 with this bound (px) and back, as `vidrec flow` stores what the "
        "model was trained on; 0: keep the float flow",
    )


# ----------------------------------------------------------------------------- loading


def load_model(path: str | Path, device: torch.device):
    """`(model.eval(), TrainConfig, class names)` the way the engine loads checkpoints: registered models
    only, every weight from the checkpoint (no ImageNet file read)."""
    from vidrec.cli import input_file
    from vidrec.engine.checkpoint import load_for_inference

    return load_for_inference(input_file(path, "checkpoint"), device, tasks=("classify",))


def input_shapes(cfg, model, *, frames: int, size: int) -> dict[str, tuple[int, int, int, int]]:
    """`{modality: (T, C, H, W)}` of the model's inputs, from the training config."""
    from vidrec.visualize.units import model_modalities

    channels = {"rgb": 3, "flow": 2 * cfg.data.flow_length, "flow3": 3}
    t, s = frames or cfg.data.frames, size or cfg.data.size
    return {m: (t, channels[m], s, s) for m in model_modalities(model)}


def class_index(value: str, class_names: list[str]) -> int:
    """A class given by name or index."""
    if value in class_names:
        return class_names.index(value)
    if value.isdigit() and int(value) < len(class_names):
        return int(value)
    raise UsageError(f"--class {value!r} is neither a class name nor an index < {len(class_names)}; "
                     f"classes: {class_names}")  # fmt: skip


# ----------------------------------------------------------------------------- maximize


def _parse_regs(specs: list[str]):
    from vidrec.visualize.maximize import Regularizer

    regs, weights, scales = {}, {}, {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        mod, dot, name = key.partition(".")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not (sep and dot and number is not None):
            raise UsageError(f"--reg {spec!r}: expected MODALITY.FIELD=NUMBER, e.g. flow.tv_time=0")
        if name == "weight":
            weights[mod] = number
        elif name == "scale":
            scales[mod] = number
        elif name in Regularizer.__dataclass_fields__:
            regs[mod] = {**regs.get(mod, {}), name: number}
        else:
            raise UsageError(f"--reg {spec!r}: unknown field {name!r}")
    return {m: Regularizer(**kw) for m, kw in regs.items()}, weights, scales


def _unit(args, class_names):
    from vidrec.visualize.units import Unit

    if bool(args.cls) == bool(args.layer):
        raise UsageError("give exactly one of --class NAME (a class logit) or --layer NAME --channel C")
    if args.cls:
        return Unit(channel=class_index(args.cls, class_names), stream=args.stream)
    position = None
    if args.position:
        try:
            i, j = (int(v) for v in args.position.split(","))
        except ValueError:
            raise UsageError(f"--position {args.position!r}: expected I,J (two integers)") from None
        position = (i, j)
    return Unit(layer=args.layer, channel=args.channel, position=position)


def _file_safe(name: str) -> str:
    """A class name (read from a checkpoint) as a file-name part: only letters, digits, ``-`` and ``_``, so a
    name with ``/``, ``..`` or control characters cannot write outside ``--out`` or hide in a listing."""
    return re.sub(r"[^\w-]+", "_", str(name), flags=re.ASCII).strip("_")[:80] or "unnamed"


def _stem(args, unit, class_names) -> str:
    if args.name:
        return args.name
    if not unit.layer:
        name = _file_safe(class_names[unit.channel])
        return f"class_{name}{'_' + unit.stream if unit.stream else ''}_{args.prior}"
    pos = f"_at{unit.position[0]}-{unit.position[1]}" if unit.position else ""
    return f"{unit.layer}_c{unit.channel}{pos}_{args.prior}"


def maximize_outputs(out: Path, stem: str, modalities, mp4: bool) -> dict[str, Path]:
    """The files `maximize` writes, by role."""
    files = {"inputs": out / f"{stem}.safetensors", "sheet": out / f"{stem}_sheet.png",
             "objective": out / f"{stem}_objective.png"}  # fmt: skip
    exts = (".gif", ".mp4") if mp4 else (".gif",)
    for m in modalities:
        for ext in exts:
            files[f"{m}{ext}"] = out / f"{stem}_{m}{ext}"
            if m == "flow":
                files[f"flow_arrows{ext}"] = out / f"{stem}_flow_arrows{ext}"
    return files


def picture_rows(inputs: dict[str, torch.Tensor], *, stretch: bool) -> tuple[list, dict[str, np.ndarray]]:
    """Contact-sheet rows and animation frames `{name: (N, H, W, 3)}` for model inputs `(T, C, H, W)`."""
    from vidrec.visualize import render
    from vidrec.visualize.flowviz import wheel_legend

    rows, anims = [], {}
    for m, x in inputs.items():
        if m == "flow":
            fields = render.flow_fields(x)  # (T*L, H, W, 2)
            zoom = render.display_factor(*fields.shape[1:3])
            anims["flow"] = render.enlarge(render.flow_colour_frames(fields), zoom)
            anims["flow_arrows"] = render.flow_arrow_frames(fields, upscale=zoom)
            rows += [("flow (colour)", anims["flow"]), ("flow (arrows)", anims["flow_arrows"])]
            rows.append(("colour key", wheel_legend(64)[None]))
        else:
            frames = render.rgb_frames(x, stretch=stretch) if m == "rgb" else _flow3_frames(x)
            anims[m] = render.enlarge(frames, render.display_factor(*frames.shape[1:3]))
            rows.append((m, anims[m]))
    return rows, anims


def _flow3_frames(x: torch.Tensor) -> np.ndarray:
    """LRCN flow images from the model's normalised `(T, 3, H, W)` input, uint8 `(T, H, W, 3)`."""
    from vidrec.data.transforms import NORMALIZATION

    std = torch.tensor(NORMALIZATION["flow3"].std)[:, None, None]
    img = (x.detach().float().cpu() * std + 128).permute(0, 2, 3, 1).numpy().clip(0, 255)
    return img.round().astype(np.uint8)


def save_inputs(path: Path, inputs: dict[str, torch.Tensor], meta: dict, overwrite: bool) -> Path:
    """The optimised inputs as a safetensors file (tensors `(T, C, H, W)`; JSON metadata)."""
    from safetensors.torch import save_file

    from vidrec.visualize.render import check_new

    check_new(path, overwrite)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({m: v.contiguous() for m, v in inputs.items()}, str(tmp), metadata={"vidrec": json.dumps(meta)})
    tmp.replace(path)
    return path


def run_maximize(args: argparse.Namespace) -> int:
    from vidrec.visualize import render
    from vidrec.visualize.maximize import MaximizeConfig, maximize, resolve_device

    device = resolve_device(args.device)
    model, cfg, class_names = load_model(args.checkpoint, device)
    if args.list_layers:
        for name, module in model.named_modules():
            if name and not list(module.children()):
                print(f"{name}  {type(module).__name__}")
        return 0
    unit = _unit(args, class_names)
    shapes = input_shapes(cfg, model, frames=args.frames, size=args.size)
    regs, weights, scales = _parse_regs(args.reg)
    config = MaximizeConfig(steps=args.steps, lr=args.lr, optimizer=args.optimizer, prior=args.prior,
                            jitter=args.jitter, regularizers=regs, modality_weights=weights,
                            scales=scales)  # fmt: skip
    optimize = tuple(m for m in args.optimize.split(",") if m) or None
    out, stem = Path(args.out), _stem(args, unit, class_names)
    files = maximize_outputs(out, stem, list(shapes), args.mp4)
    for path in files.values():
        render.check_new(path, args.overwrite)  # refuse before spending minutes
    result = maximize(model, unit, shapes=shapes, config=config, optimize=optimize, seed=args.seed,
                      device=device, progress=not args.no_progress)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    meta = {"unit": unit.describe(), "checkpoint": str(args.checkpoint), "prior": args.prior,
            "seed": args.seed, "steps": args.steps, "optimizer": args.optimizer,
            "objective": result.objective, "rho": result.rho}  # fmt: skip
    save_inputs(files["inputs"], result.inputs, meta, args.overwrite)
    rows, anims = picture_rows(result.inputs, stretch=True)
    for key, path in files.items():
        name = key.rsplit(".", 1)[0]
        if name in anims:
            render.save_animation(anims[name], path, fps=args.fps, overwrite=args.overwrite)
    rise = f"{result.objective[0]:.2f} -> {result.objective[-1]:.2f}"
    title = f"{unit.describe()} | {args.prior} prior | objective {rise}"
    render.contact_sheet(rows, files["sheet"], title=title, overwrite=args.overwrite,
                         captions=[f"t={i}" for i in range(16)])  # fmt: skip
    render.plot_objective(result.objective, files["objective"], title=title, overwrite=args.overwrite)
    print(f"{unit.describe()}: objective {result.objective[0]:.3f} -> {result.objective[-1]:.3f}")
    for path in files.values():
        print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- gradcam


def _clip_indices(num: int, frames: int, span: int, sampler: str, stride: int) -> list[int]:
    """Start frames of the T steps: evenly spread (segments/uniform) or consecutive from the middle."""
    usable = max(num - span, 1)
    if sampler in ("segments", "uniform"):
        edges = np.linspace(0, usable, frames + 1)
        return [min(int((a + b) / 2), usable - 1) for a, b in zip(edges[:-1], edges[1:])]
    start = max(0, (usable - (frames - 1) * stride - 1) // 2)
    return [min(start + i * stride, usable - 1) for i in range(frames)]


def _centre_crop(a: np.ndarray, size: int) -> np.ndarray:
    """Centre crop of `(..., H, W, C)` arrays to `size` (as torchvision's center_crop rounds)."""
    h, w = a.shape[-3:-1]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return a[..., top : top + size, left : left + size, :]


def video_inputs(
    cfg, model, video: str, *, frames: int, flow_method: str, flow_bound: float = 20.0
) -> dict[str, torch.Tensor]:
    """`{modality: (1, T, C, size, size)}` for one clip of `video`, preprocessed as at evaluation (flow
    computed between the decoded frames, and quantised with `flow_bound` as stored flow is)."""
    from vidrec.data.transforms import normalize_modality
    from vidrec.engine.predict import Preprocess
    from vidrec.flow import compute_flow, dequantize, quantize, to_lrcn_image
    from vidrec.io import VideoReader
    from vidrec.visualize.units import model_modalities

    mods, t = model_modalities(model), frames or cfg.data.frames
    span = cfg.data.flow_length if "flow" in mods else (1 if "flow3" in mods else 0)
    with VideoReader(video, size=cfg.data.resize) as reader:
        n = reader.meta.num_frames
        starts = _clip_indices(n, t, span, cfg.data.sampler, cfg.data.stride)
        wanted = sorted({min(s + k, n - 1) for s in starts for k in range(span + 1)})
        decoded = dict(zip(wanted, reader.get_frames(wanted)))
    out = {}
    if "rgb" in mods:
        prep = Preprocess.from_config(cfg)
        out["rgb"] = prep.normalize(prep(np.stack([decoded[s] for s in starts])), "cpu")  # (T, 3, S, S)
    if "flow" in mods or "flow3" in mods:

        def flow(i: int) -> np.ndarray:  # (H, W, 2) pixels, frame i -> i + 1
            f = compute_flow(decoded[min(i, n - 1)], decoded[min(i + 1, n - 1)], method=flow_method)
            return dequantize(quantize(f, flow_bound), flow_bound) if flow_bound > 0 else f

        if "flow" in mods:
            stacks = [np.concatenate([flow(s + k) for k in range(span)], axis=-1) for s in starts]
            px = torch.from_numpy(_centre_crop(np.stack(stacks), cfg.data.size)).permute(0, 3, 1, 2)
            out["flow"] = normalize_modality("flow", px)  # as the dataset feeds it
        if "flow3" in mods:
            imgs = np.stack([to_lrcn_image(flow(s)).astype(np.float32) - 128 for s in starts])
            levels = torch.from_numpy(_centre_crop(imgs, cfg.data.size)).permute(0, 3, 1, 2)
            out["flow3"] = normalize_modality("flow3", levels)  # as the dataset feeds it
    return {m: v.float()[None] for m, v in out.items()}  # (1, T, C, H, W)


def _stream_pictures(inputs: dict[str, torch.Tensor], stream: str) -> np.ndarray:
    """The frames a stream's heat map is drawn over: RGB frames, or the first flow field of each stack."""
    from vidrec.visualize import render
    from vidrec.visualize.gradcam import STREAM_INPUT

    key = stream if stream in inputs else STREAM_INPUT.get(stream, next(iter(inputs)))
    x = inputs[key][0]  # (T, C, H, W)
    if key == "rgb":
        return render.rgb_frames(x)
    if key == "flow3":
        return _flow3_frames(x)
    fields = render.flow_fields(x[:, :2])  # (T, H, W, 2): the first field of each stack
    return render.flow_colour_frames(fields)


def run_gradcam(args: argparse.Namespace) -> int:
    _, lines = gradcam(args)
    for line in lines:
        print(line)
    return 0


def gradcam_files(args: argparse.Namespace, streams) -> dict[str, Path]:
    """The files `gradcam` writes for `streams`, by role: ``<stream>.gif`` (and ``.mp4`` with --mp4), and
    ``sheet``."""
    out, stem = Path(args.out), Path(args.video).stem
    exts = (".gif", ".mp4") if args.mp4 else (".gif",)
    files = {f"{s}{e}": out / f"{stem}_gradcam_{s}{e}" for s in streams for e in exts}
    files["sheet"] = out / f"{stem}_gradcam_sheet.png"
    return files


def gradcam(args: argparse.Namespace) -> tuple[dict[str, Path], list[str]]:
    """Write the Grad-CAM pictures `args` ask for: `(the files by role (see `gradcam_files`), the lines to
    print: per stream its mean heat per frame, then each file written)`. `vidrec app` calls it with the
    arguments this command's parser makes."""
    from vidrec.cli import input_file
    from vidrec.visualize import render
    from vidrec.visualize.gradcam import default_layers, grad_cam
    from vidrec.visualize.maximize import resolve_device

    device = resolve_device(args.device)
    model, cfg, class_names = load_model(args.checkpoint, device)
    layers = default_layers(model)
    for spec in args.layer:
        stream, sep, name = spec.partition("=")
        if not sep or stream not in layers:
            raise UsageError(f"--layer {spec!r}: expected STREAM=NAME with STREAM in {sorted(layers)}")
        layers[stream] = name
    files = gradcam_files(args, layers)
    for path in files.values():
        render.check_new(path, args.overwrite)
    video = str(input_file(args.video, "video"))
    inputs = video_inputs(cfg, model, video, frames=args.frames, flow_method=args.flow_method,
                          flow_bound=args.flow_bound)  # fmt: skip
    target = class_index(args.cls, class_names) if args.cls else None
    cam = grad_cam(model, {m: v.to(device) for m, v in inputs.items()}, target=target, layers=layers,
                   stream=args.stream)  # fmt: skip
    rows, lines = [], []
    for s, heat in cam.heat.items():
        frames = _stream_pictures(inputs, s)
        shown = render.overlay(frames, heat[0].numpy())
        zoom = render.display_factor(*frames.shape[1:3])
        rows += [(f"{s} input", render.enlarge(frames, zoom)), (f"{s} Grad-CAM", render.enlarge(shown, zoom))]
        for e in (".gif", ".mp4") if args.mp4 else (".gif",):
            render.save_animation(render.enlarge(shown, zoom), files[f"{s}{e}"], fps=args.fps,
                                  overwrite=args.overwrite)  # fmt: skip
        per_frame = " ".join(f"{v:.2f}" for v in heat[0].mean(dim=(1, 2)).tolist())
        lines.append(f"{s}: mean heat per frame {per_frame}  (layer {cam.layers[s]})")
    p = float(cam.probs[0, cam.target])
    title = f"{Path(args.video).name}: Grad-CAM of {class_names[cam.target]} (p={p:.2f})"
    render.contact_sheet(rows, files["sheet"], title=title, overwrite=args.overwrite,
                         captions=[f"t={i}" for i in range(16)])  # fmt: skip
    return files, lines + [f"wrote {path}" for path in files.values()]


# ----------------------------------------------------------------------------- entry


def run(args: argparse.Namespace) -> int:
    """Errors are raised and reported by `vidrec.cli.run_command`; a bad unit, layer or shape (a
    ValueError from `vidrec.visualize`) is a usage error of this command."""
    action = run_maximize if args.action == "maximize" else run_gradcam
    try:
        return action(args)
    except ValueError as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(str(err)) from err
