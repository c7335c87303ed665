"""Model inputs straight from a video file: RGB frames and optical flow computed in-process.

`predict` runs RGB, flow and two-stream models on plain videos. A flow model was trained on flow that
`vidrec flow` extracted with some method, frame size and quantisation bound; `FlowSettings` holds them
(training stores them in the checkpoint: `training_flow`, `flow_settings_from`), and `VideoInputs`
recomputes the same flow for the frames a clip needs: frames decoded at the flow's short side, flow
estimated with the same method, quantised and dequantised with the same bound (as the stored files
were), then resized to the RGB size with its displacements scaled, exactly as `vidrec.data.VideoDataset`
reads stored flow.

A clip's inputs go through the data package's single-view test transform (centre crop; RGB stays uint8
for normalisation on the model's device, as in training and evaluation), so a clip here equals an
evaluation view of the same frames.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchvision import tv_tensors

from vidrec.data.dataset import lrcn_flow_image, resize_flow
from vidrec.data.transforms import Flow3Video, FlowVideo, test_transform
from vidrec.io import VideoReader
from vidrec.io.video import output_size

if TYPE_CHECKING:
    from vidrec.engine.schema import TrainConfig

__all__ = ["FlowSettings", "VideoInputs", "flow_settings_from", "stored_flow_settings"]


@dataclass(frozen=True)
class FlowSettings:
    """How the training flow was made: `vidrec flow --method/--bound/--short-side` (0: native size)."""

    method: str = "dis"
    bound: float = 20.0
    short_side: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict) -> FlowSettings:
        return cls(method=str(raw["method"]), bound=float(raw["bound"]), short_side=int(raw["short_side"]))


def flow_settings_from(flow_root: str | Path, video_ids: list[str]) -> FlowSettings | None:
    """The settings in the metadata JSON of the first of `video_ids` with flow under `flow_root` (None:
    none has a JSON, e.g. denseflow's own folders). Its `height`/`width` are the size the flow was
    computed at; their short side is kept."""
    from vidrec.flow import find_flow, flow_meta
    from vidrec.io import VideoDecodeError

    for video_id in video_ids:
        base = find_flow(flow_root, video_id)
        if base is None or not base.with_name(base.name + ".flow.json").is_file():
            continue
        try:
            meta = flow_meta(base)
            short = min(int(meta["height"]), int(meta["width"]))
            return FlowSettings(meta.get("method", "dis"), bound=float(meta["bound"]), short_side=short)
        except (VideoDecodeError, KeyError, TypeError, ValueError):  # a damaged JSON: the dataset skips it
            continue
    return None


def training_flow(cfg: TrainConfig, dataset: Any) -> dict[str, Any] | None:
    """Method, bound and short side of the flow files the run reads (from their JSON), or None."""
    if not cfg.data.flow_root or not hasattr(dataset, "records"):
        return None
    found = flow_settings_from(cfg.data.flow_root, [r.video_id for r in dataset.records[:20]])
    return asdict(found) if found is not None else None


def stored_flow_settings(header: dict[str, str]) -> FlowSettings | None:
    """`FlowSettings` from a checkpoint's header metadata (key ``flow``), or None when absent."""
    raw = header.get("flow")
    return FlowSettings.from_dict(json.loads(raw)) if raw else None


class VideoInputs:
    """Random access to a video's model inputs: `clip(indices)` -> `{modality: (T, C, size, size)}`.

    Args:
        path: the video.
        modalities: keys the model reads ("rgb", "flow", "flow3").
        resize: short side RGB is decoded at (training's `data.resize`); flow is brought to this size.
        size: centre-crop size (training's `data.size`).
        flow: how to compute flow (needed when a flow modality is asked for).
        flow_length: flows stacked per step for "flow" (L; C = 2L).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        modalities: tuple[str, ...],
        resize: int,
        size: int,
        flow: FlowSettings | None = None,
        flow_length: int = 1,
    ) -> None:
        self.modalities, self.resize = tuple(modalities), resize
        self.uses_flow = "flow" in self.modalities or "flow3" in self.modalities
        if self.uses_flow and flow is None:
            raise ValueError("a flow model needs FlowSettings (method, bound, short side) to compute flow")
        self.length = flow_length if "flow" in self.modalities else 1
        self.flow, self.transform = flow, test_transform(size, crops=1, normalize=False)
        self.rgb_reader = VideoReader(path, size=resize)
        self.flow_reader = None
        if self.uses_flow:
            self.flow_reader = VideoReader(path, size=flow.short_side or None)
            from vidrec.flow import FlowEstimator

            self.estimator = FlowEstimator(flow.method)
        self._flows: dict[int, np.ndarray] = {}  # flow index -> float32 (H, W, 2) px, a sliding cache

    @property
    def meta(self):
        return self.rgb_reader.meta

    @property
    def num_starts(self) -> int:
        """Indices a clip may use: frames, or starts of a full flow stack (N - L)."""
        n = self.meta.num_frames
        return n - self.length if self.uses_flow else n

    def frame_times(self) -> np.ndarray:
        return self.rgb_reader.frame_times()

    def clip(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """`{modality: float (T, C, size, size)}` of the steps starting at `indices` (random access)."""
        rgb = self.rgb_reader.get_frames(list(indices)) if "rgb" in self.modalities else None
        hw = rgb.shape[1:3] if rgb is not None else None
        return self._finish(rgb, self._flow_stacks(list(indices), hw) if self.uses_flow else None)

    def steps(self) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Every usable step in order, each frame decoded and each flow computed once (streaming):
        `(index, {modality: (1, C, size, size)})`."""
        rgbs = iter(self.rgb_reader) if "rgb" in self.modalities else None
        if not self.uses_flow:
            for t, frame in enumerate(rgbs):
                yield t, self._finish(frame[None], None)
            return
        pending: deque[np.ndarray] = deque()  # RGB frames waiting for their flow stack
        flows: deque[np.ndarray] = deque()  # the flows of the next stack, px (h, w, 2)
        prev = None
        for t, frame in enumerate(self.flow_reader):
            if rgbs is not None:
                pending.append(next(rgbs))
            if prev is not None:
                flows.append(self._one_flow(prev, frame))
            prev = frame
            if len(flows) == self.length:  # the stack of step t - L is complete
                rgb = pending.popleft()[None] if rgbs is not None else None
                hw = rgb.shape[1:3] if rgb is not None else None
                yield t - self.length, self._finish(rgb, self._to_size(np.stack(flows), hw)[None])
                flows.popleft()

    def _finish(self, rgb: np.ndarray | None, flow: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """uint8 RGB `(T, H, W, 3)` and flow px `(T, L, H, W, 2)` -> `{modality: (T, C, size, size)}`."""
        views: dict[str, tv_tensors.Video] = {}
        if rgb is not None:
            views["rgb"] = tv_tensors.Video(torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous())
        if flow is not None and "flow" in self.modalities:
            views["flow"] = FlowVideo(flow.permute(0, 1, 4, 2, 3).flatten(1, 2))  # (T, 2L, H, W)
        if flow is not None and "flow3" in self.modalities:
            views["flow3"] = Flow3Video(lrcn_flow_image(flow[:, 0]))  # (T, 3, H, W)
        out = self.transform(views)
        return {m: out[m].as_subclass(torch.Tensor) for m in self.modalities}  # rgb uint8, flow float32

    def _flow_stacks(self, starts: list[int], hw: tuple[int, int] | None) -> torch.Tensor:
        """Flow in px `(T, L, H, W, 2)` for stacks starting at `starts`, at the RGB size `hw`."""
        wanted = [s + i for s in starts for i in range(self.length)]
        self._compute(sorted(set(wanted) - set(self._flows)))
        self._flows = {i: f for i, f in self._flows.items() if i >= min(wanted)}  # older flows are done
        flow = self._to_size(np.stack([self._flows[i] for i in wanted]), hw)  # (T * L, H, W, 2)
        return flow.reshape(len(starts), self.length, *flow.shape[1:])

    def _to_size(self, flow: np.ndarray, hw: tuple[int, int] | None) -> torch.Tensor:
        """Flow px `(N, h, w, 2)` resized to `hw` (default: the `resize` short side), displacements scaled."""
        flow = torch.from_numpy(flow)
        hw = hw or output_size(self.resize, height=flow.shape[1], width=flow.shape[2])
        return resize_flow(flow, tuple(hw))

    def _compute(self, todo: list[int]) -> None:
        """Flow i (frame i -> i + 1) for each i in `todo`."""
        if not todo:
            return
        frames = sorted({i for t in todo for i in (t, t + 1)})
        decoded = dict(zip(frames, self.flow_reader.get_frames(frames)))
        for i in todo:
            self._flows[i] = self._one_flow(decoded[i], decoded[i + 1])

    def _one_flow(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """Flow px float32 `(h, w, 2)`, quantised and dequantised with the bound as stored flow was."""
        from vidrec.flow import dequantize, quantize

        return dequantize(quantize(self.estimator(prev, nxt), self.flow.bound), self.flow.bound)

    def close(self) -> None:
        self.rgb_reader.close()
        if self.flow_reader is not None:
            self.flow_reader.close()

    def __enter__(self) -> VideoInputs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
