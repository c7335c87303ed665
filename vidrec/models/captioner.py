"""LRCN's sentence generators (Donahue et al. 2015, methods.md 1.5): image captioning and video description.

A `Captioner` is a CNN (any `Backbone`, frozen or fine-tuned; or none, for cached features), a clip
encoder that turns the features of a clip's frames into one conditioning vector (the mean, or the last
state of an LSTM over the frames; an image is a clip of one frame) and a `CaptionDecoder`:

- ``1u``: one LSTM reads [word embedding; visual feature] at every step;
- ``2u``: two stacked LSTMs, word and visual feature entering the bottom one;
- ``2f`` (factored): the bottom LSTM reads words only, the top one reads the bottom's output and the
  visual feature; so the bottom LSTM's states do not depend on the image (methods.md 1.6, property 6).

The visual feature is fed at every step; the output is a softmax over the vocabulary (which holds
``<eos>``). Training is teacher forcing with a per-step cross-entropy that ignores padding
(`caption_loss`); `vidrec.text.decode` generates sentences.

Two conditionings. The default (``attributes=None``) is the mean-pooled CNN feature, as later work
describes video. The paper's video describer (TACoS) instead feeds the decoder a CRF's predictions of
activity, tool, object and location; with ``attributes={group: number of values}`` the Captioner is a
per-frame attribute classifier (one softmax head per group on the CNN feature) and the decoder reads the
per-frame probabilities averaged over the clip's frames, concatenated over the groups (sum of the group
sizes wide). The probabilities are detached: the decoder reads the classifier's output as the paper's
LSTM reads the CRF's, and only the attribute labels train the heads (`attribute_loss`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidrec.models.backbones import Backbone
from vidrec.models.registry import register_model

State = list[tuple[torch.Tensor, torch.Tensor]]  # (h, c) per LSTM, each (1, B, H)
PAD_ID, BOS_ID = 0, 1  # vidrec.text.Vocabulary's fixed ids
NO_LABEL = -100  # an attribute label that is not given (ignored by `attribute_loss`)
_INPUT = {"rgb": (1, 3, 224, 224)}


class CaptionDecoder(nn.Module):
    """LRCN1u / LRCN2u / LRCN2f word decoder conditioned on a visual feature ``(B, F)``.

    Args:
        variant: ``1u``, ``2u`` or ``2f`` (see the module docstring).
        vocab_size: V, the softmax width (words + specials).
        cond_dim: F, width of the visual feature.
        embed_size: width of the word embedding W_e and of the projected visual feature.
        hidden_size: units per LSTM (1000 in the paper).
        dropout: on the embeddings, the visual feature and before the softmax.
    """

    def __init__(
        self,
        variant: Literal["1u", "2u", "2f"],
        *,
        vocab_size: int,
        cond_dim: int,
        embed_size: int = 512,
        hidden_size: int = 1000,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if variant not in ("1u", "2u", "2f"):
            raise ValueError(f"variant must be 1u, 2u or 2f, got {variant!r}")
        self.variant, self.vocab_size = variant, vocab_size
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=PAD_ID)
        self.visual = nn.Linear(cond_dim, embed_size)
        bottom_in = embed_size if variant == "2f" else 2 * embed_size
        self.lstm1 = nn.LSTM(bottom_in, hidden_size, batch_first=True)
        top_in = {"1u": None, "2u": hidden_size, "2f": hidden_size + embed_size}[variant]
        self.lstm2 = nn.LSTM(top_in, hidden_size, batch_first=True) if top_in else None
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, vocab_size)

    def run(
        self, cond: torch.Tensor, words: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Inputs ``words (B, L)`` under ``cond (B, F)`` -> (logits (B, L, V), new state, bottom
        LSTM outputs (B, L, H))."""
        e = self.drop(self.embed(words))  # (B, L, E)
        v = self.drop(self.visual(cond)).unsqueeze(1).expand(-1, words.shape[1], -1)  # (B, L, E)
        s1, s2 = (state or [None, None])[0], (state or [None, None])[-1]
        if self.variant == "2f":
            bottom, s1 = self.lstm1(e, s1)  # words only
            top, s2 = self.lstm2(torch.cat([bottom, v], -1), s2)
        else:
            bottom, s1 = self.lstm1(torch.cat([e, v], -1), s1)
            top, s2 = (bottom, s1) if self.lstm2 is None else self.lstm2(bottom, s2)
        new_state = [s1] if self.lstm2 is None else [s1, s2]
        return self.out(self.drop(top)), new_state, bottom

    def forward(self, cond: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: input ids ``(B, L)`` (``<bos>`` first) -> logits ``(B, L, V)``."""
        return self.run(cond, words)[0]

    def step(self, cond: torch.Tensor, word: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """One step: previous word ids ``(B,)`` -> logits ``(B, V)`` of the next word, new state."""
        logits, state, _ = self.run(cond, word.unsqueeze(1), state)
        return logits[:, 0], state

    @staticmethod
    def reorder(state: State, index: torch.Tensor) -> State:
        """The state of the rows `index` (beam search)."""
        return [(h.index_select(1, index), c.index_select(1, index)) for h, c in state]


class Captioner(nn.Module):
    """CNN -> clip encoder -> `CaptionDecoder`.

    Args:
        encoder: frames ``(N, C, H, W)`` -> features ``(N, D)``; None: `forward` takes features
            ``(B, T, D)`` directly (cached CNN features).
        feature_dim: D.
        decoder: the word decoder, built with ``cond_dim`` = D (mean) or ``clip_hidden`` (lstm).
        clip_encoder: ``mean`` (mean-pooled frame features) or ``lstm`` (last state of an LSTM over them).
        clip_hidden: units of the LSTM clip encoder.
        freeze_encoder: the CNN stays in eval mode without gradients (frozen features).
        attributes: ``{group: number of values}``: condition on attribute probabilities instead (one
            softmax head per group on the frame features; the decoder is built with ``cond_dim`` = the
            sum of the sizes; needs ``clip_encoder="mean"``).
    """

    def __init__(
        self,
        *,
        encoder: nn.Module | None,
        feature_dim: int,
        decoder: CaptionDecoder,
        clip_encoder: Literal["mean", "lstm"] = "mean",
        clip_hidden: int = 512,
        freeze_encoder: bool = True,
        modality: str = "rgb",
        attributes: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if clip_encoder not in ("mean", "lstm"):
            raise ValueError(f"clip_encoder must be mean or lstm, got {clip_encoder!r}")
        if attributes and clip_encoder != "mean":
            raise ValueError(
                "attribute conditioning averages probabilities over frames: use clip_encoder=mean"
            )
        self.attribute_heads = (
            nn.ModuleDict({g: nn.Linear(feature_dim, n) for g, n in attributes.items()})
            if attributes
            else None
        )
        self.encoder, self.decoder, self.feature_dim = encoder, decoder, feature_dim
        self.clip_encoder = clip_encoder
        self.clip_lstm = (
            nn.LSTM(feature_dim, clip_hidden, batch_first=True) if clip_encoder == "lstm" else None
        )
        self.freeze_encoder = freeze_encoder and encoder is not None
        if self.freeze_encoder:
            encoder.requires_grad_(False)
        self.modalities = (modality,)
        self.num_classes = decoder.vocab_size  # the softmax width, like a recognizer's classes
        self.task = "caption"
        self.prefix_cached = False  # True: inputs are the frozen CNN's features (vidrec.engine.feature_cache)

    def frozen_prefix(self) -> nn.Module | None:
        """The frozen CNN (frames ``(N, C, H, W)`` -> features ``(N, D)``), or None when it trains."""
        return self.encoder if self.freeze_encoder else None

    def train(self, mode: bool = True) -> Captioner:
        super().train(mode)
        if self.freeze_encoder and self.encoder is not None:
            self.encoder.eval()  # frozen: BatchNorm statistics and dropout as at inference
        return self

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, T, C, H, W)`` -> features ``(B, T, D)``; features ``(B, T, D)`` pass through
        (without a CNN, or while `prefix_cached`)."""
        if self.encoder is None or self.prefix_cached:
            if x.dim() != 3 or x.shape[-1] != self.feature_dim:
                raise ValueError(f"expected features (B, T, {self.feature_dim}), got {tuple(x.shape)}")
            return x
        if x.dim() != 5:
            raise ValueError(f"expected frames (B, T, C, H, W), got {tuple(x.shape)}")
        b = x.shape[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            f = self.encoder(rearrange(x, "b t c h w -> (b t) c h w"))  # (B*T, D)
        return rearrange(f, "(b t) d -> b t d", b=b)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, T, C, H, W)`` (or features ``(B, T, D)``) -> conditioning ``(B, F)``."""
        return self.encode_all(x)[0]

    def encode_all(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(conditioning ``(B, F)``, per-frame attribute logits ``{group: (B, T, n)}``, empty without
        attribute heads)."""
        f = self.frame_features(x)  # (B, T, D)
        if self.attribute_heads is not None:
            logits = {g: head(f) for g, head in self.attribute_heads.items()}  # {group: (B, T, n_g)}
            probs = [lg.softmax(dim=-1).mean(dim=1) for lg in logits.values()]  # per group (B, n_g)
            return torch.cat(probs, dim=-1).detach(), logits  # (B, sum n_g): the classifier's output
        if self.clip_lstm is None:
            return f.mean(dim=1), {}  # (B, D)
        _, (h, _) = self.clip_lstm(f)  # h: (1, B, clip_hidden)
        return h[0], {}

    def forward(
        self, x: torch.Tensor, captions: torch.Tensor | None = None, *, with_attributes: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Teacher forcing: target ids ``captions (B, L)`` (words, ``<eos>``, padding) -> logits
        ``(B, L, V)`` predicting each target from ``<bos>`` and the targets before it.

        Without captions: the first word's logits ``(B, 1, V)``. `with_attributes`: (logits, per-frame
        attribute logits ``{group: (B, T, n)}``), so a DDP-wrapped model trains both in one forward.
        """
        cond, attribute_logits = self.encode_all(x)
        bos = torch.full((cond.shape[0], 1), BOS_ID, dtype=torch.long, device=cond.device)
        words = bos if captions is None else torch.cat([bos, captions[:, :-1]], dim=1)  # (B, L)
        logits = self.decoder(cond, words)
        return (logits, attribute_logits) if with_attributes else logits


def caption_loss(logits: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    """Per-step cross-entropy of logits ``(B, L, V)`` against ids ``(B, L)``, padding ignored
    (mean over the real tokens)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), captions.flatten(), ignore_index=PAD_ID)


