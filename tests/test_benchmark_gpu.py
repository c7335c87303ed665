"""benchmarks/gpu.py: its smoke run (every part's code on the CPU, tiny) and its requirements check."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
RESULT = re.compile(
    r"^RESULT gpu lrcn_bf16_images_per_s=\S+ e2e_vs_compute_bf16=[\d.]+ cores_to_feed_lrcn=[\d.]+ "
    r"dff_speedup_l10=[\d.]+ stream_latency_ms_p50=[\d.]+ seconds=[\d.]+$"
)


def _load_gpu(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ first: undone after
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_smoke_runs_every_part_and_writes_json_table_and_result(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert RESULT.match(lines[-1]), lines[-1]
    res = json.loads((out / "gpu.json").read_text())
    assert {"machine", "train", "feed", "dff", "latency", "skipped", "seconds", "gpu_decoding"} <= res.keys()
    assert {"bf16_images_per_s", "cores_to_feed"} <= res.keys()
    first = res["train"][0]
    assert (first["model"], first["mode"]) == ("lrcn_resnet18", "fp32") and first["clips_per_s"] > 0
    assert {r["model"] for r in res["train"]} >= {"lrcn_resnet18"} and res["device"] == "cpu"
    assert res["feed"]["e2e"][0]["workers"] == 1 and res["feed"]["e2e"][0]["clips_per_s"] > 0
    assert res["dff"][0]["interval"] == 1 and res["dff"][0]["frames_per_s"] > 0
    assert res["latency"]["latency_ms_p50"] > 0 and res["latency"]["frames"] == 20
    assert "torch.cuda is not available" in res["gpu_decoding"]  # said in one line, and the run went on
    table = (out / "gpu.md").read_text()
    assert "| lrcn_resnet18 | fp32 | 2 |" in table and "vidrec predict --stream" in table
    assert "no detect task" in run.stdout or "detection" in table

    # a GPU machine's docs do not come back: its gpu.json is turned into the docs' section here
    import vidrec.benchdocs

    written = {}
    monkeypatch.setattr(vidrec.benchdocs, "write_section", lambda name, body: written.update({name: body}))
    assert _load_gpu(monkeypatch).main(["--from-json", str(out / "gpu.json"), "--write-docs"]) == 0
    assert table in written["gpu"] and capsys.readouterr().out.strip().splitlines()[-1] == lines[-1]


def test_a_part_past_its_share_runs_its_first_row_and_skips_the_rest_with_a_line(monkeypatch, capsys):
    _load_gpu(monkeypatch)  # puts benchmarks/ on the (restored) path
    spec = importlib.util.spec_from_file_location("bench_gpu_parts", BENCH / "gpu_parts.py")
    parts = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_gpu_parts", parts)  # its dataclasses look their module up
    spec.loader.exec_module(parts)
    budget = parts.Budget(0.0)
    budget.begin("feed")
    assert budget.allows("e2e 1 workers", first=True)  # every part's code runs once
    assert not budget.allows("e2e 4 workers")
    assert budget.skipped == ["skipped feed/e2e 4 workers: 0 s left of the part's 0 s"]
    roomy = parts.Budget(1000.0)
    roomy.begin("train")  # 450 s for the part
    assert roomy.allows("lrcn bf16") and not roomy.allows("lrcn bf16+compile", need=500.0)
    assert (
        "(it needs 500 s)" in roomy.skipped[0]
        and "skipped train/lrcn bf16+compile" in capsys.readouterr().out
    )


def test_missing_requirements_are_named_in_one_line_with_how_to_carry_them(monkeypatch):
    gpu = _load_gpu(monkeypatch)
    missing = gpu.missing_requirements({"json": "json", "vidrec_no_such_module": "no-such-wheel"})
    assert missing == ["no-such-wheel"]
    line = gpu.requirements_line(["av", "einops"])
    assert "\n" not in line and line.startswith("missing: av einops")
    assert "pip download" in line and "-d .whl av einops" in line and "--no-index" in line
    assert set(gpu.REQUIRED) >= {"torch", "torchvision", "cv2", "av", "einops", "safetensors"}


def test_gpu_run_without_a_gpu_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    import torch

    gpu = _load_gpu(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0] and "--smoke" in err[0]
    monkeypatch.setattr(gpu, "REQUIRED", {**gpu.REQUIRED, "vidrec_no_such_module": "no-such-wheel"})
    monkeypatch.setattr(gpu.missing_requirements, "__defaults__", (gpu.REQUIRED,))
    assert gpu.main(["--smoke", "--out", str(tmp_path)]) == 2  # checked first, before any measuring
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("missing: no-such-wheel")
