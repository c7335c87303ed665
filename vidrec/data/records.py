"""Video records and the readers of the usual dataset layouts.

Each reader returns ``(records, class_names)``: `VideoRecord`s whose `path` is relative to the video root
(POSIX separators) and whose `label` indexes `class_names` (0-based). `video_id` is the path without its
extension; flow files and frame folders are found from it (see docs/contracts.md).

Layouts: a generic list file (``path label`` lines or a CSV with a ``path,label`` header), the UCF101 and
HMDB51 official split files, and class sub-folders (``root/<class>/<video>``). A malformed line raises a
`ValueError` naming the file, the line number and what was expected.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vidrec.textfiles import csv_errors, text_stream

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoRecord",
    "class_folders",
    "hmdb51_split",
    "read_class_names",
    "read_list_file",
    "ucf101_split",
    "video_id_of",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")


@dataclass(frozen=True)
class VideoRecord:
    """One video: `path` relative to the dataset root (or absolute), 0-based `label`, its `video_id`."""

    path: str
    label: int
    video_id: str
    num_frames: int | None = None


def video_id_of(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """`path` relative to `root` (when it lies inside it), without extension, with `/` separators."""
    p = Path(path)
    if root is not None and p.is_absolute():
        with contextlib.suppress(ValueError):  # outside root: keep the absolute path
            p = p.relative_to(Path(root))
    return PurePosixPath(p.as_posix()).with_suffix("").as_posix()


def _record(path: str, label: int, root, num_frames: int | None = None) -> VideoRecord:
    path = Path(path).as_posix()
    return VideoRecord(path, label, video_id_of(path, root), num_frames)


def _lines(path: Path):
    """(line number, stripped text) of the lines that are neither blank nor `#` comments."""
    if not path.is_file():
        raise FileNotFoundError(f"list file {path} does not exist")
    with text_stream(path, "list file") as f:
        for number, line in enumerate(f, start=1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield number, text


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names, one per line (blank lines and `#` comments skipped); line order = label."""
    path = Path(path)
    names = [text for _, text in _lines(path)]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: class names must be unique")
    return names


def read_list_file(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: str | os.PathLike | list[str] | None = None,
) -> tuple[list[VideoRecord], list[str]]:
    """Read a list file of videos.

    Formats: whitespace-separated ``path label`` or ``path num_frames label`` lines (mmaction/TSN style),
    with `#` comments and blank lines allowed; or a CSV (``.csv`` or a first line starting with
    ``path,``) whose header names a ``path`` and a ``label`` column (optional ``num_frames``). A label is a
    0-based integer or a class name.

    Args:
        path: the list file.
        root: video root, used to make absolute paths relative for `video_id`.
        classes: class names, or a file of them; default: `classes.txt` beside the list file when it
            exists, else the names found in the file (sorted) or ``"0".."K-1"`` for integer labels.

    Returns:
        (records, class names)
    """
    path = Path(path)
    names = _class_names_for(path, classes)
    rows = _csv_rows(path) if _is_csv(path) else _text_rows(path)
    raw = [(n, p, lab, nf) for n, p, lab, nf in rows]
    if names is None:
        names = _names_from_labels([lab for _, _, lab, _ in raw])
    lookup = {name: i for i, name in enumerate(names)}
    records = [_record(p, _label(path, n, lab, lookup, len(names)), root, nf) for n, p, lab, nf in raw]
    return records, names


def _class_names_for(path: Path, classes) -> list[str] | None:
    if isinstance(classes, list | tuple):
        return list(classes)
    if classes is not None:
        return read_class_names(classes)
    beside = path.parent / "classes.txt"
    return read_class_names(beside) if beside.is_file() and beside != path else None


def _is_csv(path: Path) -> bool:
    if path.suffix.lower() == ".csv":
        return True
    first = next(_lines(path), (0, ""))[1]
    return first.replace(" ", "").lower().startswith("path,")


def _text_rows(path: Path):
    for number, text in _lines(path):
        parts = text.split()
        if len(parts) == 2:
            yield number, parts[0], parts[1], None
        elif len(parts) == 3 and parts[1].isdigit():
            yield number, parts[0], parts[2], int(parts[1])
        else:
            raise ValueError(
                f"{path}:{number}: expected 'path label' or 'path num_frames label', got {text!r}"
            )


def _csv_rows(path: Path):
    with text_stream(path, "list file") as f, csv_errors(csv.DictReader(f), path, "list file") as reader:
        fields = [h.strip() for h in reader.fieldnames or []]
        if "path" not in fields or "label" not in fields:
            raise ValueError(f"{path}:1: expected a CSV header with 'path' and 'label' columns, got {fields}")
        reader.fieldnames = fields
        for row in reader:
            number = reader.line_num
            p, lab = (row.get("path") or "").strip(), (row.get("label") or "").strip()
            nf = row.get("num_frames")
            if not p or not lab:
                raise ValueError(f"{path}:{number}: expected a path and a label, got {row}")
            if nf is not None and nf.strip() and not nf.strip().isdigit():
                raise ValueError(f"{path}:{number}: num_frames must be a whole number, got {nf!r}")
            yield number, p, lab, int(nf) if nf and nf.strip() else None


