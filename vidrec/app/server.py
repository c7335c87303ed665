"""The `vidrec app` server: the Gradio page and the JSON API on one FastAPI app (one port).

- ``/``: the page. A visitor uploads a video or an image (or picks a generated sample), picks a served
  checkpoint, and sees what its task gives (`vidrec.app.views`); long work shows progress, an error is one
  line in the status bar.
- ``POST /v1/predict`` (multipart ``file``, form field ``checkpoint``; optional ``window``, ``stride``,
  ``interval``, ``gradcam``): the `View`'s JSON, with ``files`` as URLs under ``/v1/files/``; a refusal
  is ``{"error": one line}`` with status 413 (too large), 415 (not a video or image), 404 (not a served
  checkpoint), 422 (a checkpoint the library refuses, e.g. one naming unregistered code) or 400.
- ``GET /v1/checkpoints``: the served checkpoints and their tasks.

Every run writes into its own new folder under the visitor's (or the API request's) folder inside one
temporary root, removed when the server stops.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before Gradio is imported: no network calls
from pathlib import Path
from typing import Any

# Imported here, not in the functions: FastAPI and Gradio read the route and event handlers' annotations
# (UploadFile, gr.Request) by name from this module.
import gradio as gr
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from vidrec.app.catalog import Catalog, UnknownCheckpoint
from vidrec.app.media import UploadError, accept, copy_upload, make_samples
from vidrec.app.views import Settings, View, render
from vidrec.cli import UsageError, describe

TITLE = "vidrec: see a model work on your video"


class Workspace:
    """One temporary root; a folder per visitor (by Gradio session) and per API request, a new folder
    per run inside it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for part in ("visitors", "api", "samples"):
            (self.root / part).mkdir(parents=True, exist_ok=True)

    def visitor_run(self, session: str) -> Path:
        """A new folder for one run of the visitor whose Gradio session is `session`."""
        folder = self.root / "visitors" / hashlib.sha256(session.encode()).hexdigest()[:16]
        folder.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="run-", dir=folder))

    def api_run(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="r", dir=self.root / "api"))

    def api_file(self, run: str, name: str) -> Path | None:
        """A file an API run wrote, when `run` and `name` name one (never a path outside that run)."""
        folder = self.root / "api" / run
        path = (folder / name).resolve()
        if "/" in run or run.startswith(".") or folder.resolve() not in path.parents or not path.is_file():
            return None
        return path


def status_of(err: BaseException) -> int:
    """The HTTP status of a refused request."""
    from vidrec.engine.checkpoint import CheckpointError

    if isinstance(err, UploadError):
        return err.status
    if isinstance(err, UnknownCheckpoint):
        return 404
    if isinstance(err, CheckpointError):
        return 422
    return 400 if isinstance(err, UsageError | ValueError) else 500


def build_app(catalog: Catalog, workspace: Workspace, *, max_bytes: int):
    """The FastAPI app: the API routes, then the Gradio page mounted at ``/``."""
    api = FastAPI(title="vidrec app")
    samples = make_samples(workspace.root / "samples")

    @api.get("/v1/checkpoints")
    def checkpoints() -> dict[str, Any]:
        return {"checkpoints": [{"name": e.name, "task": e.task} for e in catalog.entries.values()]}

    @api.post("/v1/predict")
    def predict(
        file: UploadFile = File(...),  # noqa: B008 - FastAPI's way of declaring a form field
        checkpoint: str = Form(...),  # noqa: B008
        window: int = Form(0),  # noqa: B008
        stride: int = Form(0),  # noqa: B008
        interval: int = Form(10),  # noqa: B008
        gradcam: bool = Form(False),  # noqa: B008
    ):
        work = workspace.api_run()
        try:
            catalog.get(checkpoint)  # a wrong name is refused before the upload is read
            path = copy_upload(file.file, work, file.filename or "", max_bytes=max_bytes)
            media = accept(path, work, max_bytes=max_bytes, name=file.filename or "")
            settings = _settings(window, stride, interval, gradcam)
            view = render(catalog, checkpoint, media, work, settings, lambda *_: None)
        except Exception as err:  # noqa: BLE001 - every refusal is one line with its status
            return JSONResponse({"error": describe(err)}, status_code=status_of(err))
        urls = {
            role: f"/v1/files/{work.name}/{p.relative_to(work).as_posix()}" for role, p in view.files.items()
        }
        return {**view.data, "files": urls, "summary": view.summary}

    @api.get("/v1/files/{run}/{name:path}")
    def files(run: str, name: str):
        path = workspace.api_file(run, name)
        if path is None:
            return JSONResponse({"error": f"no file {run}/{name}"}, status_code=404)
        return FileResponse(path)

    page = build_page(catalog, workspace, samples, max_bytes=max_bytes)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no font CDN
    return gr.mount_gradio_app(
        api, page, path="", max_file_size=max_bytes, allowed_paths=[str(workspace.root)], theme=theme,
        footer_links=["api"],
    )  # fmt: skip


def _settings(window: int, stride: int, interval: int, gradcam: bool) -> Settings:
    if min(window, stride) < 0 or not 1 <= interval <= 1000:
        raise UsageError(f"window ({window}) and stride ({stride}) must be >= 0 (0: the training clip) and "
                         f"the key-frame interval ({interval}) between 1 and 1000")  # fmt: skip
    return Settings(window=int(window), stride=int(stride), interval=int(interval), gradcam=bool(gradcam))


