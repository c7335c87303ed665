"""Sentence generation from a `vidrec.models.captioner.CaptionDecoder` (methods.md 1.5).

Every function takes the decoder and a batch of visual features ``cond (B, F)`` and returns word ids
``(B, L)`` (``<eos>`` included, ``<pad>`` after it), L <= `max_len`. Items never interact: each row's
search depends on its own feature only, and sampling draws each item's samples from its own generator
seeded with `seed`, so a batch gives what its items give one by one. ``<pad>`` and ``<bos>`` are never
generated.

- `greedy`: the most likely word at each step.
- `beam`: beam search of `width` hypotheses, ranked by length-normalised log-likelihood (sum of log p
  over the words and ``<eos>``, divided by their number); width 1 is greedy.
- `sample_best`: the paper's decoding: draw `n` sentences at temperature `temperature` and keep the
  one with the best length-normalised log-likelihood under the model (at temperature 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidrec.text.vocab import Vocabulary

PAD, BOS, EOS = Vocabulary.pad_id, Vocabulary.bos_id, Vocabulary.eos_id


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log-softmax ``(N, V)`` with ``<pad>`` and ``<bos>`` impossible."""
    logits = logits.float().clone()
    logits[:, [PAD, BOS]] = float("-inf")
    return F.log_softmax(logits, dim=-1)


@torch.no_grad()
def greedy(decoder, cond: torch.Tensor, *, max_len: int = 20) -> torch.Tensor:
    """``cond (B, F)`` -> ids ``(B, L)``: the arg-max word at each step."""
    b = cond.shape[0]
    word = torch.full((b,), BOS, dtype=torch.long, device=cond.device)
    out = torch.full((b, max_len), PAD, dtype=torch.long, device=cond.device)
    done = torch.zeros(b, dtype=torch.bool, device=cond.device)
    state = None
    for t in range(max_len):
        logits, state = decoder.step(cond, word, state)
        word = _log_probs(logits).argmax(dim=-1).masked_fill(done, PAD)  # (B,)
        out[:, t] = word
        done |= word == EOS
        if bool(done.all()):
            return out[:, : t + 1]
    return out


@torch.no_grad()
def beam(
    decoder, cond: torch.Tensor, *, width: int = 3, max_len: int = 20, length_norm: bool = True
) -> torch.Tensor:
    """``cond (B, F)`` -> ids ``(B, L)`` of the best of `width` beams per item."""
    b, k, dev = cond.shape[0], width, cond.device
    if k < 1:
        raise ValueError(f"beam width must be >= 1, got {k}")
    cond_k = cond.repeat_interleave(k, dim=0)  # (B*K, F)
    scores = torch.zeros(b, k, device=dev)
    scores[:, 1:] = float("-inf")  # all beams start equal: keep one
    tokens = torch.full((b, k, max_len), PAD, dtype=torch.long, device=dev)
    lengths = torch.zeros(b, k, device=dev)
    done = torch.zeros(b, k, dtype=torch.bool, device=dev)
    word, state, base = (
        torch.full((b * k,), BOS, dtype=torch.long, device=dev),
        None,
        torch.arange(b, device=dev),
    )
    for t in range(max_len):
        logits, state = decoder.step(cond_k, word, state)
        logp = _log_probs(logits).view(b, k, -1)  # (B, K, V)
        v = logp.shape[-1]
        finished = torch.full_like(logp[0, 0], float("-inf"))
        finished[PAD] = 0.0  # a finished beam continues with <pad> at no cost
        logp = torch.where(done.unsqueeze(-1), finished, logp)
        total = scores.unsqueeze(-1) + logp  # (B, K, V)
        new_len = lengths + (~done).float()  # (B, K)
        rank = total / new_len.clamp(min=1).unsqueeze(-1) if length_norm else total
        top = rank.view(b, k * v).topk(k, dim=1).indices  # (B, K)
        src, w = top // v, top % v  # source beam and word
        scores = total.view(b, k * v).gather(1, top)
        tokens = tokens.gather(1, src.unsqueeze(-1).expand(-1, -1, max_len)).clone()
        tokens[:, :, t] = w
        lengths = new_len.gather(1, src)
        done = done.gather(1, src) | (w == EOS)
        state = decoder.reorder(state, (base.unsqueeze(1) * k + src).view(-1))
        word = w.view(-1)
        if bool(done.all()):
            tokens = tokens[:, :, : t + 1]
            break
    final = scores / lengths.clamp(min=1) if length_norm else scores
    best = final.argmax(dim=1)  # (B,)
    return _trim(tokens[base, best])


