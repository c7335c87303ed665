"""`VideoDataset`: a map-style dataset of sampled, decoded and transformed clips.

An item is a dict with one float32 tensor per requested modality, `(T, C, H, W)`, or `(V, T, C, H, W)`
when the sampler returns several clips or the transform several crops (V = clips x crops, clip-major),
plus `"label"` (int) and `"video_id"` (str).

Modalities:
- ``"rgb"``: frames decoded from the video file (only the sampled indices), or read from the frame folder
  `frames_root/<video_id>/img_00001.jpg...` when `frames_root` is given. C = 3.
- ``"flow"``: for each sampled index i, the stack of flows i..i+L-1 (L = `flow_length`), x/y interleaved,
  C = 2L, in pixels: the stored uint8 q is dequantised as `(q - 127.5) / 127.5 * bound`. Read with
  `vidrec.flow.load_flow` from what `vidrec.flow.find_flow(flow_root, video_id)` finds: a
  `<video_id>.flow.mkv` (FFV1, `vidrec flow`'s default), a `<video_id>.flow.npy`, or a denseflow folder
  `<video_id>/` (`x_00001.jpg` or `flow_x_00001.jpg`; its bound is `flow_bound` unless a JSON says).
- ``"flow3"``: LRCN's 3-channel flow image of flow i, minus 128: `clip(16u, -128, 127)`,
  `clip(16v, -128, 127)`, `min(16|f|, 127)`. C = 3.

With flow, indices are sampled among the `num_frames - L` usable starts (N-1 flows), and the RGB frame i
goes with the flow stack starting at i. Flow read at another resolution than the RGB frames (or than `size`)
is resized to it with its displacements scaled accordingly.

Randomness: item `index` of epoch `e` draws everything (sampler and transform) from generators seeded by
`(seed, e, index)`, so items are the same whatever the worker that makes them; call `set_epoch` each epoch.

Prepared copies: with `prepared="auto"` (the default) RGB is read from a copy made by `vidrec prepare`
(short-GOP videos or a uint8 frame store) when one is registered in `root` and covers every record with
unchanged sources (see `vidrec.data.prepare`); ids, labels and flow stay those of the originals.

Bad videos: a `VideoDecodeError` or missing file raises in `strict` mode; otherwise the dataset warns once
per path, records it in `dataset.skipped` (path -> reason; per process, so workers' copies are their own)
and returns a `SkippedItem(path, reason)`, which `collate_skip` drops and reports in `batch["skipped"]`.
A truncated video or one with damaged data reads what decodes with a `VideoDamageWarning` naming the path
(see `vidrec.io.VideoReader`); in `strict` mode it raises too. Damaged derived data (an empty or truncated
flow file, a flow JSON without `num_frames`, a frame store that is not `(N, H, W, 3)`) is skipped the same
way, naming that file; a prepared file whose digest differs from its manifest's is read from the original.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors

from vidrec.data.prepare import FrameStoreReader, find_prepared, resize_frames
from vidrec.data.records import VideoRecord
from vidrec.data.samplers import ClipSample
from vidrec.data.transforms import Flow3Video, FlowVideo
from vidrec.io import VideoDecodeError, VideoReader, count_frames, read_rgb_folder
from vidrec.io.video import output_size

if TYPE_CHECKING:
    from vidrec.io.gpu_decode import TorchcodecReader

__all__ = ["MODALITIES", "SkippedItem", "VideoDataset", "collate_skip"]

MODALITIES = ("rgb", "flow", "flow3")


@dataclass(frozen=True)
class SkippedItem:
    """What the dataset returns for a video it could not read (falsy, picklable across workers)."""

    path: str
    reason: str

    def __bool__(self) -> bool:
        return False


class VideoDataset(Dataset):
    """Clips of videos listed by `VideoRecord`s (see the module docstring for the item layout).

    Args:
        records: the videos (paths relative to `root`).
        root: folder the record paths are relative to.
        modalities: keys to load, among "rgb", "flow", "flow3".
        sampler: `(num_frames, rng) -> list[ClipSample]`, e.g. `build_sampler("dense", clip_len=16)`.
        transform: called with `{modality: tv_tensor}` of one clip (see vidrec.data.transforms); None
            gives RGB as float in [0, 1] and flow in pixels.
        flow_root: folder of `vidrec flow` outputs (`<video_id>.flow.mkv` / `.flow.npy`) or of
            `<video_id>/` denseflow folders.
        frames_root: folder of `<video_id>/img_00001.jpg` frame folders to read RGB from instead of videos.
        size: decode-time resize of RGB (and flow): an int short side or `(H, W)`; None keeps the size.
        strict: raise on a bad video instead of skipping it.
        seed: base seed of the per-item generators.
        flow_length: flows per stack (L); the flow tensor has C = 2L channels.
        flow_bound: quantisation bound (pixels) for denseflow folders (flow files carry their own).
        frame_tmpl: file name template of RGB frame folders (1-based numbers).
        decode_threads: FFmpeg threads per decode (1 suits DataLoader workers).
        decode_device: "cpu" (PyAV) or "cuda": video files decoded and resized on the GPU by torchcodec
            (`vidrec.io.gpu_decode`), frame stores and frame folders moved there, so items hold CUDA
            tensors; read it in the training process (DataLoader workers=0, no pinned memory).
        prepared: "auto" (a complete, matching `vidrec prepare` copy registered in `root`), a copy's
            folder, or None for the original files always.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        *,
        root: str | os.PathLike,
        modalities: Sequence[str] = ("rgb",),
        sampler: Callable[[int, np.random.Generator], list[ClipSample]],
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        flow_root: str | os.PathLike | None = None,
        frames_root: str | os.PathLike | None = None,
        size: int | tuple[int, int] | None = None,
        strict: bool = False,
        seed: int = 0,
        flow_length: int = 1,
        flow_bound: float = 20.0,
        frame_tmpl: str = "img_{:05d}.jpg",
        decode_threads: int = 1,
        decode_device: str = "cpu",
        prepared: str | os.PathLike | None = "auto",
    ) -> None:
        self.modalities = tuple(modalities)
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {list(modalities)}")
        if self._uses_flow and flow_root is None:
            raise ValueError("modalities 'flow'/'flow3' need flow_root (the folder of extracted flow)")
        if flow_length < 1:
            raise ValueError(f"flow_length must be >= 1, got {flow_length}")
        self.records, self.root = list(records), Path(root)
        self.sampler, self.transform = sampler, transform
        self.flow_root = None if flow_root is None else Path(flow_root)
        self.frames_root = None if frames_root is None else Path(frames_root)
        self.size, self.strict, self.seed = size, strict, seed
        self.flow_length, self.flow_bound, self.frame_tmpl = flow_length, flow_bound, frame_tmpl
        self.decode_threads, self.decode_device = decode_threads, torch.device(decode_device)
        self.prepared = None  # vidrec.data.prepare.PreparedCopy the RGB is read from
        if "rgb" in self.modalities and self.frames_root is None:
            self.prepared = find_prepared([r.path for r in self.records], self.root, prepared, size=size)
        self.epoch = 0
        self.skipped: dict[str, str] = {}
        self._warned: set[str] = set()

    @property
    def _uses_flow(self) -> bool:
        return "flow" in self.modalities or "flow3" in self.modalities

    def set_epoch(self, epoch: int) -> None:
        """Make the next items those of `epoch` (training samplers and transforms draw anew)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any] | SkippedItem:
        record = self.records[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        try:
            return self._item(record, rng)
        except (VideoDecodeError, OSError) as err:
            if self.strict:
                raise
            return self._skip(record, err)

    def drop_missing(self) -> list[str]:
        """Remove the records whose input files do not exist (a cheap stat, no decoding); returns their paths.

        An input is the video file (RGB from videos), the frame folder (`frames_root`) or the flow of the
        video (its `<video_id>.flow.json`, `.flow.npy` or denseflow folder under `flow_root`). The paths are
        also kept in `skipped` with the reason, so a summary counts every unusable video.
        """
        kept, missing = [], []
        for record in self.records:
            reason = self._missing(record)
            if reason is None:
                kept.append(record)
            else:
                missing.append(reason[0])
                self.skipped[reason[0]] = reason[1]
        self.records = kept
        return missing

    def _missing(self, record: VideoRecord) -> tuple[str, str] | None:
        """`(path, reason)` of the first absent input of `record`, or None when all are there."""
        if "rgb" in self.modalities and self.frames_root is None and not (self.root / record.path).is_file():
            return str(self.root / record.path), "file not found"
        if "rgb" in self.modalities and self.frames_root is not None:
            folder = self.frames_root / record.video_id
            if not folder.is_dir():
                return str(folder), "frame folder not found"
        if self._uses_flow and _flow_api()["find_flow"](self.flow_root, record.video_id) is None:
            return str(self.root / record.path), f"no flow under {self.flow_root} (id {record.video_id})"
        return None

    def _skip(self, record: VideoRecord, err: Exception) -> SkippedItem:
        path = getattr(err, "path", None) or str(self.root / record.path)
        reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
        self.skipped[path] = reason
        self._warn_once(path, f"skipping video {path}: {reason}")
        return SkippedItem(path, reason)

    def _warn_once(self, path: str, message: str) -> None:
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    # -- one item --------------------------------------------------------------------------------------
    def _item(self, record: VideoRecord, rng: np.random.Generator) -> dict[str, Any]:
        reader = None
        if "rgb" in self.modalities and self.frames_root is None:
            reader = self._open_video(record)
        try:
            samples = self.sampler(self._num_starts(record, reader), rng)
            flat = [i for s in samples for i in s.indices]
            streams = self._read(record, reader, flat)
        finally:
            if reader is not None:
                reader.close()
        views = self._views(streams, samples, int(rng.integers(2**62)))
        return {**views, "label": int(record.label), "video_id": record.video_id}

    def _open_video(self, record: VideoRecord) -> VideoReader | FrameStoreReader | TorchcodecReader:
        """The record's frames: its prepared copy when there is one (and its digest matches the manifest's),
        else the original file."""
        copy = self.prepared.files.get(str(record.path)) if self.prepared is not None else None
        problem = self.prepared.verify(str(record.path)) if copy is not None else None
        if problem is not None:
            if self.strict:
                raise VideoDecodeError(copy, problem)
            self._warn_once(copy, f"not reading prepared file {problem}; reading the original instead")
            copy = None
        if copy is None:
            path, size = self.root / record.path, self.size
        else:  # the size decoding the original gives (a re-encode rounds odd sizes to even ones)
            path, size = copy, self._original_size(record)
        if copy is not None and self.prepared.format == "frames":
            return FrameStoreReader(copy, size=size)
        if self.decode_device.type != "cpu":
            from vidrec.io.gpu_decode import TorchcodecReader  # optional dependency

            return TorchcodecReader(path, size=size, device=self.decode_device, threads=self.decode_threads)
        return VideoReader(path, size=size, threads=self.decode_threads, strict=self.strict)

    def _original_size(self, record: VideoRecord) -> int | tuple[int, int] | None:
        h, w = self.prepared.source_sizes[str(record.path)]
        return output_size(self.size, height=h, width=w) if self.size is not None else (h, w)

    def _num_starts(self, record: VideoRecord, reader: VideoReader | None) -> int:
        """How many indices the sampler may use: frames, or usable flow-stack starts."""
        counts = []
        if reader is not None:
            counts.append(len(reader))
        elif "rgb" in self.modalities:
            folder = self.frames_root / record.video_id
            counts.append(record.num_frames or count_frames(folder, self.frame_tmpl))
        if self._uses_flow:
            length = self.flow_length if "flow" in self.modalities else 1
            counts.append(self._num_flows(record) - length + 1)
        n = min(counts)
        if n < 1:
            what = f"flow stacks of {self.flow_length}" if self._uses_flow else "sampling"
            raise VideoDecodeError(self.root / record.path, f"too few frames ({counts}) for {what}")
        return n

    def _flow_base(self, record: VideoRecord) -> Path:
        """Where the flow of `record` lives (`vidrec.flow.find_flow`); a clear error when nowhere."""
        base = _flow_api()["find_flow"](self.flow_root, record.video_id)
        if base is None:
            expected = self.flow_root / f"{record.video_id}.flow.mkv"
            raise VideoDecodeError(
                expected,
                f"no flow (nor .flow.npy, nor a denseflow folder {self.flow_root / record.video_id}); "
                "extract it with `vidrec flow DATA_ROOT --out FLOW_ROOT` from the same data.root",
            )
        return base

    def _num_flows(self, record: VideoRecord) -> int:
        return _flow_api()["num_flow_frames"](self._flow_base(record))

    def _read(self, record: VideoRecord, reader: VideoReader | None, flat: list[int]) -> dict[str, Any]:
        """Streams for the `flat` indices: rgb uint8 `(N, 3, H, W)`, flow_px float `(N, L, H, W, 2)`."""
        out = {}
        if "rgb" in self.modalities:
            frames = reader.get_frames(flat) if reader is not None else self._read_rgb_folder(record, flat)
            if isinstance(frames, torch.Tensor):  # TorchcodecReader: already (N, 3, H, W) on its device
                out["rgb"] = frames
            else:
                # (N, H, W, 3) -> (N, 3, H, W), made contiguous here on uint8: the float transforms after
                # the crop run ~5x faster on planar memory than on the interleaved view.
                out["rgb"] = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
                out["rgb"] = out["rgb"].to(self.decode_device)  # a frame store with decode_device=cuda
        if self._uses_flow:
            length = self.flow_length if "flow" in self.modalities else 1
            starts = np.asarray(flat, dtype=np.int64)
            wanted = (starts[:, None] + np.arange(length)).ravel()  # (N * L,)
            flow = self._read_flow(record, wanted)  # (N * L, H, W, 2) pixels
            hw = out["rgb"].shape[-2:] if "rgb" in out else None
            flow = resize_flow(flow, hw or self._flow_size(flow))
            out["flow_px"] = flow.reshape(len(flat), length, *flow.shape[1:])  # (N, L, H, W, 2)
        return out

    def _read_rgb_folder(self, record: VideoRecord, flat: list[int]) -> np.ndarray:
        frames = read_rgb_folder(self.frames_root / record.video_id, flat, tmpl=self.frame_tmpl)
        if self.size is None:
            return frames
        return resize_frames(frames, output_size(self.size, height=frames.shape[1], width=frames.shape[2]))

    def _flow_size(self, flow: torch.Tensor) -> tuple[int, int]:
        return output_size(self.size, height=flow.shape[1], width=flow.shape[2])

    def _read_flow(self, record: VideoRecord, indices: np.ndarray) -> torch.Tensor:
        """Dequantised flow `(len(indices), H, W, 2)` in pixels."""
        api, base = _flow_api(), self._flow_base(record)
        q = api["load_flow"](base, indices)
        try:
            bound = float(api["flow_meta"](base).get("bound", self.flow_bound))
        except FileNotFoundError:  # a denseflow folder made by another tool: no JSON
            bound = self.flow_bound
        return (torch.from_numpy(np.ascontiguousarray(q)).float() - 127.5) * (bound / 127.5)

    # -- transform and views ---------------------------------------------------------------------------
    def _views(self, streams: dict[str, Any], samples: list[ClipSample], seed: int) -> dict[str, Any]:
        """Per-clip tv_tensors through the transform, then stacked: `(T, C, H, W)` or `(V, T, C, H, W)`."""
        per_clip: dict[str, list[torch.Tensor]] = {m: [] for m in self.modalities}
        start = 0
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # torch.manual_seed would also touch CUDA (slow)
            for sample in samples:
                part = slice(start, start + len(sample.indices))
                start = part.stop
                clip = self._transform(self._clip_tensors(streams, part))
                for m in self.modalities:
                    per_clip[m].append(clip[m].as_subclass(torch.Tensor))
        return {m: _stack_views(per_clip[m], single=len(samples) == 1) for m in self.modalities}

    def _clip_tensors(self, streams: dict[str, torch.Tensor], part: slice) -> dict[str, tv_tensors.Video]:
        clip = {}
        if "rgb" in self.modalities:
            clip["rgb"] = tv_tensors.Video(streams["rgb"][part])  # (T, 3, H, W) uint8
        if "flow" in self.modalities:
            flow = streams["flow_px"][part]  # (T, L, H, W, 2)
            clip["flow"] = FlowVideo(flow.permute(0, 1, 4, 2, 3).flatten(1, 2))  # (T, 2L, H, W): x1, y1, ...
        if "flow3" in self.modalities:
            clip["flow3"] = Flow3Video(lrcn_flow_image(streams["flow_px"][part][:, 0]))  # (T, 3, H, W)
        return clip

    def _transform(self, clip: dict[str, tv_tensors.Video]) -> dict[str, torch.Tensor]:
        if self.transform is not None:
            return self.transform(clip)
        if "rgb" in clip:
            clip["rgb"] = clip["rgb"].float() / 255.0
        return clip


def lrcn_flow_image(flow: torch.Tensor) -> torch.Tensor:
    """LRCN's 3-channel flow image minus 128, `(N, 3, H, W)`, from flow in pixels `(N, H, W, 2)`.

    Channels: `clip(16u + 128, 0, 255)`, `clip(16v + 128, 0, 255)`, `min(16|f| + 128, 255)`, each minus 128
    (Donahue et al., CVPR 2015); kept as float (not rounded to uint8).
    """
    uv = (16.0 * flow).clamp(-128.0, 127.0)  # (N, H, W, 2)
    mag = (16.0 * flow.norm(dim=-1, keepdim=True)).clamp(max=127.0)  # (N, H, W, 1)
    return torch.cat([uv, mag], dim=-1).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)


def resize_flow(flow: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Flow `(N, H, W, 2)` resized to `hw`, displacements scaled with the image (x by W'/W, y by H'/H)."""
    n, h, w, _ = flow.shape
    if (h, w) == tuple(hw):
        return flow
    x = torch.nn.functional.interpolate(flow.permute(0, 3, 1, 2), size=tuple(hw), mode="bilinear")
    scale = torch.tensor([hw[1] / w, hw[0] / h]).view(1, 2, 1, 1)
    return (x * scale).permute(0, 2, 3, 1)  # (N, H', W', 2)


