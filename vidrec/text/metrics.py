"""Caption scores through pycocoevalcap (coco-caption) and LRCN's retrieval recall.

`caption_scores` gives BLEU-1..4, METEOR, ROUGE-L and CIDEr-D (pycocoevalcap's `Cider` is coco-caption's
CIDEr-D). Sentences are tokenised with coco-caption's PTB tokenizer when Java runs (as published numbers
are), else with `vidrec.text.tokenize`; METEOR needs Java too and is left out, with the reason in
``scores.notes``, when Java is absent. `retrieval_recall` ranks images for each caption and captions for
each image by the model's sentence log-likelihood (Donahue et al., section on retrieval).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from vidrec.text.vocab import tokenize


@functools.cache
def java_problem() -> str:
    """'' when ``java -version`` runs, else why not (METEOR and the PTB tokenizer need Java)."""
    java = shutil.which("java")
    if java is None:
        return (
            "Java is not installed (METEOR and the PTB tokenizer need it; "
            "e.g. apt-get install default-jre-headless)"
        )
    try:
        subprocess.run([java, "-version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        return f"`java -version` failed ({err}); METEOR and the PTB tokenizer need a working Java"
    return ""


@functools.cache
def _meteor():
    """One METEOR Java process for the whole Python process (starting it costs seconds)."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


@dataclass
class CaptionScores:
    """Corpus-level scores (0..1; CIDEr-D 0..10) and notes on what was left out and why."""

    scores: dict[str, float]
    notes: list[str] = field(default_factory=list)


def _tokenized(refs: Mapping[str, Sequence[str]], cands: Mapping[str, str], ptb: bool):
    if ptb:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts = tok.tokenize({k: [{"caption": c} for c in refs[k]] for k in refs})
        res = tok.tokenize({k: [{"caption": cands[k]}] for k in refs})
        return gts, res
    gts = {k: [" ".join(tokenize(c)) for c in refs[k]] for k in refs}
    return gts, {k: [" ".join(tokenize(cands[k]))] for k in refs}


def caption_scores(
    refs: Mapping[str, Sequence[str]],
    cands: Mapping[str, str],
    *,
    meteor: bool = True,
    ptb: bool | None = None,
) -> CaptionScores:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr-D of `cands` (id -> sentence) against `refs` (id -> sentences).

    Args:
        meteor: compute METEOR (Java, a few seconds); skipped with a note when Java is absent.
        ptb: PTB-tokenise (Java); None = when Java runs.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    missing = sorted(set(refs) - set(cands))
    if missing or not refs:
        raise ValueError(f"caption_scores: no candidate for {missing[:3]}" if missing else "no references")
    problem, notes = java_problem(), []
    if ptb is None:
        ptb = not problem
    gts, res = _tokenized(refs, {k: cands[k] for k in refs}, ptb and not problem)
    if ptb and problem:
        notes.append(f"PTB tokenizer skipped: {problem}")
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}
    if meteor and not problem:
        out["METEOR"] = float(_meteor().compute_score(gts, res)[0])
    elif meteor:
        notes.append(f"METEOR skipped: {problem}")
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    return CaptionScores(out, notes)


def retrieval_recall(loglik: torch.Tensor, owner: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """R@K both ways from a sentence log-likelihood matrix.

    Args:
        loglik: ``(N_images, M_captions)`` log p(caption | image).
        owner: for each caption, the index of its image.

    Returns:
        ``{"caption_to_image_R@1": ..., "image_to_caption_R@1": ...}``: the fraction of captions whose
        image is among the K images giving it the highest likelihood, and of images with one of their own
        captions among their K most likely captions.
    """
    owner_t = torch.as_tensor(list(owner), dtype=torch.long)
    n, m = loglik.shape
    if owner_t.shape != (m,) or int(owner_t.max()) >= n:
        raise ValueError(f"owner needs one image index < {n} per caption ({m}), got {tuple(owner_t.shape)}")
    # rank of the true image for each caption: images strictly more likely than it
    true = loglik[owner_t, torch.arange(m)]  # (M,)
    c2i_rank = (loglik > true.unsqueeze(0)).sum(0)  # (M,)
    # for each image, the best rank among its own captions
    order = loglik.argsort(dim=1, descending=True)  # (N, M)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(m).expand(n, m))
    own = owner_t.unsqueeze(0) == torch.arange(n).unsqueeze(1)  # (N, M)
    i2c_rank = ranks.masked_fill(~own, m).min(dim=1).values  # (N,)
    out = {}
    for k in ks:
        out[f"caption_to_image_R@{k}"] = float((c2i_rank < k).float().mean())
        out[f"image_to_caption_R@{k}"] = float((i2c_rank < k).float().mean())
    return out
