"""Per-frame segmentation on DAVIS-2016: J mean, J recall and F mean per sequence of `vidrec train
segment_davis` checkpoints, on the sequences each run held out.

Each checkpoint is measured on its own validation sequences (its stored ``task_options.val_sequences``, or
the fixed split of `vidrec.data.davis`): every frame but each sequence's first and last, at the working size
the run trained for, logits upsampled to the native 480p masks, as the DAVIS-2016 toolkit scores
(`vidrec.tasks.segment.Segment.validate`). So what is published is what a user's checkpoint does.

Cross-validation: given several checkpoints whose runs held out disjoint sequences (folds), it also prints
one table of every held-out sequence, each scored by the run that never trained on it, and its mean
(``cv_J``): an estimate of J on unseen sequences that does not rest on one split. With runs whose held-out
sequences overlap there is no such table (a sequence would be counted twice).

Usage: python benchmarks/segment_davis.py ../shared/data/davis2016 runs/segment_davis/last.safetensors \
    [more checkpoints] [--write-docs]
       python benchmarks/segment_davis.py ../shared/data/davis2016 --train-folds runs [--write-docs]
The second trains the project's cross-validation first (`vidrec.data.davis.CV_FOLDS`: one `vidrec train
segment_davis` run per fold, on the other sequences, into runs/<fold>, two side by side at one thread each;
about 20 min on the 2-core machine; a finished run is reused, a killed one resumed), then measures the four.
Prints one table per checkpoint and its recipe; ends with ``RESULT segment_davis ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vidrec.benchdocs import command, machine, write_section
from vidrec.engine.checkpoint import load_checkpoint, load_task
from vidrec.engine.seg_metrics import SequenceScore, format_sequence_table

SECTION = "segment_davis"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("root", help="a DAVIS-layout folder (JPEGImages/480p, Annotations/480p)")
    p.add_argument("checkpoints", nargs="*", help="segment-task checkpoints (per-frame models)")
    p.add_argument(
        "--train-folds",
        metavar="RUNS",
        default=None,
        help="train (or reuse) a run per fold of vidrec.data.davis.CV_FOLDS in RUNS/<fold>, then measure",
    )
    p.add_argument("--parallel", type=int, default=2, help="--train-folds: runs side by side (default 2)")
    p.add_argument(
        "--train-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--train-folds: a config override for every fold's run (repeatable), e.g. runtime.seed=1",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument(
        "--stride", type=int, default=1, help="score every n-th scored frame (default 1: all of them)"
    )
    p.add_argument(
        "--foreground-bias",
        type=float,
        default=None,
        metavar="B",
        help="added to the foreground logits in eval (default: each checkpoint's model.kwargs value)",
    )
    p.add_argument("--write-docs", action="store_true", help=f"write section {SECTION} of docs/benchmarks.md")
    args = p.parse_args(argv)
    if not args.checkpoints and not args.train_folds:
        p.error("give checkpoints to measure, or --train-folds RUNS")
    return args


def fold_commands(
    root: str, runs: str, vidrec: str = "vidrec", overrides: tuple[str, ...] = ()
) -> list[tuple[str, list[str], Path]]:
    """(fold, `vidrec train` command, run folder) for every fold of `CV_FOLDS`: trained on the other
    sequences of the 14, its fold held out, with `overrides` (KEY=VALUE) last; ``--resume`` continues a
    killed run (or starts a new one)."""
    from vidrec.data.davis import ALL_SEQUENCES, CV_FOLDS

    out = []
    for name, held in CV_FOLDS.items():
        train = [s for s in ALL_SEQUENCES if s not in held]
        run = Path(runs) / name
        cmd = [
            vidrec, "train", "segment_davis", f"data.root={root}",
            f"task_options.train_sequences=[{','.join(train)}]",
            f"task_options.val_sequences=[{','.join(held)}]",
            f"out_dir={run}", "progress=false", "runtime.threads=1", *overrides, "--resume",
        ]  # fmt: skip
        out.append((name, cmd, run))
    return out


def finished(run: Path) -> bool:
    """Whether `run` holds a last checkpoint at its configured last epoch."""
    last = run / "last.safetensors"
    if not last.is_file():
        return False
    ckpt = load_checkpoint(str(last))
    return ckpt.epoch >= int(ckpt.config.get("schedule", {}).get("epochs", 0))


def train_folds(root: str, runs: str, parallel: int = 2, overrides: tuple[str, ...] = ()) -> list[str]:
    """Train the runs of `fold_commands` that are not `finished`, `parallel` at a time (each logging to
    RUNS/<fold>.log); their last checkpoints."""
    vidrec = shutil.which("vidrec") or str(Path(sys.executable).with_name("vidrec"))
    todo = [job for job in fold_commands(root, runs, vidrec, overrides) if not finished(job[2])]
    Path(runs).mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), max(parallel, 1)):
        procs = []
        for name, cmd, run in todo[start : start + max(parallel, 1)]:
            log = Path(runs) / f"{name}.log"
            print(f"training {name} -> {run} (log {log})", flush=True)
            env = dict(os.environ, OMP_NUM_THREADS="1")
            out = log.open("w")
            procs.append(
                (name, log, out, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env))
            )
        for name, log, out, proc in procs:
            code = proc.wait()
            out.close()
            if code != 0:
                raise SystemExit(f"training fold {name} failed; see {log} (rerun to resume it)")
    return [str(run / "last.safetensors") for _, _, run in fold_commands(root, runs)]


def pooled(folds: list[list[SequenceScore]]) -> list[SequenceScore] | None:
    """Every run's held-out sequences in one list sorted by name (a cross-validation's table), or None when
    fewer than two runs are given or two runs scored the same sequence."""
    if len(folds) < 2:
        return None
    rows = [r for fold in folds for r in fold]
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        return None
    return sorted(rows, key=lambda r: r.name)


def measure(path: str, root: str, stride: int = 1, foreground_bias: float | None = None) -> dict:
    """The per-sequence table of one checkpoint on its validation sequences, and its recipe (with
    `foreground_bias` in place of the checkpoint's when given)."""
    model, task = load_task(path)
    if foreground_bias is not None:
        model.foreground_bias = float(foreground_bias)
    task.cfg.data.root = root
    task.options.val_stride = stride
    _, val = task.datasets(model)
    if val is None:
        raise SystemExit(f"{path}: its run had no validation sequences (task_options.val_sequences: [none])")
    loader = DataLoader(val, batch_size=4, collate_fn=task.collate())
    start = time.perf_counter()
    scores = task.validate(model, loader, device=torch.device("cpu"), amp=False, progress=False)
    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    run = Path(path).resolve().parent  # the run folder: config.yaml is written first, last.safetensors last
    first, last = run / "config.yaml", run / "last.safetensors"
    wall = last.stat().st_mtime - first.stat().st_mtime if first.is_file() and last.is_file() else None
    train_names = ", ".join(task.options.train_sequences) or "the fixed training split"
    return {
        "checkpoint": str(path),
        "J": scores["val_J"],
        "F": scores["val_F"],
        "table": format_sequence_table(task.sequence_table),
        "sequences": list(task.sequence_table),
        "seconds": time.perf_counter() - start,
        "epoch": ckpt.epoch,
        "train_minutes": None if wall is None else round(wall / 60, 1),
        "recipe": {
            "task_options": cfg.get("task_options", {}),
            "model": cfg.get("model", {}),
            "optim": {k: cfg.get("optim", {}).get(k) for k in ("name", "lr", "weight_decay", "lr_mult")},
            "schedule": {k: cfg.get("schedule", {}).get(k) for k in ("name", "epochs", "warmup_iters")},
            "batch_size": cfg.get("data", {}).get("batch_size"),
            "foreground_bias (eval)": getattr(model, "foreground_bias", 0.0),
        },
        "train_sequences": train_names,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoints = list(args.checkpoints)
    if args.train_folds:
        checkpoints += train_folds(args.root, args.train_folds, args.parallel, tuple(args.train_set))
    rows = [measure(p, args.root, args.stride, args.foreground_bias) for p in checkpoints]
    load = os.getloadavg()[0]
    parts = []
    for r in rows:
        text = (
            f"**{r['checkpoint']}** (epoch {r['epoch']}, training wall time {r['train_minutes']} min; "
            f"trained on {r['train_sequences']})\n\n"
            f"{r['table']}\n\nrecipe: `{json.dumps(r['recipe'])}`\n"
        )
        print(text, flush=True)
        parts.append(text)
    result = "RESULT segment_davis " + " ".join(
        f"run{i}_J={r['J']:.3f} run{i}_F={r['F']:.3f}" for i, r in enumerate(rows)
    )
    cv = pooled([r["sequences"] for r in rows])
    if cv is not None:
        j, f = (sum(getattr(r, k) for r in cv) / len(cv) for k in ("J", "F"))
        text = (
            f"**Cross-validated** ({len(rows)} runs, {len(cv)} held-out sequences, each scored by the run "
            f"that never trained on it; means over sequences):\n\n{format_sequence_table(cv)}\n"
        )
        print(text, flush=True)
        parts.append(text)
        result += f" cv_J={j:.3f} cv_F={f:.3f} cv_sequences={len(cv)}"
    print(result)
    if args.write_docs:
        body = (
            "## Per-frame segmentation on DAVIS-2016 (`benchmarks/segment_davis.py`)\n\n"
            f"`{command(argv)}`: J mean, J recall (frames with J > 0.5) and F mean per held-out sequence of "
            "`vidrec train segment_davis` checkpoints, scored as the DAVIS-2016 toolkit scores (native 480p "
            f"masks, first and last frame of each sequence left out; `--stride {args.stride}` over those "
            "frames).\n\n"
            + "\n".join(parts)
            + f"\n`{result}`. Machine: {machine()}; load average {load:.1f} while measuring.\n"
        )
        print(f"wrote section {SECTION} of {write_section(SECTION, body)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
