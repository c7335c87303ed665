"""`vidrec.models.build`: a run's model from its config, by registry name or a user's ``module:factory``."""

from __future__ import annotations

import sys

import pytest
from torch import nn

from vidrec.engine.schema import ModelConfig
from vidrec.models.build import build_model, import_object


def _factory_module(tmp_path, monkeypatch, name: str) -> list[dict]:
    """A module `name` on sys.path whose ``make`` records its keyword arguments."""
    (tmp_path / f"{name}.py").write_text(
        "from torch import nn\nCALLS = []\n"
        "def make(num_classes, pretrained=True, width=1):\n"
        "    CALLS.append({'num_classes': num_classes, 'pretrained': pretrained, 'width': width})\n"
        "    return nn.Linear(width, num_classes)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return import_object(f"{name}:make", "test").__globals__["CALLS"]


def test_registry_name_gets_num_classes_and_kwargs():
    model = build_model(ModelConfig(name="lrcn_alexnet", kwargs={"hidden_size": 16}), num_classes=7)
    assert model.num_classes == 7
    assert model.rnn.hidden_size == 16


def test_user_factory_gets_kwargs_and_pretrained_false_without_weights(tmp_path, monkeypatch):
    calls = _factory_module(tmp_path, monkeypatch, "vidrec_test_factory")
    cfg = ModelConfig(name="vidrec_test_factory:make", kwargs={"width": 3})
    model = build_model(cfg, num_classes=4)
    assert isinstance(model, nn.Linear) and (model.in_features, model.out_features) == (3, 4)
    build_model(cfg, num_classes=4, weights=False)  # a checkpoint will hold every weight
    assert calls == [
        {"num_classes": 4, "pretrained": True, "width": 3},
        {"num_classes": 4, "pretrained": False, "width": 3},
    ]


def test_a_factory_that_cannot_be_imported_names_the_field():
    with pytest.raises(ValueError, match=r"model\.name: cannot import 'no_such_module_xyz:make'.*PYTHONPATH"):
        build_model(ModelConfig(name="no_such_module_xyz:make"), num_classes=2)
    with pytest.raises(ValueError, match=r"data\.plugin: cannot import 'os:no_such_attr'"):
        import_object("os:no_such_attr", "data.plugin")
