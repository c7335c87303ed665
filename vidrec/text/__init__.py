"""Sentences: tokenizer and vocabulary (`vocab`), caption scores and retrieval recall (`metrics`)."""

from vidrec.text.vocab import BOS, EOS, PAD, UNK, Vocabulary, tokenize

__all__ = ["BOS", "EOS", "PAD", "UNK", "Vocabulary", "tokenize"]
