"""Models shipped inside the package, looked up by name (`--model ham10000`)."""

from __future__ import annotations

from pathlib import Path

from edgecls.errors import EdgeclsError


def _models_dir() -> Path:
    # Beside the package's modules, as installed from the wheel or in place. (importlib.resources
    # would add ~3 ms to every device command's start; the models are read as files anyway.)
    return Path(__file__).resolve().parent.parent / "models"


def builtin_models() -> dict[str, Path]:
    """Name -> path of every `.tflite` file shipped in `edgecls/models/`."""
    folder = _models_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.tflite"))}


def resolve_model(name_or_path: str) -> Path:
    """A path to a model file: a built-in name, or a path as given."""
    path = Path(name_or_path)
    if path.exists() or path.suffix or "/" in name_or_path or "\\" in name_or_path:
        return path
    models = builtin_models()
    if name_or_path in models:
        return models[name_or_path]
    known = ", ".join(models) or "none installed"
    raise EdgeclsError(f"{name_or_path}: not a file and not a built-in model (built-ins: {known})")
