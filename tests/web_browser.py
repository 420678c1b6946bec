"""Run an exported web site in a real browser: Debian's Chromium driven by Playwright for Python,
the site served from 127.0.0.1, every request to another origin blocked and counted.

No browser is ever downloaded (`playwright install` is not used): Chromium is the system's own.
Shared by tests/test_web_export.py and benchmarks/test_web.py.
"""

from __future__ import annotations

import http.server
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("EDGECLS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PHONE = {"width": 390, "height": 844}


def require_browser():
    """Playwright's sync API, or a visible skip where it or Chromium is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not installed ({exc}); pip install -e '.[dev]'")
    return sync_playwright


def export_or_skip(model: str, output: Path) -> Path:
    """`export_web` with the cached runtime; a visible skip where the runtime cannot be had
    (no npm, no registry: the tests of the errors themselves run without it)."""
    from edgecls.errors import EdgeclsError
    from edgecls.web import export_web

    try:
        return export_web(model, output, force=True)
    except EdgeclsError as exc:
        if "runtime" in exc.fields:
            pytest.skip(f"the MediaPipe web runtime is not available here: {exc}")
        raise


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Sites under /<name>/ and read-only data folders under /data/<name>/."""

    roots: dict[str, Path] = {}
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript", ".wasm": "application/wasm", ".webmanifest": "application/manifest+json",
    }  # fmt: skip

    def translate_path(self, path: str) -> str:
        from urllib.parse import unquote, urlsplit

        parts = [p for p in unquote(urlsplit(path).path).split("/") if p]
        key_length = 2 if parts[:1] == ["data"] else 1
        key = "/".join(parts[:key_length])
        root = self.roots.get(key)
        if root is None or any(p in ("..", ".") for p in parts):
            return "/nonexistent"
        return os.fspath(root.joinpath(*parts[key_length:]))

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@dataclass
class Server:
    httpd: http.server.ThreadingHTTPServer
    roots: dict[str, Path] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, key: str, root: Path) -> None:
        self.httpd.RequestHandlerClass.roots[key] = root

    def url(self, key: str, relative: str = "") -> str:
        return f"{self.origin}/{key}/{relative}"


def start_server(roots: dict[str, Path]) -> Server:
    handler = type("Handler", (_Handler,), {"roots": dict(roots)})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # a free port
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return Server(httpd, roots)


class Browser:
    """One Chromium for a session; contexts with a phone viewport; other origins blocked and counted."""

    def __init__(self, origin: str):
        sync_playwright = require_browser()
        self.origin = origin
        self.blocked: list[str] = []
        self._profile = tempfile.mkdtemp(prefix="edgecls-chromium-")
        self._playwright = sync_playwright().start()
        try:
            # A persistent context is the only way to give Chromium a user data dir of its own.
            self.context = self._playwright.chromium.launch_persistent_context(
                self._profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                service_workers="allow",
            )  # fmt: skip
        except Exception:
            self._playwright.stop()
            raise
        self.context.route("**/*", self._route)
        self.context.on("request", self._seen)

    def _foreign(self, url: str) -> bool:
        return url.split(":", 1)[0] in ("http", "https", "ws", "wss") and not url.startswith(self.origin + "/")

    def _route(self, route):
        if self._foreign(route.request.url):
            self.blocked.append(route.request.url)
            return route.abort()
        return route.continue_()

    def _seen(self, request):
        # Requests a service worker makes pass here too, routed or not.
        if self._foreign(request.url) and request.url not in self.blocked:
            self.blocked.append(request.url)

    def open(self, url: str, timeout_s: float = 60):
        page = self.context.new_page()
        page.set_default_timeout(timeout_s * 1000)
        page.goto(url)
        page.evaluate("window.edgecls ? window.edgecls.ready : new Promise(() => {})")
        page.wait_for_selector("body.ready")
        return page

    def close(self) -> None:
        try:
            self.context.close()
        finally:
            self._playwright.stop()
            shutil.rmtree(self._profile, ignore_errors=True)


def wait_until(page, function: str, arg=None, timeout_s: float = 60) -> None:
    """Poll `function` (JS, may be async) in the page until it returns true. Playwright's own
    wait_for_function evaluates its predicate with eval(), which the page's Content-Security-
    Policy forbids, as it should; page.evaluate is not subject to it."""
    import time

    deadline = time.monotonic() + timeout_s
    while not page.evaluate(function, arg):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never made this true: {function}")
        time.sleep(0.1)


CLASSIFY_ALL = """async ({urls, options}) => {
  const out = [];
  for (const url of urls) {
    const t0 = performance.now();
    try {
      const record = await window.edgecls.classify(url, options || {});
      out.push({...record, total_ms: performance.now() - t0});
    } catch (error) {
      out.push({path: url, error: String(error.message || error)});
    }
  }
  return out;
}"""


def classify_in_page(page, urls: list[str], **options) -> list[dict]:
    """window.edgecls.classify on each URL in turn, in one round trip; total_ms is end to end."""
    return page.evaluate(CLASSIFY_ALL, {"urls": urls, "options": options})
