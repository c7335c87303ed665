"""The per-frame recipe of `segment_davis`: augmentation that keeps image and mask aligned, every training
frame sampled, only the stem and the BatchNorm statistics frozen, the soft-Jaccard term, and the
per-sequence J / F table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidrec.data.davis import IGNORE, Augment, DavisFrames, find_sequences
from vidrec.engine.seg_metrics import JF, boundary_f, format_sequence_table
from vidrec.models.segnet import FrozenStatsBatchNorm2d, segnet_mobilenet_v2
from vidrec.tasks.segment import Segment, soft_jaccard_loss


def square_frame(h: int = 96, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A dark frame with a bright off-centre square, and its mask."""
    img = np.full((h, w, 3), 20, np.uint8)
    mask = np.zeros((h, w), np.int64)
    mask[20:60, 30:80] = 1
    img[mask == 1] = 230
    return img, mask


def erode(region: torch.Tensor) -> torch.Tensor:
    """Pixels of a bool (H, W) region whose 3x3 neighbourhood is inside it."""
    return -torch.nn.functional.max_pool2d(-region[None].float(), 3, 1, 1)[0] > 0.5


def test_augment_keeps_the_square_under_its_mask_through_scale_crop_and_flip():
    img, mask = square_frame()
    augment = Augment((48, 80), scale=(0.5, 1.5), crop=(40, 64), flip=True, color=0.0)
    torch.manual_seed(0)
    flipped_or_not, sizes, padded = set(), set(), 0
    for _ in range(40):
        image, target = augment(img, mask)
        assert image.dtype == torch.uint8 and image.shape == (3, 40, 64) and target.shape == (40, 64)
        assert set(target.unique().tolist()) <= {0, 1, IGNORE}
        gray = image.float().mean(0)
        # resizing blurs the edge: away from it (a 3x3 erosion of each region), the square is bright
        # under the mask and dark elsewhere
        inside, outside = erode(target == 1), erode(target == 0)
        assert (gray[inside] > 125).all() and (gray[outside] < 125).all()
        inside = gray[target == 1]
        padded += int((target == IGNORE).any())
        sizes.add(int((target == 1).sum()))
        if inside.numel() > 8:  # where the square sits: left half (as drawn) or mirrored
            cols = torch.nonzero(target == 1)[:, 1].float().mean() / 64
            flipped_or_not.add(bool(cols > 0.5))
    assert len(sizes) > 10 and padded > 0  # scales and crops vary; scales < crop / size pad
    assert flipped_or_not == {True, False}  # flips happen, to image and mask together


def test_colour_jitter_changes_the_image_only():
    img, mask = square_frame()
    torch.manual_seed(1)
    plain = Augment((96, 160), flip=False)(img, mask)
    torch.manual_seed(1)
    jittered = Augment((96, 160), flip=False, color=0.4)(img, mask)
    assert torch.equal(plain[1], jittered[1]) and torch.equal(plain[1], torch.from_numpy(mask))
    assert not torch.equal(plain[0], jittered[0])


def test_every_frame_of_the_training_sequences_is_sampled_each_epoch(tiny_davis, tmp_path):
    from vidrec.engine.config import load_config
    from vidrec.engine.distributed import DistInfo
    from vidrec.engine.loaders import make_loaders

    cfg = load_config(
        None,
        [
            "task=segment",
            f"data.root={tiny_davis}",
            "data.batch_size=2",  # 22 frames: whole batches, none dropped
            "data.workers=0",
            "task_options={size: [24, 32], crop: [16, 24], scale: [0.5, 1.5], color_jitter: 0.2, "
            "train_sequences: [seq-a, seq-b], val_sequences: [seq-c]}",
            f"out_dir={tmp_path / 'run'}",
        ],
    )
    task = Segment(cfg)
    train, _ = task.datasets(torch.nn.Identity())
    loader, sampler, _ = make_loaders(cfg, train, None, DistInfo(), task.collate())
    every = sorted((s, i) for s, n in (("seq-a", 12), ("seq-b", 10)) for i in range(n))  # ends too
    orders = []
    for epoch in range(2):
        loader.dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        seen = []
        for batch in loader:
            assert batch["image"].shape[-2:] == (16, 24) and batch["mask"].shape[-2:] == (16, 24)
            seen += [(s, int(i)) for s, i in zip(batch["sequence"], batch["index"], strict=True)]
        assert sorted(seen) == every  # each frame once an epoch
        orders.append(seen)
    assert orders[0] != orders[1]  # shuffled anew


def test_the_training_set_is_every_frame_of_its_sequences(tiny_davis):
    seqs = find_sequences(tiny_davis, ["seq-a", "seq-b"])
    data = DavisFrames(seqs, size=(24, 32), augment=Augment((24, 32)))
    assert data.index == [(0, i) for i in range(12)] + [(1, i) for i in range(10)]


def test_freeze_stem_bn_freezes_exactly_the_stem_and_the_batchnorm_statistics():
    torch.manual_seed(0)
    model = segnet_mobilenet_v2(freeze_stem_bn=True).train()
    plain = segnet_mobilenet_v2(freeze_stem_bn=False)
    assert model.state_dict().keys() == plain.state_dict().keys()  # checkpoints load either way
    bns = [m for m in model.feature_net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 52 and all(isinstance(m, FrozenStatsBatchNorm2d) for m in bns)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    with torch.no_grad():
        assert torch.allclose(out, model.eval()(x), atol=1e-5)  # training normalises with running stats
    out.logsumexp(1).mean().backward()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())  # never updated
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith("feature_net.0.")}
    assert frozen == {"feature_net.0.0.weight", "feature_net.0.1.weight", "feature_net.0.1.bias"}
    for name, p in model.named_parameters():
        if name not in frozen:
            assert p.grad is not None and p.grad.abs().sum() > 0, name  # BN scale / shift train too


