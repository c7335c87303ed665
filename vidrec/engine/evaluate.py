"""Video-level evaluation: K clips x N crops per video, probabilities averaged per video.

A batch from `vidrec.data.VideoDataset` + `collate_skip` is a dict holding the model's modality keys,
`"label"` `(B,)`, `"video_id"` (list of str) and `"skipped"` (paths of videos that failed to decode).
A modality tensor is `(B, T, C, H, W)` (one view per item) or `(B, V, T, C, H, W)` (V = K clips x N crops,
test-view mode). Views are folded into the batch, the model's output is turned into probabilities with
`vidrec.models.outputs.video_probs` (softmax, mean over LRCN's steps, weighted mean over streams), and the
probabilities of every view of a video are averaged -- also across batches, when a loader splits a video.
Under torch.distributed, ranks exchange their per-video results and duplicates (DistributedSampler pads
the last batch) are merged by `video_id`.

Dense full-frame testing (ST-ResNet's protocol, `vidrec eval --protocol st_resnet`) is the same loop on
one view per video, `(1, T, C, H, W)` with whole frames: a model that `is_fully_convolutional` averages
its class map over space and time itself, so the view's probabilities are those of the dense scores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from einops import rearrange
from torch import nn

from vidrec.cli import UsageError
from vidrec.data.transforms import normalize_rgb
from vidrec.engine.metrics import classification_metrics
from vidrec.models.outputs import classification_loss, video_probs
from vidrec.progress import progress as progress_bar


@dataclass
class EvalResult:
    """What `evaluate` returns; `probs[i]`, `labels[i]` and `video_ids[i]` describe the same video."""

    metrics: dict
    probs: torch.Tensor  # (N, K) video-level probabilities
    labels: torch.Tensor  # (N,)
    video_ids: list[str]
    skipped: list[str] = field(default_factory=list)

    @property
    def top1(self) -> float:
        return self.metrics["top1"]


@dataclass
class _VideoAccumulator:
    """Sums of view probabilities per video, so a video split over batches is averaged correctly."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    loss_sum: float = 0.0
    loss_views: int = 0
    skipped: list[str] = field(default_factory=list)

    def add(self, video_ids: list[str], labels: torch.Tensor, probs: torch.Tensor, views: int) -> None:
        """`probs (B, V, K)` for `B` videos with `V` views each."""
        for vid, label, p in zip(video_ids, labels.tolist(), probs.sum(dim=1).cpu()):
            self.sums[vid] = self.sums[vid] + p if vid in self.sums else p.clone()
            self.counts[vid] = self.counts.get(vid, 0) + views
            self.labels[vid] = int(label)

    def means(self) -> dict[str, tuple[torch.Tensor, int]]:
        return {vid: (self.sums[vid] / self.counts[vid], self.labels[vid]) for vid in self.sums}


def model_inputs(batch: dict, modalities: Iterable[str], device: torch.device | str) -> tuple:
    """The model's input (tensor, or dict for several modalities) with views folded, and V.

    A uint8 `rgb` tensor (what the datasets' workers send: 4x fewer bytes than float) is moved to the
    device as uint8 and converted and normalised there (`vidrec.data.transforms.normalize_rgb`, ImageNet
    statistics); float tensors are taken as they are.

    Returns `(x, views)`: each tensor is `(B*V, T, C, H, W)`; `views` is 1 for `(B, T, C, H, W)` batches.
    """
    modalities = tuple(modalities)
    xs, views = {}, None
    for name in modalities:
        if name not in batch:
            raise KeyError(
                f"batch has no {name!r} tensor (model reads {modalities}); check the dataset's modalities"
            )
        t = batch[name].to(device, non_blocking=True)
        if name == "rgb":
            t = normalize_rgb(t)  # uint8 -> normalised float32, on the device
        v = t.shape[1] if t.dim() == 6 else 1
        if views is not None and v != views:
            raise ValueError(f"modalities disagree on the number of views: {v} vs {views}")
        views = v
        xs[name] = rearrange(t, "b v t c h w -> (b v) t c h w") if t.dim() == 6 else t
    return (xs[modalities[0]] if len(modalities) == 1 else xs), views or 1