def _names_from_labels(labels: list[str]) -> list[str]:
    if all(re.fullmatch(r"\d+", lab) for lab in labels):
        return [str(i) for i in range(max((int(lab) for lab in labels), default=-1) + 1)]
    return sorted(set(labels))


def _label(path: Path, number: int, label: str, lookup: dict[str, int], num_classes: int) -> int:
    if label in lookup:
        return lookup[label]
    if re.fullmatch(r"\d+", label) and int(label) < num_classes:
        return int(label)
    raise ValueError(
        f"{path}:{number}: label {label!r} is neither a class name nor an index below {num_classes} "
        "(labels are 0-based; check the class-names file)"
    )


def ucf101_split(
    split_dir: str | os.PathLike, split: int = 1, *, train: bool = True
) -> tuple[list[VideoRecord], list[str]]:
    """UCF101's official split (`ucfTrainTestlist/`): `classInd.txt` ("1 ApplyEyeMakeup"),
    `trainlist0N.txt` ("Class/v_Class_g08_c01.avi 1", 1-based labels) and `testlist0N.txt`
    (paths only: the label comes from the class folder, matched case-insensitively because the
    files spell e.g. "HandStandPushups" where classInd.txt says "HandstandPushups").
    Paths are relative to the `UCF-101/` video folder. Labels are returned 0-based."""
    split_dir = Path(split_dir)
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 has splits 1, 2 and 3, got {split}")
    names = _ucf_classes(split_dir / "classInd.txt")
    by_folder = {name.lower(): i for i, name in enumerate(names)}
    list_file = split_dir / f"{'trainlist' if train else 'testlist'}0{split}.txt"
    records = []
    for number, text in _lines(list_file):
        parts = text.split()
        if len(parts) not in (1, 2) or "/" not in parts[0]:
            raise ValueError(
                f"{list_file}:{number}: expected 'Class/v_Class_gXX_cYY.avi [label]', got {text!r}"
            )
        folder = parts[0].split("/")[0].lower()
        if folder not in by_folder:
            raise ValueError(f"{list_file}:{number}: class folder {folder!r} is not in classInd.txt")
        label = by_folder[folder]
        if len(parts) == 2 and parts[1] != str(label + 1):
            raise ValueError(
                f"{list_file}:{number}: label {parts[1]} disagrees with classInd.txt ({label + 1})"
            )
        records.append(_record(parts[0], label, None))
    return records, names


def _ucf_classes(path: Path) -> list[str]:
    pairs = []
    for number, text in _lines(path):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(
                f"{path}:{number}: expected 'index ClassName' (e.g. '1 ApplyEyeMakeup'), got {text!r}"
            )
        pairs.append((int(parts[0]), parts[1]))
    if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise ValueError(f"{path}: class indices must run 1, 2, ..., {len(pairs)} in order")
    return [name for _, name in pairs]


_HMDB_FILE = re.compile(r"(.+)_test_split(\d)\.txt$")


def hmdb51_split(
    split_dir: str | os.PathLike, split: int = 1, *, train: bool = True
) -> tuple[list[VideoRecord], list[str]]:
    """HMDB51's official split (`testTrainMulti_7030_splits/`): one `<class>_test_splitN.txt` per class
    with `name.avi code` lines (1 = train, 2 = test, 0 = unused). Classes are the sorted file-name
    prefixes; paths are `<class>/<name>.avi`, relative to the folder of class video folders."""
    split_dir = Path(split_dir)
    files = sorted(p for p in split_dir.glob(f"*_test_split{split}.txt") if _HMDB_FILE.match(p.name))
    if not files:
        raise FileNotFoundError(
            f"{split_dir}: no '<class>_test_split{split}.txt' files (HMDB51 split {split})"
        )
    names = [_HMDB_FILE.match(p.name).group(1) for p in files]
    wanted = "1" if train else "2"
    records = []
    for label, (name, file) in enumerate(zip(names, files)):
        for number, text in _lines(file):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(
                    f"{file}:{number}: expected 'video.avi 0|1|2' (0 unused, 1 train, 2 test), got {text!r}"
                )
            if parts[1] == wanted:
                records.append(_record(f"{name}/{parts[0]}", label, None))
    return records, names


def class_folders(
    root: str | os.PathLike, *, extensions: tuple[str, ...] = VIDEO_EXTENSIONS
) -> tuple[list[VideoRecord], list[str]]:
    """Videos laid out as `root/<class>/<video>` (hidden entries skipped); classes are the sorted
    sub-folder names, videos sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder {root} does not exist")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not names:
        raise ValueError(f"{root}: expected one sub-folder per class (root/<class>/<video>), found none")
    records = []
    for label, name in enumerate(names):
        for f in sorted((root / name).iterdir()):
            if f.is_file() and f.suffix.lower() in extensions and not f.name.startswith("."):
                records.append(_record(f"{name}/{f.name}", label, None))
    return records, names
