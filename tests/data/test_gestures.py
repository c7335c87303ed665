"""Gesture trajectories (`vidrec.data.gestures`) on generated point_history rows: the same row renders
the same clip, the block split never puts overlapping windows on both sides, a clockwise row and its
counter-clockwise twin hold the same frames in opposite order (so one frame cannot tell them apart),
and ``data.format: gestures`` trains through `vidrec train`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vidrec.data.gestures import (
    GestureDataset,
    read_gesture_labels,
    read_point_history,
    render_clip,
    split_blocks,
    trajectory_pixels,
)

ENGINE_TESTS = Path(__file__).resolve().parents[1] / "engine"
if str(ENGINE_TESTS) not in sys.path:  # the test-local model module `tinyvid`
    sys.path.insert(0, str(ENGINE_TESTS))

NAMES = ["Stop", "Clockwise", "Counter Clockwise", "Move"]


def recording(cls: int, length: int, seed: int) -> np.ndarray:
    """Absolute fingertip positions `(length, 2)` (fractions of the camera image) of one class."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    if cls == 0:  # still, small tremor
        return 0.5 + rng.normal(0, 0.002, (length, 2))
    if cls in (1, 2):  # a circle; counter-clockwise runs it backwards
        angle = (1 if cls == 1 else -1) * 2 * np.pi * t / 16 + rng.uniform(0, 2 * np.pi)
        return 0.5 + np.stack([0.05 * np.cos(angle), 0.09 * np.sin(angle)], 1)
    return 0.3 + np.stack([0.01 * t, 0.004 * t], 1) % 0.4  # moving across


def windows(path: np.ndarray) -> np.ndarray:
    """Sliding 16-point windows of a path, each relative to its first point: `(n, 16, 2)`."""
    rows = np.stack([path[i : i + 16] for i in range(len(path) - 15)])
    return rows - rows[:, :1]


def write_csv(folder, rows_per_class: int = 60, seed: int = 0):
    """point_history.csv + labels.csv in `folder`, ordered by class and time like the real file;
    returns (labels, points, start time of each row within its recording)."""
    labels, points, starts = [], [], []
    for c in range(4):
        w = windows(recording(c, rows_per_class + 15, seed + c))
        labels += [c] * len(w)
        points.append(w)
        starts += list(range(len(w)))
    points = np.concatenate(points).astype(np.float32)
    lines = [",".join([str(c), *(f"{v:.6f}" for v in p.ravel())]) for c, p in zip(labels, points)]
    (folder / "point_history.csv").write_text("\n".join(lines) + "\n")
    (folder / "labels.csv").write_text("\n".join(NAMES) + "\n")
    return np.asarray(labels), points, np.asarray(starts)


def test_reading_back_and_bad_rows(tmp_path):
    labels, points, _ = write_csv(tmp_path, rows_per_class=20)
    got_labels, got_points = read_point_history(tmp_path / "point_history.csv")
    assert (got_labels == labels).all() and np.allclose(got_points, points, atol=1e-6)
    assert got_points.shape == (80, 16, 2) and read_gesture_labels(tmp_path / "labels.csv") == NAMES
    (tmp_path / "bad.csv").write_text("1,0.1,0.2\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: 3 columns"):
        read_point_history(tmp_path / "bad.csv")


def test_nan_coordinates_are_refused_naming_the_row(tmp_path):
    write_csv(tmp_path, rows_per_class=20)
    path = tmp_path / "point_history.csv"
    lines = path.read_text().splitlines()
    cells = lines[6].split(",")
    cells[5] = "nan"
    lines[6] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"point_history.csv:7: coordinate 'nan' is not a finite number"):
        read_point_history(path)
    labels, points, _ = write_csv(tmp_path, rows_per_class=20)
    points[3, 2, 1] = np.inf
    with pytest.raises(ValueError, match=r"rows \[3\] hold NaN or infinite"):
        GestureDataset((labels, points))
    with pytest.raises(ValueError, match="NaN or infinite"):
        render_clip(np.full((16, 2), np.nan, np.float32))