def _autocast(device: torch.device, amp: bool):
    """bf16 on every device, as `Run.autocast` trains: a bf16-trained model can overflow fp16."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _gather(acc: _VideoAccumulator) -> tuple[dict[str, tuple[torch.Tensor, int]], float, int, list[str]]:
    """Merge ranks' per-video means; a video seen on several ranks gets the mean of their means."""
    local = acc.means()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local, acc.loss_sum, acc.loss_views, acc.skipped
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (local, acc.loss_sum, acc.loss_views, acc.skipped))
    merged: dict[str, list] = {}
    for videos, _, _, _ in parts:
        for vid, (p, label) in videos.items():
            merged.setdefault(vid, [[], label])[0].append(p)
    videos = {vid: (torch.stack(ps).mean(0), label) for vid, (ps, label) in merged.items()}
    skipped = sorted({s for part in parts for s in part[3]})
    return videos, sum(p[1] for p in parts), sum(p[2] for p in parts), skipped


def is_fully_convolutional(model: nn.Module) -> bool:
    """Whether `model` takes whole frames of any size and averages its class map over space (ST-ResNet,
    two-stream / TSN on ResNet or MobileNetV2: a global-average head). Wrappers (DDP, compile) are seen
    through."""
    inner = getattr(model, "module", getattr(model, "_orig_mod", model))
    return bool(getattr(inner, "fully_convolutional", False))


class NoDataError(UsageError, RuntimeError):
    """A training or evaluation set gave no readable item (empty, or every video skipped)."""


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[dict],
    *,
    device: torch.device | str,
    fusion_weights: dict[str, float] | None = None,
    amp: bool = False,
    progress: bool = True,
) -> EvalResult:
    """Video-level evaluation of a recognizer on a loader of (possibly multi-view) batches.

    Args:
        model: a recognizer (attributes `modalities`, `num_classes`; see docs/contracts.md).
        loader: batches as produced by `collate_skip` (None batches, i.e. all items skipped, are allowed).
        device: where the model runs.
        fusion_weights: stream weights for multi-stream outputs; default: the model's `fusion_weights`.
        amp: run under bf16 autocast, as training does.
        progress: show a tqdm bar (rank 0 only).

    Returns:
        EvalResult with metrics `top1`, `top5`, `mean_class_acc`, `per_class_acc`, `loss` (clip-level
        cross-entropy averaged over views), `nll` (of the averaged video probabilities), `num_videos`.

    Raises:
        NoDataError: no video was evaluated (an empty loader, or every video skipped).
    """
    device = torch.device(device)
    weights = fusion_weights or getattr(model, "fusion_weights", None)
    modalities = getattr(model, "modalities", ("rgb",))
    was_training = model.training
    model.eval()
    acc = _VideoAccumulator()
    show = progress and not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)
    for batch in progress_bar(loader, desc="eval", leave=False, disable=not show):
        if batch is None:
            continue
        acc.skipped.extend(batch.get("skipped", []))
        if len(batch.get("video_id", [])) == 0:
            continue
        x, views = model_inputs(batch, modalities, device)
        labels = torch.as_tensor(batch["label"])
        with _autocast(device, amp):
            out = model(x)
        probs = video_probs(out, weights)  # (B*V, K)
        acc.loss_sum += float(classification_loss(out, labels.to(device).repeat_interleave(views))) * len(
            probs
        )
        acc.loss_views += len(probs)
        acc.add(list(batch["video_id"]), labels, rearrange(probs.float(), "(b v) k -> b v k", v=views), views)
    model.train(was_training)
    result = _result(acc, getattr(model, "num_classes", None))
    if not result.video_ids:
        raise NoDataError(_nothing_read("evaluation", result.skipped))
    return result


def _nothing_read(what: str, skipped: list[str]) -> str:
    shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    why = f"all {len(skipped)} videos were skipped as unreadable ({shown})" if skipped else "the set is empty"
    return f"{what}: no video could be read, {why}; check data.root and the list file"


def _result(acc: _VideoAccumulator, num_classes: int | None) -> EvalResult:
    videos, loss_sum, loss_views, skipped = _gather(acc)
    ids = sorted(videos)
    k = num_classes or (len(next(iter(videos.values()))[0]) if videos else 0)
    probs = torch.stack([videos[v][0] for v in ids]) if ids else torch.zeros(0, k)
    labels = torch.tensor([videos[v][1] for v in ids], dtype=torch.long)
    metrics = classification_metrics(probs, labels, k)
    metrics["nll"] = metrics["loss"]
    metrics["loss"] = loss_sum / loss_views if loss_views else float("nan")
    metrics["num_skipped"] = len(skipped)
    return EvalResult(metrics=metrics, probs=probs, labels=labels, video_ids=ids, skipped=skipped)
