"""Deep Insights study: what a small two-stream model learns on the synthetic temporal-order dataset.

Steps (all through vidrec's public pieces): generate the synthetic dataset (`vidrec synth`'s
`make_synthetic_dataset`: orbit cw/ccw, move right/left, grow/shrink) -> DIS optical flow per video
(`vidrec.flow.flow_video`, stored like `vidrec flow`) -> train `two_stream_mobilenet_v2` (ImageNet RGB
stream, cross-modality flow stream, L flow fields per segment) with `vidrec.engine.train` -> pictures
and inputs from the checkpoint with the `vidrec visualize` CLI -> three findings with numbers:

1. speed prior: for the flow-stream unit most selective for orbit direction, the slow prior gives an
   optimised flow stack with less temporal variation and less high-temporal-frequency energy than the
   fast prior (same seeds);
2. fusion: for that unit (below the late-fusion point) the RGB input receives exactly zero gradient,
   while the fused class logit sends gradient into both inputs;
3. direction: the optimised flow stacks of the "orbit_cw" and "orbit_ccw" class units rotate in opposite
   directions about the image centre (rotation score and curl, calibrated on real test flow); the
   turning between consecutive fields and the flow stream's verdict on each optimum's time reversal
   are reported too.

Usage: python benchmarks/deep_insights.py --out runs/deep_insights  (about 10-15 minutes on 2 CPU cores)
Ends with a `RESULT deep_insights ...` line; pictures and `report.md` are under --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vidrec import benchdocs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/deep_insights", help="work folder (default: runs/deep_insights)")
    p.add_argument("--write-docs", action="store_true", help="write the report into docs/benchmarks.md")
    p.add_argument("--per-class", type=int, default=32, help="videos per class (default: 32)")
    p.add_argument("--size", type=int, default=64, help="frame size in pixels (default: 64)")
    p.add_argument("--flow-length", type=int, default=5, help="flow fields per stack L (default: 5)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    p.add_argument("--steps", type=int, default=200, help="steps per maximisation (default: 200)")
    p.add_argument("--seeds", type=int, default=2, help="seeds of the slow/fast comparison (default: 2)")
    p.add_argument("--layer", default="flow.backbone.net.features.10", help="layer searched for the unit")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- data and training


def make_data(root: Path, args) -> Path:
    """Synthetic videos plus one `.flow.npy` per video (DIS, bound 20 px); returns the video folder."""
    from tqdm import tqdm

    from vidrec.data.synthetic import make_synthetic_dataset
    from vidrec.flow import flow_video, is_complete, save_flow

    videos = make_synthetic_dataset(root / "videos", per_class=args.per_class, frames=16, size=args.size)
    lines = [ln.split()[0] for f in ("train.txt", "test.txt") for ln in (videos / f).read_text().splitlines()]
    for rel in tqdm(lines, desc="flow (DIS)", unit="video"):
        vid = rel.rsplit(".", 1)[0]
        if not is_complete(root / "flow", vid):
            q = flow_video(videos / rel, "dis", short_side=None)
            save_flow(root / "flow", vid, q, bound=20.0, method="dis", fps=25.0)
    return videos


def train_config(videos: Path, root: Path, args):
    from vidrec.engine.config import config_from_dict

    return config_from_dict(
        {
            "data": {
                "train_list": str(videos / "train.txt"), "val_list": str(videos / "test.txt"),
                "root": str(videos), "classes": str(videos / "classes.txt"),
                "flow_root": str(root / "flow"), "modalities": ["rgb", "flow"],
                "flow_length": args.flow_length, "frames": 3, "sampler": "segments",
                "size": args.size, "resize": args.size, "augment": "crop", "batch_size": 8, "workers": 1,
            },
            "model": {
                "name": "two_stream_mobilenet_v2",
                "kwargs": {"pretrained": True, "flow_length": args.flow_length,
                           "dropout": {"rgb": 0.5, "flow": 0.5}},
            },
            "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4},
            "schedule": {"name": "cosine", "epochs": args.epochs},
            "runtime": {"device": args.device, "seed": 0},
            "out_dir": str(root / "run"),
            "tensorboard": False,
        }
    )  # fmt: skip


def train_or_reuse(cfg) -> tuple[Path, bool]:
    """(the last checkpoint, whether it was trained in this run)."""
    from vidrec.engine.train import train

    last = Path(cfg.out_dir) / "last.safetensors"
    if last.is_file():
        print(f"reusing {last}")
        return last, False
    return train(cfg).last_checkpoint, True


# ----------------------------------------------------------------------------- measurements


@torch.no_grad()
def test_activations(model, cfg, layer: str):
    """Per test clip: stream probabilities and the channel means of `layer`; plus labels and flows."""
    from vidrec.engine.evaluate import model_inputs
    from vidrec.tasks.classify import build_datasets
    from vidrec.visualize.hooks import capture

    _, val_ds, names = build_datasets(cfg, ("rgb", "flow"))
    acts, labels, probs, flows = [], [], {"rgb": [], "flow": [], "fused": []}, []
    for i in range(len(val_ds)):
        item = val_ds[i]
        x = model_inputs({m: item[m][None] for m in ("rgb", "flow")}, ("rgb", "flow"), "cpu")[0]
        with capture(model, layer) as rec:
            out = model(x)
        acts.append(rec[layer][0].mean(dim=(0, 2, 3)))  # (C,): mean over segments and space
        for s in ("rgb", "flow"):
            probs[s].append(out[s].softmax(-1)[0])
        w = model.fusion_weights
        probs["fused"].append(sum(w[s] * out[s].softmax(-1)[0] for s in ("rgb", "flow")))
        labels.append(item["label"])
        flows.append(item["flow"])
    return torch.stack(acts), torch.tensor(labels), {k: torch.stack(v) for k, v in probs.items()}, flows


def pick_unit(acts: torch.Tensor, labels: torch.Tensor, a: int, b: int) -> tuple[int, float]:
    """The channel separating classes a and b best (|d'|), and its d'."""
    xa, xb = acts[labels == a], acts[labels == b]
    d = (xa.mean(0) - xb.mean(0)) / ((xa.var(0) + xb.var(0)) / 2).sqrt().clamp_min(1e-6)
    c = int(d.abs().argmax())
    return c, float(d[c])


def turning(stack: torch.Tensor) -> float:
    """Turning of one flow stack `(2L, H, W)` (a leading `(1, ...)` is allowed).

    The sum over pixels and consecutive fields of u_t v_{t+1} - v_t u_{t+1}, over the sum of
    |f_t||f_{t+1}|: the mean sine of the turn. With y pointing down, motion turning clockwise on
    screen (as orbit_cw) is positive."""
    f = stack.reshape(-1, 2, *stack.shape[-2:]).double()  # (N, 2, H, W) fields in time order
    u, v = f[:, 0], f[:, 1]
    cross = (u[:-1] * v[1:] - v[:-1] * u[1:]).sum()
    norm = (f[:-1].norm(dim=1) * f[1:].norm(dim=1)).sum().clamp_min(1e-12)
    return float(cross / norm)


def _fields(stack: torch.Tensor) -> torch.Tensor:
    return stack.reshape(-1, 2, *stack.shape[-2:]).double()  # (N, 2, H, W) fields in time order


def rotation(stack: torch.Tensor) -> float:
    """Rotation of a flow stack about the image centre: sum of (x - cx) v - (y - cy) u over the sum of
    |r| |f| (in [-1, 1]; +1 is a rigid clockwise rotation on screen, y pointing down)."""
    f = _fields(stack)
    h, w = f.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5 - h / 2, torch.arange(w) + 0.5 - w / 2, indexing="ij")
    num = (xx * f[:, 1] - yy * f[:, 0]).sum()
    return float(num / (torch.sqrt(xx**2 + yy**2) * f.norm(dim=1)).sum().clamp_min(1e-12))


def curl(stack: torch.Tensor) -> float:
    """Mean curl dv/dx - du/dy of a flow stack (px per px; positive: clockwise on screen)."""
    f = _fields(stack)
    dvdx = f[:, 1, :-1, 1:] - f[:, 1, :-1, :-1]
    dudy = f[:, 0, 1:, :-1] - f[:, 0, :-1, :-1]
    return float((dvdx - dudy).mean())


MOTION_MEASURES = {"rotation": rotation, "curl": curl, "turning": turning}


def time_reverse(flow: torch.Tensor) -> torch.Tensor:
    """A flow stack `(T, 2L, H, W)` played backwards: fields in reverse order, each negated."""
    t, c = flow.shape[:2]
    fields = flow.reshape(t, c // 2, 2, *flow.shape[-2:]).flip(1)
    return -fields.reshape(flow.shape)


def flow_probs(model, flow: torch.Tensor) -> torch.Tensor:
    """The flow stream's class probabilities for one stack `(T, 2L, H, W)`."""
    with torch.no_grad():
        return model.flow(flow[None]).softmax(-1)[0]


def cli(*argv: str) -> None:
    from vidrec.cli import main

    code = main([str(a) for a in argv])
    if code:
        raise SystemExit(f"vidrec {' '.join(map(str, argv))} failed with exit code {code}")


def load_inputs(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


# ----------------------------------------------------------------------------- the study


def speed_prior(ckpt, viz, layer, channel, args, common) -> list[dict]:
    """Finding 1: slow vs fast prior on the same unit and seeds."""
    from vidrec.visualize.maximize import changing_energy_fraction, high_frequency_fraction, tv_time

    rows = []
    for seed in range(args.seeds):
        for prior in ("slow", "fast"):
            name = f"unit_{prior}_seed{seed}"
            if not (viz / f"{name}.safetensors").is_file():
                cli("visualize", "maximize", ckpt, "--layer", layer, "--channel", channel, "--prior", prior,
                    "--seed", seed, "--name", name, *common)  # fmt: skip
            flow = load_inputs(viz / f"{name}.safetensors")["flow"][None]  # (1, T, 2L, H, W)
            rows.append({"seed": seed, "prior": prior, "tv_t": float(tv_time(flow / 5.0, "flow")),
                         "changing": changing_energy_fraction(flow, "flow"),
                         "hf": high_frequency_fraction(flow, "flow")})  # fmt: skip
    return rows


def fusion_gradients(model, layer, channel, real) -> dict[str, dict[str, float]]:
    """Finding 2: max |d unit / d input| per input, for the flow unit and the fused class logit."""
    from vidrec.visualize.maximize import input_gradients
    from vidrec.visualize.units import Unit

    out = {}
    units = {"flow unit (below fusion)": Unit(layer=layer, channel=channel),
             "rgb unit (below fusion)": Unit(layer=layer.replace("flow.", "rgb.", 1), channel=channel),
             "fused class logit (above fusion)": Unit(channel=0)}  # fmt: skip
    for label, unit in units.items():
        g = input_gradients(model, unit, real)
        out[label] = {m: float(v.abs().max()) for m, v in g.items()}
    return out


def docs_section(report: str, command: str) -> str:
    """The report as a section of docs/benchmarks.md: its own heading replaced, the others one level down."""
    body = [f"#{line}" if line.startswith("#") else line for line in report.splitlines()[1:]]
    head = ["## Deep Insights study (`benchmarks/deep_insights.py`)", "", f"`{command}`:"]
    return "\n".join([*head, *body, "", f"Machine: {benchdocs.machine()}."])


def write_report(root: Path, text: str) -> Path:
    path = root / "report.md"
    path.write_text(text)
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from vidrec.visualize.cli import load_model

    root = Path(args.out)
    tic = time.perf_counter()
    videos = make_data(root, args)
    cfg = train_config(videos, root, args)
    ckpt, trained = train_or_reuse(cfg)
    train_s = time.perf_counter() - tic if trained else None
    model, cfg, names = load_model(ckpt, torch.device("cpu"))
    cw, ccw = names.index("orbit_cw"), names.index("orbit_ccw")
    acts, labels, probs, flows = test_activations(model, cfg, args.layer)
    acc = {k: float((v.argmax(1) == labels).float().mean()) for k, v in probs.items()}
    orbit = (labels == cw) | (labels == ccw)
    pair = {k: float((v[orbit][:, [cw, ccw]].argmax(1) == (labels[orbit] == ccw).long()).float().mean())
            for k, v in probs.items()}  # fmt: skip
    channel, dprime = pick_unit(acts, labels, cw, ccw)
    real = {
        n: {k: float(np.mean([fn(s) for i, f in enumerate(flows) if labels[i] == c for s in f]))
            for k, fn in MOTION_MEASURES.items()}
        for n, c in (("orbit_cw", cw), ("orbit_ccw", ccw))
    }  # fmt: skip

    viz = root / "viz"
    common = ["--frames", 1, "--steps", args.steps, "--out", viz, "--no-progress", "--device", args.device]
    speed = speed_prior(ckpt, viz, args.layer, channel, args, common)
    from vidrec.tasks.classify import build_datasets

    _, val_ds, _ = build_datasets(cfg, ("rgb", "flow"))
    item = val_ds[0]
    from vidrec.engine.evaluate import model_inputs

    real_clip = model_inputs({m: item[m][None, :1] for m in ("rgb", "flow")}, ("rgb", "flow"), "cpu")[0]
    grads = fusion_gradients(model, args.layer, channel, real_clip)

    classes = {}
    for cls in ("orbit_cw", "orbit_ccw"):
        name = f"class_{cls}"
        if not (viz / f"{name}.safetensors").is_file():
            cli("visualize", "maximize", ckpt, "--class", cls, "--seed", 0, "--name", name, "--mp4", *common)
        flow = load_inputs(viz / f"{name}.safetensors")["flow"]  # (1, 2L, H, W)
        p, p_rev = flow_probs(model, flow), flow_probs(model, time_reverse(flow))
        classes[cls] = {**{k: fn(flow) for k, fn in MOTION_MEASURES.items()}, "p_cw": float(p[cw]),
                        "p_ccw": float(p[ccw]), "rev_p_cw": float(p_rev[cw]),
                        "rev_p_ccw": float(p_rev[ccw])}  # fmt: skip
    test_video = videos / "orbit_cw" / f"orbit_cw_{args.per_class - 1:04d}.mp4"
    if not (viz / f"{test_video.stem}_gradcam_sheet.png").is_file():
        cli("visualize", "gradcam", ckpt, test_video, "--out", viz, "--device", args.device)
    total_s = time.perf_counter() - tic
    text = report_text(args, acc, pair, channel, dprime, real, speed, grads, classes, train_s, total_s)
    print(text)
    write_report(root, text)
    if args.write_docs:
        benchdocs.write_section("deep_insights", docs_section(text, benchdocs.command(argv)))
    (root / "study.json").write_text(json.dumps(
        {"acc": acc, "pair": pair, "unit": [args.layer, channel, dprime], "real_orbit_flow": real,
         "speed": speed, "grads": grads, "classes": classes}, indent=1))  # fmt: skip
    slow = np.mean([r["tv_t"] for r in speed if r["prior"] == "slow"])
    fast = np.mean([r["tv_t"] for r in speed if r["prior"] == "fast"])
    hf_s = np.mean([r["hf"] for r in speed if r["prior"] == "slow"])
    hf_f = np.mean([r["hf"] for r in speed if r["prior"] == "fast"])
    ch_s = np.mean([r["changing"] for r in speed if r["prior"] == "slow"])
    ch_f = np.mean([r["changing"] for r in speed if r["prior"] == "fast"])
    print(
        f"RESULT deep_insights fused_top1={acc['fused']:.3f} flow_pair_acc={pair['flow']:.3f} "
        f"rgb_pair_acc={pair['rgb']:.3f} tv_t_slow={slow:.5f} tv_t_fast={fast:.5f} changing_slow={ch_s:.4f} "
        f"changing_fast={ch_f:.4f} hf_slow={hf_s:.3f} "
        f"hf_fast={hf_f:.3f} rgb_grad_below_fusion={grads['flow unit (below fusion)']['rgb']:.1e} "
        f"rotation_cw={classes['orbit_cw']['rotation']:+.3f} "
        f"rotation_ccw={classes['orbit_ccw']['rotation']:+.3f} "
        f"seconds={total_s:.0f}"
    )
    return 0


def report_text(args, acc, pair, channel, dprime, real, speed, grads, classes, train_s, total_s) -> str:
    lines = [
        "# Deep Insights study: two-stream MobileNetV2 on the synthetic temporal-order dataset",
        "",
        f"Trained {args.epochs} epochs ("
        + (f"{train_s:.0f} s incl. data" if train_s is not None else "checkpoint reused from an earlier run")
        + f"); L = {args.flow_length} flow fields,"
        f" {args.size} px. Test accuracy (6 classes, chance 0.17) and orbit cw-vs-ccw pair accuracy"
        " (chance 0.5):",
        "",
        "| stream | top-1 | orbit pair acc |",
        "|---|---|---|",
        *[f"| {k} | {acc[k]:.3f} | {pair[k]:.3f} |" for k in ("rgb", "flow", "fused")],
        "",
        f"Unit: `{args.layer}` channel {channel} (orbit cw-vs-ccw d' = {dprime:+.2f} on test clips).",
        "",
        "## 1. Slow vs fast temporal prior (same unit, same seeds)",
        "",
        "| seed | prior | TV_t of the flow stack (units of 5 px) | energy changing in time "
        "| of that, above 0.25 cycles/field |",
        "|---|---|---|---|---|",
        *[f"| {r['seed']} | {r['prior']} | {r['tv_t']:.5f} | {r['changing']:.4f} | {r['hf']:.3f} |"
          for r in speed],
        "",
        "Pictures: `viz/unit_slow_seed0_sheet.png`, `viz/unit_fast_seed0_sheet.png` (and the GIFs).",
        "",
        "## 2. Gradient across the fusion point (real test clip)",
        "",
        "| unit | max abs d/d rgb | max abs d/d flow |",
        "|---|---|---|",
        *[f"| {k} | {v['rgb']:.3e} | {v['flow']:.3e} |" for k, v in grads.items()],
        "",
        "## 3. Class units orbit_cw vs orbit_ccw (joint RGB + flow maximisation)",
        "",
        "Motion measures of a flow stack: rotation about the image centre (+1 rigid clockwise on screen),"
        " mean curl (positive clockwise), turning of the motion between consecutive fields (positive"
        " clockwise). On real test flow (mean over clips):",
        "",
        "| real flow | rotation | curl | turning |",
        "|---|---|---|---|",
        *[f"| {k} | {v['rotation']:+.3f} | {v['curl']:+.4f} | {v['turning']:+.3f} |"
          for k, v in real.items()],
        "",
        "| optimised flow of class unit | rotation | curl | turning | flow stream p(cw) / p(ccw) "
        "| time-reversed: p(cw) / p(ccw) |",
        "|---|---|---|---|---|---|",
        *[f"| {k} | {v['rotation']:+.3f} | {v['curl']:+.4f} | {v['turning']:+.3f} | {v['p_cw']:.2f} / "
          f"{v['p_ccw']:.2f} | {v['rev_p_cw']:.2f} / {v['rev_p_ccw']:.2f} |" for k, v in classes.items()],
        "",
        "Pictures: `viz/class_orbit_cw_sheet.png`, `viz/class_orbit_ccw_sheet.png`, the `_flow.gif` /"
        " `_flow_arrows.gif` animations, and Grad-CAM `viz/*_gradcam_sheet.png`.",
        "",
        f"Total {total_s:.0f} s (maximisations already on disk are reused).",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