def attribute_loss(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Per-frame cross-entropy of attribute logits ``{group: (B, T, n)}`` against labels ``(B, T, G)``
    (groups in the dict's order, `NO_LABEL` ignored): the mean over the groups that have a label."""
    losses = []
    for g, lg in enumerate(logits.values()):
        target = labels[..., g].flatten()  # (B*T,)
        if bool((target != NO_LABEL).any()):
            losses.append(F.cross_entropy(lg.flatten(0, 1).float(), target, ignore_index=NO_LABEL))
    if not losses:  # no labels in this batch: a zero that keeps the graph
        return sum(lg.sum() for lg in logits.values()) * 0.0
    return torch.stack(losses).mean()


def build_captioner(
    variant: Literal["1u", "2u", "2f"],
    *,
    num_classes: int,
    backbone: str = "mobilenet_v2",
    pretrained: bool | str = False,
    freeze_cnn: bool = True,
    feature_dim: int = 0,
    clip_encoder: Literal["mean", "lstm"] = "mean",
    clip_hidden: int = 512,
    embed_size: int = 512,
    hidden_size: int = 1000,
    dropout: float = 0.5,
    attributes: dict[str, int] | None = None,
) -> Captioner:
    """A `Captioner` on `backbone`'s pooled features (``"none"``: on cached features of `feature_dim`).

    `num_classes` is the vocabulary size (the softmax width), set by the caption task; so is
    `attributes` (``{group: number of values}``) with ``task_options.decoder_input=attributes``.
    """
    if backbone == "none":
        if feature_dim < 1:
            raise ValueError("backbone='none' (cached features) needs feature_dim")
        encoder, dim = None, feature_dim
    else:
        cnn = Backbone(backbone, pretrained=pretrained, num_classes=0)
        encoder, dim = _Features(cnn), cnn.feature_dim
    cond = sum(attributes.values()) if attributes else dim if clip_encoder == "mean" else clip_hidden
    decoder = CaptionDecoder(
        variant, vocab_size=num_classes, cond_dim=cond, embed_size=embed_size,
        hidden_size=hidden_size, dropout=dropout,
    )  # fmt: skip
    return Captioner(
        encoder=encoder, feature_dim=dim, decoder=decoder, clip_encoder=clip_encoder,
        clip_hidden=clip_hidden, freeze_encoder=freeze_cnn, attributes=attributes,
    )  # fmt: skip


class _Features(nn.Module):
    """`Backbone.forward_features` as a module (its weights keep the ``cnn.net.*`` names)."""

    def __init__(self, cnn: Backbone) -> None:
        super().__init__()
        self.cnn = cnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn.forward_features(x)


@register_model(input_shapes=_INPUT)
def lrcn1u_captioner(*, num_classes: int, pretrained: bool | str = False, **kwargs) -> Captioner:
    """LRCN1u (Donahue et al. 2015): one LSTM over [word; visual feature]. Keyword arguments as
    `build_captioner` (backbone, pretrained, freeze_cnn, clip_encoder, hidden_size, ...).

    `pretrained` is named here, not left in ``kwargs``, so that loading a checkpoint (which passes
    ``pretrained=False`` to builders that name it) never reads the ImageNet or local file a config gives."""
    return build_captioner("1u", num_classes=num_classes, pretrained=pretrained, **kwargs)


@register_model(input_shapes=_INPUT)
def lrcn2u_captioner(*, num_classes: int, pretrained: bool | str = False, **kwargs) -> Captioner:
    """LRCN2u (Donahue et al. 2015): two stacked LSTMs, word and visual feature into the bottom one."""
    return build_captioner("2u", num_classes=num_classes, pretrained=pretrained, **kwargs)


@register_model(input_shapes=_INPUT)
def lrcn2f_captioner(*, num_classes: int, pretrained: bool | str = False, **kwargs) -> Captioner:
    """LRCN2f (Donahue et al. 2015), factored: the bottom LSTM reads words only, the top LSTM its output
    and the visual feature."""
    return build_captioner("2f", num_classes=num_classes, pretrained=pretrained, **kwargs)
