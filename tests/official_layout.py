"""Miniature UCF101 and HMDB51 laid out exactly as the official archives unpack.

UCF101: `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` (MPEG-4 part 2 in AVI, as the real files) and
`ucfTrainTestlist/` with `classInd.txt` (1-based), `trainlistNN.txt` (`path label`, 1-based) and
`testlistNN.txt` (paths only), CRLF line endings. The class `HandstandPushups` keeps the real quirk: its
files are spelled `v_HandStandPushups_...`. HMDB51: `<class>/<name>.avi` folders and
`testTrainMulti_7030_splits/<class>_test_splitN.txt` with `name.avi 0|1|2` lines (CRLF).

Each class has its own colour and its own motion direction, so RGB and flow models can both learn it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidrec.io import write_video

UCF_CLASSES = ("ApplyEyeMakeup", "Archery", "HandstandPushups")
HMDB_CLASSES = ("brush_hair", "cartwheel", "catch")
FRAMES, HEIGHT, WIDTH = 12, 24, 32


def clip(label: int, variant: int) -> np.ndarray:
    """`(FRAMES, H, W, 3)` uint8: a class-coloured square moving in a class-specific direction."""
    frames = np.full((FRAMES, HEIGHT, WIDTH, 3), 40 + 10 * variant, np.uint8)
    colour = np.roll(np.array([220, 60, 60], np.uint8), label)
    dx, dy = ((2, 0), (0, 1), (-2, 0))[label % 3]
    for t in range(FRAMES):
        x, y = 8 + dx * t // 2 + WIDTH // 4, 6 + dy * t // 2
        frames[t, y : y + 8, x % (WIDTH - 8) : x % (WIDTH - 8) + 8] = colour
    return frames


def _crlf(path: Path, lines: list[str]) -> None:
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())


def make_ucf101(root: Path, *, groups: int = 3) -> Path:
    """Groups 1..groups-1 train and the last group tests in split 1 (one clip per group and class)."""
    videos, splits = root / "UCF-101", root / "ucfTrainTestlist"
    splits.mkdir(parents=True)
    train, test = [], []
    for label, name in enumerate(UCF_CLASSES):
        spelled = "HandStandPushups" if name == "HandstandPushups" else name
        for g in range(1, groups + 1):
            rel = f"{name}/v_{spelled}_g{g:02d}_c01.avi"
            (videos / name).mkdir(parents=True, exist_ok=True)
            write_video(videos / rel, clip(label, g), 25, codec="mpeg4")
            (test.append(rel) if g == groups else train.append(f"{rel} {label + 1}"))
    _crlf(splits / "classInd.txt", [f"{i + 1} {n}" for i, n in enumerate(UCF_CLASSES)])
    for s in (1, 2, 3):
        _crlf(splits / f"trainlist0{s}.txt", train)
        _crlf(splits / f"testlist0{s}.txt", test)
    return root


def make_hmdb51(root: Path, *, per_class: int = 3) -> Path:
    """Per class: videos 0..per_class-2 train (code 1), the last tests (2), one extra unused (0)."""
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for label, name in enumerate(HMDB_CLASSES):
        (root / name).mkdir()
        lines = []
        for i in range(per_class + 1):
            file = f"{name}_clip_{i}_f_cm_np1_le_med_{i}.avi"
            write_video(root / name / file, clip(label, i), 30, codec="mpeg4")
            code = 0 if i == per_class else (2 if i == per_class - 1 else 1)
            lines.append(f"{file} {code} ")  # the real files end lines with a space
        for s in (1, 2, 3):
            _crlf(splits / f"{name}_test_split{s}.txt", lines)
    return root
