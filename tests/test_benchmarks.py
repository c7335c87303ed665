"""Pure helpers of the benchmark scripts (the measurements themselves live in benchmarks/, not in tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_throughput_interleaves_rounds_keeps_best_and_spread():
    tt = _load("train_throughput")
    calls, rates = [], {"a": iter([10.0, 12.0, 8.0]), "b": iter([5.0, 4.0, 6.0])}

    def row(name):
        def measure():
            calls.append(name)
            return next(rates[name])

        return measure

    skipped = []
    out = tt.measure_rows(
        {"a": row("a"), "b": row("b"), "c": lambda: skipped.append(1) or "skipped: no peer"}, repeats=3
    )
    assert calls == ["a", "b", "a", "b", "a", "b"]  # rows interleaved within each round
    assert out["a"] == [10.0, 12.0, 8.0] and out["c"] == "skipped: no peer" and skipped == [1]
    best, spread = tt.best_and_spread(out["a"])
    assert best == 12.0 and spread == pytest.approx(4.0 / 12.0)
    assert tt.cores_to_feed(35600 / 8, 50.0) == pytest.approx(89.0)


def test_dff_schedules_compares_fixed_l_with_the_adaptive_curve_at_the_same_cost():
    ds = _load("dff_schedules")
    rows = [
        ("per-frame", 1, 100, (0.80, 0.0, 100)),
        ("fixed l=5", 5, 20, (0.70, 0.4, 20)),
        ("adaptive t=1", 0, 10, (0.60, 0.5, 10)),
        ("adaptive t=0.5", 0, 30, (0.78, 0.3, 30)),
    ]
    assert ds.at_cost(rows, 20) == pytest.approx(0.69)  # halfway between 10 keys (0.60) and 30 keys (0.78)
    assert ds.at_cost(rows, 40) is None and ds.at_cost(rows, 5) is None  # never extrapolated
    assert set(ds.VAL).isdisjoint(ds.TRAIN) and len(ds.VAL) + len(ds.TRAIN) == 14


def test_prernn_faces_cached_head_is_the_models_own_forward():
    """The face benchmark trains on cached features.17 maps: its head must compute what the model does on
    pixels (here PreRNN, whose recurrent layer steps in time); the cache changes the speed, not the model."""
    import torch
    from einops import rearrange

    pf = _load("prernn_faces")
    model = pf.build("prernn", 0, pretrained=False).eval()
    x = torch.randn(2, 3, 3, 32, 32)  # (B, T, C, H, W)
    with torch.no_grad():
        full = model(x).reshape(2, 3, 68, 2)
        maps = pf._net(model).features[:18](rearrange(x, "b t c h w -> (b t) c h w"))
        cached = pf.head_forward(model, rearrange(maps, "(b t) ... -> b t ...", b=2))
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_write_docs_sections_are_the_printed_numbers(tmp_path):
    """--write-docs: flow.py and decode.py turn their measured rows into a section of the benchmarks page."""
    from vidrec.benchdocs import write_section

    flow = _load("flow")
    rows = {"tvl1 (OpenCV defaults)": ([1.2, 1.0], 2e-5), "dis tuned (vidrec default)": ([1.0, 1.2], 1e-7)}
    text = flow.docs_section(rows, ["a", "b"], "python benchmarks/flow.py --data D")
    assert "`python benchmarks/flow.py --data D`" in text and "Machine: " in text
    assert "| dis tuned (vidrec default) | 1.100 | 1.00 | 19.7 | 200x |" in text  # 1e-7 s a px, 512x384
    decode = _load("decode")
    rates = {"set (2)": {"vidrec": 30.0, "pyav_full_decode": 20.0, decode.DENSE: 90.0, "torchcodec": 10.0}}
    section = decode.sets_section(rates, "TSN-8", "RESULT decode_tsn8 x=1", "python benchmarks/decode.py")
    assert "| set (2) | 30.0 | 20.0 | 90.0 | 10.0 | 1.50x |" in section  # the re-encode is no peer
    page = write_section("flow", text, tmp_path / "benchmarks.md")
    assert "<!-- begin: flow -->\n## Optical flow" in page.read_text()


@pytest.mark.parametrize("frozen", [7, 4])
def test_dff_detect_cached_stem_then_rest_is_the_feature_nets_own_forward(frozen, one_thread):
    """dff_detect trains on the cached output of the frozen MobileNetV2 blocks: the rest of the feature net
    from there must give the pyramid the whole feature net gives on pixels."""
    import torch

    from vidrec.models.detector import fcos_mobilenet_v2

    dd = _load("dff_detect")
    torch.manual_seed(0)
    net = fcos_mobilenet_v2().feature_net.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        whole = net(x)
        split = dd.rest_forward(net, dd.stem_forward(net, x, frozen), frozen)
    assert list(split) == list(whole) == ["p3", "p4", "p5"]
    assert all(torch.allclose(split[k], whole[k], atol=1e-6) for k in whole)
    assert dd.flip_boxes(torch.tensor([[10.0, 5, 30, 45]]).numpy(), 96).tolist() == [[66.0, 5.0, 86.0, 45.0]]


def test_dff_detect_prints_each_parts_cost_and_r_and_s_of_l_beside_the_measured_speed_up():
    """benchmarks/dff_detect.py: r = key / non-key from the part costs (wall time), s(l) = l / (1 + (l - 1)
    / r) in the row of each DFF model, and the per-part table with each path's total."""
    dd = _load("dff_detect")
    parts = [["key", "feature net", 2000e6, 58.0], ["key", "head", 30e6, 2.0], ["key", "postprocess", 0, 1.0],
             ["non-key", "flow", 200e6, 4.0], ["non-key", "warp", 0, 1.0], ["non-key", "head", 30e6, 2.0],
             ["non-key", "postprocess", 0, 1.0]]  # fmt: skip
    costs = {
        "learned": {
            "parts": parts,
            "totals": {"key": [2030e6, 61.0], "non-key": [230e6, 8.0]},
            "r_flops": 2030 / 230,
            "r_wall": 61.0 / 8.0,
        }
    }
    base = {"model": "per-frame", "flow": "-", "l": 1, "AP50": 0.9, "AP": 0.5, "AP75": 0.4, "fps": 10.0,
            "keys": 20, "frames": 20}  # fmt: skip
    row = {**base, "model": "DFF", "flow": "learned", "l": 10, "AP50": 0.89, "fps": 40.0, "keys": 2}
    last = dd.table([base, row], costs).splitlines()[-1].split(" | ")
    assert last[6:10] == ["40.00", "4.00x", "7.6", "4.59x"]  # measured, r wall, s(10) = 10 / (1 + 9 / 7.625)
    text = dd.cost_table(costs)
    assert "| learned | non-key | flow | 200.0 | 4.00 |" in text
    assert "| learned | non-key | **total** | **230.0** | **8.00** |" in text
    assert "| learned | r = key / non-key | | 8.8 | 7.6 |" in text