def test_same_row_renders_the_same_clip(tmp_path):
    write_csv(tmp_path, rows_per_class=10)
    a = GestureDataset(tmp_path / "point_history.csv", size=64, seed=3)
    b = GestureDataset(tmp_path / "point_history.csv", size=64, seed=3)
    item = a[17]
    assert item["rgb"].dtype == torch.uint8 and item["rgb"].shape == (16, 3, 64, 64)
    assert item["label"] == 1 and item["video_id"] == "point_history.csv:17"
    assert torch.equal(item["rgb"], b[17]["rgb"]) and torch.equal(item["rgb"], a[17]["rgb"])
    assert not torch.equal(item["rgb"], a[18]["rgb"])  # another row, another clip
    other_seed = GestureDataset(tmp_path / "point_history.csv", size=64, seed=4)
    assert not torch.equal(item["rgb"], other_seed[17]["rgb"])  # the background follows the seed
    # the blob is where the point says: on a plain background, frame t's brightest pixel is next to point t
    plain = GestureDataset(tmp_path / "point_history.csv", size=64, background="plain")[17]["rgb"]
    pix = trajectory_pixels(a.points[17], 64)
    for t in (0, 7, 15):
        y, x = divmod(int(plain[t, 0].argmax()), 64)
        assert abs(x - pix[t, 0]) <= 1.5 and abs(y - pix[t, 1]) <= 1.5


def test_points_form_gives_the_raw_sequence(tmp_path):
    _, points, _ = write_csv(tmp_path, rows_per_class=10)
    ds = GestureDataset(tmp_path / "point_history.csv", form="points", indices=[5, 25])
    item = ds[1]
    assert len(ds) == 2 and item["points"].shape == (16, 2) and item["label"] == 2
    assert torch.allclose(item["points"], torch.from_numpy(points[25]), atol=1e-6) and "rgb" not in item


def test_block_split_never_puts_overlapping_windows_on_both_sides(tmp_path):
    labels, _, starts = write_csv(tmp_path, rows_per_class=60)
    train, val = split_blocks(labels, val_fraction=0.25, gap=16)
    assert len(set(train) & set(val)) == 0 and len(val) == 4 * 15
    for c in range(4):
        # a window starting at s covers frames s..s+15 of its class's recording
        tr = {f for r in train[labels[train] == c] for f in range(starts[r], starts[r] + 16)}
        va = {f for r in val[labels[val] == c] for f in range(starts[r], starts[r] + 16)}
        assert tr and va and not (tr & va), f"class {c}: windows share frames {sorted(tr & va)[:3]}"
        assert np.all(np.diff(val[labels[val] == c]) == 1)  # one contiguous block
    # what the gap prevents: without it the last training window overlaps the first validation one
    train0, val0 = split_blocks(labels, val_fraction=0.25, gap=0)
    assert starts[train0[labels[train0] == 1]].max() + 16 > starts[val0[labels[val0] == 1]].min()


def test_clockwise_and_counter_clockwise_differ_but_hold_the_same_frames():
    path = recording(1, 16, seed=5)  # one clockwise circle
    cw = path - path[0]
    ccw = path[::-1] - path[-1]  # the same motion backwards, relative to its own first point
    a, b = render_clip(cw, size=64, seed=9), render_clip(ccw, size=64, seed=9)
    assert not np.array_equal(a, b)  # the clips differ ...
    assert np.array_equal(a, b[::-1])  # ... only in the order of the same frames
    frames = {f.tobytes() for f in a}
    assert frames == {f.tobytes() for f in b} and len(frames) > 8  # the blob moves
    # so any per-frame model averaged over time scores both the same
    from vidrec.data.transforms import normalize_rgb

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x = normalize_rgb(torch.from_numpy(np.stack([a, b])).permute(0, 1, 4, 2, 3))  # (2, T, 3, H, W)
    with torch.no_grad():
        per_frame = net(x.flatten(0, 1)).softmax(-1).view(2, 16, 2).mean(1)
    assert torch.allclose(per_frame[0], per_frame[1], atol=1e-6)


