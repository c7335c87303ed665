"""Tokenizer and vocabulary; caption scores through pycocoevalcap (BLEU by hand); retrieval recall."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vidrec.text import Vocabulary, tokenize
from vidrec.text.metrics import caption_scores, java_problem, retrieval_recall

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A child's dog runs , fast .") == ["a", "child's", "dog", "runs", "fast"]


def test_vocabulary_min_count_specials_and_json_round_trip():
    vocab = Vocabulary.build(["a dog runs", "a dog sits", "a cat"], min_count=2)
    assert vocab.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "dog"]  # most frequent first
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    ids = vocab.encode("A dog flies.")
    assert ids == [4, 5, 3, 2]  # "flies" is unknown, <eos> last
    assert vocab.decode([1, 4, 5, 2, 5, 0]) == "a dog"  # stops at <eos>
    assert vocab.encode("a dog a dog", max_len=2) == [4, 5, 2]
    again = Vocabulary.from_state(json.loads(json.dumps(vocab.to_state())))
    assert again.itos == vocab.itos
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(["x"], min_count=0)


def test_bleu_of_a_known_pair_is_the_hand_computed_value():
    # candidate "the cat sat on the mat", reference "the cat is on the mat" (no brevity penalty: 6 = 6 words)
    # unigrams: the, cat, on, the, mat match: 5/6; bigrams: "the cat", "on the", "the mat": 3/5;
    # trigrams: "on the mat": 1/4; BLEU-n = geometric mean of the first n precisions.
    s = caption_scores(
        {"x": ["the cat is on the mat"]}, {"x": "the cat sat on the mat"}, meteor=False, ptb=False
    )
    assert s.scores["BLEU-1"] == pytest.approx(5 / 6, abs=1e-6)
    assert s.scores["BLEU-2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5), abs=1e-6)
    assert s.scores["BLEU-3"] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3), abs=1e-6)
    assert s.scores["BLEU-4"] < 1e-3  # no 4-gram matches
    # ROUGE-L: LCS "the cat on the mat" = 5 of 6 both ways
    assert s.scores["ROUGE-L"] == pytest.approx(5 / 6, abs=1e-6)


def test_cider_rewards_the_right_sentence():
    refs = {
        "a": ["a dog runs on grass", "a brown dog runs"],
        "b": ["a man rides a bike", "a person on a bike"],
    }
    good = caption_scores(refs, {"a": "a dog runs", "b": "a man rides a bike"}, meteor=False, ptb=False)
    swapped = caption_scores(refs, {"a": "a man rides a bike", "b": "a dog runs"}, meteor=False, ptb=False)
    assert good.scores["CIDEr-D"] > 1.0 > swapped.scores["CIDEr-D"]


def test_meteor_and_ptb_with_java_or_a_clear_note_without(monkeypatch):
    refs, cands = {"a": ["a dog runs on grass ."]}, {"a": "a dog runs on the grass"}
    if java_problem():
        s = caption_scores(refs, cands)
        assert "METEOR" not in s.scores and "Java" in s.notes[0]
        pytest.skip(f"METEOR needs Java: {java_problem()}")
    s = caption_scores(refs, cands, ptb=False)  # one Java process (METEOR's); the benchmark runs PTB too
    assert 0.3 < s.scores["METEOR"] <= 1.0 and not s.notes
    monkeypatch.setattr("vidrec.text.metrics.java_problem", lambda: "Java is not installed (test)")
    s = caption_scores(refs, cands)
    assert "METEOR" not in s.scores and s.notes == ["METEOR skipped: Java is not installed (test)"]
    assert s.scores["BLEU-1"] > 0.5  # the other scores are still there


def test_retrieval_recall_both_ways():
    # 3 images, 4 captions owned by images 0, 1, 2, 2
    ll = torch.tensor([[0.0, -9.0, -1.0, -5.0], [-1.0, -2.0, -3.0, -5.0], [-2.0, -3.0, -2.0, -1.0]])
    r = retrieval_recall(ll, [0, 1, 2, 2], ks=(1, 2))
    # caption -> image: cap0 best image 0 (yes), cap1 best image 1 (yes), cap2 best image 0 (no, rank 2),
    # cap3 best image 2 (yes)
    assert r["caption_to_image_R@1"] == pytest.approx(3 / 4) and r["caption_to_image_R@2"] == 1.0
    # image -> caption: image0 best cap0 (own); image1 best cap0 (own cap1 is 2nd); image2 best cap3 (own)
    assert r["image_to_caption_R@1"] == pytest.approx(2 / 3) and r["image_to_caption_R@2"] == 1.0
    with pytest.raises(ValueError, match="owner"):
        retrieval_recall(ll, [0, 1, 2])
