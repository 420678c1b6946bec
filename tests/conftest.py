from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """A real dataset from ../shared/data, or a visible skip when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset not available: {path} is absent (see docs/data.md)")
    return path


@pytest.fixture(scope="session")
def colour_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny colour classifier as float32, int8 and uint8 .tflite files with metadata,
    plus an int8 copy without metadata."""
    from tiny_models import colour_tflite

    folder = tmp_path_factory.mktemp("colour_models")
    paths = {}
    for mode in ("float32", "int8", "uint8"):
        paths[mode] = folder / f"colour_{mode}.tflite"
        paths[mode].write_bytes(colour_tflite(mode))
    paths["bare"] = folder / "colour_bare.tflite"
    paths["bare"].write_bytes(colour_tflite("int8", with_metadata=False))
    return paths
