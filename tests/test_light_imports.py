"""The device path must never import TensorFlow: proven in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "sklearn", "matplotlib", "pandas")

CHECK = """
import sys
{code}
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print(','.join(heavy))
"""


@pytest.mark.parametrize(
    "code",
    [
        "import edgecls",
        "import edgecls.edge_runtime",
        "import edgecls.cli",
        "from edgecls.cli import app\nfrom typer.testing import CliRunner\nCliRunner().invoke(app, ['--help'])",
    ],
)
def test_imports_stay_light(code):
    out = subprocess.run([sys.executable, "-c", CHECK.format(code=code, heavy=HEAVY)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"


def test_classify_run_stays_light(colour_models, tmp_path):
    from PIL import Image
    from tiny_models import solid_image

    image = tmp_path / "red.png"
    Image.fromarray(solid_image((200, 0, 0))).save(image)
    code = (
        "from edgecls.cli import app\nfrom typer.testing import CliRunner\n"
        f"r = CliRunner().invoke(app, ['classify', '-m', {str(colour_models['int8'])!r}, {str(image)!r}, '-f', 'json'])\n"
        "assert r.exit_code == 0, r.output\nassert '\"red\"' in r.stdout"
    )
    out = subprocess.run([sys.executable, "-c", CHECK.format(code=code, heavy=HEAVY)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"heavy modules imported: {out.stdout}"


def test_interpreter_lookup_order():
    from edgecls.edge_runtime.interpreter import INTERPRETER_MODULES, find_interpreter

    assert [m for m, _ in INTERPRETER_MODULES] == [
        "ai_edge_litert.interpreter",
        "tflite_runtime.interpreter",
        "tensorflow.lite.python.interpreter",
    ]
    _, package = find_interpreter()
    assert package == "ai-edge-litert"


def test_no_interpreter_gives_one_clear_message(monkeypatch):
    import importlib

    from edgecls.edge_runtime import interpreter
    from edgecls.errors import EdgeclsError

    def refuse(name, *a, **k):
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", refuse)
    with pytest.raises(EdgeclsError, match="no TFLite interpreter is installed: pip install ai-edge-litert"):
        interpreter.find_interpreter()