def _stack_views(clips: list[torch.Tensor], *, single: bool) -> torch.Tensor:
    """One clip `(T, C, H, W)` stays as is; otherwise `(V, T, C, H, W)` with V = clips x crops.

    uint8 stays uint8 (RGB a transform left for `normalize_rgb` on the device); anything else is float32.
    """
    if single and clips[0].ndim == 4:
        return _float_unless_uint8(clips[0]).contiguous()
    views = [c if c.ndim == 5 else c[None] for c in clips]  # each (N, T, C, H, W)
    return _float_unless_uint8(torch.cat(views)).contiguous()


def _float_unless_uint8(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.uint8 else x.float()


def _flow_api() -> dict[str, Callable]:
    try:
        from vidrec.flow import find_flow, flow_meta, load_flow, num_flow_frames
    except ImportError as err:
        raise RuntimeError(
            f"reading flow needs vidrec.flow, which could not be imported ({err}); install vidrec completely"
        ) from err
    return {"find_flow": find_flow, "flow_meta": flow_meta, "load_flow": load_flow,
            "num_flow_frames": num_flow_frames}  # fmt: skip


def collate_skip(batch: list[Any]) -> dict[str, Any]:
    """`default_collate` of the readable items plus `"skipped"`: the paths of the skipped ones.

    A batch made only of skipped items gives `{"skipped": [...]}` alone.
    """
    skipped = [b.path if isinstance(b, SkippedItem) else "<unknown>" for b in batch if _is_skipped(b)]
    good = [b for b in batch if not _is_skipped(b)]
    out = default_collate(good) if good else {}
    out["skipped"] = skipped
    return out


def _is_skipped(item: Any) -> bool:
    return item is None or isinstance(item, SkippedItem)
