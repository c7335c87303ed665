"""Reading a training config: a YAML file (or a built-in config's name) plus ``dotted.key=value``
overrides, into a validated `TrainConfig` (`load_config`, `config_from_dict`).

The fields themselves, their types and help live in `vidrec.engine.schema`; this module adds what needs
the tasks: ``task`` must name a `vidrec.tasks` task and ``task_options`` must fit its options
(`validate`), and `config_help()` lists every task's options after the engine's fields.

Overrides are ``dotted.key=value`` strings whose value is parsed as YAML (``optim.lr=0.01``,
``optim.lr_mult={head: 10}``, ``data.modalities=[rgb,flow]``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from vidrec.engine.schema import ACTIONS, ConfigError, TrainConfig, build_section, check_fields, iter_fields
from vidrec.textfiles import read_text


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """A validated `TrainConfig` from a nested mapping (e.g. parsed YAML)."""
    cfg = build_section(TrainConfig, raw or {}, "")
    validate(cfg)
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.01"`` -> (["optim", "lr"], 0.01); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected dotted.key=value (e.g. optim.lr=0.01)")
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`raw` with each ``dotted.key=value`` override set (nested mappings are created)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value
    return raw


def read_yaml(path: str | Path) -> Any:
    """A YAML file parsed safely (plain data only); a syntax error raises ConfigError naming the file."""
    try:
        return yaml.safe_load(read_text(path, "config")) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(
            f"{path}: not valid YAML{line}: {getattr(err, 'problem', err)}; fix the file"
        ) from err


def builtin_configs() -> dict[str, Path]:
    """Name -> path of the configs shipped in the package (`vidrec/configs/*.yaml`)."""
    folder = Path(__file__).resolve().parents[1] / "configs"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_config(name: str | Path) -> Path:
    """A config file path, or the built-in config of that name (`lrcn_ucf101_rgb`, with or without .yaml)."""
    p = Path(name)
    if p.is_file():
        return p
    known = builtin_configs()
    stem = p.name[: -len(".yaml")] if p.name.endswith(".yaml") else p.name
    if stem in known and (p.parent == Path(".") or p.parent.as_posix().endswith("configs")):
        return known[stem]
    hint = difflib.get_close_matches(stem, list(known), n=1)
    extra = f" (did you mean {hint[0]}?)" if hint else ""
    raise FileNotFoundError(
        f"config {name} is neither a file nor a built-in config{extra}; built-in: {', '.join(known)} "
        "(`vidrec configs` lists them)"
    )


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML file or built-in config name (optional) + overrides -> validated `TrainConfig`."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = resolve_config(path)
        raw = read_yaml(p)
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(raw).__name__}")
        _no_actions(raw, p)
    return config_from_dict(apply_overrides(raw, overrides or []))


def _no_actions(raw: dict[str, Any], path: Path) -> None:
    """Drop the `ACTIONS` a file sets to their defaults (no action; what older runs stored); refuse the
    others: a file is replayed (a run's own config.yaml), an action is what one command asks for."""
    defaults = TrainConfig()
    for name in ACTIONS:
        if name in raw and raw[name] in (getattr(defaults, name), None):
            del raw[name]
    asked = [f"{name}: {raw[name]}" for name in ACTIONS if name in raw]
    if asked:
        raise ConfigError(
            f"{path} sets {', '.join(asked)}, an action of one command, not a setting of the run; remove it "
            "from the file and ask on the command line (--resume, overwrite=true)"
        )


def validate(cfg: TrainConfig) -> None:
    """`check_fields`, then the task: an unknown ``task`` or a bad ``task_options`` value names its field."""
    from vidrec.tasks import make_task  # imports torch, which listing or reading a config file does not need

    check_fields(cfg)
    make_task(cfg)


def config_help() -> str:
    """Every option as ``name (type, default X): meaning`` lines, grouped by section; each task's
    ``task_options`` last."""
    from vidrec.tasks import get_task_class, options_help, task_names

    lines, section = [], None
    for name, tp, default, text in iter_fields():
        head = name.split(".")[0] if "." in name else "run"
        if head != section:
            section = head
            lines.append(f"\n[{section}]")
        lines.append(f"  {name} ({tp}, default {default!r})\n      {text}")
    for task in task_names():
        fields = options_help(get_task_class(task))
        lines.append(f"\n[task_options with task={task}]" + ("" if fields else "\n  (none)"))
        lines += [f"  {name} ({tp}, default {default!r})\n      {text}" for name, tp, default, text in fields]
    return "\n".join(lines).lstrip("\n")