@torch.no_grad()
def sample_best(
    decoder, cond: torch.Tensor, *, n: int = 100, temperature: float = 1.5, max_len: int = 20, seed: int = 0
) -> torch.Tensor:
    """``cond (B, F)`` -> ids ``(B, L)``: of `n` sentences sampled at `temperature` per item, the one
    with the highest length-normalised log-likelihood."""
    b, dev = cond.shape[0], cond.device
    if n < 1 or temperature <= 0:
        raise ValueError(f"need n >= 1 and temperature > 0, got n={n}, temperature={temperature}")
    gens = [torch.Generator(device=dev).manual_seed(seed) for _ in range(b)]  # one stream per item
    cond_n = cond.repeat_interleave(n, dim=0)  # (B*N, F)
    word = torch.full((b * n,), BOS, dtype=torch.long, device=dev)
    out = torch.full((b * n, max_len), PAD, dtype=torch.long, device=dev)
    done = torch.zeros(b * n, dtype=torch.bool, device=dev)
    loglik, lengths, state = torch.zeros(b * n, device=dev), torch.zeros(b * n, device=dev), None
    for t in range(max_len):
        logits, state = decoder.step(cond_n, word, state)
        logp = _log_probs(logits)  # (B*N, V)
        probs = F.softmax(logp / temperature, dim=-1)
        draws = [torch.multinomial(probs[i * n : (i + 1) * n], 1, generator=gens[i]) for i in range(b)]
        word = torch.cat(draws)[:, 0].masked_fill(done, PAD)
        loglik += logp.gather(1, word.unsqueeze(1))[:, 0].masked_fill(done, 0.0)
        lengths += (~done).float()
        out[:, t] = word
        done |= word == EOS
        if bool(done.all()):
            out = out[:, : t + 1]
            break
    best = (loglik / lengths.clamp(min=1)).view(b, n).argmax(dim=1)  # (B,)
    return _trim(out.view(b, n, -1)[torch.arange(b, device=dev), best])


def _trim(ids: torch.Tensor) -> torch.Tensor:
    """Drop trailing all-<pad> columns, so a batch and its items one by one give equal tensors."""
    keep = (ids != PAD).any(dim=0).nonzero()
    return ids[:, : int(keep.max()) + 1] if len(keep) else ids[:, :1]


@torch.no_grad()
def sentence_loglik(decoder, cond: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    """log p(caption | feature): ``cond (B, F)``, target ids ``captions (B, L)`` -> ``(B,)`` sums over
    the words and ``<eos>`` (padding ignored)."""
    bos = torch.full((cond.shape[0], 1), BOS, dtype=torch.long, device=cond.device)
    logits = decoder(cond, torch.cat([bos, captions[:, :-1]], dim=1))  # (B, L, V)
    logp = F.log_softmax(logits.float(), dim=-1).gather(2, captions.unsqueeze(-1))[..., 0]  # (B, L)
    return logp.masked_fill(captions == PAD, 0.0).sum(dim=1)


def decode(decoder, cond: torch.Tensor, *, method: str = "beam", beam_width: int = 3, n: int = 100,
           temperature: float = 1.5, max_len: int = 20, seed: int = 0) -> torch.Tensor:  # fmt: skip
    """One entry point: ``method`` greedy | beam | sample."""
    if method == "greedy":
        return greedy(decoder, cond, max_len=max_len)
    if method == "beam":
        return beam(decoder, cond, width=beam_width, max_len=max_len)
    if method == "sample":
        return sample_best(decoder, cond, n=n, temperature=temperature, max_len=max_len, seed=seed)
    raise ValueError(f"decoding method must be greedy, beam or sample, got {method!r}")
