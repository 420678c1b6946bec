"""Model files are data until proven otherwise (docs/safety.md): hostile `.keras`, `.h5` and
SavedModel files given to `edgecls convert` and `edgecls evaluate` are refused in one line,
exit 2, before any of their code runs; each payload writes a marker file when it runs, and the
marker must never appear. Each payload is shown live first (loaded without edgecls' checks, it
does write its marker), so a test here fails if the check stops guarding it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hostile_models as hostile
from edgecls.cli import app
from edgecls.core.model_safety import bounded_call, check_keras_config, load_custom_objects
from edgecls.errors import EXIT_ERROR, EdgeclsError
from test_convert import write_patterns

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def patterns(tmp_path_factory) -> Path:
    return write_patterns(tmp_path_factory.mktemp("data") / "patterns", 6, seed=5)


@pytest.fixture(scope="module")
def tf_modules():
    from edgecls.core.tf_env import import_tf

    return import_tf()


def refused(args: list[str], *needles: str) -> str:
    """Run the CLI; assert exit 2 with exactly one error line, no traceback, holding `needles`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = runner.invoke(app, args)
    errors = [line for line in result.output.splitlines() if line.startswith("edgecls: error:")]
    assert result.exit_code == EXIT_ERROR, (result.exit_code, result.output, result.exception)
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def convert_args(model: Path, patterns: Path, out: Path, *extra: str) -> list[str]:
    return ["convert", str(model), "--data", str(patterns), "--mode", "float32", "--output", str(out), *extra]


# -- Keras configs --------------------------------------------------------------------------------
def test_tfop_lambda_is_refused_before_keras_rebuilds_the_model(tf_modules, patterns, tmp_path):
    _, tf_keras = tf_modules
    live = tmp_path / "live"
    model = hostile.tfop_lambda_keras(tmp_path, live)
    with pytest.raises(Exception):
        tf_keras.models.load_model(model, compile=False, safe_mode=True)  # Keras' own safe mode lets it run
    assert live.exists()

    marker = tmp_path / "marker"
    model = hostile.tfop_lambda_keras(tmp_path, marker)
    refused(convert_args(model, patterns, tmp_path / "out"), "TFOpLambda layer 'tf.print'", "Python code")
    refused(["evaluate", str(model), str(patterns), "--output", str(tmp_path / "eval")], "TFOpLambda")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_lambda_is_refused_by_evaluate_and_its_api(tf_modules, patterns, tmp_path):
    import edgecls

    _, tf_keras = tf_modules
    marker = tmp_path / "marker"
    model = hostile.lambda_keras(tmp_path, marker)
    tf_keras.models.load_model(model, compile=False, safe_mode=False)
    assert marker.exists()  # live
    marker.unlink()
    refused(["evaluate", str(model), str(patterns), "--output", str(tmp_path / "eval")], "Lambda layer 'scale'")
    with pytest.raises(EdgeclsError, match="Lambda layer 'scale'"):
        edgecls.evaluate_classifier(model, patterns, output=tmp_path / "eval")
    with pytest.raises(EdgeclsError, match="Lambda layer 'scale'"):
        edgecls.convert_classifier(model, data=patterns, output=tmp_path / "out", modes="float32")
    assert not marker.exists() and not (tmp_path / "eval").exists()


def test_json_escaped_lambda_in_keras_metadata_is_refused(tf_modules, patterns, tmp_path):
    tf, tf_keras = tf_modules
    marker = tmp_path / "marker"
    model = hostile.escaped_lambda_saved_model(tmp_path, marker)
    assert b"Lambda" not in (model / "keras_metadata.pb").read_bytes().replace(b"_lambda", b"")
    tf_keras.models.load_model(str(model), compile=False).predict(tf.zeros((1, hostile.SIZE, hostile.SIZE, 3)), verbose=0)
    assert marker.exists()  # live
    marker.unlink()
    refused(convert_args(model, patterns, tmp_path / "out"), "Lambda layer 'scale'")
    assert not marker.exists()


def test_custom_layers_are_refused_by_name_unless_the_user_passes_their_code(tf_modules, patterns, tmp_path):
    import edgecls

    marker = tmp_path / "imported"
    model, source = hostile.custom_layer_keras(tmp_path, marker)
    (tmp_path / "labels.json").write_text(json.dumps(sorted(p.name for p in patterns.iterdir())))
    error = refused(["evaluate", str(model), str(patterns), "--output", str(tmp_path / "eval")], "Scale layer 'half'", "--custom-objects")
    assert "my_layers" in error and not marker.exists()
    refused(convert_args(model, patterns, tmp_path / "out"), "Scale layer 'half'")
    assert not marker.exists()

    result = runner.invoke(app, ["evaluate", str(model), str(patterns), "--output", str(tmp_path / "eval"), "--custom-objects", str(source)])
    assert result.exit_code == 0, result.output
    assert marker.exists()  # the user's file ran, as the option says
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["all"]["images"] == 24
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no --split, no --input-range: said, and not the point here
        converted = edgecls.convert_classifier(model, data=patterns, output=tmp_path / "out", modes="float32", custom_objects=str(source))
    assert (converted.output_dir / "model_float32.tflite").is_file()


