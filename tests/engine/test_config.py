"""TrainConfig: YAML + overrides, validation messages that name the field, help text, LR schedules, groups."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

from vidrec.cli import build_parser
from vidrec.engine.cli_train import collect_overrides
from vidrec.engine.config import load_config
from vidrec.engine.optim import build_optimizer, lr_factor, param_groups
from vidrec.engine.schema import ConfigError, TrainConfig, iter_fields

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the test-local plug-in module `tinyvid`, whatever pytest's import mode
    sys.path.insert(0, str(HERE))
TinyNet = importlib.import_module("tinyvid").TinyNet


BASE = ["data.train_list=train.txt"]


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {train_list: a.txt, batch_size: 4}\noptim: {name: adamw, lr: 0.1}\n")
    cfg = load_config(path, ["optim.lr=0.01", "optim.lr_mult={head: 10}", "data.modalities=[rgb, flow]"])
    assert isinstance(cfg, TrainConfig)
    assert (cfg.optim.name, cfg.optim.lr, cfg.data.batch_size) == ("adamw", 0.01, 4)
    assert cfg.optim.lr_mult == {"head": 10.0} and cfg.data.modalities == ["rgb", "flow"]
    assert cfg.schedule == TrainConfig().schedule  # untouched sections keep their defaults


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.name=sgdd", "optim.name: 'sgdd' is not one of ['sgd', 'adamw']"),
        ("optim.lrr=0.1", "optim.lrr: unknown key"),
        ("data.batch_size=eight", "data.batch_size: expected int"),
        ("optim.lr=-1", "optim.lr: must be > 0"),
        ("schedule.milestones=[3, 1]", "schedule.milestones: must be increasing"),
        ("optim.lr_mult={head: fast}", "optim.lr_mult.head: expected float"),
        ("runtime.amp=fp8", "runtime.amp: 'fp8' is not one of ['auto', 'off', 'bf16']"),
    ],
)
def test_bad_values_name_the_field(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [*BASE, override])
    assert expected in str(err.value)


def test_missing_train_list_is_reported():
    with pytest.raises(ConfigError, match="data.train_list: required"):
        load_config(None, [])


def test_cli_override_spellings_agree():
    parser = build_parser("train")
    a = parser.parse_args(["train", "data.train_list=t.txt", "optim.lr=0.5", "--set", "schedule.epochs=3"])
    b = parser.parse_args(
        ["train", "--data.train_list", "t.txt", "--optim.lr", "0.5", "--schedule.epochs", "3"]
    )
    c = parser.parse_args(
        ["train", "--schedule.epochs", "3", "data.train_list=t.txt", "--set", "optim.lr=0.5"]
    )
    cfgs = [load_config(*collect_overrides(args)) for args in (a, b, c)]
    assert cfgs[0] == cfgs[1] == cfgs[2] and cfgs[0].optim.lr == 0.5 and cfgs[0].schedule.epochs == 3


def test_help_lists_every_field_with_type_and_default():
    text = build_parser("train")._subparsers._group_actions[0].choices["train"].format_help()
    fields = list(iter_fields())
    assert len(fields) > 40
    for name, _type, _default, meaning in fields:
        assert meaning, f"{name} has no help text"
        if name != "resume":
            assert f"--{name}" in text, name
    assert "one of ['sgd', 'adamw']" in " ".join(text.split())


def test_schedules_and_warmup():
    cfg = load_config(
        None,
        [
            *BASE,
            "schedule.name=multistep",
            "schedule.milestones=[2, 4]",
            "schedule.epochs=6",
            "schedule.warmup_iters=10",
            "schedule.warmup_start=0.1",
        ],
    )
    s = cfg.schedule
    assert lr_factor(0, s, 10) == pytest.approx(0.1)
    assert lr_factor(5, s, 10) == pytest.approx(0.55)  # linear warm-up, per iteration
    assert lr_factor(19, s, 10) == 1.0 and lr_factor(20, s, 10) == pytest.approx(0.1)
    assert lr_factor(45, s, 10) == pytest.approx(0.01)
    step = load_config(
        None, [*BASE, "schedule.name=step", "schedule.unit=iter", "schedule.step_size=3"]
    ).schedule
    assert [lr_factor(i, step, 100) for i in (2, 3, 6)] == pytest.approx([1, 0.1, 0.01])
    cos = load_config(
        None, [*BASE, "schedule.name=cosine", "schedule.epochs=2", "schedule.min_lr_factor=0.1"]
    )
    assert lr_factor(0, cos.schedule, 5) == 1.0 and lr_factor(10, cos.schedule, 5) == pytest.approx(0.1)
    assert lr_factor(5, cos.schedule, 5) == pytest.approx(0.55)
    assert math.isclose(lr_factor(3, cos.schedule, 5), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.3)))


def test_param_groups_from_model_and_from_prefixes():
    model = TinyNet(4)
    cfg = load_config(None, [*BASE, "optim.lr=0.01"]).optim
    lrs = sorted(g["lr"] for g in param_groups(model, cfg))
    assert lrs == pytest.approx([0.01, 0.1, 0.2])  # the model's param_groups (head x10 weight, x20 bias)
    cfg = load_config(None, [*BASE, "optim.lr=0.01", "optim.lr_mult={head: 5}", "optim.name=adamw"]).optim
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    by_lr = {g["lr"]: sum(p.numel() for p in g["params"]) for g in opt.param_groups}
    assert by_lr == {0.01: 3 * 16 + 16, 0.05: 16 * 4 + 4}
    bad = load_config(None, [*BASE, "optim.lr_mult={neck: 2}"]).optim
    with pytest.raises(ValueError, match=r"optim.lr_mult: prefixes \['neck'\]"):
        param_groups(model, bad)


def test_adamw_is_fused_on_the_cpu_and_makes_the_default_update():
    cfg = load_config(
        None,
        [*BASE, "optim.name=adamw", "optim.lr=0.01", "optim.weight_decay=0.1", "optim.model_groups=false"],
    ).optim
    models = [TinyNet(num_classes=4) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    fused = build_optimizer(models[0], cfg)
    plain = torch.optim.AdamW(models[1].parameters(), lr=0.01, weight_decay=0.1)
    assert fused.defaults["fused"] is True  # one kernel per step, not one per tensor and operation
    for _ in range(3):
        for model, opt in ((models[0], fused), (models[1], plain)):
            torch.manual_seed(0)
            model(torch.randn(2, 3, 3, 8, 8)).square().mean().backward()
            opt.step()
            opt.zero_grad()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[2] / "vidrec" / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_example_configs_are_valid(path):
    cfg = load_config(path)
    listed = cfg.task == "classify" and cfg.data.format == "list"  # other tasks read a root folder
    source = cfg.data.train_list if listed else cfg.data.root or cfg.task_options.get("root")
    assert source and cfg.model.name


def test_cli_reports_a_bad_value_and_exits_2(capsys):
    from vidrec.cli import main

    assert main(["train", "data.train_list=t.txt", "--optim.name", "sgdd"]) == 2
    assert "optim.name: 'sgdd' is not one of ['sgd', 'adamw']" in capsys.readouterr().err


def test_stride_range_and_st_resnet_crops(tmp_path):
    """ST-ResNet (methods.md 3.3): a random temporal stride in 5..15 per training clip from the config."""
    import numpy as np

    from vidrec.tasks.classify import list_datasets

    cfg = load_config(None, [f"data.train_list={tmp_path / 't.txt'}", "data.stride=[5, 15]", "data.frames=5"])
    assert cfg.data.stride == [5, 15]
    train_ds, _ = list_datasets(cfg, ([], [], ["a"]), ("rgb",))
    steps = {np.diff(train_ds.sampler(200, np.random.default_rng(s))[0].indices)[0] for s in range(60)}
    assert steps == set(range(5, 16))
    with pytest.raises(ConfigError, match="data.stride"):
        load_config(None, [f"data.train_list={tmp_path / 't.txt'}", "data.stride=[15, 5]"])
    for kind in ("multiscale", "corners"):
        cfg = load_config(None, [f"data.train_list={tmp_path / 't.txt'}", f"data.augment={kind}"])
        assert type(list_datasets(cfg, ([], None, ["a"]), ("rgb",))[0].transform.transforms[0]).__name__ in (
            "MultiScaleCornerCrop",
            "OuterCornerCrop",
        )


def test_init_from_paths_are_checked_first(tmp_path):
    from vidrec.tasks.classify import check_paths

    cfg = load_config(
        None, [f"data.train_list={tmp_path}", f"model.init_from={{motion: {tmp_path / 'no.pt'}}}"]
    )
    with pytest.raises(FileNotFoundError, match="model.init_from.motion"):
        check_paths(cfg)
