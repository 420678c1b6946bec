"""Shared fixtures for the benchmarks: a realistic float32/int8 model pair and a folder of JPEGs.

The benchmarks RECORD; they never fail on timing. CI runs them with
`pytest benchmarks --benchmark-json=out/benchmarks.json`; each benchmark stores its derived
figures (images/s, peak MiB, ratios, the target it is measured against) in `extra_info`, and
the terminal summary prints them as one table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import bench_data  # noqa: E402
from benchmarks.bench_util import FIGURES  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def compiled_edgecls() -> None:
    """Byte-compile edgecls before any process is timed, as pip does when it installs a wheel.
    An editable install run with PYTHONDONTWRITEBYTECODE=1 (this CI's environment, and many
    Docker images) would otherwise compile every edgecls module in every process: ~30 ms of a
    one-image `edgecls classify`, which no installed user pays."""
    import compileall

    import edgecls

    compileall.compile_dir(Path(edgecls.__file__).parent, quiet=1)


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="session")
def edge_models(bench_dir) -> dict[str, Path]:
    """edge-cnn 94x94x3 -> 7 classes (random weights): model.keras, float32 and full-int8 .tflite."""
    return bench_data.build_models(bench_dir / "models")


@pytest.fixture(scope="session")
def jpeg_paths(bench_dir) -> list[Path]:
    """1,000 600x450 JPEGs at quality 90 (200 distinct pictures, then copies)."""
    return bench_data.make_jpegs(bench_dir / "jpegs")


@pytest.fixture(scope="session")
def one_jpeg(jpeg_paths) -> Path:
    return jpeg_paths[0]


@pytest.fixture(scope="session")
def heavy_jpeg_paths(bench_dir) -> list[Path]:
    """40 distinct heavy 600x450 JPEGs (quality 100, 270-300 KB): the real originals' stand-in."""
    return bench_data.make_heavy_jpegs(bench_dir / "heavy")


@pytest.fixture(scope="session")
def ham10000_model() -> Path:
    """The built-in ham10000 model: the one the speed headline is about."""
    from edgecls.edge_runtime.builtin import builtin_models

    models = builtin_models()
    if "ham10000" not in models:
        pytest.skip("the built-in ham10000 model is not in this checkout")
    return models["ham10000"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.section("edgecls benchmark figures (recorded, not asserted)")
    for name, figures in FIGURES.items():
        shown = ", ".join(f"{k}={v}" for k, v in figures.items() if k not in ("note",))
        terminalreporter.write_line(f"{name}: {shown}")
