import csv

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import tv_tensors

from vidrec.engine.predict import (
    Preprocess,
    clip_probs,
    clip_starts,
    list_videos,
    predict_folder,
    predict_video,
    stream_step_probs,
    stream_timeline,
    timeline,
    topk,
)
from vidrec.io import write_video
from vidrec.models.lrcn import LRCN

K = 3
PRE = Preprocess(resize=32, size=32)


def tiny_lrcn() -> LRCN:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return LRCN(encoder=enc, rnn=nn.LSTM(8, 16, batch_first=True), head=nn.Linear(16, K)).eval()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 32, 48, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    write_video(path, frames, 10)
    return path


def test_streaming_equals_full_sequence_forward():
    model = tiny_lrcn()
    x = torch.randn(7, 3, 32, 32)  # (T, C, H, W)
    with torch.no_grad():
        full = model(x[None])[0].softmax(-1)  # (T, K)
    streamed, _ = stream_step_probs(model, x)
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)
    # state carried over a split: the second half continues where the first stopped
    first, state = stream_step_probs(model, x[:3])
    second, _ = stream_step_probs(model, x[3:], state)
    torch.testing.assert_close(torch.cat([first, second]), full, atol=1e-5, rtol=1e-5)


def test_stream_timeline_matches_forward_on_whole_video(video):
    model = tiny_lrcn()
    wins = stream_timeline(model, video, preprocess=PRE, window=4, stride=4)
    assert [(w.start_frame, w.end_frame) for w in wins] == [(0, 4), (4, 8), (8, 12)]
    assert [w.start_s for w in wins] == pytest.approx([0.0, 0.4, 0.8], abs=1e-6)
    assert wins[-1].end_s == pytest.approx(1.2, abs=1e-6)
    from vidrec.io import VideoReader

    with VideoReader(video, size=32) as r:
        x = PRE.normalize(PRE(r.get_frames(range(12))), "cpu")
    with torch.no_grad():
        steps = model(x[None])[0].softmax(-1)  # (12, K)
    torch.testing.assert_close(wins[1].probs, steps[4:8].mean(0), atol=1e-5, rtol=1e-5)


def test_timeline_windows_and_predict_video(video):
    model = tiny_lrcn()
    wins = timeline(model, video, preprocess=PRE, window=6, stride=3)
    assert [(w.start_frame, w.end_frame) for w in wins] == [(0, 6), (3, 9), (6, 12)]
    assert all(torch.allclose(w.probs.sum(), torch.tensor(1.0)) for w in wins)
    probs = predict_video(model, video, preprocess=PRE, frames=5, clips=3)
    assert probs.shape == (K,) and torch.allclose(probs.sum(), torch.tensor(1.0))
    assert topk(probs, ["a", "b", "c"], 2)[0][1] == pytest.approx(probs.max().item())


def test_clip_starts_cover_video():
    assert clip_starts(20, 5, 3) == [0, 8, 15]
    assert clip_starts(3, 5, 4) == [0]
    assert clip_starts(20, 4, 1) == [8]


def test_folder_to_csv_lists_corrupt_videos(tmp_path, video):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(video.read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    videos, out = list_videos(folder), tmp_path / "preds.csv"
    n_ok, failed = predict_folder(
        tiny_lrcn(), videos, out, class_names=list("abc"), preprocess=PRE, frames=4, k=2
    )
    assert n_ok == 1 and len(failed) == 1 and failed[0][0].endswith("broken.mp4")
    rows = list(csv.DictReader(out.read_text().splitlines()))
    by_name = {r["path"].split("/")[-1]: r for r in rows}
    assert by_name["good.mp4"]["top1"] in {"a", "b", "c"} and by_name["good.mp4"]["error"] == ""
    assert by_name["broken.mp4"]["error"] and by_name["broken.mp4"]["top1"] == ""


def test_flow_model_needs_flow_preprocessing(video):
    model = tiny_lrcn()
    model.modalities = ("flow",)
    with pytest.raises(ValueError, match=r"reads \['flow'\] but"):
        predict_video(model, video, preprocess=PRE, frames=4)


def test_preprocess_sends_uint8_and_normalises_like_training(video):
    from vidrec.data.transforms import test_transform
    from vidrec.io import VideoReader

    with VideoReader(video, size=32) as r:
        frames = r.get_frames(range(5))
    raw = PRE(frames)
    assert raw.dtype == torch.uint8 and raw.shape == (5, 3, 32, 32)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    ref = test_transform(32, crops=1)({"rgb": tv_tensors.Video(x)})["rgb"].as_subclass(torch.Tensor)
    torch.testing.assert_close(PRE.normalize(raw, "cpu"), ref)
    model = tiny_lrcn()
    with torch.no_grad():
        want = model(ref[None]).softmax(-1).mean(1)[0]  # (K,)
    torch.testing.assert_close(clip_probs(model, raw[None], preprocess=PRE), want)
    streamed, _ = stream_step_probs(model, raw, preprocess=PRE)
    torch.testing.assert_close(streamed.mean(0), want, atol=1e-5, rtol=1e-5)
