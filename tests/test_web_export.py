"""`edgecls export web`: the site it writes, run in a real browser (Debian's Chromium, driven by
Playwright) from 127.0.0.1 with every request to another origin blocked and counted; and the
command's errors.

One browser for the module, one page load per model reused by the tests; the agreement check
classifies its 400+ images in one round trip per model.
"""

from __future__ import annotations

import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, shared_dataset
from PIL import Image
from typer.testing import CliRunner
from web_browser import Browser, classify_in_page, export_or_skip, require_browser, start_server, wait_until

from edgecls.cli import app

runner = CliRunner()
REPO_ROOT = Path(__file__).resolve().parents[1]


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    require_browser()
    root = tmp_path_factory.mktemp("web")
    return {name: export_or_skip(name, root / name) for name in ("ham10000", "all-blood")}


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    """Images the tests make themselves: real-looking ones, and bad ones."""
    folder = tmp_path_factory.mktemp("web-images")
    rng = np.random.default_rng(0)
    smooth = np.clip(rng.normal(160, 30, (300, 400, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(smooth).save(folder / "photo.jpg", quality=90)
    rgba = np.dstack([smooth[:120, :160], np.full((120, 160), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "transparent.png")
    (folder / "notes.jpg").write_text("this is a text file, renamed\n")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "huge.png").write_bytes(_blank_png(12000, 12000))
    return folder


def _blank_png(width: int, height: int) -> bytes:
    """A valid grey PNG of this size, built row by row (Pillow would first allocate it whole)."""
    compressor = zlib.compressobj(9)
    row = b"\0" + b"\x80" * width
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def server(sites):
    roots = dict(sites)
    if SHARED_DATA.is_dir():
        roots["data/shared"] = SHARED_DATA
    srv = start_server(roots)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(scope="module")
def browser(server):
    chromium = Browser(server.origin)
    yield chromium
    chromium.close()
    # The whole module's promise: the page asked for nothing from any other origin.
    assert chromium.blocked == [], f"requests to other origins: {chromium.blocked[:5]}"


@pytest.fixture(scope="module")
def ham_page(browser, server):
    return browser.open(server.url("ham10000", "index.html"))


def _data_url(server, path: Path) -> str:
    return f"{server.origin}/data/shared/{path.relative_to(SHARED_DATA).as_posix()}"


def _spread(paths: list[Path], count: int) -> list[Path]:
    """`count` paths spread evenly over a sorted list (every class of a per-class layout)."""
    paths = sorted(paths)
    step = max(1, len(paths) // count)
    return paths[::step][:count]


# -- the page in the browser ----------------------------------------------------------------
def test_the_page_becomes_ready_and_shows_the_model_and_the_notices(ham_page):
    import edgecls

    ready = ham_page.evaluate("window.edgecls.ready")
    assert ready["labels"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert ready["model"] == edgecls.Classifier("ham10000").metadata.name  # the architecture, from the file
    notice = ham_page.locator(".notice")
    assert notice.is_visible() and "not a medical device" in notice.inner_text().lower()
    assert "sends nothing" in ham_page.locator(".private").inner_text()
    ham_page.locator("details.about summary").click()
    facts = ham_page.locator("#model-facts").inner_text()
    for expected in ("akiec, bcc, bkl", "research and education", "CC BY-NC 4.0", "Accuracy", "int8 vs float", "malignant probability"):
        assert expected in facts
    ham_page.locator("details.about summary").click()


@pytest.mark.shared_data
@pytest.mark.parametrize("model, dataset", [("ham10000", "ham10000"), ("all-blood", "blood")])
def test_the_page_gives_what_edgecls_classify_gives_on_real_images(browser, server, request, model, dataset):
    """Top-1 and flag agree on >= 97% of >= 200 real images, and where the top-1 agrees its
    probability is within 0.05 on >= 97% of them. 200x150 HAM10000 JPEGs need no JPEG scaling
    and give the same pixels as edgecls; the 600x450 originals and the 224x224 blood smears are
    decoded whole by the browser where edgecls decodes them at 1/4 or 1/2 scale."""
    import edgecls

    folder = shared_dataset(dataset)
    paths = _spread(list(folder.rglob("*.jpg")), 200)
    if dataset == "ham10000" and (SHARED_DATA / "ham10000_600x450").is_dir():
        paths += sorted((SHARED_DATA / "ham10000_600x450").glob("*.jpg"))
    page = request.getfixturevalue("ham_page") if model == "ham10000" else browser.open(server.url(model, "index.html"))
    try:
        web = classify_in_page(page, [_data_url(server, p) for p in paths])
    finally:
        if model != "ham10000":
            page.close()
    reference = [r.to_record() for r in edgecls.Classifier(model).classify_files(paths)]
    assert [w.get("error") for w in web] == [None] * len(paths)
    assert all(set(w) - {"total_ms"} == set(r) for w, r in zip(web, reference))
    same = [(w, r) for w, r in zip(web, reference) if w["label"] == r["label"]]
    close = [abs(w["probability"] - r["probability"]) <= 0.05 for w, r in same]
    flags = [w["flag"] == r["flag"] for w, r in zip(web, reference)]
    assert len(paths) >= 200
    assert len(same) >= 0.97 * len(paths), f"top-1 agrees on {len(same)} of {len(paths)}"
    assert sum(close) >= 0.97 * len(same), f"probability within 0.05 on {sum(close)} of {len(same)}"
    assert sum(flags) >= 0.97 * len(paths), f"flag agrees on {sum(flags)} of {len(paths)}"
    assert np.mean([abs(w["probability"] - r["probability"]) for w, r in same]) < 0.01
    # Pixels that need no JPEG scaling are edgecls's own: the probabilities are the same.
    if dataset == "ham10000":
        exact = [abs(w["probability"] - r["probability"]) for w, r in zip(web[:200], reference[:200])]
        assert np.median(exact) < 1e-4


def test_the_js_api_gives_the_record_of_edgecls_classify(ham_page, server, samples, sites):
    import edgecls

    photo = samples / "photo.jpg"
    ham_page.set_input_files("#file-input", str(photo))  # the page's own file input
    ham_page.wait_for_selector(".result:not(.pending)")
    record = ham_page.evaluate(
        """async (bytes) => window.edgecls.classify(new Blob([new Uint8Array(bytes)], {type: "image/jpeg"}), {topK: 5, path: "photo.jpg"})""",
        list(photo.read_bytes()),
    )
    expected = edgecls.Classifier("ham10000").classify_files([photo], top_k=5)[0].to_record()
    assert list(record) == list(expected)
    assert [t["label"] for t in record["top_k"]] == [t["label"] for t in expected["top_k"]]
    assert record["malignant_probability"] == pytest.approx(expected["malignant_probability"], abs=0.02)
    assert record["latency_ms"] > 0
    # Below the chosen confidence the label is "uncertain"; the probabilities are still given.
    unsure = ham_page.evaluate(
        """async (bytes) => window.edgecls.classify(new Blob([new Uint8Array(bytes)]), {minConfidence: 1})""",
        list(photo.read_bytes()),
    )
    assert unsure["label"] == "uncertain" and unsure["top_k"][0]["label"] == expected["label"]
    shown = ham_page.locator(".result").first.inner_text()
    assert expected["label"] in shown and "malignant" in shown and "Model time" in shown


def test_a_photo_turned_by_its_exif_orientation_gives_edgecls_pixels(ham_page, tmp_path):
    """A phone photo stored sideways with an EXIF orientation tag: the page turns it as edgecls
    does, so the probabilities are edgecls's own (the file is under twice the input size: no
    JPEG scaling on either side)."""
    import edgecls

    rng = np.random.default_rng(1)
    pixels = np.zeros((150, 180, 3), np.uint8)
    pixels[:, :60] = (200, 120, 90)
    pixels[40:110, 80:170] = (90, 60, 40)
    pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    photo = tmp_path / "sideways.jpg"
    Image.fromarray(pixels).save(photo, quality=95, exif=exif.tobytes())
    record = ham_page.evaluate(
        "async (bytes) => window.edgecls.classify(new Blob([new Uint8Array(bytes)], {type: 'image/jpeg'}), {topK: 7})",
        list(photo.read_bytes()),
    )
    expected = edgecls.Classifier("ham10000").classify_files([photo], top_k=7)[0].to_record()
    assert {t["label"]: t["probability"] for t in record["top_k"]} == pytest.approx({t["label"]: t["probability"] for t in expected["top_k"]}, abs=2e-4)


DONE_MORE_THAN = "(n) => document.querySelectorAll('.result:not(.pending)').length > n"


def test_bad_images_get_a_clear_message_and_the_next_image_still_works(ham_page, samples):
    expected = {
        "notes.jpg": "Cannot decode the image",
        "empty.jpg": "The file is empty (0 bytes)",
        "huge.png": "The image is too large to decode safely (12000x12000 pixels",
    }
    for name, message in expected.items():
        before = ham_page.locator(".result").count()
        ham_page.set_input_files("#file-input", str(samples / name))
        wait_until(ham_page, DONE_MORE_THAN, before)
        card = ham_page.locator(".result").first
        assert "error" in card.get_attribute("class")
        assert message in card.locator("[role=alert]").inner_text()
        ham_page.set_input_files("#file-input", str(samples / "transparent.png"))
        wait_until(ham_page, DONE_MORE_THAN, before + 1)
        assert "Model time" in ham_page.locator(".result").first.inner_text()


def test_a_phone_viewport_has_no_horizontal_scrolling(browser, server, samples):
    page = browser.open(server.url("all-blood", "index.html"))  # the longest labels
    try:
        page.set_input_files("#file-input", [str(samples / "photo.jpg"), str(samples / "notes.jpg")])
        wait_until(page, DONE_MORE_THAN, 1)
        page.locator("details.about summary").click()
        page.locator(".results").scroll_into_view_if_needed()
        width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width[0] <= width[1] == 390
        out = REPO_ROOT / "out"
        out.mkdir(exist_ok=True)
        page.screenshot(path=str(out / "web-phone.png"))  # what the phone shows after two images
        page.screenshot(path=str(out / "web-phone-full.png"), full_page=True)
    finally:
        page.close()


def test_the_page_works_offline_after_the_first_load(browser, server, samples):
    """Load once (the service worker caches the page, model and runtime), go offline, reload,
    classify again."""
    page = browser.open(server.url("ham10000", "index.html"))
    try:
        wait_until(page, "() => navigator.serviceWorker.controller !== null")
        wait_until(
            page,
            """async () => { const names = await caches.keys(); if (!names.length) return false;
                const cache = await caches.open(names[0]); const keys = await cache.keys();
                return keys.some((r) => r.url.endsWith('.wasm')); }""",
        )
        browser.context.set_offline(True)
        page.reload()
        page.evaluate("window.edgecls.ready")
        page.wait_for_selector("body.ready")
        page.set_input_files("#file-input", str(samples / "photo.jpg"))
        page.wait_for_selector(".result:not(.pending)")
        assert "Model time" in page.locator(".result").first.inner_text()
    finally:
        browser.context.set_offline(False)
        page.close()


def test_any_uint8_or_float32_file_edgecls_classifies_runs_in_the_page(browser, server, colour_models, tmp_path):
    """Not only the built-in models: the tiny test models, with metadata written by edgecls,
    give edgecls's own record in the page (a solid colour: no resampling difference)."""
    import edgecls
    from tiny_models import solid_image

    image = tmp_path / "red.png"
    Image.fromarray(solid_image((220, 10, 10))).save(image)
    for mode in ("uint8", "float32"):
        site = edgecls.export_web(colour_models[mode], tmp_path / mode, force=True)
        server.add(f"colour-{mode}", site)
        page = browser.open(server.url(f"colour-{mode}", "index.html"))
        try:
            record = page.evaluate(
                "async (bytes) => window.edgecls.classify(new Blob([new Uint8Array(bytes)]), {path: 'red.png'})",
                list(image.read_bytes()),
            )
        finally:
            page.close()
        expected = edgecls.Classifier(colour_models[mode]).classify_files([image])[0].to_record()
        assert record["label"] == expected["label"] == "red"
        assert [t["label"] for t in record["top_k"]] == [t["label"] for t in expected["top_k"]]
        assert record["probability"] == pytest.approx(expected["probability"], abs=1e-5), mode


def test_an_int8_input_file_is_refused_with_the_way_out(colour_models, tmp_path):
    result = _export(str(colour_models["int8"]), "--output", str(tmp_path / "site"))
    assert result.exit_code == 2 and "takes uint8 or float32" in result.output and "int8_io_to_uint8" in result.output
    assert not (tmp_path / "site").exists()


# -- the command's errors (no browser) ----------------------------------------------------------
def _export(*args: str):
    return runner.invoke(app, ["export", "web", *args])


def test_unknown_model_and_unreadable_model_files_are_one_line_errors(tmp_path):
    result = _export("no-such-model", "--output", str(tmp_path / "site"))
    assert result.exit_code == 2 and "not a built-in model" in result.output and "Traceback" not in result.output
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(b"TFL3" * 10)
    result = _export(str(damaged), "--output", str(tmp_path / "site"))
    assert result.exit_code == 2 and "corrupt" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "site").exists()


def test_an_existing_output_is_refused_without_force_and_foreign_folders_never_replaced(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    result = _export("ham10000", "--output", str(folder))
    assert result.exit_code == 2 and "exists; --force" in result.output
    result = _export("ham10000", "--output", str(folder), "--force")
    assert result.exit_code == 2 and "not an edgecls web export" in result.output
    assert (folder / "notes.txt").read_text() == "keep me"


def _bad_tarball(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("package/package.json")
        data = json.dumps({"name": "@mediapipe/tasks-vision", "version": "1.1.0"}).encode()
        info.size = len(data)
        import io

        tar.addfile(info, io.BytesIO(data))
    return path


def test_a_bad_runtime_is_a_one_line_error_naming_runtime_and_nothing_is_written(tmp_path):
    cases = {
        "missing": tmp_path / "nowhere.tgz",
        "wrong tarball": _bad_tarball(tmp_path / "fake.tgz"),
        "folder without the files": tmp_path / "empty-folder",
    }
    cases["folder without the files"].mkdir()
    for what, runtime in cases.items():
        result = _export("ham10000", "--output", str(tmp_path / "site"), "--runtime", str(runtime))
        assert result.exit_code == 2, what
        assert "--runtime" in result.output and len(result.output.strip().splitlines()) == 1, (what, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-folder", "fake.tgz"]  # no site, no half-written folder


def test_without_npm_or_a_registry_setting_the_error_names_runtime(tmp_path, monkeypatch):
    from edgecls.errors import EdgeclsError
    from edgecls.web import runtime

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    for key in ("npm_config_registry", "NPM_CONFIG_REGISTRY"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(EdgeclsError, match="`runtime`") as excinfo:
        runtime.load_runtime()
    assert excinfo.value.fields == ("runtime",)
    assert not (tmp_path / "cache" / "edgecls").exists() or not any((tmp_path / "cache" / "edgecls").iterdir())


def test_a_runtime_given_as_an_unpacked_folder_is_checked_file_by_file(tmp_path):
    from edgecls.errors import EdgeclsError
    from edgecls.web import runtime

    try:
        files = runtime.load_runtime()
    except EdgeclsError as exc:
        pytest.skip(f"the MediaPipe web runtime is not available here: {exc}")
    folder = tmp_path / "package"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    assert runtime.load_runtime(tmp_path) == files
    (folder / "wasm" / "vision_wasm_internal.wasm").write_bytes(b"\0asm" + b"\0" * 100)
    with pytest.raises(EdgeclsError, match="vision_wasm_internal.wasm is not the one.*`runtime`"):
        runtime.load_runtime(folder)


def test_serve_gives_the_site_with_the_types_browsers_require(sites):
    """`--serve`'s server: module scripts and WebAssembly need their MIME types."""
    import threading
    import urllib.request

    from edgecls.web import serve

    httpd = serve(sites["ham10000"], "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/"
        types = {}
        for name in ("", "mediapipe/vision_bundle.mjs", "mediapipe/wasm/vision_wasm_internal.wasm", "manifest.webmanifest"):
            with urllib.request.urlopen(base + name, timeout=10) as response:
                types[name] = response.headers["Content-Type"]
        assert types == {"": "text/html", "mediapipe/vision_bundle.mjs": "text/javascript",
                         "mediapipe/wasm/vision_wasm_internal.wasm": "application/wasm",
                         "manifest.webmanifest": "application/manifest+json"}  # fmt: skip
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_serve_refuses_a_folder_that_is_not_a_site(tmp_path):
    from edgecls.errors import EdgeclsError
    from edgecls.web import serve

    with pytest.raises(EdgeclsError, match="no index.html"):
        serve(tmp_path, "127.0.0.1", 0)


def test_without_npm_the_package_comes_from_npms_registry_setting_verified(tmp_path, monkeypatch):
    """The download path, against a registry served from 127.0.0.1: the right tarball is cached;
    a tampered one is refused, naming `runtime`, and nothing is cached."""
    import functools
    import http.server
    import threading

    from edgecls.errors import EdgeclsError
    from edgecls.web import runtime

    cached = runtime.cache_dir() / runtime.TARBALL_NAME
    if not cached.is_file():
        pytest.skip(f"no cached {runtime.TARBALL_NAME} to serve as a registry here")
    registry = tmp_path / "registry"
    tarball = registry / "@mediapipe" / "tasks-vision" / "-" / f"tasks-vision-{runtime.VERSION}.tgz"
    tarball.parent.mkdir(parents=True)
    tarball.write_bytes(cached.read_bytes())
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(registry))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))
        monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{httpd.server_address[1]}/")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        assert sorted(runtime.load_runtime()) == sorted(runtime.FILES)
        assert (tmp_path / "cache" / "edgecls" / runtime.TARBALL_NAME).read_bytes() == tarball.read_bytes()
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
        data = bytearray(tarball.read_bytes())
        data[len(data) // 2] ^= 0xFF
        tarball.write_bytes(bytes(data))
        with pytest.raises(EdgeclsError, match="published hash.*`runtime`"):
            runtime.load_runtime()
        assert not (tmp_path / "cache2" / "edgecls" / runtime.TARBALL_NAME).exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