# ----------------------------------------------------------------------------- the page

NO_SAMPLE = "(none: use the upload)"


def build_page(catalog: Catalog, workspace: Workspace, samples: dict[str, Path], *, max_bytes: int):
    """The Gradio Blocks page (see the module docstring)."""
    names = catalog.names()
    first = next((n for n in names if catalog.entries[n].task == "classify"), names[0])
    with gr.Blocks(title="vidrec app") as page:
        gr.Markdown(f"## {TITLE}\nUpload a video or an image (at most {max_bytes / 1e6:.0f} MB) or pick a "
                    "sample, pick a checkpoint, press **Run**.")  # fmt: skip
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="video or image", file_types=["video", "image"], elem_id="upload")
                sample = gr.Dropdown([NO_SAMPLE, *samples], value=next(iter(samples)), label="or a sample",
                                     elem_id="sample")  # fmt: skip
                ckpt = gr.Dropdown(names, value=first, label="checkpoint", elem_id="checkpoint")
                task = gr.Markdown(_task_line(catalog, first), elem_id="task")
                with gr.Accordion("settings", open=False):
                    window = gr.Slider(
                        0, 64, value=0, step=1, label="timeline window (frames; 0: training clip)"
                    )
                    stride = gr.Slider(
                        0, 64, value=0, step=1, label="timeline stride (frames; 0: half the window)"
                    )
                    interval = gr.Slider(
                        1, 30, value=10, step=1, label="DFF key-frame interval l", elem_id="interval"
                    )
                    cam = gr.Checkbox(value=True, label="Grad-CAM (classify checkpoints)")
                run = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                status = gr.Markdown("", elem_id="status")
                with gr.Row():
                    top = gr.Label(num_top_classes=5, label="top-5", visible=False, elem_id="topk")
                    video = gr.Video(label="result", height=300, visible=False, elem_id="result-video")
                plot = gr.Image(label="timeline", type="filepath", visible=False, elem_id="timeline-plot")
                table = gr.Dataframe(
                    headers=["from s", "to s", "class", "p"],
                    label="per window",
                    visible=False,
                    elem_id="timeline",
                )
                with gr.Row():
                    heat = gr.Video(
                        label="Grad-CAM heat map", height=260, visible=False, elem_id="gradcam-video", scale=1
                    )
                    sheet = gr.Image(
                        label="Grad-CAM sheet",
                        type="filepath",
                        visible=False,
                        elem_id="gradcam-sheet",
                        scale=2,
                    )
                details = gr.JSON(label="details", visible=False, elem_id="details")
        outputs = [status, top, plot, table, video, sheet, heat, details]

        def on_run(upload_path, sample_name, name, win, strd, l, want_cam, request: gr.Request,
                   progress=gr.Progress(track_tqdm=True)):  # noqa: B008  # fmt: skip
            try:
                work = workspace.visitor_run(request.session_hash or "anonymous")
                source = upload_path or samples.get(sample_name)
                if source is None:
                    raise UsageError("no input: upload a video or an image, or pick a sample")
                progress(0.0, desc="checking the input")
                media = accept(source, work, max_bytes=max_bytes)
                view = render(catalog, name, media, work, _settings(int(win), int(strd), int(l), want_cam),
                              lambda f, what: progress(f, desc=what))  # fmt: skip
            except Exception as err:  # noqa: BLE001 - shown on the page as one line
                return [f"**error:** {describe(err)}", *[gr.update(visible=False, value=None)] * 7]
            return _show(view)

        run.click(on_run, [upload, sample, ckpt, window, stride, interval, cam], outputs)
        ckpt.change(lambda n: _task_line(catalog, n), ckpt, task)
    return page


def _task_line(catalog: Catalog, name: str) -> str:
    return f"task: **{catalog.get(name).task}**" if name in catalog.entries else ""


def _show(view: View) -> list:
    """The page's outputs for a `View`: what the task gives is shown, the rest hidden."""

    def shown(value: Any):
        return gr.update(value=value, visible=value is not None)

    f = {role: str(p) for role, p in view.files.items()}
    top = {n: p for n, p in view.data["topk"]} if "topk" in view.data else None
    headers = ["from s", "to s", "class", "p"] if view.task == "classify" else ["window", "sentence"]
    table = gr.update(value=view.rows, headers=headers, visible=bool(view.rows))
    extra = {k: v for k, v in view.data.items() if k not in ("topk", "timeline", "points", "captions")}
    return [
        f"**{view.task}** · {view.summary}",
        shown(top),
        shown(f.get("timeline_png")),
        table,
        shown(f.get("video")),
        shown(f.get("gradcam_sheet")),
        shown(f.get("gradcam_video")),
        shown(extra),
    ]


def serve(app, host: str, port: int) -> None:
    """Run `app` with uvicorn until a stop signal. Uvicorn takes the signal and shuts down cleanly (open
    requests finish); then this raises `vidrec.interrupt.Interrupted`, which `vidrec.cli` turns into one line
    and exit 130 (Ctrl-C) or 143 (SIGTERM) as for every command, and the caller's temporary folder is
    removed on the way out."""
    import uvicorn

    from vidrec.interrupt import Interrupted

    class Server(uvicorn.Server):
        stopped_by: int | None = None

        def handle_exit(self, sig: int, frame) -> None:
            self.stopped_by = sig
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    server.run()
    if server.stopped_by is not None:
        raise Interrupted(server.stopped_by)