def test_config_allow_list():
    """Objects a config may hold, judged on the parsed JSON (no Keras, no TensorFlow)."""

    def layer(class_name, **extra):
        return {"class_name": "Sequential", "config": {"layers": [{"class_name": class_name, "config": {"name": "x", **extra.pop("config", {})}, **extra}]}}

    check_keras_config(layer("Conv2D", module="keras.layers", config={"activation": "relu", "kernel_initializer": "glorot_uniform"}), "m")
    check_keras_config(layer("Dense", config={"kernel_initializer": {"class_name": "HeNormal", "config": {"seed": 1}, "module": "keras.initializers"}}), "m")
    check_keras_config({"compile_config": {"loss": {"class_name": "function", "config": "evil"}}, **layer("Dense")}, "m")  # never deserialised
    check_keras_config(layer("LayerScale", module="keras.src.applications.convnext", config={"init_values": 1e-6, "projection_dim": 8}), "m")
    hostile_configs = {
        "Lambda layer 'x'": layer("Lambda"),
        "SlicingOpLambda layer 'x'": layer("SlicingOpLambda"),
        "MyLayer layer 'x' (from evil)": layer("MyLayer", module="evil"),
        "LayerScale layer 'x' (from evil)": layer("LayerScale", module="evil"),
        "from module 'os'": layer("Dense", module="os"),
        "registered as 'Custom>Dense'": layer("Dense", registered_name="Custom>Dense"),
        "a 'function' entry": layer("Dense", config={"function": "os.system"}),
        "activation 'exec'": layer("Dense", config={"activation": "exec"}),
        "kernel_initializer 'get_file'": layer("Dense", config={"kernel_initializer": "get_file"}),
        "a Python function 'system' from os": layer("Dense", config={"activation": {"class_name": "function", "config": "system", "module": "os"}}),
        "hidden in the string 'note'": layer("Dense", config={"note": json.dumps(layer("Lambda"))}),
        "GetFile": layer("Dense", config={"bias_initializer": {"class_name": "GetFile", "module": "keras.utils", "config": {}}}),
        "type spec": {"class_name": "TypeSpec", "type_spec": "tf.data.DatasetSpec", "serialized": []},
    }
    for needle, config in hostile_configs.items():
        with pytest.raises(EdgeclsError, match="refused") as caught:
            check_keras_config(config, "m")
        assert needle in str(caught.value) and "\n" not in str(caught.value), (needle, str(caught.value))
    with pytest.raises(EdgeclsError) as caught:
        check_keras_config(layer("Evil\n\x1b[31mLayer\u202e"), "m")
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value) and "\u202e" not in str(caught.value)
    check_keras_config(layer("MyLayer", module="evil", registered_name="my>MyLayer"), "m", custom={"MyLayer"})
    with pytest.raises(EdgeclsError, match="nests deeper"):
        deep: dict = {"class_name": "Dense", "config": {}}
        for _ in range(300):
            deep = {"class_name": "Dense", "config": {"inner": deep}}
        check_keras_config(deep, "m")


def test_custom_objects_file_problems_are_one_line(tmp_path):
    with pytest.raises(EdgeclsError, match="takes a Python file"):
        load_custom_objects(tmp_path / "missing.py")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(EdgeclsError, match="importing it failed .RuntimeError: boom"):
        load_custom_objects(broken)
    empty = tmp_path / "empty.py"
    empty.write_text("import os\n")
    with pytest.raises(EdgeclsError, match="defines no classes"):
        load_custom_objects(empty)


# -- SavedModels ------------------------------------------------------------------------------------
def test_tracked_resource_that_writes_a_file_is_refused_before_loading(tf_modules, patterns, tmp_path):
    tf, _ = tf_modules
    marker = tmp_path / "marker"
    model = hostile.resource_saved_model(tmp_path, marker)
    tf.saved_model.load(str(model))
    assert marker.exists()  # live: loading alone runs it
    marker.unlink()
    refused(convert_args(model, patterns, tmp_path / "out"), "WriteFile", "refused")
    assert not marker.exists()


@pytest.mark.parametrize("op", ["DebugIdentityV2", "DatasetToTFRecord"])
def test_file_writing_ops_in_serving_are_refused(op, tf_modules, patterns, tmp_path):
    tf, _ = tf_modules
    written = tmp_path / "written"
    body = hostile.debug_identity(written) if op == "DebugIdentityV2" else hostile.dataset_writer(written)
    model = hostile.serving_saved_model(tmp_path, op, body)
    assert not written.exists()
    tf.saved_model.load(str(model)).signatures["serving_default"](tf.zeros((1, hostile.SIZE, hostile.SIZE, 3)))
    assert written.exists()  # live
    os.rename(written, tmp_path / "was-written")
    refused(convert_args(model, patterns, tmp_path / "out"), op)
    assert not written.exists()


