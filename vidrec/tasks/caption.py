"""Captioning: LRCN's image captioning and video description (Donahue et al. 2015, methods.md 1.5).

Data (``task_options``): a folder of images with a CSV of ``image,caption`` rows, or a folder of videos
with a JSON ``{video: [sentences]}`` (`vidrec.tasks.caption_data`); a JSON split file or the rule
"every `val_every`-th file in name order is validation". The vocabulary is built from the training
sentences (``min_count``), or taken from a caption checkpoint (``vocab_from``, to fine-tune a video
describer from an image captioner), and stored in every checkpoint (`state`), so `vidrec caption`
needs nothing else. The model (``model.name``: ``lrcn1u_captioner`` / ``lrcn2u_captioner`` /
``lrcn2f_captioner``) gets the vocabulary size as its softmax width.

``decoder_input`` chooses what the decoder reads: ``features`` (default: the CNN features mean-pooled over
the clip, as later work describes video) or ``attributes`` (the paper's video describer, methods.md 1.5:
the probabilities of a per-frame attribute classifier -- one softmax head per attribute group on the CNN
feature -- averaged over the frames and concatenated, in place of LRCN's CRF predictions of activity,
tool, object and location). The attribute labels come from the captions JSON
(`vidrec.tasks.caption_data`); the heads learn from them (per-frame cross-entropy, ``attribute_weight``)
while the decoder learns from the sentences; the groups and their values are stored in every checkpoint.

Training is teacher forcing with a per-step cross-entropy ignoring padding. Validation decodes every
validation file (greedy, or beam with ``val_decode: beam``) and scores it against all its sentences with
pycocoevalcap: ``val_BLEU1``, ``val_BLEU4``, ``val_ROUGE_L``, ``val_CIDEr`` (CIDEr-D), with vidrec's
tokenizer and without METEOR (both need Java and seconds per call; `vidrec caption --score` and
benchmarks/captioning.py give all of them). ``val_CIDEr`` picks ``best.safetensors``: on the
validation sets this task is made for (hundreds of files) decoding and scoring take about as long as
the teacher-forced loss pass, and the loss does not rank sentences the way people and CIDEr do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vidrec.engine.schema import ConfigError, TrainConfig, opt
from vidrec.tasks.base import Step, Task, register_task
from vidrec.tasks.caption_data import (
    CaptionDataError,
    CaptionDataset,
    attribute_groups,
    collate_captions,
    read_captions,
    split_items,
)
from vidrec.text import Vocabulary


@dataclass
class CaptionOptions:
    root: str = opt(
        "", "folder holding the captioned images or videos (the captions file names them relative to it)"
    )
    captions: str = opt(
        "", "captions file: CSV with image,caption columns (one row per sentence) or JSON "
        "{video: [sentences]}; "
        "empty: root/captions.csv, else root/captions.json",
    )  # fmt: skip
    split_file: str = opt("", "JSON {train: [files], val: [files]}; empty: the val_every rule")
    val_every: int = opt(
        5, "without split_file, every val_every-th file (sorted by name) is validation; 0: none"
    )
    min_count: int = opt(3, "vocabulary: words seen at least this often in the training sentences")
    vocab_from: str = opt(
        "", "take the vocabulary of this caption checkpoint (fine-tuning from an image captioner)"
    )
    max_len: int = opt(20, "most words per sentence, <eos> included (longer training sentences are cut)")
    frames: int = opt(8, "frames spread evenly over each video (an image is one frame)")
    resize: int = opt(256, "short side images / frames are resized to before the centre crop")
    size: int = opt(224, "square centre crop fed to the CNN")
    decoder_input: Literal["features", "attributes"] = opt(
        "features", "what the decoder reads: features = CNN features mean-pooled over the frames; "
        "attributes = a per-frame attribute classifier's probabilities averaged over the frames (LRCN's "
        "video description; labels from the captions JSON's attributes)",
    )  # fmt: skip
    attribute_weight: float = opt(1.0, "weight of the attribute classifier's loss (decoder_input=attributes)")
    val_decode: Literal["greedy", "beam"] = opt("greedy", "decoding for the per-epoch validation scores")
    beam: int = opt(3, "beam width when val_decode=beam")


@register_task
class Caption(Task):
    """Sentence generation for images and videos; see the module docstring."""

    name = "caption"
    Options = CaptionOptions
    best_metric = "val_CIDEr"
    higher_is_better = True

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        o = self.options
        for field, value in (
            ("max_len", o.max_len),
            ("frames", o.frames),
            ("size", o.size),
            ("min_count", o.min_count),
            ("beam", o.beam),
        ):
            if value < 1:
                raise ConfigError(f"task_options.{field}: must be >= 1, got {value}")
        if not o.attribute_weight >= 0:
            raise ConfigError(f"task_options.attribute_weight: must be >= 0, got {o.attribute_weight}")
        self.vocab: Vocabulary | None = None
        self.groups: dict[str, list[str]] | None = None  # attribute group -> values, decoder_input=attributes
        self._split: tuple[list, list] | None = None
        self.examples: list[
            tuple[str, str, str]
        ] = []  # (file, generated, first reference) of the last validation

    # -- data ---------------------------------------------------------------------------------------
    def captions_file(self) -> Path:
        o = self.options
        if o.captions:
            return Path(o.captions)
        csv_file = Path(o.root) / "captions.csv"
        return csv_file if csv_file.is_file() else Path(o.root) / "captions.json"

    def check(self) -> None:
        o = self.options
        if not o.root or not Path(o.root).is_dir():
            raise FileNotFoundError(
                f"task_options.root: {o.root or '(empty)'} is not a folder; give the folder of captioned "
                "images or videos"
            )
        needed = [("task_options.captions", self.captions_file())]
        needed += [("task_options.split_file", o.split_file)] if o.split_file else []
        needed += [("task_options.vocab_from", o.vocab_from)] if o.vocab_from else []
        for name, path in needed:
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"{name}: {path} does not exist; fix the path in the config or override it"
                )

    def split(self) -> tuple[list, list]:
        if self._split is None:
            o = self.options
            self._split = split_items(
                read_captions(self.captions_file()), split_file=o.split_file, val_every=o.val_every
            )
            if not self._split[0]:
                raise CaptionDataError(f"{self.captions_file()}: no training files left after the split")
        return self._split

    def build_vocab(self) -> Vocabulary:
        o = self.options
        if o.vocab_from:
            from vidrec.engine.checkpoint import load_checkpoint

            state = load_checkpoint(o.vocab_from).task_state
            if "vocab" not in state:
                raise CaptionDataError(
                    f"task_options.vocab_from: {o.vocab_from} is not a caption checkpoint (no vocabulary)"
                )
            return Vocabulary.from_state(state["vocab"])
        return Vocabulary.build([s for it in self.split()[0] for s in it.sentences], min_count=o.min_count)

    def build_attribute_groups(self) -> dict[str, list[str]]:
        groups = attribute_groups(self.split()[0])
        if not groups:
            raise CaptionDataError(
                f"task_options.decoder_input=attributes: {self.captions_file()} gives no attributes for the "
                'training files; write entries as {"sentences": [...], "attributes": {group: value}}'
            )
        return groups

    def build_model(self, *, weights: bool = True) -> nn.Module:
        import dataclasses

        from vidrec.models.build import build_model  # imports every model: only when one is built

        if self.vocab is None:
            self.vocab = self.build_vocab()
        model_cfg = self.cfg.model
        if self.options.decoder_input == "attributes":
            if self.groups is None:
                self.groups = self.build_attribute_groups()
            sizes = {g: len(values) for g, values in self.groups.items()}
            model_cfg = dataclasses.replace(model_cfg, kwargs={**model_cfg.kwargs, "attributes": sizes})
        return build_model(model_cfg, num_classes=len(self.vocab), weights=weights)

    def datasets(
        self, model: nn.Module, log: Callable[[str], None] | None = None
    ) -> tuple[Dataset, Dataset | None]:
        o = self.options
        train, val = self.split()
        common = {"frames": o.frames, "resize": o.resize, "size": o.size, "max_len": o.max_len}
        common["groups"] = self.groups if o.decoder_input == "attributes" else None
        train_ds = CaptionDataset(o.root, train, self.vocab, train=True, **common)
        val_ds = CaptionDataset(o.root, val, self.vocab, train=False, **common) if val else None
        self.missing = []
        for what, ds in (("training set", train_ds), ("validation set", val_ds)):
            if ds is None:
                continue
            total, missing = len(ds.items), ds.drop_missing()
            self.missing += missing
            if len(ds) == 0:
                raise CaptionDataError(
                    f"{what}: none of the {total} captioned files exists under "
                    f"task_options.root={o.root} (first: {missing[0]})"
                )
            if missing and log is not None:
                log(
                    f"{what}: {len(missing)} of {total} captioned files are missing and skipped "
                    f"(first: {missing[0]})"
                )
        return train_ds, val_ds

    def collate(self) -> Callable[[list[Any]], Any]:
        return collate_captions

    # -- model state --------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        state = {"vocab": self.vocab.to_state() if self.vocab else None, "max_len": self.options.max_len}
        return {**state, "attributes": self.groups} if self.groups else state

    def load_state(self, state: dict[str, Any], *, class_names: list[str] = ()) -> None:
        # never rebuilt from the captions file the stored config names: inference reads the checkpoint only
        if not state.get("vocab"):
            raise ValueError("it holds no caption vocabulary (task_state.vocab)")
        self.vocab = Vocabulary.from_state(state["vocab"])
        if state.get("attributes"):
            self.groups = {str(g): [str(v) for v in values] for g, values in state["attributes"].items()}
        elif self.options.decoder_input == "attributes":
            raise ValueError(
                "it holds no attribute groups (task_state.attributes) for decoder_input=attributes"
            )

    # -- training and validation --------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: dict, device: torch.device) -> Step:
        from vidrec.data.transforms import normalize_rgb
        from vidrec.models.captioner import attribute_loss, caption_loss

        x = normalize_rgb(batch["rgb"].to(device, non_blocking=True))  # (B, T, 3, S, S)
        caps = batch["caption"].to(device, non_blocking=True)  # (B, L)
        attributes = "attributes" in batch and self.options.decoder_input == "attributes"
        if attributes:
            logits, attribute_logits = model(x, caps, with_attributes=True)  # (B, L, V), {g: (B, T, n)}
        else:
            logits = model(x, caps)  # (B, L, V)
        loss = caption_loss(logits, caps)
        real = caps != 0
        tokens = float(real.sum())
        right = float(((logits.detach().argmax(-1) == caps) & real).sum())
        sums = {"nll": float(loss.detach()) * tokens, "tokens": tokens, "right": right}
        if attributes:
            labels = batch["attributes"].to(device, non_blocking=True)  # (B, T, G)
            loss = loss + self.options.attribute_weight * attribute_loss(attribute_logits, labels)
            sums["attr_right"], sums["attr_labels"] = attribute_hits(attribute_logits, labels)
        return Step(loss=loss, items=len(caps), sums=sums)

    def train_metrics(self, sums: dict[str, float], items: int) -> dict[str, float]:
        tokens = max(sums.get("tokens", 0.0), 1.0)
        out = {
            "train_word_acc": sums.get("right", 0.0) / tokens,
            "train_perplexity": math.exp(min(sums.get("nll", 0.0) / tokens, 50.0)),
        }
        if sums.get("attr_labels"):
            out["train_attr_acc"] = sums["attr_right"] / sums["attr_labels"]
        return out

    @torch.no_grad()
    def validate(
        self, model: nn.Module, loader: DataLoader, *, device: torch.device, amp: bool, progress: bool
    ) -> dict[str, Any]:
        from vidrec.engine.evaluate import NoDataError
        from vidrec.progress import progress as bar
        from vidrec.text.metrics import caption_scores

        model.eval()
        refs, cands, skipped, nll, tokens, hits = {}, {}, [], 0.0, 0.0, [0.0, 0.0]
        for batch in bar(loader, desc="validation", leave=False, disable=not progress):
            skipped += batch.get("skipped", [])
            if "rgb" not in batch:
                continue
            ids, loss, n = self.decode_batch(model, batch, device, hits=hits)
            nll, tokens = nll + loss * n, tokens + n
            for file, row, sentences in zip(batch["id"], ids, batch["refs"], strict=True):
                cands[file], refs[file] = self.vocab.decode(row), sentences
        refs, cands, skipped, nll, tokens, hits = _gather(refs, cands, skipped, nll, tokens, hits)
        if not cands:
            raise NoDataError(f"evaluation: no validation file could be read ({len(skipped)} skipped)")
        s = caption_scores(refs, cands, meteor=False, ptb=False).scores
        self.examples = [(f, cands[f], refs[f][0]) for f in sorted(cands)[:10]]
        out = {
            "val_loss": nll / max(tokens, 1.0), "val_BLEU1": s["BLEU-1"], "val_BLEU4": s["BLEU-4"],
            "val_ROUGE_L": s["ROUGE-L"], "val_CIDEr": s["CIDEr-D"], "val_skipped": skipped,
        }  # fmt: skip
        if hits[1]:  # per-frame accuracy of the attribute classifier over the labelled frames
            out["val_attr_acc"] = hits[0] / hits[1]
        return out

    def decode_batch(
        self, model: nn.Module, batch: dict, device: torch.device, *, hits: list[float] | None = None
    ) -> tuple[torch.Tensor, float, float]:
        """(generated ids (B, L), teacher-forced loss of the first sentences, their token count);
        adds the attribute classifier's (right, labelled) frame counts to `hits` when given."""
        from vidrec.data.transforms import normalize_rgb
        from vidrec.models.captioner import caption_loss
        from vidrec.text.decode import decode

        inner = getattr(getattr(model, "_orig_mod", model), "module", getattr(model, "_orig_mod", model))
        x = normalize_rgb(batch["rgb"].to(device))
        caps = batch["caption"].to(device)
        cond, attribute_logits = inner.encode_all(x)
        if hits is not None and attribute_logits and "attributes" in batch:
            right, labelled = attribute_hits(attribute_logits, batch["attributes"].to(device))
            hits[0], hits[1] = hits[0] + right, hits[1] + labelled
        logits = inner.decoder(cond, torch.cat([torch.full_like(caps[:, :1], 1), caps[:, :-1]], 1))
        o = self.options
        ids = decode(inner.decoder, cond, method=o.val_decode, beam_width=o.beam, max_len=o.max_len)
        return ids.cpu(), caption_loss(logits, caps).item(), float((caps != 0).sum())

    def report(self, out_dir: Path, history: list[dict[str, Any]]) -> None:
        """``captions.md``: the last validation's sentences beside a human one, for the first 10 files."""
        if not self.examples:
            return
        lines = ["| file | generated | a human sentence |", "|---|---|---|"]
        lines += [f"| {f} | {c} | {r} |" for f, c, r in self.examples]
        (Path(out_dir) / "captions.md").write_text("\n".join(lines) + "\n")


