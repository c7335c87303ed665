"""A miniature world for the documentation's shell blocks (tests/test_doc_blocks.py).

`make_world(root)` lays out ``root/checkout`` (the folder the blocks run in, like a clone of vidrec),
``root/shared/data`` (so ``../shared/data/...`` in a block reads miniature data of the real layouts) and
``root/home/Downloads`` (the official UCF101 / HMDB51 archives). Every data set is generated and tiny:

- ``Downloads/UCF101.rar``, ``UCF101TrainTestSplits-RecognitionTask.zip``, ``hmdb51_org.rar`` (one
  ``.rar`` per class inside, as the real one) and ``test_train_splits.rar``: the official layouts of
  tests/official_layout.py. The ``.rar`` files are zip archives; the test puts an ``unrar`` on the PATH
  that unpacks them (``unrar x FILE`` -> ``python -m zipfile -e FILE .``).
- ``shared/data/hand_gesture``: ``point_history.csv`` + ``labels.csv`` (4 gestures, 16 points a row);
- ``shared/data/davis2016``: the 14 named DAVIS-2016 sequences, JPEG frames and PNG masks;
- ``shared/data/flickr8k_captions``: ``images/`` + ``captions.csv``; ``shared/data/msrvtt_sample``:
  ``videos/`` + ``captions.json`` + ``split.json``;
- ``shared/data/faces_video``: talking-face-like videos with ``<stem>.landmarks.json``;
- ``shared/data/clips``: a few short videos;
- in the checkout: ``clip.mp4``, ``video.mp4``, ``photo.jpg``, ``other.png``, ``talk.mp4`` and ``videos/``,
  the file names the blocks use for "a video of yours". ``data/UCF101`` and ``data/HMDB51`` are made by
  the blocks that unpack the downloads; the other files find them unpacked (`unpack_official`).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
from official_layout import HEIGHT, WIDTH, clip, make_hmdb51, make_ucf101
from PIL import Image

from vidrec.data.davis import ALL_SEQUENCES
from vidrec.io import write_video

TESTS = Path(__file__).resolve().parent
GESTURES = ("Stop", "Clockwise", "Counter Clockwise", "Move")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _zip(archive: Path, folder: Path, names: list[str]) -> None:
    """Zip `folder/name` (files or trees) into `archive` with paths relative to `folder`."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for name in names:
            top = folder / name
            for path in [top, *sorted(top.rglob("*"))] if top.is_dir() else [top]:
                zf.write(path, path.relative_to(folder).as_posix())


def official_archives(downloads: Path, scratch: Path) -> None:
    """The four official downloads, as they unpack (UCF101 and its splits, HMDB51 and its splits)."""
    ucf = make_ucf101(scratch / "ucf")
    _zip(downloads / "UCF101.rar", ucf, ["UCF-101"])
    _zip(downloads / "UCF101TrainTestSplits-RecognitionTask.zip", ucf, ["ucfTrainTestlist"])
    hmdb = make_hmdb51(scratch / "hmdb")
    classes = sorted(p.name for p in hmdb.iterdir() if p.is_dir() and p.name != "testTrainMulti_7030_splits")
    for name in classes:  # hmdb51_org.rar holds one .rar per class
        _zip(scratch / "hmdb_rars" / f"{name}.rar", hmdb, [name])
    _zip(downloads / "hmdb51_org.rar", scratch / "hmdb_rars", [f"{n}.rar" for n in classes])
    _zip(downloads / "test_train_splits.rar", hmdb, ["testTrainMulti_7030_splits"])


def unpack_official(data: Path) -> None:
    """`data/UCF101` and `data/HMDB51` as the README's block leaves them (for the guides)."""
    make_ucf101(data / "UCF101")
    make_hmdb51(data / "HMDB51")