def meta_graph(functions: dict[str, list[tuple[str, str | None]]], graph: list[tuple[str, str, str | None]], saver=("", "")):
    """A MetaGraphDef: functions {name: [(op, called function)]}, graph nodes [(name, op, called)]."""
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    for name, nodes in functions.items():
        function = meta.graph_def.library.function.add()
        function.signature.name = name
        for i, (op, called) in enumerate(nodes):
            node = function.node_def.add(name=f"n{i}", op=op)
            if called:
                node.attr["f"].func.name = called
    for name, op, called in graph:
        node = meta.graph_def.node.add(name=name, op=op)
        if called:
            node.attr["f"].func.name = called
    meta.saver_def.save_tensor_name, meta.saver_def.restore_op_name = saver
    return meta


def test_checkpoint_ops_only_in_the_savers_own_functions(tf_modules):
    from edgecls.core.model_safety import _check_meta_graph

    functions = {"serve": [("MatMul", None)], "traced_save": [("SaveV2", None), ("MergeV2Checkpoints", None)],
                 "traced_restore": [("RestoreV2", None)]}  # fmt: skip
    graph = [("call", "StatefulPartitionedCall", "serve"), ("save", "StatefulPartitionedCall", "traced_save"),
             ("restore", "StatefulPartitionedCall", "traced_restore")]  # fmt: skip
    _check_meta_graph(meta_graph(functions, graph, ("save:0", "restore")), Path("m"))
    with pytest.raises(EdgeclsError, match="RestoreV2, SaveV2"):  # no saver_def: nothing is the checkpoint's
        _check_meta_graph(meta_graph(functions, graph), Path("m"))
    functions["serve"].append(("StatefulPartitionedCall", "traced_save"))  # serving reaches the writer
    with pytest.raises(EdgeclsError, match="uses MergeV2Checkpoints, SaveV2 .in traced_save"):
        _check_meta_graph(meta_graph(functions, graph, ("save:0", "restore")), Path("m"))
    recursive = {"serve": [("PartitionedCall", "helper")], "helper": [("If", "serve")]}
    with pytest.raises(EdgeclsError, match="calls itself"):
        _check_meta_graph(meta_graph(recursive, [("call", "PartitionedCall", "serve")]), Path("m"))


def test_endless_loop_is_refused_not_run(tf_modules, patterns, tmp_path):
    """A while_loop of 2**62 steps: refused before anything runs, long before this test's own limit."""
    model = hostile.serving_saved_model(tmp_path, "loop", hostile.endless_loop)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    process = subprocess.run([sys.executable, "-m", "edgecls", *convert_args(model, patterns, tmp_path / "out")],
                             capture_output=True, text=True, timeout=240, env=env)  # fmt: skip
    elapsed = time.monotonic() - start
    errors = [line for line in process.stderr.splitlines() + process.stdout.splitlines() if line.startswith("edgecls: error:")]
    assert process.returncode == EXIT_ERROR and len(errors) == 1 and "While" in errors[0], process.stderr[-2000:]
    assert "Traceback" not in process.stderr and elapsed < 120, elapsed


@pytest.mark.parametrize("kind, needle", [("assert", "hostile assertion"), ("fill", "OOM")])
def test_run_time_failures_are_one_line(kind, needle, tf_modules, patterns, tmp_path):
    body = hostile.failing_assert if kind == "assert" else hostile.oversized_fill
    model = hostile.serving_saved_model(tmp_path, kind, body)
    refused(convert_args(model, patterns, tmp_path / "out"), "the model failed when run", needle)


def test_calls_into_a_model_have_a_wall_clock_limit():
    start = time.monotonic()
    with pytest.raises(EdgeclsError, match="ran longer than 0.2 s"):
        bounded_call(lambda: time.sleep(5), "m", seconds=0.2)
    assert time.monotonic() - start < 2
    with pytest.raises(EdgeclsError, match="out of memory"):
        bounded_call(lambda: (_ for _ in ()).throw(MemoryError()), "m")
    assert bounded_call(lambda: 42, "m") == 42


# -- archives that inflate ---------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import resource, sys
    from edgecls.convert.keras_import import load_user_model
    from edgecls.errors import EdgeclsError

    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    limit = size + 200 * 1024**2  # room for the checks, not for the 256 MB config
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        load_user_model(sys.argv[1])
    except EdgeclsError as exc:
        print("edgecls: error:", exc)
        sys.exit(2)
    """
)


@pytest.mark.parametrize("lie", [False, True], ids=["honest", "lying-header"])
def test_config_bomb_is_refused_under_a_memory_limit(lie, tmp_path):
    bomb = hostile.config_bomb(tmp_path, 256 * 1024**2, lie=lie)
    assert bomb.stat().st_size < 4 * 1024**2
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.run([sys.executable, "-c", CHILD, str(bomb)], capture_output=True, text=True, timeout=120, env=env)
    assert process.returncode == EXIT_ERROR, (process.returncode, process.stderr[-2000:])
    assert "Traceback" not in process.stderr and process.stdout.count("\n") == 1, process.stdout
    assert ("refused: config.json inflates" if not lie else "cannot load Keras model") in process.stdout, process.stdout
