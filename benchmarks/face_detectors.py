"""The face detectors of `vidrec predict` on landmarks checkpoints, on real faces: how often they find the
face, how fast, how well their rectangle agrees with dlib's, and the calibration that maps their rectangle
to the training crop (`vidrec.data.face_detect.Calibration`).

``python benchmarks/face_detectors.py ../shared/data`` reads ``faces_video/`` (two talking-face videos with
dlib 20.0.1's rectangles and 68 points per frame: pseudo ground truth) and ``faces_300vw/`` (four frames
with human-annotated points). Per detector (haar always; dlib when importable):
- found: share of frames with a face; ms: mean search time per frame (the frame as `vidrec predict` gives
  it, searched at most 640 pixels on its longer side);
- IoU dlib: the rectangle's IoU with the file's dlib rectangle (share >= 0.5 and mean);
- calibration: where the 68 points' bounding box sits in the rectangle (centre offset dx, dy and longer
  side, in rectangle widths; mean and std): the numbers `HAAR_CALIBRATION` / `DLIB_CALIBRATION` hold;
- crop IoU: IoU of the calibrated crop box (margin 1.3) with the training crop of the true points, on
  faces_video (dlib points) and on 300VW (human points; a frame without a face counts 0).

``--write-docs`` writes the table into docs/benchmarks.md (section ``face_detectors``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from vidrec.data.face_detect import DETECTORS, Calibration, face_box, get_detector, largest
from vidrec.data.landmarks import box_from_points, read_pts

MARGIN = 1.3


def iou(a, b) -> float:
    """IoU of two rectangles ``[left, top, right, bottom]``."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def square(box) -> list[float]:
    return [box.x0, box.y0, box.x0 + box.side, box.y0 + box.side]


def placement(rect, points: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, extent): the points' bounding box centre minus the rectangle's, and its longer side, in
    rectangle widths."""
    lo, hi = points.min(0), points.max(0)
    width = rect[2] - rect[0]
    cx, cy = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
    return ((lo[0] + hi[0]) / 2 - cx) / width, ((lo[1] + hi[1]) / 2 - cy) / width, max(hi - lo) / width


def faces_video(root: Path, every: int):
    """(frame, dlib rectangle, points) of every `every`-th frame of faces_video."""
    from vidrec.io import read_frames

    for video in sorted((root / "faces_video").glob("*.mp4")):
        data = json.loads(video.with_name(video.stem + ".landmarks.json").read_text())
        idx = list(range(0, data["n_frames"], every))
        for i, frame in zip(idx, read_frames(video, idx), strict=True):
            yield frame, data["boxes"][i], np.asarray(data["landmarks"][i], dtype=np.float64)


def faces_300vw(root: Path):
    """(frame, human points) of the 300VW frames."""
    for image in sorted((root / "faces_300vw").glob("*/imgs/*.jpg")):
        frame = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
        yield frame, read_pts(image.parent.parent / "annot" / f"{image.stem}.pts")


def measure(name: str, root: Path, every: int) -> dict:
    detector = get_detector(name)
    found, seconds, ious, places, crops = [], [], [], [], []
    for frame, dlib_rect, points in faces_video(root, every):
        start = time.perf_counter()
        rect = largest(detector(frame))
        seconds.append(time.perf_counter() - start)
        found.append(rect is not None)
        if rect is not None:
            ious.append(iou(rect, dlib_rect))
            places.append(placement(rect, points))
            box = face_box(rect, detector.calibration, margin=MARGIN)
            crops.append(iou(square(box), square(box_from_points(points, margin=MARGIN))))
    human = []
    for frame, points in faces_300vw(root):
        rect = largest(detector(frame))
        box = None if rect is None else face_box(rect, detector.calibration, margin=MARGIN)
        human.append(0.0 if box is None else iou(square(box), square(box_from_points(points, margin=MARGIN))))
    places = np.array(places)
    return {
        "frames": len(found),
        "found": float(np.mean(found)),
        "ms": 1000 * float(np.mean(seconds)),
        "iou_ge_05": float(np.mean(np.array(ious) >= 0.5)) if ious else 0.0,
        "iou": float(np.mean(ious)) if ious else 0.0,
        "calibration": places.mean(0).tolist() if len(places) else [],
        "calibration_std": places.std(0).tolist() if len(places) else [],
        "stored": detector.calibration,
        "crop_iou": float(np.mean(crops)) if crops else 0.0,
        "human_crop_iou": human,
    }


def table(rows: dict[str, dict]) -> str:
    head = (
        "| detector | frames | found | ms / frame | IoU >= 0.5 with dlib | mean IoU | measured dx, dy, "
        "extent (std) | stored | crop IoU (dlib points) | crop IoU per 300VW frame (human points) |"
    )
    lines = [head, "|" + "---|" * 10]
    for name, r in rows.items():
        cal = ", ".join(
            f"{m:.3f} ({s:.3f})" for m, s in zip(r["calibration"], r["calibration_std"], strict=True)
        )
        c: Calibration = r["stored"]
        human = " ".join(f"{v:.2f}" for v in r["human_crop_iou"])
        lines.append(
            f"| {name} | {r['frames']} | {r['found']:.0%} | {r['ms']:.0f} | {r['iou_ge_05']:.0%} "
            f"| {r['iou']:.3f} | {cal} | {c.dx}, {c.dy}, {c.extent} | {r['crop_iou']:.3f} | {human} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the shared data folder (with faces_video/ and faces_300vw/)")
    parser.add_argument("--every", type=int, default=1, help="every n-th frame of faces_video (default 1)")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1)")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    load = os.getloadavg()[0]  # the times below depend on what else the machine runs
    rows = {}
    for name in args.detectors:
        try:
            rows[name] = measure(name, args.data, args.every)
        except Exception as err:  # dlib not installed: say so and go on with the others
            print(f"{name}: skipped ({err})")
    text = table(rows)
    print(text)
    from vidrec.benchdocs import machine, write_section

    if args.write_docs:
        try:
            import dlib

            dlib_version = f", dlib {dlib.__version__}"
        except ImportError:
            dlib_version = ""
        body = (
            "## Face detectors for landmarks on any video\n\n"
            f"`python benchmarks/face_detectors.py ../shared/data --every {args.every}` (OpenCV "
            f"{cv2.__version__}{dlib_version}, {args.threads} thread). faces_video's rectangles and "
            "points are dlib 20.0.1's (pseudo ground truth); 300VW's points are human annotations "
            "(sequence 401: a face looking down, which neither detector finds). Crop IoU: the calibrated "
            "crop box (margin 1.3) vs the training crop of the true points.\n\n"
            f"{text}\n\nMachine: {machine()}; load average {load:.1f} at the start.\n"
        )
        print(f"wrote {write_section('face_detectors', body)}")
    summary = " ".join(
        f"{n}_found={r['found']:.3g} {n}_iou={r['iou']:.3g} {n}_ms={r['ms']:.3g}" for n, r in rows.items()
    )
    print(f"RESULT face_detectors {summary}")


if __name__ == "__main__":
    main()
