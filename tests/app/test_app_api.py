"""`vidrec app`'s JSON API (issue 26): ``POST /v1/predict`` gives the task's result, and refuses an
oversize upload, a file that is no video, and a checkpoint that is not served or names unregistered code,
each with one line; outputs go to a per-request temporary folder; `vidrec app` refuses bad arguments in one
line before it serves anything."""

from __future__ import annotations

import socket

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
