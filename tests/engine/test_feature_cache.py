"""Frozen parts computed once (`vidrec.engine.feature_cache`): a cached run trains the same weights as an
uncached one while its frozen trunk sees every input once in all; resume reuses the cache; a changed input,
transform or frozen weight makes new keys; a damaged cache file is computed again with one warning;
loader workers read the cache; randomly augmented items are not cached; the models' protocol
(Captioner, PreRNN, LRCN) gives the same outputs from cached features as from frames."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from vidrec.data.gestures import GestureDataset
from vidrec.engine import feature_cache as fc
from vidrec.engine.config import load_config
from vidrec.engine.train import train

ENGINE_TESTS = Path(__file__).resolve().parent
if str(ENGINE_TESTS) not in sys.path:  # the test-local model module `tinyvid`
    sys.path.insert(0, str(ENGINE_TESTS))

from tinyvid import CountingConv  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = ["Stop", "Clockwise", "Counter Clockwise", "Move"]
ROWS = 30  # per class: 6 validate, 16 are the gap, 8 train -> 32 training and 24 validation clips
T = 16


def write_gestures(folder: Path, seed: int = 0) -> np.ndarray:
    """A point_history.csv of 4 classes x ROWS windows (a still point, two circles, a line) + labels.csv."""
    rng = np.random.default_rng(seed)
    rows, t = [], np.arange(T)
    for c in range(4):
        for _ in range(ROWS):
            angle = {1: 1, 2: -1}.get(c, 0) * 2 * np.pi * t / T + rng.uniform(0, 2 * np.pi)
            pts = np.stack([0.05 * np.cos(angle), 0.09 * np.sin(angle)], 1) if c in (1, 2) else None
            pts = np.stack([0.01 * t, rng.uniform(-0.01, 0.01) * t], 1) if c == 3 else pts
            pts = rng.normal(0, 0.002, (T, 2)) if c == 0 else pts
            rows.append([c, *(pts - pts[:1]).ravel()])
    folder.mkdir(parents=True, exist_ok=True)
    lines = [",".join([str(int(r[0])), *(f"{v:.6f}" for v in r[1:])]) for r in rows]
    (folder / "point_history.csv").write_text("\n".join(lines) + "\n")
    (folder / "labels.csv").write_text("\n".join(NAMES) + "\n")
    return np.asarray(rows)


def _cfg(root: Path, out: Path, *extra: str):
    return load_config(
        "gestures_prernn_fc",  # the built-in config with a tiny frozen-trunk model (tinyvid.TinyFrozen)
        [f"data.root={root}", "data.size=16", "data.batch_size=8", "data.workers=0", "data.row_stride=1",
         "model.name=tinyvid:tiny_frozen", "model.kwargs={}", "schedule.epochs=2", f"out_dir={out}",
         "progress=false", "tensorboard=false", "plots=false", "runtime.device=cpu", *extra],
    )  # fmt: skip


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(path).items() if k.startswith("model.")}


def _train_counting(cfg) -> tuple[object, int]:
    CountingConv.frames = 0
    result = train(cfg)
    return result, CountingConv.frames


@pytest.fixture(scope="module")
def gestures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gestures")
    write_gestures(root)
    return root


def test_cached_run_matches_uncached_and_runs_the_frozen_part_once_per_input(
    gestures, tmp_path, capsys, monkeypatch
):
    rendered = []
    clip = GestureDataset.clip
    monkeypatch.setattr(GestureDataset, "clip", lambda self, row: rendered.append(row) or clip(self, row))
    cached, frames_cached = _train_counting(_cfg(gestures, tmp_path / "cached"))
    renders_cached, rendered[:] = len(rendered), []
    log = capsys.readouterr().out
    uncached, frames_uncached = _train_counting(
        _cfg(gestures, tmp_path / "plain", "runtime.feature_cache=false")
    )
    inputs = 32 + 24  # training + validation clips, each rendered from its own row
    assert frames_cached == inputs * T  # built once, before the first epoch; no epoch calls the trunk
    assert frames_uncached == 2 * inputs * T  # every epoch runs it on every training and validation clip
    assert renders_cached == inputs  # nor the renderer: a cached epoch reads features, never draws a clip
    assert len(rendered) == 2 * inputs
    assert "building the frozen part's features of 56 of 56 inputs" in log
    assert len(list((tmp_path / "cached" / "feature_cache").rglob("*.safetensors"))) == inputs
    assert not (tmp_path / "plain" / "feature_cache").exists()
    a, b = (
        _weights(tmp_path / "cached" / "last.safetensors"),
        _weights(tmp_path / "plain" / "last.safetensors"),
    )
    for k in a:  # the trunk's features are computed in other batches; the same numbers to float rounding
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    for h1, h2 in zip(cached.history, uncached.history, strict=True):
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-5)
        assert h1["val_top1"] == h2["val_top1"]


def test_resume_reuses_the_cache(gestures, tmp_path):
    _, first = _train_counting(_cfg(gestures, tmp_path / "run", "schedule.epochs=1"))
    assert first == 56 * T
    result, frames = _train_counting(_cfg(gestures, tmp_path / "run", "resume=auto"))
    assert frames == 0 and result.epochs_done == 2


def test_a_changed_row_or_frozen_weight_makes_new_keys(gestures, tmp_path):
    _train_counting(_cfg(gestures, tmp_path / "run", "schedule.epochs=1"))
    moved = tmp_path / "moved"
    moved.mkdir()
    lines = (gestures / "point_history.csv").read_text().splitlines()
    parts = lines[0].split(",")
    lines[0] = ",".join([parts[0], *(f"{float(v) * 1.5:.6f}" for v in parts[1:])])  # one training row moved
    (moved / "point_history.csv").write_text("\n".join(lines) + "\n")
    (moved / "labels.csv").write_text((gestures / "labels.csv").read_text())
    _, frames = _train_counting(_cfg(moved, tmp_path / "run", "resume=auto", "schedule.epochs=2"))
    assert frames == 1 * T  # only the moved row is computed again; the stale entry is never read
    # other frozen weights (a new run into the folder, another seed): a new fingerprint folder, every input
    # computed again (a resumed run keeps the checkpoint's weights, so its cache stays valid)
    _, frames = _train_counting(
        _cfg(moved, tmp_path / "run", "overwrite=true", "schedule.epochs=1", "runtime.seed=1")
    )
    assert frames == 56 * T and len(list((tmp_path / "run" / "feature_cache").iterdir())) == 2


def test_input_keys_follow_content_and_transform(gestures, tmp_path):
    from PIL import Image

    from vidrec.tasks.caption_data import CaptionDataset, CaptionItem
    from vidrec.text import Vocabulary

    ds = GestureDataset(gestures / "point_history.csv", size=16, background="plain")
    assert ds.input_key(0) == GestureDataset(
        gestures / "point_history.csv", size=16, background="plain"
    ).input_key(0)
    assert len({ds.input_key(i) for i in range(len(ds))}) == len(ds)  # every row is its own input
    others = [
        GestureDataset(gestures / "point_history.csv", size=24, background="plain"),
        GestureDataset(gestures / "point_history.csv", size=16, background="textured"),
    ]
    assert all(o.input_key(0) != ds.input_key(0) for o in others)
    assert ds.item_meta(3) == {k: v for k, v in ds[3].items() if k != "rgb"}

    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(tmp_path / "a.png")
    items = [CaptionItem("a.png", ["a grey square", "a square"])]
    vocab = Vocabulary.build(["a grey square"], min_count=1)
    caps = CaptionDataset(tmp_path, items, vocab, train=True, resize=16, size=16)
    assert caps.input_key(0) == caps.input_key(1)  # the two sentences of one image share its features
    assert CaptionDataset(tmp_path, items, vocab, train=True, resize=20, size=16).input_key(
        0
    ) != caps.input_key(0)
    before = caps.input_key(0)
    Image.fromarray(np.full((20, 20, 3), 91, np.uint8)).save(tmp_path / "a.png")  # new content, same name
    assert caps.input_key(0) != before
    meta = caps.item_meta(1)
    assert torch.equal(meta["caption"], caps[1]["caption"]) and meta["refs"] == caps[1]["refs"]


def test_weights_hash_follows_every_frozen_value():
    from tinyvid import TinyFrozen

    model = TinyFrozen(4)
    before = fc.weights_hash(model.frozen_prefix())
    with torch.no_grad():
        model.trunk[0].weight[0, 0, 0, 0] += 1e-6
    assert fc.weights_hash(model.frozen_prefix()) != before
    model.trunk[1].running_mean += 1.0  # a BatchNorm statistic is part of the frozen part too
    assert len({before, fc.weights_hash(model.frozen_prefix())}) == 2


def test_a_damaged_cache_file_is_computed_again_with_one_warning(gestures, tmp_path):
    _train_counting(_cfg(gestures, tmp_path / "run", "schedule.epochs=1"))
    damaged = sorted((tmp_path / "run" / "feature_cache").rglob("*.safetensors"))[5]
    damaged.write_bytes(b"\x00" * 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, frames = _train_counting(_cfg(gestures, tmp_path / "run", "resume=auto"))
    ours = [str(w.message) for w in caught if "feature-cache" in str(w.message)]
    assert len(ours) == 1 and str(damaged) in ours[0] and "\n" not in ours[0]
    assert frames == 1 * T and result.epochs_done == 2
    assert load_file(damaged)["features"].shape == (T, 16)  # written again, whole


def test_loader_workers_read_the_cache(gestures, tmp_path):
    _, frames0 = _train_counting(_cfg(gestures, tmp_path / "w0"))
    _, frames2 = _train_counting(_cfg(gestures, tmp_path / "w2", "data.workers=2"))
    assert frames0 == frames2 == 56 * T  # (a worker computing a feature would not count here: none does)
    a, b = _weights(tmp_path / "w0" / "last.safetensors"), _weights(tmp_path / "w2" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_random_items_are_not_cached_and_the_run_says_so(tmp_path):
    from tinyvid import TinyFrozen

    class Random(Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> dict:
            return {"rgb": torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8), "label": 0}

    cfg = _cfg(tmp_path, tmp_path / "run")
    said: list[str] = []
    ds = Random()
    out = fc.plan(cfg, TinyFrozen(2), ds, None, log=said.append)
    assert out == (ds, None, None) and len(said) == 1 and "randomly augmented" in said[0]
    out = fc.plan(cfg, TinyFrozen(2, freeze=False), ds, None, log=said.append)
    assert out == (ds, None, None) and len(said) == 1  # nothing frozen: nothing to say


def test_the_store_keeps_a_bounded_lru_and_the_rest_on_disk(tmp_path):
    store = fc.FeatureStore(tmp_path, max_bytes=3 * 400)
    for i in range(10):
        store.put(f"k{i}", torch.full((100,), float(i)))  # 400 bytes each
    assert store.bytes <= 3 * 400 and list(store.memory) == ["k7", "k8", "k9"]
    assert all(float(store.get(f"k{i}")[0]) == i for i in range(10))  # older ones come back from disk
    assert not list(tmp_path.glob(".*.tmp"))  # every write renamed into place


def test_models_give_the_same_outputs_from_cached_features():
    from vidrec.models.backbones import Backbone
    from vidrec.models.captioner import build_captioner
    from vidrec.models.lrcn import LRCN, FeatureEncoder
    from vidrec.models.prernn import prernn_fc_mobilenet_v2

    torch.manual_seed(0)
    frames = torch.randint(0, 255, (2, 4, 3, 32, 32), dtype=torch.uint8)
    prernn = prernn_fc_mobilenet_v2(num_classes=3, cell="gru", freeze_trunk=True).eval()
    cap = build_captioner("2f", num_classes=9, backbone="resnet18", hidden_size=8, embed_size=4).eval()
    enc = FeatureEncoder(Backbone("resnet18", num_classes=0))
    lrcn = LRCN(
        encoder=enc,
        rnn=torch.nn.LSTM(512, 8, batch_first=True),
        head=torch.nn.Linear(8, 3),
        freeze_encoder=True,
    ).eval()
    words = torch.tensor([[5, 6, 2], [7, 2, 0]])
    from vidrec.data.transforms import normalize_rgb

    for model, call in (
        (prernn, lambda m, x: m(x)),
        (cap, lambda m, x: m(x, words)),
        (lrcn, lambda m, x: m(x)),
    ):
        prefix = model.frozen_prefix()
        assert prefix is not None and not any(p.requires_grad for p in prefix.parameters())
        with torch.no_grad():
            want = call(model, normalize_rgb(frames))
            feats = fc.compute(prefix, frames)
            with fc.reading_features(model):
                got = call(model, feats)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert model.prefix_cached is False
    assert prernn.frozen_prefix()[-1] is prernn.net.features[17]  # the trunk up to the recurrent layer
    unfrozen = prernn_fc_mobilenet_v2(num_classes=3, cell="gru", freeze_trunk=False)
    assert unfrozen.frozen_prefix() is None
    assert build_captioner("1u", num_classes=9, backbone="resnet18", freeze_cnn=False).frozen_prefix() is None


@pytest.mark.slow
def test_two_gloo_ranks_share_one_cache_and_match_one_process(gestures, tmp_path):
    """Each rank builds its share of the cache, both wait at a barrier, then read every entry: the 2-rank
    run ends with the weights of one process with the same global batch (the trunk's BatchNorm is frozen)."""
    from proc_helpers import finish, launch_train
    from tinyvid import subprocess_env

    def argv(out: Path, batch: int):
        return lambda rank: [
            "gestures_prernn_fc", f"data.root={gestures}", "data.size=16", f"data.batch_size={batch}",
            "data.workers=0", "data.row_stride=1", "model.name=tinyvid:tiny_frozen", "model.kwargs={}",
            "schedule.epochs=2", f"out_dir={out}", "progress=false", "tensorboard=false", "plots=false",
            "runtime.device=cpu",
        ]  # fmt: skip

    env = subprocess_env()
    for code, err in finish(launch_train(2, argv(tmp_path / "ddp", 4), env)):
        assert code == 0, err[-3000:]
    [(code, err)] = finish(launch_train(1, argv(tmp_path / "one", 8), env))
    assert code == 0, err[-3000:]
    assert len(list((tmp_path / "ddp" / "feature_cache").rglob("*.safetensors"))) == 56
    a, b = _weights(tmp_path / "ddp" / "last.safetensors"), _weights(tmp_path / "one" / "last.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_training_flushes_denormals_and_restores_the_setting(gestures, tmp_path, monkeypatch):
    """Denormal floats (which small gate gradients and AdamW moments reach) are flushed while `train`
    runs, where they made each cached PreRNN epoch slower than the last; the caller's setting comes back."""
    from vidrec.engine import train as train_module

    seen, epoch = [], train_module.train_one_epoch

    def recording(*args, **kwargs):
        seen.append(train_module.flushing_denormals())
        return epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", recording)
    assert not train_module.flushing_denormals()
    train(_cfg(gestures, tmp_path / "run"))
    assert seen == [True, True]
    assert not train_module.flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        train(_cfg(gestures, tmp_path / "again"))
        assert train_module.flushing_denormals()  # a caller that flushed keeps flushing
    finally:
        torch.set_flush_denormal(False)
