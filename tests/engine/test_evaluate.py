import pytest
import torch
from torch import nn

from vidrec.engine.evaluate import evaluate

K = 4


class TinyRecognizer(nn.Module):
    """Stand-in recognizer: per-frame mean colour -> linear; per-step logits when `per_step`."""

    def __init__(self, per_step: bool = False):
        super().__init__()
        self.modalities = ("rgb",)
        self.num_classes = K
        self.per_step = per_step
        self.fc = nn.Linear(3, K)

    def forward(self, x):  # (B, T, C, H, W)
        steps = self.fc(x.mean(dim=(3, 4)))  # (B, T, K)
        return steps if self.per_step else steps.mean(dim=1)


class TwoStream(nn.Module):
    def __init__(self):
        super().__init__()
        self.modalities = ("rgb", "flow")
        self.num_classes = K
        self.fusion_weights = {"rgb": 1.0, "flow": 2.0}
        self.rgb, self.flow = nn.Linear(3, K), nn.Linear(2, K)

    def forward(self, x):
        return {
            "rgb": self.rgb(x["rgb"].mean(dim=(1, 3, 4))),
            "flow": self.flow(x["flow"].mean(dim=(1, 3, 4))),
        }


def _batch(rgb, labels, ids, **extra):
    return {"rgb": rgb, "label": torch.tensor(labels), "video_id": list(ids), **extra}


@pytest.fixture
def views():
    torch.manual_seed(0)
    return torch.randn(3, 5, 2, 3, 8, 8)  # (B, V, T, C, H, W)


def test_views_are_averaged_per_video(views):
    model = TinyRecognizer()
    res = evaluate(model, [_batch(views, [0, 1, 2], "abc")], device="cpu", progress=False)
    with torch.no_grad():
        expected = torch.stack([model(v).softmax(-1).mean(0) for v in views])  # (B, K)
    torch.testing.assert_close(res.probs, expected)
    assert res.video_ids == ["a", "b", "c"] and res.labels.tolist() == [0, 1, 2]
    assert res.metrics["num_videos"] == 3


def test_video_split_across_batches_equals_one_batch(views):
    model = TinyRecognizer(per_step=True)
    whole = evaluate(model, [_batch(views, [0, 1, 2], "abc")], device="cpu", progress=False)
    split = [
        _batch(views[:, :2], [0, 1, 2], "abc"),
        None,  # every item of a batch skipped
        _batch(views[:, 2:], [0, 1, 2], "abc", skipped=["bad.mp4"]),
    ]
    # views 0-1 and 2-4 of each video in two batches: the mean over all 5 views must come out
    res = evaluate(model, split, device="cpu", progress=False)
    torch.testing.assert_close(res.probs, whole.probs)
    assert res.skipped == ["bad.mp4"] and res.metrics["num_skipped"] == 1


def test_video_score_does_not_depend_on_clip_order(views):
    """methods.md 1.6.5: the video score is a plain mean over its clips, so any order of the clips (within
    a batch, across batches, and of the videos themselves) gives the same probabilities."""
    model = TinyRecognizer(per_step=True)
    whole = evaluate(model, [_batch(views, [0, 1, 2], "abc")], device="cpu", progress=False)
    order = torch.tensor([4, 2, 0, 3, 1])  # a permutation of the 5 clips of every video
    shuffled = views[:, order]
    # videos in another order, each video's clips split across two batches that arrive last-first
    batches = [
        _batch(shuffled[[2, 0, 1], 3:], [2, 0, 1], "cab"),
        _batch(shuffled[[1, 2, 0], :3], [1, 2, 0], "bca"),
    ]
    res = evaluate(model, batches, device="cpu", progress=False)
    by_id = dict(zip(res.video_ids, res.probs, strict=True))
    torch.testing.assert_close(torch.stack([by_id[v] for v in "abc"]), whole.probs)
    with torch.no_grad():
        first_clip = torch.stack([model(v[:1]).softmax(-1).mean((0, 1)) for v in views])
    assert not torch.allclose(whole.probs, first_clip, atol=1e-3)  # the clips differ: order could matter


def test_single_view_batches_and_metrics():
    model = TinyRecognizer()
    x = torch.randn(6, 2, 3, 8, 8)
    res = evaluate(model, [_batch(x, [0, 1, 2, 3, 0, 1], "abcdef")], device="cpu", progress=False)
    pred = res.probs.argmax(1)
    assert res.metrics["top1"] == pytest.approx((pred == res.labels).float().mean().item())
    assert res.metrics["top5"] == 1.0  # K = 4 < 5
    assert torch.allclose(res.probs.sum(1), torch.ones(6))


