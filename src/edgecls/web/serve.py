"""Serve an exported site over plain HTTP, for a phone on the same network (e.g. from the Pi)."""

from __future__ import annotations

import functools
import http.server
import os
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.log import get_logger

log = get_logger("web")


class _Handler(http.server.SimpleHTTPRequestHandler):
    # Static hosts know these; Python's table depends on the platform's mime.types.
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".webmanifest": "application/manifest+json",
        ".json": "application/json",
        ".tflite": "application/octet-stream",
    }

    def end_headers(self) -> None:
        # Revalidated every time: a new export is seen at once (the service worker serves offline).
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.info("%s %s", self.address_string(), format % args)


def serve(folder: str | os.PathLike, host: str = "0.0.0.0", port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A server for `folder` (not started: call its `serve_forever()`; `shutdown()` stops it)."""
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise EdgeclsError(f"{folder}: no index.html; serve a folder `edgecls export web` wrote")
    handler = functools.partial(_Handler, directory=os.fspath(folder))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise EdgeclsError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); try another `port`", fields="port") from None


def lan_address() -> str | None:
    """An address of this machine other than loopback (what a phone on the same Wi-Fi may reach), or None."""
    import socket

    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return None
    return next((info[4][0] for info in infos if not info[4][0].startswith("127.")), None)