def gestures(folder: Path, rows_per_class: int = 48) -> None:
    """point_history.csv (class id, 16 points relative to the first) + labels.csv, ordered by class."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for c in range(len(GESTURES)):
        t = np.arange(rows_per_class + 15, dtype=np.float64)
        if c in (1, 2):
            angle = (1 if c == 1 else -1) * 2 * np.pi * t / 16
            path = 0.5 + np.stack([0.05 * np.cos(angle), 0.09 * np.sin(angle)], 1)
        else:
            path = 0.5 + (c == 3) * np.stack([0.01 * t, 0.004 * t], 1) + rng.normal(0, 0.002, (len(t), 2))
        for i in range(rows_per_class):
            window = path[i : i + 16] - path[i]
            lines.append(",".join([str(c), *(f"{v:.6f}" for v in window.ravel())]))
    (folder / "point_history.csv").write_text("\n".join(lines) + "\n")
    (folder / "labels.csv").write_text("\n".join(GESTURES) + "\n")


def davis(root: Path, frames: int = 6) -> None:
    """The 14 sequences of ../shared/data/davis2016 by name, `frames` 48x64 frames each."""
    write_sequence = _module(TESTS / "segment" / "davis_helpers.py").write_sequence
    for i, name in enumerate(ALL_SEQUENCES):
        write_sequence(root, name, frames, seed=i)


def _square(colour: str, size: int = 40) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[8:32, 8:32] = COLOURS[colour]
    return img


def captions(images: Path, videos: Path) -> None:
    """flickr8k_captions (images/ + captions.csv) and msrvtt_sample (videos/ + captions.json + split.json)."""
    (images / "images").mkdir(parents=True)
    with (images / "captions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption"])
        for i, colour in enumerate([*COLOURS, "red", "blue"]):
            Image.fromarray(_square(colour)).save(images / "images" / f"img{i}.jpg")
            w.writerow([f"img{i}.jpg", f"A {colour} square ."])
            w.writerow([f"img{i}.jpg", f"a {colour} box on black"])
    (videos / "videos").mkdir(parents=True)
    sentences = {}
    for i, colour in enumerate(["red", "green", "blue", "yellow"]):
        frames = np.stack([np.roll(_square(colour, 48), 2 * t, axis=1) for t in range(12)])
        write_video(videos / "videos" / f"video{i}.mp4", frames, fps=4)
        sentences[f"video{i}.mp4"] = [f"a {colour} square moves right", f"a {colour} block slides"]
    (videos / "captions.json").write_text(json.dumps(sentences))
    split = {"train": ["video0.mp4", "video1.mp4", "video2.mp4"], "val": ["video3.mp4"]}
    (videos / "split.json").write_text(json.dumps(split))


def faces(folder: Path) -> list[Path]:
    """Two 24-frame face videos with their 68 points per frame (``<stem>.landmarks.json``)."""
    write_face_video = _module(TESTS / "tasks" / "faces.py").write_face_video
    folder.mkdir(parents=True)
    return [write_face_video(folder, f"face{i}", frames=24, size=64, seed=i) for i in range(2)]


def make_world(root: Path) -> Path:
    """Everything above under `root`; returns the checkout folder the blocks run in."""
    checkout, shared, downloads = root / "checkout", root / "shared" / "data", root / "home" / "Downloads"
    checkout.mkdir(parents=True)
    official_archives(downloads, root / "scratch")
    gestures(shared / "hand_gesture")
    davis(shared / "davis2016")
    captions(shared / "flickr8k_captions", shared / "msrvtt_sample")
    talking = faces(shared / "faces_video")
    (shared / "clips").mkdir()
    for label in range(3):
        write_video(shared / "clips" / f"clip{label}.mp4", clip(label, 1), 25)
    write_video(checkout / "clip.mp4", clip(0, 1), 25)
    write_video(checkout / "video.mp4", clip(1, 2), 25)
    (checkout / "videos").mkdir()
    for label in range(2):
        write_video(checkout / "videos" / f"v{label}.mp4", clip(label, 0), 25)
    shutil.copy(talking[0], checkout / "talk.mp4")
    photo = cv2.resize(clip(2, 0)[0], (WIDTH * 2, HEIGHT * 2))
    Image.fromarray(photo).save(checkout / "photo.jpg")
    Image.fromarray(photo[:, ::-1]).save(checkout / "other.png")
    shutil.rmtree(root / "scratch")
    return checkout