def test_soft_jaccard_is_zero_when_right_and_skips_ignored_pixels():
    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    mask[0, 2:6, 2:6] = 1
    sure = torch.stack([(1 - mask) * 20.0, mask * 20.0], dim=1).float()  # (1, 2, 8, 8): confident, right
    assert soft_jaccard_loss(sure, mask) == pytest.approx(0.0, abs=1e-6)
    wrong = sure.flip(1)
    assert soft_jaccard_loss(wrong, mask) == pytest.approx(1 - 1 / (64 + 1), abs=1e-4)
    padded = mask.clone()
    padded[0, :, :2] = IGNORE  # the predicted foreground there does not count
    assert soft_jaccard_loss(wrong, padded) == pytest.approx(1 - 1 / (48 + 1), abs=1e-4)


def test_the_per_sequence_table_matches_a_hand_computation():
    gt = np.zeros((10, 10), bool)
    gt[2:8, 2:8] = True  # 36 pixels
    half = np.zeros_like(gt)
    half[2:8, 2:5] = True  # J = 18 / 36 = 0.5 (not above 0.5: not recalled)
    most = gt.copy()
    most[2:8, 6:8] = False  # J = 24 / 36
    jf = JF(bound_th=1)
    jf.update("b", 1, gt, gt)  # J 1
    jf.update("b", 2, half, gt)  # J 0.5
    jf.update("b", 3, most, gt)  # J 0.6667
    jf.update("a", 1, np.zeros_like(gt), gt)  # J 0, F 0
    rows = jf.table()
    assert [r.name for r in rows] == ["a", "b"] and [r.frames for r in rows] == [1, 3]
    a, b = rows
    assert (a.J, a.J_recall, a.F) == (0.0, 0.0, 0.0)
    assert pytest.approx((1 + 0.5 + 24 / 36) / 3) == b.J
    assert b.J_recall == pytest.approx(2 / 3)  # 1 and 0.667 are above 0.5, 0.5 is not
    f_half, f_most = boundary_f(half, gt, 1), boundary_f(most, gt, 1)  # per frame: test_jf_metrics
    assert 0 < f_half < 1 and 0 < f_most < 1 and pytest.approx((1 + f_half + f_most) / 3) == b.F
    text = format_sequence_table(rows).splitlines()
    assert text[0] == "| sequence | J mean | J recall | F mean | frames |"
    assert text[2] == "| a | 0.000 | 0.000 | 0.000 | 1 |"
    assert text[3] == f"| b | {b.J:.3f} | 0.667 | {b.F:.3f} | 3 |"
    mean_j, mean_f = (0 + b.J) / 2, (0 + b.F) / 2
    assert text[4] == f"| **mean** | {mean_j:.3f} | 0.333 | {mean_f:.3f} | 4 |"
    assert jf.compute()["J"] == pytest.approx(mean_j)  # the table's mean is the reported J


def test_training_reports_the_table_and_the_benchmark_measures_the_checkpoint(tiny_davis, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    from vidrec.engine.config import load_config
    from vidrec.engine.train import train

    out = tmp_path / "run"
    cfg = load_config(
        "segment_davis",  # the recipe itself, on tiny frames
        [
            f"data.root={tiny_davis}",
            "model.kwargs.pretrained=false",  # the rest of the recipe's model, motion cue included
            "task_options.size=[32, 48]",
            "task_options.crop=[24, 40]",
            "task_options.val_stride=1",
            "task_options.train_sequences=[seq-a, seq-b]",
            "task_options.val_sequences=[seq-c]",
            "data.batch_size=4",
            "data.workers=0",
            "max_steps_per_epoch=2",
            "progress=false",
            "tensorboard=false",
            "runtime.device=cpu",
            f"out_dir={out}",
        ],
    )
    result = train(cfg)
    table = (out / "val_sequences.md").read_text().splitlines()
    j = result.history[-1]["val_J"]
    assert table[4].startswith(f"| seq-c | {j:.3f} |")  # the one validation sequence: its J is val_J
    assert table[-1].startswith(f"| **mean** | {j:.3f} |") and table[-1].endswith("| 6 |")  # 8 frames - 2
    assert "| seq-c |" in capsys.readouterr().out  # printed too

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "segment_davis.py"
    spec = importlib.util.spec_from_file_location("bench_segment_davis", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([str(tiny_davis), str(out / "last.safetensors"), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"RESULT segment_davis run0_J={j:.3f}" in printed  # what the run's validation saw
    assert "\n".join(table[2:]) in printed

    # benchmarks/dff.py --per-frame builds its per-frame model from the checkpoint's parts like this
    from vidrec.dff import DFF, FixedInterval
    from vidrec.dff.flownets import DISFlow
    from vidrec.engine.checkpoint import load_task

    seg = load_task(out / "last.safetensors")[0]
    assert seg.flip_test and seg.largest_object  # the recipe's test-time flips and one-object filter
    per_frame = DFF(
        seg.feature_net,
        DISFlow(),
        seg.task_net,
        feature_stride=seg.feature_stride,
        flip_test=seg.flip_test,
        largest_object=seg.largest_object,
    ).eval()
    from vidrec.models.motion import takes_neighbours

    assert takes_neighbours(seg)  # the recipe's motion cue: frames with their neighbours, (1, 9, H, W)
    frames = [torch.randn(1, 9, 32, 48) for _ in range(3)]
    with torch.no_grad():
        run = [logits for logits, _ in per_frame.run(iter(frames), FixedInterval(1))]
        assert all(torch.equal(a, seg(f)) for a, f in zip(run, frames, strict=True))
