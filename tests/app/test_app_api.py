"""`vidrec app`'s JSON API (issue 26): ``POST /v1/predict`` gives the task's result, and refuses an
oversize upload, a file that is no video, and a checkpoint that is not served or names unregistered code,
each with one line; outputs go to a per-request temporary folder; `vidrec app` refuses bad arguments in one
line before it serves anything."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from fastapi.testclient import TestClient

from vidrec.app.catalog import Catalog
from vidrec.app.server import Workspace, build_app
from vidrec.cli import main
from vidrec.engine.checkpoint import load_checkpoint, save_checkpoint
from vidrec.engine.predict import Preprocess, predict_video, timeline, topk

pytestmark = pytest.mark.usefixtures("one_thread")
LIMIT = 200_000  # bytes: above the generated clips, below the oversize upload


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    root = tmp_path_factory.mktemp("work")
    runs = served["runs"]
    foreign = load_checkpoint(served["checkpoint"])  # the same weights, naming code that is not registered
    foreign.config["model"]["name"] = "evil_module:build"
    save_checkpoint(root / "others" / "foreign.safetensors", foreign)
    catalog = Catalog.from_sources([runs, root / "others"])
    with TestClient(build_app(catalog, Workspace(root), max_bytes=LIMIT)) as c:
        c.root = root
        yield c


def _post(client, path, checkpoint, **form):
    with open(path, "rb") as fh:
        return client.post(
            "/v1/predict", files={"file": (path.name, fh)}, data={"checkpoint": checkpoint, **form}
        )


def _error(response, status: int) -> str:
    assert response.status_code == status, response.text
    line = response.json()["error"]
    assert line and "\n" not in line and "Traceback" not in line
    return line


def test_predict_returns_the_library_topk_and_timeline(client, served):
    video = served["videos"]["move_right"]
    r = _post(client, video, served["name"], window="8", stride="4")
    assert r.status_code == 200, r.text
    body = r.json()
    model, task = Catalog.from_sources([served["checkpoint"]]).model("best.safetensors")
    pre, names = Preprocess.from_config(task.cfg), task.class_names()
    expected = topk(predict_video(model, video, preprocess=pre, frames=8, clips=5), names, 5)
    assert body["task"] == "classify" and body["topk"][0][0] == "move_right"
    assert [n for n, _ in body["topk"]] == [n for n, _ in expected]
    assert [p for _, p in body["topk"]] == pytest.approx([p for _, p in expected], abs=1e-5)
    wins = timeline(model, video, preprocess=pre, window=8, stride=4)
    assert [(w["start_frame"], w["end_frame"]) for w in body["timeline"]] == [(0, 8), (4, 12), (8, 16)]
    assert [w["topk"][0][0] for w in body["timeline"]] == [topk(w.probs, names, 1)[0][0] for w in wins]
    assert body["segments"] == [{"start_s": 0.0, "end_s": 2.0, "class": "move_right"}]
    # a video of another class gets another answer: the result is the model's on this file
    other = _post(client, served["videos"]["grow"], served["name"]).json()
    assert other["topk"][0][0] == "grow"


def test_predict_files_are_served_from_the_request_folder(client, served):
    body = _post(client, served["videos"]["shrink"], served["name"], gradcam="true").json()
    assert set(body["files"]) == {"timeline_png", "video", "gradcam_sheet", "gradcam_video"}
    for url in body["files"].values():
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) > 100, url
    run = body["files"]["video"].split("/")[3]
    assert (client.root / "api" / run / "marked.mp4").is_file()  # outputs under the app's temp folder
    assert sorted(p.name for p in served["videos"]["shrink"].parent.iterdir()) == sorted(
        f"{n}.mp4" for n in served["videos"]
    )  # nothing written beside the input
    assert client.get(f"/v1/files/{run}/../../samples/grow.mp4").status_code == 404
    assert client.get(f"/v1/files/{run}/%2e%2e/%2e%2e/samples/grow.mp4").status_code == 404


def test_refusals_are_one_line_with_a_status(client, served, tmp_path):
    big = tmp_path / "big.mp4"
    head = served["videos"]["grow"].read_bytes()
    big.write_bytes(head + bytes(LIMIT + 1 - len(head)))  # one byte over, and it decodes
    assert "limit" in _error(_post(client, big, served["name"]), 413)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n")
    assert "not a video vidrec can decode" in _error(_post(client, text, served["name"]), 415)
    png = tmp_path / "broken.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert "not an image" in _error(_post(client, png, served["name"]), 415)
    video = served["videos"]["grow"]
    assert "not one this app serves" in _error(_post(client, video, "/etc/passwd"), 404)
    line = _error(_post(client, video, "others/foreign.safetensors"), 422)
    assert "evil_module:build" in line and "not a registered model" in line
    assert "interval" in _error(_post(client, video, served["name"], interval="0"), 400)


def test_an_image_is_classified_as_a_still_video(client, served, tmp_path):
    from PIL import Image

    from vidrec.io import read_frames

    image = tmp_path / "frame.png"
    Image.fromarray(read_frames(served["videos"]["orbit_cw"], [3])[0]).save(image)
    body = _post(client, image, served["name"]).json()
    assert body["task"] == "classify" and body["topk"][0][0] == "orbit_cw"


def test_cli_refuses_bad_arguments_in_one_line(tmp_path, capsys, served):
    assert main(["app", str(tmp_path)]) == 2  # a folder without checkpoints
    assert "no vidrec checkpoint under" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", str(served["runs"]), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"127.0.0.1:{port}" in err
    assert main(["app", str(served["runs"]), "--max-upload-mb", "0"]) == 2


def test_checkpoints_lists_served_names_and_tasks(client, served):
    listed = client.get("/v1/checkpoints").json()["checkpoints"]
    assert {"name": served["name"], "task": "classify"} in listed
    assert {"name": "others/foreign.safetensors", "task": "classify"} in listed  # refused when loaded


# ----------------------------------------------------------------------------- the other tasks


def _save(path, task: str, model, raw: dict, state: dict | None = None):
    from vidrec.engine.checkpoint import Checkpoint
    from vidrec.engine.config import config_from_dict
    from vidrec.engine.schema import config_to_dict

    cfg = config_to_dict(config_from_dict({"task": task, **raw}))
    return save_checkpoint(
        path, Checkpoint(model=model.state_dict(), config=cfg, class_names=[], task_state=state or {})
    )


@pytest.fixture(scope="module")
def task_client(tmp_path_factory):
    """Untrained caption, landmarks and segment checkpoints (random weights: the test checks what each task
    answers with, not how good it is)."""
    import torch

    from vidrec.demo import single_frame_demo
    from vidrec.models import get_model
    from vidrec.text import Vocabulary

    runs = tmp_path_factory.mktemp("tasks") / "runs"
    torch.manual_seed(0)
    words = Vocabulary.build(["a red square", "a blue box"], min_count=1)
    kwargs = {
        "backbone": "mobilenet_v2",
        "hidden_size": 8,
        "embed_size": 8,
        "dropout": 0.0,
        "pretrained": False,
    }
    options = {"root": "x", "captions": "x/c.csv", "resize": 32, "size": 32, "frames": 2, "max_len": 5}
    captioner = get_model("lrcn1u_captioner", num_classes=len(words), **kwargs)
    caption_cfg = {"task_options": options, "model": {"name": "lrcn1u_captioner", "kwargs": kwargs}}
    _save(
        runs / "caption.safetensors",
        "caption",
        captioner,
        caption_cfg,
        {"vocab": words.to_state(), "max_len": 5},
    )
    points = single_frame_demo(num_classes=136, size=32, pretrained=False)
    points_cfg = {
        "data": {"root": "x", "frames": 4, "size": 32},
        "model": {"name": "vidrec.demo:single_frame_demo", "kwargs": {"size": 32}},
    }
    _save(runs / "landmarks.safetensors", "landmarks", points, points_cfg)
    segnet = get_model("segnet_mobilenet_v2", num_classes=2)
    _save(runs / "segment.safetensors", "segment", segnet, {"model": {"name": "segnet_mobilenet_v2"}})
    root = tmp_path_factory.mktemp("work")
    with TestClient(build_app(Catalog.from_sources([runs]), Workspace(root), max_bytes=LIMIT)) as c:
        yield c


def test_caption_gives_a_sentence_per_window_and_per_image(task_client, served, tmp_path):
    from PIL import Image

    body = _post(
        task_client, served["videos"]["grow"], "runs/caption.safetensors", window="8", stride="8"
    ).json()
    assert body["task"] == "caption"
    assert [c["label"] for c in body["captions"]] == ["frames 0-7, 0.0-1.0 s", "frames 8-15, 1.0-2.0 s"]
    assert all(
        set(c["sentence"].split()) <= {"a", "red", "square", "blue", "box", "<unk>"} for c in body["captions"]
    )
    image = tmp_path / "x.jpg"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(image)
    one = _post(task_client, image, "runs/caption.safetensors").json()
    assert [c["label"] for c in one["captions"]] == [""] and one["sentence"] == one["captions"][0]["sentence"]


def test_landmarks_give_68_points_per_frame_and_the_drawn_video(task_client, served):
    body = _post(task_client, served["videos"]["grow"], "runs/landmarks.safetensors").json()
    assert body["task"] == "landmarks" and body["frames"] == 16
    assert np.asarray(body["points"]).shape == (16, 68, 2)
    assert task_client.get(body["files"]["video"]).status_code == 200


def test_segment_runs_dff_with_the_interval_asked(task_client, served, tmp_path):
    from vidrec.io import probe

    body = _post(task_client, served["videos"]["grow"], "runs/segment.safetensors", interval="5").json()
    assert body["task"] == "segment" and body["frames"] == 16
    assert body["key_frames"] == 4 and body["interval"] == 5  # frames 0, 5, 10, 15
    assert body["dff_fps"] > 0
    got = task_client.get(body["files"]["video"])
    assert got.status_code == 200
    overlay = tmp_path / "overlay.mp4"
    overlay.write_bytes(got.content)
    assert probe(overlay).num_frames == 16