def test_dff_benchmark_calibrates_on_the_key_frames_run_would_pick_and_prints_r_and_s():
    """benchmarks/dff.py calibrates the adaptive threshold without the feature net (`key_rate`): its key
    frames must be those `DFF.run` picks; the main table's s column is 1 / (p + (1 - p) / r)."""
    import torch
    from torch import nn

    from vidrec.dff import DFF, Adaptive, FixedInterval
    from vidrec.dff.flownets import FlowNetLite

    bench = _load("dff")
    torch.manual_seed(0)
    flow_net = FlowNetLite(stride=16, width=4)
    nn.init.normal_(flow_net.predict.weight, std=0.5)
    dff = DFF(nn.Conv2d(3, 4, 16, stride=16), flow_net, nn.Conv2d(4, 2, 1)).eval()
    videos = [[torch.randn(1, 3, 48, 64) for _ in range(9)] for _ in range(2)]
    for schedule in (Adaptive(budget=2, window=4, threshold=0.3), FixedInterval(4)):
        with torch.no_grad():
            keys = [k for v in videos for _, k in dff.run(v, schedule)]
        assert bench.key_rate(dff, videos, schedule) == pytest.approx(sum(keys) / 18)
    assert 0 < sum(keys) < 18
    base = {
        "model": "per-frame",
        "flow": "-",
        "schedule": "l=1",
        "keys": 20,
        "frames": 20,
        "J": 0.5,
        "F": 0.4,
    }
    row = {**base, "model": "DFF", "flow": "learned", "schedule": "l=10", "keys": 2, "J": 0.49}
    costs = {"DFF": {"flow": "learned", "r_flops": 25.0, "r_wall": {1: 9.0}}}
    text = bench.table([{**base, "fps": {1: 10.0}}, {**row, "fps": {1: 50.0}}], costs, [1])
    last = text.splitlines()[-1].split(" | ")
    assert last[7:] == ["5.00x", "+1.0", "25.00", "7.35x", "9.00", "5.00x |"]  # speed-up, J lost, r, s, r, s
    # a bidirectional frame runs the flow, S and the warp twice: r = key / (non-key + those parts)
    costs["DFF"]["parts"] = [
        ["non-key", "flow", 40.0, {1: 2.0}],
        ["non-key", "warp", 0.0, {1: 0.5}],
        ["non-key", "task net", 10.0, {1: 0.5}],
    ]
    costs["DFF"]["totals"] = {"key": [1000.0, {1: 30.0}], "non-key": [50.0, {1: 3.0}]}
    bi = {**row, "schedule": "bidirectional l=10", "fps": {1: 40.0}}
    last = bench.table([{**base, "fps": {1: 10.0}}, bi], costs, [1]).splitlines()[-1].split(" | ")
    assert last[7:] == ["4.00x", "+1.0", "11.11", "5.52x", "5.45", "3.77x |"]
    # at n threads the speed-ups' base is the faster per-frame row: one frame at a time or side by side
    side = {**base, "schedule": bench.SIDE_BY_SIDE, "fps": {1: 10.0, 2: 16.0}}
    rows = [{**base, "fps": {1: 10.0, 2: 12.0}}, side, {**row, "fps": {1: 50.0, 2: 80.0}}]
    cols = [line.split(" | ") for line in bench.table(rows, costs, [1, 2]).splitlines()[2:]]
    assert [c[6:10] for c in cols] == [
        ["10.0", "1.00x", "12.0", "0.75x"],
        ["10.0", "1.00x", "16.0", "1.00x"],
        ["50.0", "5.00x", "80.0", "5.00x"],
    ]
    # the RESULT line's speed-ups are the table's: over the faster per-frame row at each thread count
    side["fps"] = {1: 12.5, 2: 16.0}  # side by side faster at one thread too
    more = [
        {**row, "schedule": "bidirectional l=10", "fps": {1: 50.0, 2: 64.0}, "J": 0.48},
        {**row, "schedule": "adaptive flow", "fps": {1: 25.0, 2: 32.0}},
        {**row, "model": "DFF-DIS", "flow": "dis", "fps": {1: 62.5, 2: 80.0}},
    ]
    result = bench.result_line(rows + more, costs, [1, 2], "flow")
    assert "per_frame_J=0.500 l10_J=0.490 l10_speedup=4.00 " in result
    assert "bi10_J=0.480 bi10_speedup=4.00 " in result and "bi10_speedup_2t=4.00 " in result
    assert "dis_l10_speedup=5.00 threads=1 " in result and "adaptive_J=0.490" in result


