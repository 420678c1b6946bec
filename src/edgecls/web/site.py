"""Write the static web site: the page, the model, what the page needs to read the model as
edgecls does (model.json), and the MediaPipe Tasks runtime."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from edgecls.errors import EdgeclsError
from edgecls.log import get_logger
from edgecls.web import runtime as web_runtime

log = get_logger("web")

SCHEMA = "edgecls.web/1"
CONFIG_NAME = "model.json"
MODEL_NAME = "model.tflite"
# The page's own files (package data in edgecls/web/assets/), copied as they are.
ASSETS = ("index.html", "app.js", "app.css", "manifest.webmanifest", "icon.svg", "icon-192.png", "icon-512.png")
SERVICE_WORKER = "sw.js"
RUNTIME_DIR = "mediapipe"
# Pillow's own limit (Image.MAX_IMAGE_PIXELS), which edgecls classify applies too: above it, the
# page refuses the image instead of asking a phone for gigabytes of canvas.
MAX_PIXELS = 89_478_485
_METRICS = ("accuracy", "balanced_accuracy", "macro_auc", "float_keras_accuracy", "accuracy_drop_points",
            "agreement_with_float", "mean_kl_vs_float", "test_images", "split")  # fmt: skip


def assets_dir() -> Path:
    return Path(__file__).resolve().parent / "assets"


def model_config(model: str | os.PathLike) -> tuple[dict, Path]:
    """What the page needs to compute what `edgecls classify` computes, read from the file's
    metadata here (in Python, once) so the page needs no flatbuffer parser: labels, input size,
    which output head to read and how (logits and temperature, or probabilities and their
    quantization floor), class groups and the operating point, and the model card's fields."""
    import warnings

    from edgecls.edge_runtime.builtin import resolve_model
    from edgecls.edge_runtime.classifier import TFLiteClassifier

    path = resolve_model(os.fspath(model))
    from edgecls.core.native_stderr import quiet_native_stderr

    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")  # a file without metadata is said in model.json and on the page
        clf = TFLiteClassifier(path, num_threads=1)
    import numpy as np

    if clf.input_details["dtype"] not in (np.uint8, np.float32):
        raise EdgeclsError(
            f"{path}: its image input is {np.dtype(clf.input_details['dtype']).name}; MediaPipe Tasks, the page's runtime, "
            "takes uint8 or float32 (edgecls convert's default is uint8; edgecls.convert.retype_io.int8_io_to_uint8 "
            "turns int8 I/O into uint8, exactly)"
        )
    meta = clf.metadata
    head = next(i for i, o in enumerate(clf._outputs) if o["index"] == clf.output_details["index"])
    provenance = meta.provenance or {}
    card = {
        "name": meta.name or path.stem,
        "file": path.name,
        "dataset": meta.dataset,
        "quantization": meta.quantization,
        "created": meta.created,
        "edgecls_version": meta.edgecls_version,
        "metadata": clf.metadata_source,
        "intended_use": str(provenance.get("intended_use", "")),
        "licence": str(provenance.get("licence", "")),
        "data_source": str(provenance.get("data_source", "")),
        "parity_gate": str(provenance.get("parity_gate", "")),
        "metrics": {k: meta.metrics[k] for k in _METRICS if _plain(meta.metrics.get(k))},
    }
    config = {
        "schema": SCHEMA,
        "model": MODEL_NAME,
        "labels": list(clf.labels),
        "input_size": list(clf.input_size),
        "channels": clf.channels,
        "head": head,
        "reads_logits": bool(clf.reads_logits),
        "temperature": float(meta.temperature),
        "probability_floor": float(clf.probability_floor),
        "groups": {name: [clf.labels.index(label) for label in members] for name, members in meta.groups.items()},
        "operating_point": {k: v for k, v in (meta.operating_point or {}).items() if _plain(v)},
        "max_pixels": MAX_PIXELS,
        "card": card,
    }
    return config, path


def _plain(value) -> bool:
    return isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def export_web(model: str | os.PathLike, output: str | os.PathLike, runtime: str | os.PathLike | None = None,
               force: bool = False) -> Path:  # fmt: skip
    """Write a static web site that classifies images in the browser, offline, as `edgecls
    classify` does: `index.html`, its JS and CSS, a web app manifest and a service worker, the
    model and `model.json`, and MediaPipe Tasks' vision runtime (obtained and verified by
    `edgecls.web.runtime`). `output` must not exist, or be an earlier export with `force=True`;
    the site is written beside it and renamed into place whole. Returns the site's folder."""
    output = Path(output)
    _check_output(output, force)
    config, model_path = model_config(model)
    files = web_runtime.load_runtime(runtime)
    parent = output.resolve().parent
    if not parent.is_dir():
        raise EdgeclsError(f"{output}: its folder {parent} does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=parent))
    try:
        _write_site(staging, config, model_path, files)
        _replace(staging, output)
    except OSError as exc:
        raise EdgeclsError(f"{output}: cannot write the site ({exc.strerror or exc})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s (%s, %d files)", output, config["card"]["name"], sum(1 for p in output.rglob("*") if p.is_file()))
    return output


def _check_output(output: Path, force: bool) -> None:
    if output.exists() or output.is_symlink():
        if not output.is_dir() or output.is_symlink():
            raise EdgeclsError(f"{output}: exists and is not a folder; give `output` a new folder", fields="output")
        if not force:
            raise EdgeclsError(f"{output}: exists; `force` replaces an earlier export", fields="force")
        if any(output.iterdir()) and not _is_export(output):
            raise EdgeclsError(f"{output}: is not an edgecls web export (no {CONFIG_NAME} of ours); not replaced")


def _is_export(folder: Path) -> bool:
    try:
        return json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def _write_site(root: Path, config: dict, model_path: Path, files: dict[str, bytes]) -> None:
    os.chmod(root, 0o777 & ~_umask())  # mkdtemp makes it 0700; a web server's user must read it
    assets = assets_dir()
    for name in ASSETS:
        shutil.copyfile(assets / name, root / name)
    shutil.copyfile(model_path, root / MODEL_NAME)
    card = model_path.with_suffix(".md")
    if card.is_file():  # the built-in models' cards
        shutil.copyfile(card, root / "model-card.md")
        config["card"]["card_file"] = "model-card.md"
    (root / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    mp = root / RUNTIME_DIR
    (mp / "wasm").mkdir(parents=True)
    for name, data in files.items():
        (mp / name).write_bytes(data)
    shutil.copyfile(assets / "LICENSE-Apache-2.0.txt", mp / "LICENSE")
    (mp / "NOTICE.json").write_text(web_runtime.notice(), encoding="utf-8")
    # The service worker caches the page, model and bundle when it installs; the WebAssembly
    # build the browser picks is cached by the page once it has loaded. Its cache is named after
    # the content, so a new export replaces the old cache instead of mixing with it.
    shell = [*ASSETS, CONFIG_NAME, MODEL_NAME, f"{RUNTIME_DIR}/vision_bundle.mjs"]
    digest = hashlib.sha256()
    for name in sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    worker = (assets / SERVICE_WORKER).read_text(encoding="utf-8")
    worker = worker.replace("__CACHE__", f"edgecls-{digest.hexdigest()[:16]}").replace("__SHELL__", json.dumps(["./", *shell]))
    (root / SERVICE_WORKER).write_text(worker, encoding="utf-8")
    for path in root.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


def _replace(staging: Path, output: Path) -> None:
    if not output.exists():
        os.rename(staging, output)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old.", dir=output.resolve().parent))
    os.rename(output, old / "site")
    os.rename(staging, output)
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
