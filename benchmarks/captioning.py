"""LRCN captioning on real photos and video description on real clips (issue 14, methods.md 1.5).

Image captioning (Flickr8k subset, FLICKR_ROOT with images/ and captions.csv): the images sorted by name,
every 5th (index % 5 == 4) is validation, the others training. ImageNet MobileNetV2 features (frozen,
centre 224 crop of the 256 short side, 1280-d) are computed once and cached; LRCN1u, LRCN2u and LRCN2f
decoders are trained on the training images' (image, caption) pairs for each seed, then scored on the
validation images (beam 3) against all their captions: BLEU-4, METEOR, CIDEr-D (pycocoevalcap, PTB
tokenised) and R@1 both ways from the sentence log-likelihood (each validation image's first
caption against all validation images). Beside them, in the same run: a nearest-neighbour baseline (the
first caption of the training image whose feature is most cosine-similar) and human agreement (each
validation image's first caption against its other four; also over all images, the data README's anchor).

Video description (msrvtt_sample, MSRVTT_ROOT with videos/, captions.json, split.json): 8 frames spread
over each clip, same frozen features; an LRCN2f describer (mean-pooled clip encoder, or an LSTM clip
encoder) trained from scratch vs fine-tuned from the image captioner of the same seed (all weights that
match). One vocabulary (words seen >= --min-count times in the Flickr training captions plus the MSR-VTT
training sentences) serves both tasks, so the image captioner's weights fit the describer.

Usage: python benchmarks/captioning.py ../shared/data/flickr8k_captions ../shared/data/msrvtt_sample
Ends with `RESULT captioning ...`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vidrec import benchdocs
from vidrec.data.transforms import normalize_rgb
from vidrec.models.backbones import Backbone
from vidrec.models.captioner import build_captioner, caption_loss
from vidrec.progress import progress
from vidrec.tasks.caption_data import load_clip, load_image, read_captions, split_items
from vidrec.text import Vocabulary
from vidrec.text.decode import beam, sentence_loglik
from vidrec.text.metrics import caption_scores, java_problem, retrieval_recall


@torch.no_grad()
def features(paths: list[Path], cache: Path, *, video: bool, frames: int) -> torch.Tensor:
    """(N, T, 1280) frozen ImageNet MobileNetV2 features of images (T = 1) or clips, cached in `cache`."""
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    cnn = Backbone("mobilenet_v2", pretrained=True, num_classes=0).eval()
    out = []
    for p in progress(paths, desc=f"features {cache.stem}"):
        x = load_clip(p, frames=frames) if video else load_image(p)  # uint8 (T, 3, 224, 224)
        out.append(cnn.forward_features(normalize_rgb(x)))  # (T, 1280)
    feats = torch.stack(out)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(feats, cache)
    return feats


def pairs(items, vocab: Vocabulary, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(item index (P,), padded target ids (P, L)) of every (item, sentence) pair."""
    idx, caps = [], []
    for i, it in enumerate(items):
        for s in it.sentences:
            idx.append(i)
            caps.append(torch.tensor(vocab.encode(s, max_len=max_len - 1)))
    return torch.tensor(idx), torch.nn.utils.rnn.pad_sequence(caps, batch_first=True)