def test_fusion_weights_default_and_override():
    torch.manual_seed(0)
    model = TwoStream()
    batch = {"rgb": torch.randn(2, 3, 2, 3, 8, 8), "flow": torch.randn(2, 3, 2, 2, 8, 8)}
    batch |= {"label": torch.tensor([0, 1]), "video_id": ["x", "y"]}
    with torch.no_grad():
        rgb = torch.stack([model.rgb(v.mean(dim=(1, 3, 4))).softmax(-1).mean(0) for v in batch["rgb"]])
        flow = torch.stack([model.flow(v.mean(dim=(1, 3, 4))).softmax(-1).mean(0) for v in batch["flow"]])
    default = evaluate(model, [batch], device="cpu", progress=False)
    torch.testing.assert_close(default.probs, (rgb + 2 * flow) / 3)
    only_rgb = evaluate(
        model, [batch], device="cpu", fusion_weights={"rgb": 1.0, "flow": 0.0}, progress=False
    )
    torch.testing.assert_close(only_rgb.probs, rgb)


def test_restores_training_mode_and_names_missing_modality():
    model = TinyRecognizer().train()
    evaluate(model, [_batch(torch.randn(1, 2, 3, 4, 4), [0], "a")], device="cpu", progress=False)
    assert model.training
    with pytest.raises(KeyError, match="rgb"):
        evaluate(model, [{"label": torch.tensor([0]), "video_id": ["a"]}], device="cpu", progress=False)


def _rank_worker(rank, world, init_file, views, out_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = TinyRecognizer()
    # rank 0: videos a, b; rank 1: c plus a padded repeat of a (as DistributedSampler pads)
    idx, ids = ([0, 1], "ab") if rank == 0 else ([2, 0], "ca")
    batch = _batch(views[idx], [i for i in idx], ids, skipped=[f"bad{rank}.mp4"])
    res = evaluate(model, [batch], device="cpu", progress=False)
    if rank == 0:
        torch.save({"probs": res.probs, "ids": res.video_ids, "skipped": res.skipped}, out_file)
    dist.destroy_process_group()


def test_distributed_gathers_and_dedupes(tmp_path, views):
    import torch.multiprocessing as mp

    out = tmp_path / "rank0.pt"
    mp.spawn(_rank_worker, args=(2, str(tmp_path / "init"), views, str(out)), nprocs=2, join=True)
    got = torch.load(out)
    torch.manual_seed(0)
    single = evaluate(TinyRecognizer(), [_batch(views, [0, 1, 2], "abc")], device="cpu", progress=False)
    assert got["ids"] == ["a", "b", "c"]
    torch.testing.assert_close(got["probs"], single.probs)
    assert got["skipped"] == ["bad0.mp4", "bad1.mp4"]


def test_lrcn_protocol_clips_and_flow_mirror_choice():
    """methods.md 1.4: 16-frame clips with hop 8, the last aligned to the video's end."""
    from types import SimpleNamespace

    from vidrec.engine.cli_eval import clip_sampler, negate_mirrored_flow
    from vidrec.models import get_model

    cfg = SimpleNamespace(data=SimpleNamespace(stride=1, frames=4))
    clips = clip_sampler(cfg, protocol="lrcn", clip_len=16, hop=8)(45, None)
    assert [c.indices[0] for c in clips] == [0, 8, 16, 24, 29] and all(len(c.indices) == 16 for c in clips)
    assert clips[-1].indices[-1] == 44
    assert len(clip_sampler(cfg, clips=3)(45, None)) == 3
    lrcn = get_model("lrcn_resnet18", num_classes=3, modality="flow3")
    assert negate_mirrored_flow("auto", lrcn) is False  # the release's LRCN test path
    assert negate_mirrored_flow("auto", get_model("tsn_resnet50", num_classes=3, modality="flow")) is True
    assert negate_mirrored_flow("negate", lrcn) is True


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_evaluation_autocasts_bf16_as_training_does(device):
    """Validation must run in the dtype the model trained in (bf16), also on CUDA, where fp16's
    narrower range can overflow a bf16-trained model's activations."""
    import warnings

    from vidrec.engine.evaluate import _autocast

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that CUDA autocast is off on a machine without a GPU
        ctx = _autocast(torch.device(device), True)
    assert ctx.fast_dtype == torch.bfloat16
