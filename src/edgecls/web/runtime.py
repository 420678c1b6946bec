"""The MediaPipe Tasks vision runtime for the web page: the pinned npm package
`@mediapipe/tasks-vision`, verified, cached, and the few files the page loads taken out of it.

It is not in edgecls's wheel (about 12 MB packed, 40 MB unpacked; a Raspberry Pi's device
install has no use for it). It is obtained the way a user's own tools obtain npm packages:
`npm pack` when npm is on PATH (the user's registry settings apply), otherwise a plain HTTP
download from the registry that npm's standard settings name (`npm_config_registry`, or
`registry=` in ~/.npmrc). Either way the tarball must match the integrity hash the registry
published for this version (pinned below), and each file taken from it its own pinned SHA-256,
so an unpacked folder given with `--runtime` is checked as strictly as a tarball.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from edgecls.errors import EdgeclsError, first_line
from edgecls.files import write_bytes_atomic
from edgecls.log import get_logger

log = get_logger("web")

PACKAGE = "@mediapipe/tasks-vision"
VERSION = "1.1.0"
# `npm view @mediapipe/tasks-vision@1.1.0 dist.integrity`: the registry's SRI hash of the tarball.
INTEGRITY = "sha512-ZJqh0wMKOINorfSffvDAxzyO1//c+FiG3IkzOdNDnLqvBB3DbMfj0bB/tys2SNf9S914sgoIbIpF4HTOi336cg=="
TARBALL_NAME = f"mediapipe-tasks-vision-{VERSION}.tgz"  # what `npm pack` names it
LICENSE = "Apache-2.0"  # the package's package.json "license"; the package ships no licence file

# The files the page loads, by their path in the package, with their SHA-256. The bundle picks
# the SIMD build where the browser has WebAssembly SIMD (every current phone browser) and the
# non-SIMD one elsewhere (e.g. iOS before 16.4): both are kept, a phone downloads one. The
# "module" build is for bundlers (`forVisionTasks(path, true)`), which the page does not use.
FILES = {
    "vision_bundle.mjs": "9d5fc9ef74b22329cf9aa88dc543956d192b8c254210b187271614713eb5b10c",
    "wasm/vision_wasm_internal.js": "7c652617b5bef832f42878ce8c5f752b0724bca6054e4bc1013a37d4b1949723",
    "wasm/vision_wasm_internal.wasm": "782eda3ec1f414fdb4f1d66a8b59093eb4d5ab437e06117796abf05962d68eef",
    "wasm/vision_wasm_nosimd_internal.js": "510fc70a170eb8b46767a7abab2af89a7a8341fa5b3ebfb8a5de41a79b7fa9df",
    "wasm/vision_wasm_nosimd_internal.wasm": "b802041d105876865d6a0806f2ff7c4419a7f1b80bc01340fe36e759c2030011",
    "package.json": "1b6bd640d09f7233cb8b9f8c5381ed706743ce97eb970db267db975089ab7663",
}
_MAX_TARBALL_BYTES = 64 << 20  # the real one is ~12 MB; a server sending more is not sending it
_DOWNLOAD_TIMEOUT_S = 60
_HINT = f"give the {PACKAGE} {VERSION} package with `runtime` PATH (its .tgz from `npm pack {PACKAGE}@{VERSION}`, or that unpacked)"


def _error(message: str) -> EdgeclsError:
    """Every runtime error says how to give the package by hand, naming the `runtime` argument."""
    return EdgeclsError(message, fields="runtime")


def cache_dir() -> Path:
    """~/.cache/edgecls, or $XDG_CACHE_HOME/edgecls."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgecls"


def load_runtime(runtime: str | os.PathLike | None = None) -> dict[str, bytes]:
    """The page's runtime files (path in the package -> bytes), verified.

    `runtime`: a local tarball or an unpacked package folder; None takes the cached tarball,
    fetching it first when it is not cached yet.
    """
    if runtime is not None:
        path = Path(runtime)
        if path.is_dir():
            return _files_from_folder(path)
        if not path.is_file():
            raise _error(f"`runtime` {path}: no such file or folder; {_HINT}")
        return _files_from_tarball(_read(path), f"`runtime` {path}")
    cached = cache_dir() / TARBALL_NAME
    if cached.is_file():
        data = _read(cached)
        if _integrity_ok(data):
            return _files_from_tarball(data, str(cached))
        log.warning("%s does not match %s %s's published hash; fetching it again", cached, PACKAGE, VERSION)
    data = _fetch_tarball()
    write_bytes_atomic(cached, data)
    log.info("cached %s %s in %s", PACKAGE, VERSION, cached)
    return _files_from_tarball(data, str(cached))


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > _MAX_TARBALL_BYTES:
            raise _error(f"`runtime` {path}: {size} bytes is not the {PACKAGE} {VERSION} package; {_HINT}")
        return path.read_bytes()
    except OSError as exc:
        raise _error(f"{path}: cannot read ({exc.strerror or exc}); {_HINT}") from None