def fit(model, feats, idx, caps, *, epochs: int, lr: float, seed: int, batch: int = 64, desc: str = ""):
    """Teacher-forced training with Adam, gradient norm clipped to 5; returns the final mean loss."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    total = 0.0
    for _ in progress(range(epochs), desc=desc, leave=False):
        order, total = torch.randperm(len(idx), generator=g), 0.0
        for k in range(0, len(order), batch):
            b = order[k : k + batch]
            cap = caps[b][:, : int((caps[b] != 0).sum(1).max())]
            loss = caption_loss(model(feats[idx[b]], cap), cap)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += loss.item() * len(b)
    model.eval()
    return total / len(idx)


@torch.no_grad()
def score(model, feats, items, vocab, *, meteor: bool, max_len: int, retrieval: bool) -> dict:
    cond = model.encode(feats)
    ids = beam(model.decoder, cond, width=3, max_len=max_len)
    cands = {it.file: vocab.decode(row) for it, row in zip(items, ids, strict=True)}
    out = caption_scores({it.file: it.sentences for it in items}, cands, meteor=meteor).scores
    if retrieval:  # each validation image's first caption against every validation image
        idx, caps = pairs([type(it)(it.file, it.sentences[:1]) for it in items], vocab, max_len)
        ll = torch.stack(
            [
                sentence_loglik(model.decoder, cond[i : i + 1].expand(len(caps), -1), caps)
                for i in range(len(items))
            ]
        )  # (N images, N captions)
        out.update(retrieval_recall(ll, idx.tolist()))
    out["example"] = next(iter(cands.values()))
    return out


def nearest_neighbour(train_f, val_f, train_items, val_items, meteor: bool) -> dict:
    a, b = F.normalize(train_f.mean(1), dim=1), F.normalize(val_f.mean(1), dim=1)
    nn_idx = (b @ a.T).argmax(dim=1)
    cands = {it.file: train_items[int(j)].sentences[0] for it, j in zip(val_items, nn_idx, strict=True)}
    return caption_scores({it.file: it.sentences for it in val_items}, cands, meteor=meteor).scores


def human(items, meteor: bool) -> dict:
    refs = {it.file: it.sentences[1:] for it in items}
    return caption_scores(refs, {it.file: it.sentences[0] for it in items}, meteor=meteor).scores


def model_for(variant: str, vocab: Vocabulary, args, seed: int, clip_encoder: str = "mean"):
    torch.manual_seed(seed)
    return build_captioner(
        variant, num_classes=len(vocab), backbone="none", feature_dim=1280, clip_encoder=clip_encoder,
        embed_size=args.embed, hidden_size=args.hidden, dropout=0.5,
    )  # fmt: skip


def mean_std(rows: list[dict], key: str) -> str:
    v = torch.tensor([r[key] for r in rows], dtype=torch.float64)
    return f"{v.mean():.3f} ± {v.std(unbiased=False):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("flickr_root", type=Path, help="folder with images/ and captions.csv")
    p.add_argument("msrvtt_root", type=Path, help="folder with videos/, captions.json and split.json")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--epochs", type=int, default=8, help="image-captioner epochs (default: 8)")
    p.add_argument("--video-epochs", type=int, default=20, help="video-describer epochs (default: 20)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    p.add_argument("--video-lr", type=float, default=1e-3, help="video describer's Adam lr (default: 1e-3)")
    p.add_argument("--hidden", type=int, default=256, help="LSTM units (paper: 1000; default: 256)")
    p.add_argument("--embed", type=int, default=128, help="word/visual embedding width (default: 128)")
    p.add_argument("--min-count", type=int, default=3, help="vocabulary min word count (default: 3)")
    p.add_argument("--max-len", type=int, default=20, help="words + <eos> per sentence (default: 20)")
    p.add_argument("--frames", type=int, default=8, help="frames per video clip (default: 8)")
    p.add_argument("--variants", nargs="+", default=["1u", "2u", "2f"], choices=["1u", "2u", "2f"],
                   help="image decoders to train (default: 1u 2u 2f; the video part needs 2f)")  # fmt: skip
    p.add_argument("--clip-encoders", nargs="+", default=["mean"], choices=["mean", "lstm"],
                   help="video clip encoders to compare (default: mean)")  # fmt: skip
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default: 1; more threads on a loaded 2-core machine are far slower)",
    )
    p.add_argument("--cache", type=Path, default=Path("runs/bench_captioning"), help="feature cache folder")
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="write the tables into docs/benchmarks.md (section captioning)",
    )
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    meteor = not java_problem()
    if not meteor:
        print(f"note: {java_problem()}; METEOR is left out")
    items = read_captions(args.flickr_root / "captions.csv")
    train_items, val_items = split_items(items, val_every=5)
    vids = read_captions(args.msrvtt_root / "captions.json")
    vtrain, vval = split_items(vids, split_file=str(args.msrvtt_root / "split.json"))
    vocab = Vocabulary.build(
        [s for it in train_items + vtrain for s in it.sentences], min_count=args.min_count
    )
    feats = features([args.flickr_root / "images" / it.file for it in items], args.cache / "flickr.pt",
                     video=False, frames=1)  # fmt: skip
    pos = {it.file: i for i, it in enumerate(items)}
    train_f = feats[[pos[it.file] for it in train_items]]
    val_f = feats[[pos[it.file] for it in val_items]]
    idx, caps = pairs(train_items, vocab, args.max_len)
    print(f"flickr: {len(train_items)} training images ({len(idx)} captions), {len(val_items)} validation "
          f"images; vocabulary {len(vocab)} (min count {args.min_count}); features {tuple(feats.shape)} "
          f"in {time.perf_counter() - tic:.0f} s")  # fmt: skip
    rows: dict[str, list[dict]] = {}
    captioners: dict[tuple[str, int], torch.nn.Module] = {}
    for variant in args.variants:
        for seed in args.seeds:
            model = model_for(variant, vocab, args, seed)
            t0 = time.perf_counter()
            loss = fit(
                model,
                train_f,
                idx,
                caps,
                epochs=args.epochs,
                lr=args.lr,
                seed=seed,
                desc=f"LRCN{variant}/{seed}",
            )
            r = score(model, val_f, val_items, vocab, meteor=meteor, max_len=args.max_len, retrieval=True)
            r.update(train_loss=loss, seconds=time.perf_counter() - t0)
            rows.setdefault(f"LRCN{variant}", []).append(r)
            captioners[(variant, seed)] = model
            print(f"LRCN{variant} seed {seed}: CIDEr-D {r['CIDEr-D']:.3f} BLEU-4 {r['BLEU-4']:.3f} "
                  f"METEOR {r.get('METEOR', float('nan')):.3f} R@1 c->i {r['caption_to_image_R@1']:.3f} "
                  f"i->c {r['image_to_caption_R@1']:.3f} ({r['seconds']:.0f} s) "
                  f"e.g. '{r['example']}'")  # fmt: skip
    rows["nearest neighbour"] = [nearest_neighbour(train_f, val_f, train_items, val_items, meteor)]
    rows["human (first vs other 4)"] = [human(val_items, meteor)]
    human_all = human(items, meteor)
    keys = ["BLEU-4", "METEOR", "CIDEr-D", "caption_to_image_R@1", "image_to_caption_R@1"]
    keys = [k for k in keys if meteor or k != "METEOR"]
    doc: list[str] = []  # what is printed below, for --write-docs

    def say(line: str = "") -> None:
        print(line)
        doc.append(line)

    say(f"\nImage captioning, {len(val_items)} Flickr8k validation images (index % 5 == 4 of the "
        f"{len(items)} sorted), {len(train_items)} training; seeds {args.seeds} (mean ± std); "
        f"{args.epochs} epochs, hidden {args.hidden}, embed {args.embed}, beam 3; {platform.machine()}, "
        f"{args.threads} threads\n")  # fmt: skip
    say("| model | " + " | ".join(keys) + " |\n|---" * 1 + "|---" * len(keys) + "|")
    for name, rs in rows.items():
        say(f"| {name} | " + " | ".join(mean_std(rs, k) if k in rs[0] else "-" for k in keys) + " |")
    say(
        "\nhuman agreement over all "
        + f"{len(items)} images: "
        + ", ".join(f"{k} {v:.3f}" for k, v in human_all.items())
    )

    vpaths = [args.msrvtt_root / "videos" / it.file for it in vids]
    vfeats = features(vpaths, args.cache / f"msrvtt{args.frames}.pt",
                      video=True, frames=args.frames)  # fmt: skip
    vpos = {it.file: i for i, it in enumerate(vids)}
    vtrain_f = vfeats[[vpos[it.file] for it in vtrain]]
    vval_f = vfeats[[vpos[it.file] for it in vval]]
    vidx, vcaps = pairs(vtrain, vocab, args.max_len)
    vrows: dict[str, list[dict]] = {}
    for enc in args.clip_encoders:
        for start in ("scratch", "from image LRCN2f"):
            for seed in args.seeds:
                model = model_for("2f", vocab, args, seed, clip_encoder=enc)
                if start != "scratch":
                    own = model.state_dict()
                    src = {k: v for k, v in captioners[("2f", seed)].state_dict().items()
                           if k in own and own[k].shape == v.shape}  # fmt: skip
                    model.load_state_dict(src, strict=False)
                fit(model, vtrain_f, vidx, vcaps, epochs=args.video_epochs, lr=args.video_lr, seed=seed,
                    desc=f"video {enc} {start} {seed}")  # fmt: skip
                r = score(model, vval_f, vval, vocab, meteor=meteor, max_len=args.max_len, retrieval=False)
                vrows.setdefault(f"{enc} encoder, {start}", []).append(r)
                print(f"video {enc} {start} seed {seed}: CIDEr-D {r['CIDEr-D']:.3f} e.g. '{r['example']}'")
    vkeys = [k for k in ("BLEU-4", "METEOR", "CIDEr-D") if meteor or k != "METEOR"]
    say(f"\nVideo description, msrvtt_sample: {len(vtrain)} training clips ({len(vidx)} sentences), "
        f"{len(vval)} validation clips (split.json), {args.frames} frames each; LRCN2f, "
        f"{args.video_epochs} epochs; seeds {args.seeds} (mean ± std)\n")  # fmt: skip
    say("| describer | " + " | ".join(vkeys) + " |\n|---" + "|---" * len(vkeys) + "|")
    for name, rs in vrows.items():
        say(f"| {name} | " + " | ".join(mean_std(rs, k) for k in vkeys) + " |")

    def m(name, key, table=rows):
        return sum(r[key] for r in table[name]) / len(table[name])

    nn_c = m("nearest neighbour", "CIDEr-D")
    result = {
        **{f"lrcn{v}_cider": round(m(f"LRCN{v}", "CIDEr-D"), 4) for v in args.variants},
        "nn_cider": round(nn_c, 4),
        "human_cider": round(m("human (first vs other 4)", "CIDEr-D"), 4),
        "all_beat_nn": all(m(f"LRCN{v}", "CIDEr-D") > nn_c for v in args.variants),
        "video_finetuned_cider": round(m("mean encoder, from image LRCN2f", "CIDEr-D", vrows), 4),
        "video_scratch_cider": round(m("mean encoder, scratch", "CIDEr-D", vrows), 4),
        "seconds": round(time.perf_counter() - tic),
    }
    if {"1u", "2f"} <= set(args.variants):
        result["lrcn2f_ge_1u"] = m("LRCN2f", "CIDEr-D") >= m("LRCN1u", "CIDEr-D")
    result["finetuned_beats_scratch"] = result["video_finetuned_cider"] > result["video_scratch_cider"]
    line = "RESULT captioning " + " ".join(f"{k}={v}" for k, v in result.items())
    print(line)
    if args.write_docs:
        text = [
            "## LRCN captioning and video description (`benchmarks/captioning.py`)",
            "",
            f"`{benchdocs.command()}`: frozen ImageNet MobileNetV2 features, decoders scored with beam 3",
            "on held-out photos and clips (pycocoevalcap, PTB-tokenised); the nearest-neighbour caption and",
            "human agreement computed in the same run." + ("" if meteor else " METEOR left out: no Java."),
            *doc,
            "",
            f"Machine: {benchdocs.machine()}; {result['seconds'] / 60:.1f} min in all.",
            "",
            f"`{line}`",
        ]
        benchdocs.write_section("captioning", "\n".join(text))
    (args.cache / "result.json").write_text(
        json.dumps({"image": rows, "video": vrows, "result": result}, indent=1, default=str)
    )


if __name__ == "__main__":
    main()
