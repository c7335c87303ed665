"""`vidrec app [CHECKPOINT ...]`: serve the web page and the JSON API on 127.0.0.1 (see `vidrec.app`)."""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from pathlib import Path

from vidrec.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoints",
        nargs="*",
        default=["runs"],
        help="checkpoints (.safetensors) and/or runs folders searched for them (default: runs)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; 0.0.0.0 shows the app to your network (default 127.0.0.1: this machine only)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=200.0, help="largest upload accepted, in MB (default 200)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")


def check_port(host: str, port: int) -> None:
    """Refuse a port outside 1..65535 or already taken, before anything is loaded."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port number (1..65535)")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            raise UsageError(f"cannot serve on {host}:{port} ({err.strerror}); choose another --port or "
                             "--host") from None  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from vidrec.app.catalog import Catalog

    if args.max_upload_mb <= 0:
        raise UsageError(f"--max-upload-mb {args.max_upload_mb} must be above 0")
    check_port(args.host, args.port)
    catalog = Catalog.from_sources(args.checkpoints, device=args.device)
    with tempfile.TemporaryDirectory(prefix="vidrec-app-") as root:
        # Gradio's copies of uploads and outputs go under the same root, removed with it; Gradio reads this
        # when it is imported
        os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(root) / "gradio"))
        try:
            from vidrec.app.server import Workspace, build_app, serve
        except ImportError as err:
            if err.name not in ("gradio", "fastapi"):
                raise
            raise UsageError("vidrec app needs Gradio: pip install 'vidrec[app]' (or gradio)") from None
        app = build_app(catalog, Workspace(Path(root)), max_bytes=int(args.max_upload_mb * 1e6))
        tasks = ", ".join(sorted({e.task for e in catalog.entries.values()}))
        url = f"http://{args.host}:{args.port}/"
        print(
            f"vidrec app: {len(catalog.entries)} checkpoints ({tasks}); open {url} (Ctrl-C stops)", flush=True
        )
        serve(app, args.host, args.port)
    return 0