def _integrity_ok(data: bytes) -> bool:
    algorithm, _, expected = INTEGRITY.partition("-")
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == expected


def _files_from_tarball(data: bytes, where: str) -> dict[str, bytes]:
    if not _integrity_ok(data):
        raise _error(f"{where}: not {PACKAGE} {VERSION} (its hash is not the one the registry published); {_HINT}")
    files = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for name in FILES:
                member = tar.extractfile(f"package/{name}")
                if member is None:
                    raise KeyError(name)
                files[name] = member.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:  # cannot happen with the verified tarball
        raise _error(f"{where}: cannot read the package ({first_line(exc)}); {_HINT}") from None
    return _verified(files, where)


def _files_from_folder(folder: Path) -> dict[str, bytes]:
    root = folder / "package" if (folder / "package" / "package.json").is_file() else folder
    files = {}
    for name in FILES:
        try:
            files[name] = (root / name).read_bytes()
        except OSError as exc:
            raise _error(f"`runtime` {folder}: cannot read {name} ({exc.strerror or exc}); {_HINT}") from None
    return _verified(files, f"`runtime` {folder}")


def _verified(files: dict[str, bytes], where: str) -> dict[str, bytes]:
    for name, digest in FILES.items():
        if hashlib.sha256(files[name]).hexdigest() != digest:
            raise _error(f"{where}: {name} is not the one in {PACKAGE} {VERSION}; {_HINT}")
    return files


def _fetch_tarball() -> bytes:
    """The verified tarball: `npm pack` where npm is installed, else a download from npm's configured registry."""
    npm = shutil.which("npm")
    if npm:
        data = _npm_pack(npm)
    else:
        registry = npm_registry()
        if not registry:
            raise _error(
                f"{PACKAGE} {VERSION} is not cached and there is neither npm nor an npm registry setting "
                f"(npm_config_registry) to fetch it from; {_HINT}"
            )
        data = _download(f"{registry.rstrip('/')}/{PACKAGE}/-/{PACKAGE.split('/')[1]}-{VERSION}.tgz")
    if not _integrity_ok(data):
        raise _error(f"the downloaded {PACKAGE} {VERSION} does not match the registry's published hash; {_HINT}")
    return data


def _npm_pack(npm: str) -> bytes:
    log.info("fetching %s %s with npm pack (once; cached in %s)", PACKAGE, VERSION, cache_dir())
    with tempfile.TemporaryDirectory(prefix="edgecls-npm-") as tmp:
        try:
            done = subprocess.run(
                [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
                cwd=tmp, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _error(f"npm pack {PACKAGE}@{VERSION} failed ({first_line(exc)}); {_HINT}") from None
        packed = Path(tmp) / TARBALL_NAME
        if done.returncode != 0 or not packed.is_file():
            reason = next((line for line in done.stderr.splitlines() if "ERR" in line), done.stderr.strip()[:200] or "no tarball")
            raise _error(f"npm pack {PACKAGE}@{VERSION} failed ({reason.strip()}); {_HINT}")
        return _read(packed)


def npm_registry() -> str | None:
    """The registry npm itself would use: npm_config_registry (any case), else `registry=` in ~/.npmrc."""
    for key in ("npm_config_registry", "NPM_CONFIG_REGISTRY"):
        if os.environ.get(key):
            return os.environ[key]
    try:
        lines = Path(os.path.expanduser("~/.npmrc")).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "registry" and value.strip():
            return value.strip()
    return None


def _download(url: str) -> bytes:
    log.info("downloading %s (once; cached in %s)", url, cache_dir())
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            data = response.read(_MAX_TARBALL_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _error(f"cannot download {PACKAGE} {VERSION} ({first_line(getattr(exc, 'reason', exc))}); {_HINT}") from None
    if len(data) > _MAX_TARBALL_BYTES:
        raise _error(f"{url} sent more than {_MAX_TARBALL_BYTES} bytes: not {PACKAGE} {VERSION}; {_HINT}")
    return data


def notice() -> str:
    """What the site says about the runtime it carries."""
    return json.dumps({"package": PACKAGE, "version": VERSION, "license": LICENSE, "integrity": INTEGRITY,
                       "files": sorted(FILES)}, indent=2) + "\n"  # fmt: skip
