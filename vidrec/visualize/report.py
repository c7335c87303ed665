"""A run's evaluation report: `report.md` for people, `report.json` for scripts, `confusion.png`."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from vidrec.engine.evaluate import EvalResult
from vidrec.engine.metrics import confusion_matrix
from vidrec.visualize.plots import plot_confusion


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return "n/a" if value is None else str(value)


def _per_class_rows(result: EvalResult, class_names: list[str]) -> list[dict]:
    cm = confusion_matrix(result.probs, result.labels, len(class_names))
    return [
        {"class": name, "support": int(cm[i].sum()), "accuracy": result.metrics["per_class_acc"][i]}
        for i, name in enumerate(class_names)
    ]


def _markdown(title: str, result: EvalResult, rows: list[dict], links: dict, config: Any, extra: dict) -> str:
    m = result.metrics
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    for key in ("top1", "top5", "mean_class_acc", "loss", "nll", "num_videos", "num_skipped"):
        if key in m:
            lines.append(f"| {key} | {_fmt(m[key])} |")
    for key, value in extra.items():
        lines.append(f"| {key} | {_fmt(value)} |")
    lines += [""] + [f"![{name}]({path})" for name, path in links.items()] + [""]
    lines += ["## Per-class accuracy", "", "| class | videos | accuracy |", "|---|---|---|"]
    lines += [f"| {r['class']} | {r['support']} | {_fmt(r['accuracy'])} |" for r in rows]
    lines += ["", "## Skipped videos", ""] + ([f"- {p}" for p in result.skipped] or ["none"])
    if config is not None:
        lines += ["", "## Config", "", "```json", json.dumps(_jsonable(config), indent=2), "```"]
    return "\n".join(lines) + "\n"


def report_files(stem: str = "report") -> tuple[str, str, str]:
    """The names `write_report` writes in its folder (checked before the work by `vidrec eval`)."""
    return f"{stem}.md", f"{stem}.json", f"{stem}_confusion.png"


def write_report(
    run_dir: str | Path,
    result: EvalResult,
    *,
    class_names: list[str],
    config: Any = None,
    curves_png: str | Path | None = None,
    title: str = "vidrec evaluation report",
    extra: dict | None = None,
    stem: str = "report",
) -> Path:
    """Write `<stem>.md`, `<stem>.json` and `<stem>_confusion.png` into `run_dir`; returns the `.md` path.

    Args:
        run_dir: output folder (created).
        result: what `vidrec.engine.evaluate.evaluate` returned.
        class_names: names in label order.
        config: the run's config (dataclass or dict), copied into both files.
        curves_png: a training-curves PNG to link (e.g. from `plot_curves`).
        extra: more top-level numbers for the table and the JSON (e.g. pair accuracy).
        stem: file-name stem, to keep several reports in one folder.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cm = confusion_matrix(result.probs, result.labels, len(class_names))
    confusion = plot_confusion(cm, class_names, run_dir / f"{stem}_confusion.png", title=title)
    links = {"confusion matrix": confusion.name}
    if curves_png is not None:
        links["training curves"] = _relative(Path(curves_png), run_dir)
    rows = _per_class_rows(result, class_names)
    extra = extra or {}
    payload = {
        "title": title,
        "metrics": {k: v for k, v in result.metrics.items() if k != "per_class_acc"} | extra,
        "per_class": rows,
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
        "skipped": list(result.skipped),
        "files": links,
        "config": config,
    }
    (run_dir / f"{stem}.json").write_text(json.dumps(_jsonable(payload), indent=2))
    md = run_dir / f"{stem}.md"
    md.write_text(_markdown(title, result, rows, links, config, extra))
    return md


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
