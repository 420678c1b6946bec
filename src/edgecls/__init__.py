"""edgecls: from a Keras notebook to an int8 image classifier on a phone or a Raspberry Pi.

The Python API, for notebooks and scripts (the `edgecls` command line does the same things):

    import edgecls

    data = edgecls.load_dataset("HAM10000/")                    # layout detected; data.summary()
    run = edgecls.train_classifier(data, edgecls.TrainOptions(epochs=30), output="runs/ham")
    run.metrics_table                                            # val and test metrics (pandas)
    result = edgecls.convert_classifier(run, modes=["float32", "qat"])   # or a Keras model, or a file
    result.passed, result.table, result.files["qat"]             # the parity report as data
    edgecls.evaluate_classifier(result.files["qat"], run=run.path)   # metrics.json, plots, report.md
    clf = edgecls.Classifier(result.files["qat"])                # or "ham10000", or any .tflite
    clf.classify("lesion.jpg")                                   # path, PIL image, any-size array, list
    clf.benchmark(images="photos/")

| name | what |
|---|---|
| `load_dataset`, `split_dataset`, `Dataset`, `DatasetSplit` | a labelled image dataset as downloaded, and its grouped, stratified split |
| `train_classifier`, `TrainOptions`, `TrainedRun`, `load_run` | train a model into a run folder; the run's metrics, history and Keras model |
| `convert_classifier`, `ConvertOptions`, `ConversionResult` | TFLite files (float32, int8, ...) and the parity report and gate |
| `evaluate_classifier`, `EvaluationResult` | a `.keras` or `.tflite` model's metrics and report on a dataset or a run's split |
| `Classifier`, `Prediction`, `builtin_models` | run a `.tflite` file as the device does (no TensorFlow); the models shipped with edgecls |
| `EdgeclsError`, `ImageError` | every error a user can fix, with a one-line message (`ImageError`: an image that cannot be read) |
| `export_web` | a static web site that runs a `.tflite` file in a phone's browser, offline (`edgecls export web`) |
| `ParityGateFailed`, `ParityGateInconclusive` | the `EdgeclsError`s `ConversionResult.check()` raises: an int8 file surely further behind float than allowed (exit code 3), or a test split too small to tell (4) |
| `enable_logging` | show edgecls's progress messages (quiet by default) |

Importing this package is cheap on purpose: no numpy, no TensorFlow. Each name loads its
module on first use; `Classifier` never imports TensorFlow or pandas, so it is what a device
uses. `train_classifier` and `convert_classifier` need the workstation install
(`pip install 'edgecls[train]'`); they are not called `train` and `convert` because those names
are the `edgecls.train` and `edgecls.convert` packages, which Python binds on the package when
they are imported. Errors are `EdgeclsError` with a one-line message; library code logs to the `edgecls` logger
and never prints or exits (except Keras' own training progress lines, which `progress=True`
asks for). The `edgecls` command line is a thin layer over these functions.
"""

__version__ = "0.1.0"

# Public name -> the module that defines (or re-exports) it. Imported on first access only.
_LAZY = {
    "EdgeclsError": "edgecls.errors",
    "ParityGateFailed": "edgecls.errors",
    "ParityGateInconclusive": "edgecls.errors",
    "ImageError": "edgecls.edge_runtime.preprocess",
    "load_dataset": "edgecls.api.datasets",
    "split_dataset": "edgecls.api.datasets",
    "Dataset": "edgecls.api.datasets",
    "DatasetSplit": "edgecls.api.datasets",
    "TrainOptions": "edgecls.api.training",
    "train_classifier": "edgecls.api.training",
    "load_run": "edgecls.api.training",
    "TrainedRun": "edgecls.api.training",
    "ConvertOptions": "edgecls.api.converting",
    "convert_classifier": "edgecls.api.converting",
    "ConversionResult": "edgecls.api.converting",
    "evaluate_classifier": "edgecls.api.evaluating",
    "EvaluationResult": "edgecls.api.evaluating",
    "Classifier": "edgecls.api.classifier",
    "Prediction": "edgecls.api.classifier",
    "builtin_models": "edgecls.api.classifier",
    "enable_logging": "edgecls.log",
    "export_web": "edgecls.web.site",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgecls' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
