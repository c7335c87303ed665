"""`vidrec train CONFIG.yaml [key=value ...] [--set key=value] [--section.key value] [--resume]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidrec.engine.config import load_config
from vidrec.engine.schema import iter_fields

_NOTES = """\
Overrides (applied in this order, later ones win): positional `optim.lr=0.01`, `--set key=value`,
then the `--section.key value` options below. Values are parsed as YAML: lists `data.modalities=[rgb,flow]`,
mappings `optim.lr_mult={head: 10}`. Multi-GPU / multi-node: `torchrun --nproc_per_node N -m vidrec.cli train
CONFIG.yaml` (see the vidrec.engine.distributed docstring for --nnodes and rendezvous).
"""


class _IntermixedParser(argparse.ArgumentParser):
    """Lets `key=value` overrides follow options (`CONFIG --resume optim.lr=0.1`), which plain argparse
    refuses once the positionals were matched; `vidrec.cli` builds the subparser, so its class is swapped."""

    _intermixed = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixed:  # the inner passes of parse_known_intermixed_args
            return super().parse_known_args(args, namespace)
        self._intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixed = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.__class__ = _IntermixedParser
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _NOTES
    parser.add_argument(
        "config",
        nargs="?",
        help="YAML file with the TrainConfig sections, or a built-in config's name such as "
        "lrcn_ucf101_rgb (`vidrec configs` lists them); optional",
    )
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. optim.lr=0.01")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override (repeatable)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="PATH",
        help="continue a run: alone, from OUT_DIR/last.safetensors if present (= resume=auto); or from PATH",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    sections: dict[str, argparse._ArgumentGroup] = {}
    for name, type_name, default, text in iter_fields():
        if name == "resume":  # the --resume flag above
            continue
        section = name.split(".")[0] if "." in name else "run"
        if section not in sections:
            sections[section] = parser.add_argument_group(f"{section} options")
        sections[section].add_argument(
            f"--{name}",
            dest=f"field:{name}",
            default=None,
            metavar=_metavar(type_name),
            help=f"{text} [{type_name}; default {default!r}]".replace("%", "%%"),
        )
    _task_options_help(parser)


def _task_options_help(parser: argparse.ArgumentParser) -> None:
    """One help section per task listing its task_options (set them as task_options.NAME=VALUE)."""
    from vidrec.tasks import get_task_class, options_help, task_names

    for task in task_names():
        fields = options_help(get_task_class(task))
        lines = [f"{name} [{tp}; default {default!r}]: {text}" for name, tp, default, text in fields]
        parser.add_argument_group(
            f"task_options of task={task} (override as task_options.NAME=VALUE)",
            ("; ".join(lines) or "none").replace("%", "%%"),
        )


def _metavar(type_name: str) -> str:
    if type_name.startswith("one of "):  # "one of ['sgd', 'adamw']" -> "{sgd,adamw}"
        return "{" + ",".join(v.strip(" '") for v in type_name[8:-1].split(",")) + "}"
    return type_name.upper() if type_name.isidentifier() else type_name.upper().replace("STR", "str")


def collect_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """(YAML path or None, overrides in application order) from parsed arguments."""
    overrides = list(args.overrides) + list(args.sets)
    config = args.config
    if config and "=" in config:  # no YAML file, only overrides
        overrides.insert(0, config)
        config = None
    for key, value in vars(args).items():
        if key.startswith("field:") and value is not None:
            overrides.append(f"{key[len('field:') :]}={value}")
    resume = args.resume
    if resume is not None and "=" in resume and not Path(resume).exists():
        overrides.append(resume)  # `--resume optim.lr=0.1`: an override after a bare --resume
        resume = "auto"
    if resume is not None:
        overrides.append(f"resume={resume}")
    return config, overrides


def run(args: argparse.Namespace, *, default_config: str = "") -> int:
    """Errors propagate to `vidrec.cli.run_command` (one line, exit 2 for config errors, 1 for failures).

    `default_config`: the built-in config used when no CONFIG is given (e.g. ``vidrec dff train``)."""
    from vidrec.engine.train import train

    config, overrides = collect_overrides(args)
    cfg = load_config(config or default_config or None, overrides)
    if args.print_config:
        import yaml

        from vidrec.engine.schema import config_to_dict

        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        return 0
    if config:  # the run folder's config.yaml is rewritten with the resolved config: never the user's file
        from vidrec.cli import output_path
        from vidrec.engine.config import resolve_config

        saved = Path(cfg.out_dir) / "config.yaml"
        # --resume of a run from its own config.yaml continues that run: the file is vidrec's, rewritten
        # with the resumed config; anything else (a user's file in out_dir) is never rewritten
        own = cfg.resume and (Path(cfg.out_dir) / "last.safetensors").is_file()
        output_path(saved, "out_dir's config.yaml (the run's resolved config)", overwrite=True,
                    inputs=() if own else (resolve_config(config),))  # fmt: skip
    result = train(cfg)
    best = f", best {result.best_metric} {result.best_top1:.4f}" if result.best_top1 is not None else ""
    print(f"done: {result.epochs_done} epochs, {result.global_step} steps{best}; run folder {result.out_dir}")
    return 0
