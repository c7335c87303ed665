"""Everything worth knowing from one GPU, in one command of at most 8 minutes, into one JSON file.

Parts, each with its share of `--budget` (default 420 s; a part past its share skips its remaining rows
with a line saying which, its first row always runs); the measurements live in `gpu_parts.py`:

1. **train**: training throughput (clips/s, images/s) and peak memory of lrcn_resnet18, two_stream_resnet50,
   st_resnet50, segnet_mobilenet_v2 and lrcn2u_captioner on pre-made tensors kept on the device (the
   compute bound), in fp32 eager, bf16 autocast, bf16 + channels_last and bf16 + `torch.compile`.
2. **feed**: lrcn_resnet18 trained in bf16 end to end from video files through `vidrec train`'s own path
   (`VideoDataset` -> `make_loaders`: uint8 clips in pinned memory -> `model_inputs`: non-blocking copy,
   normalised on the device) at 1, 4, 8 and 16 workers, against its compute bound (under 0.9: flagged,
   a bug to chase), and `vidrec train` itself at 16 workers (its loop's per-step checks on top); the
   loader's images/s on one core at 112 and 224 px, hence the loader cores each model needs; the frame
   store of `vidrec prepare` as the fast path; GPU decoding (`data.decode_device=cuda`, torchcodec)
   checked against the CPU decoder, or one line why it cannot run.
3. **dff**: Deep Feature Flow at 480p (`as_dff(...).run(...)`), per-frame vs key interval l = 10,
   frames/s in fp32 and bf16; detection too when `vidrec.tasks` has a detect task ("no detect task").
4. **latency**: `vidrec predict --stream` at batch 1: window latency and frames/s of an LRCN stepping
   through a video file.

Its first seconds check the requirements (torch, torchvision, OpenCV, PyAV and the project's other
dependencies) and say in one line what is missing and how to bring it (benchmarks/README.md tells how to
carry wheels to a GPU machine). `--smoke` runs every row's code on the CPU at tiny sizes, without a
budget, in under a minute on two idle cores (`make test` runs it: tests/test_benchmark_gpu.py). Writes
`OUT/gpu.json` (every figure), `OUT/gpu.md` (the tables; `--write-docs` also puts them in
docs/benchmarks.md, section `gpu`), and ends with `RESULT gpu lrcn_bf16_images_per_s=A
e2e_vs_compute_bf16=B cores_to_feed_lrcn=C dff_speedup_l10=D stream_latency_ms_p50=E seconds=F`.

Example (on the GPU machine): python benchmarks/gpu.py --out /tmp/gpu --workdir /tmp/gpu_work; back here:
python benchmarks/gpu.py --from-json gpu.json --write-docs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # vidrec from this checkout (no install needed), gpu_parts

# import name -> pip name: what the measured code paths import, checked before anything else is imported
REQUIRED = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "cv2": "opencv-contrib-python-headless",
    "av": "av",
    "einops": "einops",
    "safetensors": "safetensors",
    "tqdm": "tqdm",
    "yaml": "pyyaml",
    "PIL": "pillow",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, < 60 s: the code paths only")
    p.add_argument("--out", type=Path, default=Path("runs/bench_gpu"), help="folder of gpu.json and gpu.md")
    p.add_argument("--workdir", type=Path, default=None, help="generated videos (default: OUT/work)")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for all parts (default 420; --smoke: none, every row runs, its point being the code)",
    )
    p.add_argument("--write-docs", action="store_true", help="also write the tables into docs/benchmarks.md")
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="measure nothing: print (with --write-docs: also write) the tables of a gpu.json that a GPU "
        "machine made (its checkout's docs do not come back)",
    )
    return p.parse_args(argv)


def missing_requirements(required: dict[str, str] = REQUIRED) -> list[str]:
    """pip names of the required packages that do not import here."""
    missing = []
    for module, pip_name in required.items():
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - not installed or a broken binary: either way, bring the wheel
            missing.append(pip_name)
    return missing


def requirements_line(missing: list[str]) -> str:
    """One line: what is missing and how to bring it to a machine without a package index."""
    return (
        f"missing: {' '.join(missing)}. Carry their wheels (benchmarks/README.md): here, pip download "
        f"--no-deps --only-binary=:all: -d .whl {' '.join(missing)}; there, pip install --no-index --no-deps "
        "--target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site"
    )


# ----------------------------------------------------------------------------- the report


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def summarise(res: dict, sizes) -> None:
    """bf16 images/s per model (its best bf16 row) and the loader cores it takes to feed each clip model
    (its images/s over one loader core's at its crop size)."""
    best: dict[str, float] = {}
    for r in res["train"]:
        if r["mode"] != "fp32":
            best[r["model"]] = max(best.get(r["model"], 0.0), r["images_per_s"])
    per_core = {r["size"]: r["images_per_s"] for r in res["feed"]["loader_per_core"]}
    res["bf16_images_per_s"] = best
    res["cores_to_feed"] = {
        name: rate / per_core[sizes.size[name]] if sizes.size.get(name) in per_core else None
        for name, rate in best.items()
        if name in sizes.frames  # clip models (segnet reads DAVIS frames, not clips)
    }


def markdown(res: dict) -> str:
    out = [f"Machine: {res['machine']}. `{res['command']}`, {res['seconds']:.0f} s.", ""]
    out += ["| model | mode | batch | clips/s | images/s | peak GiB |", "|---|---|---|---|---|---|"]
    for r in res["train"]:
        rates = f"{fmt(r['clips_per_s'])} | {fmt(r['images_per_s'], '.0f')}"
        out.append(f"| {r['model']} | {r['mode']} | {r['batch']} | {rates} | {fmt(r['peak_gib'], '.2f')} |")
    feed = res["feed"]
    out += ["", "| lrcn_resnet18 bf16, from video files | clips/s | of the compute bound |", "|---|---|---|"]
    for r in feed["e2e"]:
        flag = " (under 0.9)" if r["vs_compute"] is not None and r["vs_compute"] < 0.9 else ""
        out.append(
            f"| {r['workers']} workers | {fmt(r['clips_per_s'])} | {fmt(r['vs_compute'], '.2f')}{flag} |"
        )
    trainer = feed.get("trainer") or {}
    if trainer:
        rate, ratio = fmt(trainer["clips_per_s"]), fmt(trainer["vs_compute"], ".2f")
        out.append(f"| `vidrec train` itself, {trainer['workers']} workers | {rate} | {ratio} |")
    out += ["", "| loader alone, one core (videos at 320x240) | images/s |", "|---|---|"]
    out += [
        f"| {r['frames']} x {r['size']} px clips | {r['images_per_s']:.0f} |" for r in feed["loader_per_core"]
    ]
    out += ["", "| model, bf16 | images/s | loader cores to feed it (RGB) |", "|---|---|---|"]
    out += [
        f"| {n} | {fmt(res['bf16_images_per_s'][n], '.0f')} | {fmt(c)} |"
        for n, c in res["cores_to_feed"].items()
    ]
    out += ["", "| decoding, loader alone (LRCN clips) | clips/s | note |", "|---|---|---|"]
    out += [f"| {r['source']} | {fmt(r['clips_per_s'])} | {r['note']} |" for r in feed["decode"]]
    out += ["", "| DFF | key interval | dtype | frames/s |", "|---|---|---|---|"]
    out += [f"| {r['model']}, {r['hw'][0]}x{r['hw'][1]} | {r['interval']} | {r['dtype']} | "
            f"{fmt(r['frames_per_s'])} |" for r in res["dff"]]  # fmt: skip
    lat = res["latency"]
    if lat:
        out += ["", f"`vidrec predict --stream`, batch 1: {lat['frames_per_s']:.1f} frames/s; window latency "
                f"p50 {lat['latency_ms_p50']:.1f} ms, p95 {lat['latency_ms_p95']:.1f} ms."]  # fmt: skip
    if res["skipped"]:
        out += ["", *[f"- {line}" for line in res["skipped"]]]
    return "\n".join(out) + "\n"


def result_line(res: dict) -> str:
    best_e2e = max((r["vs_compute"] for r in res["feed"]["e2e"] if r["vs_compute"] is not None), default=None)
    dff = {(r["interval"], r["dtype"]): r["frames_per_s"] for r in res["dff"] if r["model"].startswith("seg")}
    speedup = dff[(10, "fp32")] / dff[(1, "fp32")] if {(1, "fp32"), (10, "fp32")} <= dff.keys() else None
    return (
        f"RESULT gpu lrcn_bf16_images_per_s={fmt(res['bf16_images_per_s'].get('lrcn_resnet18'), '.0f')} "
        f"e2e_vs_compute_bf16={fmt(best_e2e, '.3f')} "
        f"cores_to_feed_lrcn={fmt(res['cores_to_feed'].get('lrcn_resnet18'))} "
        f"dff_speedup_l10={fmt(speedup, '.2f')} "
        f"stream_latency_ms_p50={fmt(res['latency'].get('latency_ms_p50'))} seconds={res['seconds']:.1f}"
    )


# ----------------------------------------------------------------------------- main


def report(res: dict, write_docs: bool) -> None:
    """Print the tables (with `write_docs`, also into docs/benchmarks.md, section `gpu`), then RESULT."""
    from vidrec.benchdocs import write_section

    table = markdown(res)
    print("\n" + table)
    if write_docs:
        write_section(
            "gpu", f"## One GPU: training, feeding, DFF, stream latency (`benchmarks/gpu.py`)\n\n{table}"
        )
    print(result_line(res))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        report(json.loads(args.from_json.read_text()), args.write_docs)
        return 0
    missing = missing_requirements()
    if missing:
        print(requirements_line(missing), file=sys.stderr)
        return 2
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA device here: this measures a GPU (on a CPU, run --smoke)", file=sys.stderr)
        return 2
    import gpu_parts as P

    from vidrec.benchdocs import machine
    from vidrec.io.gpu_decode import cuda_decoding_problem

    sizes, device = (P.SMOKE, torch.device("cpu")) if args.smoke else (P.FULL, torch.device("cuda"))
    torch.backends.cudnn.benchmark = True
    if args.smoke:
        torch.set_num_threads(1)  # tiny tensors: threads only fight over a shared machine's cores
    budget = P.Budget(args.budget if args.budget is not None else math.inf if args.smoke else 420.0)
    work = args.workdir or args.out / "work"
    args.out.mkdir(parents=True, exist_ok=True)
    gpu_decoding = cuda_decoding_problem() or "available"
    res: dict = {"machine": machine(), "smoke": args.smoke, "device": str(device), "budget_s": budget.total,
                 "command": "python benchmarks/gpu.py" + (" --smoke" if args.smoke else ""),
                 "gpu_decoding": gpu_decoding}  # fmt: skip
    print(f"{res['machine']}; budget {budget.total:.0f} s; GPU decoding: {gpu_decoding}", flush=True)
    budget.begin("train")
    res["train"] = P.part_train(sizes, device, budget)
    bound = next(
        (r["clips_per_s"] for r in res["train"] if r["model"] == P.FEED_MODEL and r["mode"] == "bf16"), None
    )
    budget.begin("feed")
    res["feed"] = P.part_feed(sizes, device, budget, work, bound)
    budget.begin("dff")
    res["dff"] = P.part_dff(sizes, device, budget)
    budget.begin("latency")
    res["latency"] = P.part_latency(sizes, device, work) if budget.allows("stream", first=True) else {}
    res["skipped"], res["seconds"] = budget.skipped, time.perf_counter() - budget.start
    summarise(res, sizes)
    (args.out / "gpu.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "gpu.md").write_text(markdown(res))
    starved = [
        r["workers"] for r in res["feed"]["e2e"] if r["vs_compute"] is not None and r["vs_compute"] < 0.9
    ]
    if starved and not args.smoke:
        print(f"CHECK: end to end under 0.9 of the compute bound at {starved} workers: find what starves it")
    report(res, args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
