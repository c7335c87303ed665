"""The `vidrec` entry point describes only what vidrec has."""

from __future__ import annotations

from vidrec.cli import build_parser
from vidrec.models import list_models


def test_top_level_help_names_only_registered_model_families():
    text = build_parser().format_help()
    if "Deep Feature Flow" in text or "DFF" in text:
        from vidrec.dff import DFF, warp  # noqa: F401 - named only where it exists
    families = {"LRCN": "lrcn_", "PreRNN": "prernn_", "TSN": "tsn_", "two-stream": "two_stream_"}
    families["ST-ResNet"] = "st_resnet"
    for word, prefix in families.items():
        if word in text:
            assert any(m.startswith(prefix) for m in list_models()), word
