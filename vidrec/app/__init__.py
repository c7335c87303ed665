"""`vidrec app`: a local web page (Gradio) and a JSON API that run vidrec's checkpoints on your own video.

The app is a thin layer over the library: `vidrec.app.catalog` finds the checkpoints it serves (registered
models only, loaded by `vidrec.engine.checkpoint.load_task`), `vidrec.app.media` checks an upload (size,
decodable), `vidrec.app.views` runs one checkpoint on one file with the library's own predict, caption,
landmarks, DFF and Grad-CAM code and says what to show, and `vidrec.app.server` puts the page and the API
(``POST /v1/predict``) on one FastAPI server. See docs/guides/app.md.
"""
