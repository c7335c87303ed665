"""Synthetic temporal-order dataset: real decodable files, the time-reversal pair property, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from vidrec.cli import main as cli_main
from vidrec.data.records import read_list_file
from vidrec.data.synthetic import CLASSES, PAIRS, make_clip, make_synthetic_dataset, render_motion
from vidrec.io import probe, read_frames

FRAMES, SIZE = 12, 32  # as in conftest.synth_root


def test_layout_and_list_files(synth_root):
    names = (synth_root / "classes.txt").read_text().split()
    assert names == list(CLASSES)
    train, train_names = read_list_file(synth_root / "train.txt")
    test, _ = read_list_file(synth_root / "test.txt")
    assert train_names == names
    assert len(train) == len(test) == len(CLASSES)  # 2 per class: one train, one test
    assert {r.label for r in test} == set(range(len(CLASSES)))
    for r in train + test:
        assert r.video_id.split("/")[0] == CLASSES[r.label]


def test_files_decode_to_the_rendered_clips(synth_root):
    for line in (synth_root / "train.txt").read_text().splitlines()[:3]:
        rel, label = line.split()
        meta = probe(synth_root / rel)
        assert (meta.num_frames, meta.height, meta.width, meta.codec) == (FRAMES, SIZE, SIZE, "h264")
        index = int(rel.rsplit("_", 1)[1].split(".")[0])
        expected = make_clip(
            CLASSES[int(label)], np.random.default_rng([3, int(label), index]), frames=FRAMES, size=SIZE
        )
        decoded = read_frames(synth_root / rel, range(FRAMES))
        assert np.abs(decoded.astype(int) - expected).mean() < 8  # lossy H.264 at crf 18


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_second_class_is_exact_time_reversal(a, b):
    for seed in range(3):
        fwd = make_clip(a, np.random.default_rng(seed), frames=10, size=32)
        back = make_clip(b, np.random.default_rng(seed), frames=10, size=32)
        np.testing.assert_array_equal(back, fwd[::-1])
        assert not np.array_equal(fwd, fwd[::-1])  # something moves


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_single_frame_statistics_do_not_separate_a_pair(a, b):
    """At every position t, per-frame pixel statistics of class a and class b clips (independent draws)
    agree within sampling noise: mean, contrast, and the share of pixels far from the median colour."""
    n, frames, size = 150, 6, 32

    def stats(name: str, seed: int) -> np.ndarray:  # (n, T, 3)
        out = []
        for i in range(n):
            clip = make_clip(name, np.random.default_rng([seed, i]), frames=frames, size=size)
            clip = clip.astype(np.float64)  # (T, H, W, 3)
            median = np.median(clip.reshape(frames, -1, 3), axis=1)[:, None, None, :]
            shape_share = (np.abs(clip - median).max(-1) > 60).mean((1, 2))
            out.append(np.stack([clip.mean((1, 2, 3)), clip.std((1, 2, 3)), shape_share], axis=1))
        return np.stack(out)

    sa, sb = stats(a, 1), stats(b, 2)
    se = np.sqrt(sa.var(0) / n + sb.var(0) / n)  # (T, 4)
    assert np.all(np.abs(sa.mean(0) - sb.mean(0)) < 4.5 * se)


def test_frame_at_fixed_position_has_the_same_distribution_for_grow_and_shrink():
    """Sawtooth size with a uniform phase: frame 0 of a shrink clip (= the last frame of a grow clip) has
    the same distribution as frame 0 of a grow clip; measured by the total deviation from the mean colour."""
    grow = [render_motion("grow", np.random.default_rng([5, i]), frames=8, size=32) for i in range(200)]
    first = np.array([(np.abs(c[0].astype(int) - c[0].astype(int).mean((0, 1))).sum()) for c in grow])
    last = np.array([(np.abs(c[-1].astype(int) - c[-1].astype(int).mean((0, 1))).sum()) for c in grow])
    se = np.sqrt(first.var() / 200 + last.var() / 200)
    assert abs(first.mean() - last.mean()) < 4.5 * se  # frame 0 of shrink = frame T-1 of grow


def test_deterministic_and_idempotent(tmp_path):
    a = make_synthetic_dataset(
        tmp_path / "a", per_class=1, frames=6, size=32, seed=7, classes=["grow", "shrink"], progress=False
    )
    b = make_synthetic_dataset(
        tmp_path / "b", per_class=1, frames=6, size=32, seed=7, classes=["grow", "shrink"], progress=False
    )
    for rel in ("grow/grow_0000.mp4", "shrink/shrink_0000.mp4"):
        np.testing.assert_array_equal(read_frames(a / rel, range(6)), read_frames(b / rel, range(6)))
    mtime = (a / "grow/grow_0000.mp4").stat().st_mtime_ns
    make_synthetic_dataset(
        a, per_class=1, frames=6, size=32, seed=7, classes=["grow", "shrink"], progress=False
    )
    assert (a / "grow/grow_0000.mp4").stat().st_mtime_ns == mtime
    other = make_clip("grow", np.random.default_rng([8, CLASSES.index("grow"), 0]), frames=6, size=32)
    assert not np.array_equal(
        other, make_clip("grow", np.random.default_rng([7, CLASSES.index("grow"), 0]), frames=6, size=32)
    )
    with pytest.raises(ValueError, match="already holds"):
        make_synthetic_dataset(a, per_class=1, frames=8, size=32, seed=7, progress=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown synthetic class"):
        make_clip("spin", np.random.default_rng(0))
    with pytest.raises(ValueError, match="even size"):
        make_synthetic_dataset("/nonexistent/never", size=33)


def test_cli(tmp_path, capsys):
    assert (
        cli_main(
            [
                "synth",
                "--out",
                str(tmp_path),
                "--per-class",
                "2",
                "--frames",
                "4",
                "--size",
                "16",
                "--classes",
                "orbit_cw",
                "orbit_ccw",
            ]
        )
        == 0
    )
    assert "2 train + 2 test" in capsys.readouterr().out
    assert len(list(tmp_path.glob("*/*.mp4"))) == 4