def attribute_hits(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> tuple[float, float]:
    """(frames whose arg-max value is right, labelled frames), summed over the groups; `logits`
    ``{group: (B, T, n)}`` in the order of the labels' last axis ``(B, T, G)``."""
    from vidrec.models.captioner import NO_LABEL

    right = labelled = 0.0
    for g, lg in enumerate(logits.values()):
        target = labels[..., g]  # (B, T)
        known = target != NO_LABEL
        right += float(((lg.detach().argmax(-1) == target) & known).sum())
        labelled += float(known.sum())
    return right, labelled


def _gather(refs: dict, cands: dict, skipped: list, nll: float, tokens: float, hits: list[float]):
    """Every rank's validation results on every rank (the validation loader is sharded under DDP)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return refs, cands, skipped, nll, tokens, hits
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (refs, cands, skipped, nll, tokens, hits))
    out_r, out_c, out_s = {}, {}, []
    for r, c, s, _, _, _ in parts:
        out_r.update(r), out_c.update(c), out_s.extend(s)
    hits = [sum(p[5][0] for p in parts), sum(p[5][1] for p in parts)]
    return out_r, out_c, out_s, sum(p[3] for p in parts), sum(p[4] for p in parts), hits


def vocab_of(task: Task) -> Vocabulary:
    """The vocabulary of a caption task loaded from a checkpoint (`load_task`)."""
    if getattr(task, "vocab", None) is None:
        raise CaptionDataError("this checkpoint holds no caption vocabulary; is it a `task: caption` run?")
    return task.vocab


__all__ = ["Caption", "CaptionOptions", "vocab_of", "json"]
