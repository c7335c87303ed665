"""Dataset layouts behind `data.format`: official UCF101 / HMDB51 downloads, class folders, list files.

`split_records(fmt, root, split=..., train=...)` returns `(records, class_names)` with record paths
relative to `root`, so video ids (and the flow files found from them) are relative to `data.root` too:
`vidrec flow DATA_ROOT --out FLOW` and `data.root=DATA_ROOT data.flow_root=FLOW` agree.

What `data.root` holds, per format (the archives unpacked as they are, split files untouched: CRLF line
endings, 1-based `classInd.txt`, test lists without labels, HMDB51's 0/1/2 codes):

- ``ucf101``: `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` (from UCF101.rar) and `ucfTrainTestlist/`
  (`classInd.txt`, `trainlist0N.txt`, `testlist0N.txt`, from UCF101TrainTestSplits-RecognitionTask.zip).
  The class folders may also sit directly in `root`.
- ``hmdb51``: `<class>/<video>.avi` folders (each `<class>.rar` of hmdb51_org.rar unpacked), directly in
  `root` or in `root/hmdb51_org/`, and `testTrainMulti_7030_splits/` (`<class>_test_splitN.txt`, from
  test_train_splits.rar).
- ``folders``: `train/<class>/<video>` and `val/<class>/<video>` (or `test/`); or only `<class>/<video>`
  (everything is training data, no validation).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from vidrec.data.records import VideoRecord, class_folders, hmdb51_split, ucf101_split, video_id_of

__all__ = ["BUILTIN_PLUGINS", "FORMATS", "root_help", "split_records"]

FORMATS = ("list", "ucf101", "hmdb51", "folders", "gestures")
# formats whose datasets are built by a function (`data.plugin`'s signature) rather than from records
BUILTIN_PLUGINS = {"gestures": "vidrec.data.gestures:config_datasets"}

_ROOT_HELP = {
    "ucf101": "UCF-101/<Class>/v_<Class>_gXX_cYY.avi (UCF101.rar unpacked) and ucfTrainTestlist/ "
    "(classInd.txt, trainlist01.txt, testlist01.txt, ...)",
    "hmdb51": "the <class>/<video>.avi folders (each <class>.rar of hmdb51_org.rar unpacked, directly or "
    "in hmdb51_org/) and testTrainMulti_7030_splits/ (<class>_test_split1.txt, ...)",
    "folders": "train/<class>/<video> and val/<class>/<video> (or test/), or <class>/<video> folders",
    "list": "the videos at the paths the list files name",
    "gestures": "point_history.csv (class id + 16 x, y points per row) and labels.csv (class names)",
}


def root_help(fmt: str) -> str:
    """What `data.root` must hold for `data.format=fmt` (for error messages and --help)."""
    return _ROOT_HELP[fmt]


def split_records(
    fmt: str, root: str | os.PathLike, *, split: int = 1, train: bool = True
) -> tuple[list[VideoRecord], list[str]] | None:
    """The training (`train=True`) or test/validation videos of a layout; None when it has none.

    Paths are relative to `root`; labels are 0-based indices of the returned class names.
    Raises `FileNotFoundError` naming what `root` must hold when the layout is not there.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root} is not a folder; for data.format={fmt} it must hold "
                                f"{root_help(fmt)}")  # fmt: skip
    if fmt == "ucf101":
        splits = _need(root / "ucfTrainTestlist", fmt, root)
        records, names = ucf101_split(splits, split, train=train)
        return _under(records, _video_folder(root, ("UCF-101",), records)), names
    if fmt == "hmdb51":
        splits = _need(root / "testTrainMulti_7030_splits", fmt, root)
        records, names = hmdb51_split(splits, split, train=train)
        return _under(records, _video_folder(root, ("hmdb51_org",), records)), names
    if fmt == "folders":
        return _folders(root, train=train)
    raise ValueError(f"data.format: {fmt!r} is not one of {list(FORMATS)}")


def _need(folder: Path, fmt: str, root: Path) -> Path:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data.root={root} has no {folder.name}/; for data.format={fmt} it must hold {root_help(fmt)}"
        )
    return folder


def _video_folder(root: Path, candidates: tuple[str, ...], records: list[VideoRecord]) -> str:
    """The sub-folder of `root` holding the class folders (e.g. "UCF-101"), or "" for `root` itself."""
    classes = {r.path.split("/")[0] for r in records}
    for name in candidates:
        if (root / name).is_dir() and any((root / name / c).is_dir() for c in classes):
            return name
    return ""


def _under(records: list[VideoRecord], folder: str) -> list[VideoRecord]:
    if not folder:
        return records
    moved = [f"{folder}/{r.path}" for r in records]
    return [replace(r, path=p, video_id=video_id_of(p)) for r, p in zip(records, moved)]


def _folders(root: Path, *, train: bool) -> tuple[list[VideoRecord], list[str]] | None:
    if not (root / "train").is_dir():  # plain root/<class>/<video>: training data only
        return class_folders(root) if train else None
    sub = "train" if train else next((s for s in ("val", "test") if (root / s).is_dir()), None)
    if sub is None:
        return None
    records, names = class_folders(root / sub)
    return _under(records, sub), names
