"""The device path must never import TensorFlow: proven in a fresh interpreter."""

from __future__ import annotations

import os
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
        # The Python API's device half: no TensorFlow, no pandas, on any input kind.
        "import edgecls, numpy as np\nfrom PIL import Image\nclf = edgecls.Classifier('ham10000')\n"
        "image = np.zeros((450, 600, 3), np.uint8)\nclf.classify(image); clf.classify([image, Image.fromarray(image)])\n"
        "clf.benchmark(runs=2, warmup=0, threads=1)",
    ],
    ids=["edgecls", "edge_runtime", "cli", "cli-help", "api-classifier"],
)
def test_imports_stay_light(code):
    out = subprocess.run([sys.executable, "-c", CHECK.format(code=code, heavy=HEAVY)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"


def test_core_and_convert_sit_below_train():
    """A run's recorded options are core's TrainOptions: reading a run and converting it import no
    edgecls.train module (edgecls.train.options re-exports the same class)."""
    code = (
        "import sys, edgecls.core.runs, edgecls.core.train_options, edgecls.convert.modes, edgecls.convert.conversion\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('edgecls.train'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"train modules imported: {out.stdout.strip()}"
    from edgecls.core.train_options import TrainOptions
    from edgecls.train.options import TrainOptions as Reexported

    assert Reexported is TrainOptions
    # Deferred imports too: none in core or convert names edgecls.train, but validate()'s model
    # registry lookup (the registry is training's).
    import ast
    from pathlib import Path

    import edgecls

    package = Path(edgecls.__file__).parent
    found = []
    for path in [*(package / "core").rglob("*.py"), *(package / "convert").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [f"{path.relative_to(package)}:{node.lineno}" for name in names if name.startswith("edgecls.train")]
    assert found == [f"core/train_options.py:{_line_of(package / 'core' / 'train_options.py', 'from edgecls.train.models import model_spec')}"], found


def _line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


def test_import_edgecls_loads_nothing_and_the_api_names_never_tensorflow():
    """`import edgecls` imports only the package itself; resolving every public name (what the API
    reference build does) imports no TensorFlow or Keras: they load when training or converting."""
    code = (
        "import sys\nbefore = set(sys.modules)\nimport edgecls\n"
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('edgecls')))\n"
        "[getattr(edgecls, name) for name in edgecls.__all__]\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tf_keras', 'keras', 'tensorflow_model_optimization'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "[]"], out.stdout


@pytest.mark.parametrize(
    "command, expect",
    [
        (["classify", "-m", "{model}", "{image}", "-f", "json"], '"red"'),
        (["info", "{model}"], "red"),
        (["bench", "{model}", "--runs", "20", "--warmup", "2", "--json"], '"images_per_s"'),
    ],
    ids=["classify", "info", "bench"],
)
def test_device_commands_stay_light(command, expect, colour_models, tmp_path):
    from PIL import Image
    from tiny_models import solid_image

    image = tmp_path / "red.png"
    Image.fromarray(solid_image((200, 0, 0))).save(image)
    argv = [a.format(model=colour_models["int8"], image=image) for a in command]
    code = (
        "from edgecls.cli import app\nfrom typer.testing import CliRunner\n"
        f"r = CliRunner().invoke(app, {argv!r})\n"
        f"assert r.exit_code == 0, r.output\nassert {expect!r} in r.stdout, r.stdout"
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


def test_falls_back_to_tflite_runtime_when_litert_is_missing(monkeypatch, colour_models, tmp_path):
    """Older Pi images have only tflite-runtime: without LiteRT, classification goes through it.
    The stand-in `tflite_runtime.interpreter` wraps LiteRT's class, so a real model still runs."""
    import importlib
    import types

    import numpy as np
    from PIL import Image

    from edgecls.edge_runtime import TFLiteClassifier, interpreter, load_image

    real_import = importlib.import_module
    litert = real_import("ai_edge_litert.interpreter")
    calls = []

    class FallbackInterpreter(litert.Interpreter):
        def __init__(self, *args, **kwargs):
            calls.append(kwargs.get("num_threads"))
            super().__init__(*args, **kwargs)

    stand_in = types.SimpleNamespace(Interpreter=FallbackInterpreter)

    def lookup(name, *args, **kwargs):
        if name.startswith("ai_edge_litert"):
            raise ImportError(name)
        if name == "tflite_runtime.interpreter":
            return stand_in
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", lookup)
    assert interpreter.find_interpreter() == (FallbackInterpreter, "tflite-runtime")
    image = tmp_path / "red.png"
    Image.fromarray(np.full((20, 20, 3), (220, 10, 10), np.uint8)).save(image)
    classifier = TFLiteClassifier(colour_models["int8"], num_threads=2)
    assert classifier.interpreter_package == "tflite-runtime" and calls == [2]
    assert classifier.predict(load_image(image, classifier.input_size)).label == "red"


def test_a_device_command_process_skips_the_workstation_commands(colour_models, tmp_path):
    """`edgecls classify` started as a program imports only the device commands (classify, info,
    models, bench: cold start on a Pi); `edgecls --help` still lists every command."""
    from PIL import Image
    from tiny_models import solid_image

    image = tmp_path / "red.png"
    Image.fromarray(solid_image((200, 0, 0))).save(image)
    code = (  # the list is printed at exit (a device command's process ends in os._exit, after atexit)
        "import atexit, sys, runpy\n"
        "atexit.register(lambda: print(sorted(m for m in sys.modules if m.startswith(('edgecls.cli.', 'edgecls.train', 'edgecls.convert'))), file=sys.stderr))\n"
        f"sys.argv = ['edgecls', 'classify', '-m', {str(colour_models['int8'])!r}, {str(image)!r}, '-f', 'json']\n"
        "runpy.run_module('edgecls', run_name='__main__')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and '"red"' in out.stdout, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "['edgecls.cli.bench', 'edgecls.cli.device', 'edgecls.cli.output', 'edgecls.cli.support']", out.stderr
    listed = subprocess.run([sys.executable, "-m", "edgecls", "--help"], capture_output=True, text=True, check=True).stdout
    assert all(name in listed for name in ("classify", "info", "models", "bench", "train", "evaluate", "convert", "demo"))


@pytest.mark.parametrize("argv0, expect", [("edgecls", "1"), ("other-program", None)], ids=["device-command", "not-the-cli"])
def test_a_device_command_keeps_numpys_blas_to_one_thread(argv0, expect):
    """`edgecls classify` sets OPENBLAS_NUM_THREADS=1 before numpy is imported (its BLAS threads
    busy-wait ~0.1 s of CPU a process, for BLAS a device command never calls); a user's own value
    wins, and another program importing edgecls.cli is left alone."""
    code = (
        "import os, sys\n"
        f"sys.argv = [{argv0!r}, 'classify', 'photo.jpg']\n"
        "import edgecls.cli\n"
        "print('numpy' in sys.modules, os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", str(expect)], out.stdout
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env | {"OPENBLAS_NUM_THREADS": "3"})
    assert out.stdout.split() == ["False", "3"], out.stdout


# A sentinel in __main__ whose finalizer speaks only if Python finalizes the process; an atexit
# handler that must run either way; then the command.
_EXIT_SCRIPT = """
import atexit, sys, runpy
class Sentinel:
    def __del__(self):
        sys.stderr.write("finalized\\n")
sentinel = Sentinel()
atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
sys.argv = ['edgecls'] + sys.argv[1:]
runpy.run_module('edgecls', run_name='__main__')
"""


@pytest.mark.parametrize(
    "argv, fast",
    [
        (["classify", "-m", "{model}", "{images}", "-f", "csv"], True),
        (["info", "{model}", "--json"], True),
        (["bench", "{model}", "--runs", "1", "--warmup", "0", "--threads", "1"], True),
        (["--version"], False),
    ],
    ids=["classify", "info", "bench", "not-a-device-command"],
)
def test_a_device_command_process_skips_finalization_after_its_exit_work(argv, fast, colour_models, tmp_path):
    """A device command ends in os._exit (Python's finalization costs 40-70 ms a process), after the
    atexit handlers and with every line of its output delivered; other commands exit as usual."""
    from PIL import Image
    from tiny_models import solid_image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(40):  # a folder run: decode threads, batches, a few KB of CSV through a pipe
        Image.fromarray(solid_image((200, 0, 0))).save(images / f"red-{i:02d}.png")
    argv = [arg.format(model=colour_models["int8"], images=images) for arg in argv]
    out = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, *argv], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "atexit ran" in out.stderr
    assert ("finalized" in out.stderr) is not fast, out.stderr
    if argv[0] == "classify":
        assert out.stdout.count("\n") == 41 and out.stdout.endswith("\n")  # the header and every row


def test_a_device_command_keeps_its_exit_code_through_the_fast_exit(colour_models, tmp_path):
    """Some images failed: exit 1 (EXIT_PARTIAL) and the skipped-image lines, through os._exit."""
    from PIL import Image
    from tiny_models import solid_image

    Image.fromarray(solid_image((200, 0, 0))).save(tmp_path / "red.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    argv = ["classify", "-m", str(colour_models["int8"]), str(tmp_path), "-f", "csv"]
    out = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, *argv], capture_output=True, text=True)
    from edgecls.errors import EXIT_PARTIAL

    assert out.returncode == EXIT_PARTIAL, out.stderr
    assert "finalized" not in out.stderr and "broken.jpg" in out.stderr and out.stdout.count("\n") == 2