def test_dff_benchmark_frames_side_by_side_are_the_per_frame_outputs():
    import torch
    from torch import nn

    from vidrec.dff import DFF, FixedInterval
    from vidrec.dff.flownets import FlowNetLite

    bench = _load("dff")
    torch.manual_seed(0)
    dff = DFF(nn.Conv2d(3, 4, 16, stride=16), FlowNetLite(stride=16, width=4), nn.Conv2d(4, 2, 1)).eval()
    video = [torch.randn(1, 3, 48, 64) for _ in range(5)]
    with torch.no_grad():
        one = list(dff.run(iter(video), FixedInterval(1)))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        side = list(bench.FramesSideBySide(dff).run(iter(video), FixedInterval(1)))
    finally:
        torch.set_num_threads(before)
    assert [k for _, k in side] == [True] * 5
    for (a, _), (b, _) in zip(one, side, strict=True):
        torch.testing.assert_close(a, b)


def test_segment_davis_pools_disjoint_folds_only():
    sd = _load("segment_davis")
    from vidrec.engine.seg_metrics import SequenceScore

    a = [SequenceScore("goat", 0.8, 1.0, 0.6, 10), SequenceScore("camel", 0.6, 0.9, 0.5, 8)]
    b = [SequenceScore("bmx-trees", 0.4, 0.3, 0.4, 12)]
    cv = sd.pooled([a, b])
    assert [r.name for r in cv] == ["bmx-trees", "camel", "goat"]  # every held-out sequence once, sorted
    assert sd.pooled([a, b + [SequenceScore("camel", 0.1, 0.0, 0.1, 8)]]) is None  # camel scored twice
    assert sd.pooled([a]) is None  # one run is not a cross-validation


def test_segment_davis_folds_partition_the_sequences_and_train_on_the_rest():
    sd = _load("segment_davis")
    from vidrec.data.davis import ALL_SEQUENCES, CV_FOLDS, VAL_SEQUENCES

    jobs = sd.fold_commands("data/davis", "runs/x", vidrec="vidrec", overrides=("runtime.seed=1",))
    held = [s for fold in CV_FOLDS.values() for s in fold]
    assert sorted(held) == sorted(ALL_SEQUENCES)  # every sequence held out exactly once
    assert CV_FOLDS["segment_davis"] == VAL_SEQUENCES  # the fixed split is one of the folds
    for (name, cmd, run), fold in zip(jobs, CV_FOLDS.values(), strict=True):
        assert (
            str(run) == f"runs/x/{name}"
            and f"out_dir={run}" in cmd
            and cmd[-2:] == ["runtime.seed=1", "--resume"]
        )
        val = next(a for a in cmd if a.startswith("task_options.val_sequences="))
        train = next(a for a in cmd if a.startswith("task_options.train_sequences="))
        assert val == f"task_options.val_sequences=[{','.join(fold)}]"
        trained = train.split("=", 1)[1].strip("[]").split(",")
        assert sorted(trained + list(fold)) == sorted(ALL_SEQUENCES)
    assert not sd.finished(Path("runs/x/none"))  # no checkpoint: to be trained