def test_gestures_train_through_vidrec_train(tmp_path, capsys):
    from vidrec.engine.checkpoint import load_task
    from vidrec.engine.config import load_config
    from vidrec.engine.train import train

    write_csv(tmp_path, rows_per_class=30)
    cfg = load_config(
        "gestures_single_frame",  # the built-in config, with a tiny model so the test stays fast
        [f"data.root={tmp_path}", "data.size=32", "data.batch_size=8", "data.workers=0", "data.row_stride=1",
         "model.name=tinyvid:tiny_net", "model.kwargs={}", "schedule.epochs=2", f"out_dir={tmp_path / 'run'}",
         "progress=false", "tensorboard=false", "plots=false"],
    )  # fmt: skip
    result = train(cfg)
    assert result.global_step == 2 * 4  # 4 classes x (30 - 6 val - 16 gap) rows = 32 clips / 8 per epoch
    assert 0.0 <= result.history[-1]["val_top1"] <= 1.0 and np.isfinite(result.history[-1]["train_loss"])
    _, task = load_task(tmp_path / "run" / "best.safetensors", factory="tinyvid:tiny_net")
    assert task.class_names() == NAMES
    # the benchmark scores such a checkpoint on any CSV of the format, end to end from pixels
    import importlib.util

    bench_file = Path(__file__).resolve().parents[2] / "benchmarks" / "prernn_tasks.py"
    spec = importlib.util.spec_from_file_location("bench_prernn_tasks_eval", bench_file)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    other = tmp_path / "other"
    other.mkdir()
    write_csv(other, rows_per_class=5, seed=7)
    bench.main(["gestures-eval", str(tmp_path / "run" / "best.safetensors"), str(other / "point_history.csv"),
                "--model-factory", "tinyvid:tiny_net"])  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("RESULT prernn_tasks_gestures_eval acc=") and "cw_ccw_pair_acc=" in out[-1]
    # the clips are rendered on the background the checkpoint trained on (the config's default, plain)
    assert "clips: 32x32 px, plain background (the checkpoint's data.background)" in out
    bench.main(["gestures-eval", str(tmp_path / "run" / "best.safetensors"), str(other / "point_history.csv"),
                "--model-factory", "tinyvid:tiny_net", "--background", "textured"])  # fmt: skip
    assert "clips: 32x32 px, textured background (--background)" in capsys.readouterr().out


def test_background_and_row_stride_reach_the_clips(tmp_path):
    from vidrec.data.gestures import config_datasets, stored_background
    from vidrec.engine.config import load_config
    from vidrec.engine.schema import ConfigError

    labels, _, _ = write_csv(tmp_path, rows_per_class=60)
    train_rows, val_rows = split_blocks(labels)
    train, val, _ = config_datasets(load_config("gestures_prernn_fc", [f"data.root={tmp_path}"]))
    assert train.background == val.background == "plain"  # the configs' default: the one shown to learn
    assert list(train.rows) == list(train_rows[::16]) and list(val.rows) == list(val_rows[::16])
    cfg = load_config(
        "gestures_lrcn", [f"data.root={tmp_path}", "data.background=textured", "data.row_stride=1"]
    )
    train, val, _ = config_datasets(cfg)
    assert train.background == val.background == "textured" and len(train) == len(train_rows)
    plain = GestureDataset(tmp_path / "point_history.csv", background="plain", size=32)[0]["rgb"]
    textured = GestureDataset(tmp_path / "point_history.csv", background="textured", size=32)[0]["rgb"]
    assert (plain[0, :, :4, :4] == 115).all()  # a corner of plain grey (0.45) ...
    assert not (textured[0, :, :4, :4] == 115).all()  # ... where the texture varies
    with pytest.raises(
        ConfigError, match=r"data\.background: 'checkered' is not one of \['plain', 'textured'\]"
    ):
        load_config("gestures_lrcn", [f"data.root={tmp_path}", "data.background=checkered"])
    with pytest.raises(ConfigError, match=r"data\.row_stride"):
        load_config("gestures_lrcn", [f"data.root={tmp_path}", "data.row_stride=0"])
    assert stored_background({"data": {"background": "plain"}}) == "plain"
    assert stored_background({"data": {"root": "x"}}) == "textured"  # written before the field: textured


def test_gestures_config_errors_name_the_field(tmp_path):
    from vidrec.engine.config import load_config
    from vidrec.tasks import make_task

    write_csv(tmp_path, rows_per_class=30)
    cfg = load_config("gestures_lrcn", [f"data.root={tmp_path}", "data.frames=8"])
    with pytest.raises(ValueError, match="data.frames"):
        make_task(cfg).build_model(weights=False)
    cfg = load_config("gestures_lrcn", [f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match="data.root"):
        make_task(cfg).check()


def test_a_vidrec_prernn_model_takes_gesture_batches(tmp_path):
    """The FC PreRNN (the benchmark's model) on a real batch: per-step logits, gradients into the gates."""
    from vidrec.data import collate_skip
    from vidrec.engine.evaluate import model_inputs
    from vidrec.models.outputs import classification_loss
    from vidrec.models.registry import get_model

    write_csv(tmp_path, rows_per_class=10)
    ds = GestureDataset(tmp_path / "point_history.csv", size=32, indices=[0, 15, 25, 35])
    batch = collate_skip([ds[i] for i in range(len(ds))])
    model = get_model("prernn_fc_mobilenet_v2", num_classes=4, cell="gru", freeze_trunk=True)
    x, _ = model_inputs(batch, model.modalities, "cpu")
    out = model(x)
    assert out.shape == (4, 16, 4)
    classification_loss(out, batch["label"]).backward()
    rec = model.net.features[18][2]
    assert rec.gate_bias.grad.abs().sum() > 0 and model.net.features[0][0].weight.grad is None
