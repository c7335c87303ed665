"""Tokenizer and vocabulary of the caption task (LRCN's sentence generation, methods.md 1.5).

A sentence is lower-cased and split into words (letters, digits and inner apostrophes); punctuation is
dropped, as coco-caption's tokenizer drops it before scoring. The vocabulary holds the words seen at
least `min_count` times in the *training* captions, after four special tokens with fixed ids:
``<pad>`` 0 (ignored by the loss), ``<bos>`` 1 (the input of the first step), ``<eos>`` 2 (ends a
sentence: the softmax is over the words plus ``<eos>``) and ``<unk>`` 3 (any other word). It is
JSON-able (`to_state` / `from_state`), so a checkpoint carries it and inference needs nothing else.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """``"A dog runs, fast."`` -> ``["a", "dog", "runs", "fast"]`` (lower case, punctuation dropped)."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Word <-> id mapping with the four special tokens first (ids 0..3)."""

    def __init__(self, words: Sequence[str]) -> None:
        words = [w for w in words if w not in SPECIALS]
        self.itos: list[str] = [*SPECIALS, *words]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique")

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, sentences: Iterable[str], *, min_count: int = 1) -> Vocabulary:
        """The words of `sentences` seen at least `min_count` times, most frequent first (ties by word)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(w for s in sentences for w in tokenize(s))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, *, max_len: int | None = None) -> list[int]:
        """Word ids of `text` followed by ``<eos>``; at most `max_len` words before it."""
        ids = [self.stoi.get(w, self.unk_id) for w in tokenize(text)]
        return [*ids[:max_len], self.eos_id] if max_len is not None else [*ids, self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """The words of `ids` up to the first ``<eos>`` (``<bos>`` / ``<pad>`` skipped)."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return " ".join(words)

    def to_state(self) -> dict[str, Any]:
        """JSON-able form (stored in checkpoints)."""
        return {"words": self.itos[len(SPECIALS) :], "specials": list(SPECIALS)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Vocabulary:
        if list(state.get("specials", SPECIALS)) != list(SPECIALS):
            raise ValueError(f"vocabulary specials {state.get('specials')} differ from {list(SPECIALS)}")
        return cls(list(state["words"]))
