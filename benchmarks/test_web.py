"""(w) The model in a browser: `edgecls export web`'s page in headless Chromium against `edgecls
classify` on the same 600x450 JPEGs, in the same run, in alternation.

Per image, two figures each: the model alone (MediaPipe's ImageClassifier.classify on the page's
input image, against LiteRT's invoke in edgecls: the records' latency_ms) and end to end from the
JPEG's bytes (the page: window.edgecls.classify(blob): decode, resize as edgecls does, classify,
probabilities; edgecls: the Python API's classify(path), which reads, decodes, resizes and invokes). The browser runs MediaPipe's
WebAssembly build with XNNPACK on one thread (a page without cross-origin isolation has no
threads); edgecls runs LiteRT with its default threads. MediaPipe's GPU delegate is tried too:
headless Chromium here has only a software WebGL (SwiftShader), so its figure is recorded as
that, where it runs at all. Recorded, never asserted.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path

import pytest

from benchmarks.bench_util import record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from web_browser import Browser, classify_in_page, export_or_skip, require_browser, start_server  # noqa: E402

ROUNDS = 3
# End to end as on a phone: the photo is already a local file (a Blob) when the page gets it, so
# the bytes are fetched from the test server first, outside the timing (like edgecls's files,
# which sit in the page cache).
FROM_BLOBS = """async (urls) => {
  const blobs = await Promise.all(urls.map(async (u) => (await fetch(u)).blob()));
  const out = [];
  for (const blob of blobs) {
    const t0 = performance.now();
    const record = await window.edgecls.classify(blob);
    out.push({...record, total_ms: performance.now() - t0});
  }
  return out;
}"""
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000_600x450"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@pytest.fixture(scope="module")
def photos(heavy_jpeg_paths) -> tuple[list[Path], str]:
    if SHARED.is_dir():
        return sorted(SHARED.glob("*.jpg")), "40 real HAM10000 600x450 JPEGs"
    return list(heavy_jpeg_paths), "40 synthetic heavy 600x450 JPEGs (../shared/data absent)"


def test_web_page_against_edgecls_classify(benchmark, bench_dir, photos):
    import edgecls

    require_browser()
    paths, what = photos
    site = export_or_skip("ham10000", bench_dir / "web-site")
    server = start_server({"site": site, "photos": paths[0].parent})
    chromium = Browser(server.origin)
    try:
        page = chromium.open(server.url("site", "index.html"))
        urls = [server.url("photos", p.name) for p in paths]
        classifier = edgecls.Classifier("ham10000")
        classify_in_page(page, urls[:5])  # warm-up: the first calls compile and allocate
        classifier.classify([str(p) for p in paths[:5]])
        web_model, web_e2e, ours_model, ours_e2e = [], [], [], []
        for _ in range(ROUNDS):
            records = page.evaluate(FROM_BLOBS, urls)
            web_model += [r["latency_ms"] for r in records]
            web_e2e += [r["total_ms"] for r in records]
            for path in paths:
                start = time.perf_counter()
                prediction = classifier.classify(path)
                ours_e2e.append((time.perf_counter() - start) * 1000)
                ours_model.append(prediction.latency_ms)
        benchmark.pedantic(page.evaluate, args=(FROM_BLOBS, urls), rounds=1, iterations=1)
        gpu = _gpu_figures(chromium, server, urls)
        page.close()
    finally:
        chromium.close()
        server.httpd.shutdown()
        server.httpd.server_close()
    med = statistics.median
    figures = {
        "images": f"{len(paths)} x {ROUNDS} rounds: {what}",
        "cpu": f"{_cpu()}, {__import__('os').cpu_count()} cores",
        "browser_model_ms": med(web_model),
        "browser_end_to_end_ms": med(web_e2e),
        "edgecls_model_ms": med(ours_model),
        "edgecls_end_to_end_ms": med(ours_e2e),
        "model_ratio_browser_over_edgecls": med(web_model) / med(ours_model),
        "end_to_end_ratio_browser_over_edgecls": med(web_e2e) / med(ours_e2e),
        **gpu,
        "note": "browser: MediaPipe Tasks web (WASM, XNNPACK, 1 thread) in headless Chromium; edgecls: LiteRT, default threads",
    }
    record(benchmark, figures, "web_page_vs_edgecls_classify")


def _gpu_figures(chromium: Browser, server, urls: list[str]) -> dict:
    """MediaPipe's GPU delegate on this browser's WebGL, where it starts; its reason where not."""
    page = chromium.context.new_page()
    try:
        page.set_default_timeout(60_000)
        page.goto(server.url("site", "index.html?delegate=GPU"))
        ready = page.evaluate("window.edgecls.ready.then((r) => r.delegate, (e) => 'failed: ' + (e.message || e))")
        if ready != "GPU":
            return {"gpu_delegate": f"not available ({ready})"[:200]}
        classify_in_page(page, urls[:5])
        records = classify_in_page(page, urls)
        errors = [r["error"] for r in records if "error" in r]
        if errors:
            return {"gpu_delegate": f"not available ({errors[0][:160]})"}
        return {
            "gpu_delegate": "ran on software WebGL (SwiftShader): not a GPU figure",
            "gpu_model_ms": statistics.median(r["latency_ms"] for r in records),
        }
    except Exception as exc:  # noqa: BLE001 - a figure, never a failure
        return {"gpu_delegate": f"not available ({str(exc).splitlines()[0][:160]})"}
    finally:
        page.close()
