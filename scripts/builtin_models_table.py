"""Measure every built-in model side by side, in one run, on this machine; write the JSON and print the table.

    python scripts/builtin_models_table.py                      # DATA_ROOT: ../shared/data beside the repository
    python scripts/builtin_models_table.py DATA_ROOT --models ham10000 all-blood --output docs/builtin-models.json
    python scripts/builtin_models_table.py --markdown-from docs/builtin-models.json
    python scripts/builtin_models_table.py --markdown-from docs/builtin-models.json --update README.md

Each `NAME.tflite` of src/edgecls/models/ (or of `--models-dir`) is run through the device runtime
(`edgecls.Classifier`: Pillow decode and resize, the file's temperature and logits output, as
`edgecls classify` runs it) on the val and test rows of the `NAME.split.csv` beside it, whose keys
are paths inside the model's dataset folder: DATA_ROOT/<the dataset its metadata names>, or by
name prefix (DATASET_FOLDERS below) for a file that names none. Per split: images, accuracy,
balanced accuracy, macro one-vs-rest ROC AUC (classes present in the split; scikit-learn), ECE
(10 bins) and, for a file with an operating point, its group's sensitivity and specificity from
the device's own `flag`. Then the invoke time: every model at 1 thread on one fixed input, in one
loop that invokes each model once per round (the starting model rotating), so that the machine's
load drifts over all models alike; p50 of the rounds, and each p50 over the `--reference` model's
(default: the one whose architecture is edge-cnn-large).

The JSON (machine, date, edgecls version, per model figures) is written whole or not at all, and
the table printed. `--markdown-from JSON` prints the table of a kept JSON without measuring.
`--update PAGE` rewrites, in place, the block of PAGE between `<!-- builtin-models-table -->` and
`<!-- /builtin-models-table -->` with the table of the JSON just written or read, so a test can
check that the page's block is exactly this render. A missing data folder, split file or image
is a one-line error and exit code 2, before anything is measured.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # edgecls from this checkout, installed or not
if str(Path(__file__).resolve().parent) not in sys.path:  # the tests load this file by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from readme_tables import INT8_DOT_PRODUCT  # noqa: E402

from edgecls.errors import EdgeclsError  # noqa: E402
from edgecls.files import write_bytes_atomic  # noqa: E402

# Dataset folder (under DATA_ROOT) of a model whose metadata names no dataset, by its name's prefix.
DATASET_FOLDERS = {"ham10000": "ham10000", "all-blood": "blood"}

DEFAULT_DATA_ROOT = ROOT.parent / "shared" / "data"
DEFAULT_OUTPUT = ROOT / "docs" / "builtin-models.json"
DEFAULT_REFERENCE_ARCHITECTURE = "edge-cnn-large"
SPLITS = ("val", "test")
SCHEMA = "edgecls.builtin-models/1"
RERUN = "python scripts/builtin_models_table.py --update README.md"
BLOCK = re.compile(r"(<!-- builtin-models-table -->\n)(.*?)(<!-- /builtin-models-table -->)", re.DOTALL)


class Refused(Exception):
    """A problem the user fixes (a missing folder, a bad option): one line, exit code 2."""


# -- the machine ------------------------------------------------------------------------------
def machine() -> dict:
    """CPU name, cores and the int8 dot-product instructions XNNPACK can use (readme_tables.INT8_DOT_PRODUCT)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux
        pass
    # x86 names its CPU "model name"; a Raspberry Pi's kernel names the board "Model", others "Hardware".
    cpu = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or platform.processor() or platform.machine()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    simd = "AVX2" if "avx2" in flags else ("NEON" if "asimd" in flags or "neon" in flags else "no AVX2")
    return {
        "cpu": cpu or "unknown CPU",
        "cores": os.cpu_count(),
        "int8_dot_product": sorted({name for flag, name in INT8_DOT_PRODUCT.items() if flag in flags}),
        "simd": simd,
        "system": platform.system(),
        "arch": platform.machine(),
        "python": platform.python_version(),
    }


def _interpreter() -> str:
    from importlib import metadata

    from edgecls.edge_runtime.interpreter import find_interpreter

    package = find_interpreter()[1]
    try:
        return f"{package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return package


# -- what to measure --------------------------------------------------------------------------
def model_files(models_dir: Path | None, names: list[str] | None) -> dict[str, Path]:
    if models_dir is None:
        from edgecls.edge_runtime.builtin import builtin_models

        found = builtin_models()
    else:
        if not models_dir.is_dir():
            raise Refused(f"{models_dir}: no such models folder")
        found = {p.stem: p for p in sorted(models_dir.glob("*.tflite"))}
    if not found:
        raise Refused(f"no .tflite models in {models_dir or 'edgecls/models'}")
    if names:
        unknown = [n for n in names if n not in found]
        if unknown:
            raise Refused(f"{', '.join(unknown)}: not a model here (models: {', '.join(found)})")
        return {n: found[n] for n in names}
    return found


def read_split(path: Path, labels: list[str]) -> dict[str, list[tuple[str, int]]]:
    """split -> [(key, label index), ...] of the val and test rows of a NAME.split.csv."""
    if not path.is_file():
        raise Refused(f"{path}: no split file beside the model")
    rows: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = {"key", "label", "split"} - set(reader.fieldnames or [])
        if missing:
            raise Refused(f"{path}: no {', '.join(sorted(missing))} column")
        for row in reader:
            if row["split"] not in rows:
                continue
            if row["label"] not in labels:
                raise Refused(f"{path}: label {row['label']!r} is not one of the model's ({', '.join(labels)})")
            rows[row["split"]].append((row["key"], labels.index(row["label"])))
    for split, items in rows.items():
        if not items:
            raise Refused(f"{path}: no {split} rows")
    return rows


def dataset_folder(name: str, metadata, data_root: Path) -> Path:
    dataset = metadata.dataset if metadata is not None and metadata.dataset else None
    if dataset is None:
        dataset = next((folder for prefix, folder in DATASET_FOLDERS.items() if name.startswith(prefix)), None)
    if dataset is None:
        raise Refused(f"{name}: its metadata names no dataset and no prefix of DATASET_FOLDERS matches")
    folder = data_root / dataset
    if not folder.is_dir():
        raise Refused(f"{folder}: no such data folder (dataset {dataset!r} of model {name}); give DATA_ROOT")
    return folder


def plan(files: dict[str, Path], data_root: Path) -> list[dict]:
    """Every model's metadata, dataset folder and split, each image checked to exist, before any
    interpreter is made: a wrong DATA_ROOT costs a line, not a half-made run."""
    from edgecls.edge_runtime.metadata import read_metadata

    planned = []
    for name, path in files.items():
        metadata = read_metadata(path.read_bytes())
        folder = dataset_folder(name, metadata, data_root)
        labels = metadata.labels if metadata is not None else None
        if labels is None:
            raise Refused(f"{path}: no edgecls metadata (no labels to read its split file by)")
        rows = read_split(path.with_name(f"{name}.split.csv"), labels)
        absent = [key for items in rows.values() for key, _ in items if not (folder / key).is_file()]
        if absent:
            raise Refused(f"{folder / absent[0]}: no such image ({len(absent)} of the split's val and test images are absent)")
        planned.append({"name": name, "path": path, "folder": folder, "rows": rows})
    return planned


# -- measuring ----------------------------------------------------------------------------------
def split_metrics(probabilities, y_true, flags=None, members=None) -> dict:
    """Accuracy, balanced accuracy, macro one-vs-rest AUC and ECE as `edgecls evaluate` computes
    them (`edgecls.core.metrics.compute_metrics`); the operating point's rates from the device's
    own flags, so the table shows the decision the device makes."""
    import numpy as np

    from edgecls.core.clinical_metrics import binary_rates
    from edgecls.core.metrics import compute_metrics

    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, np.float64)
    metrics = compute_metrics(y_true, probabilities, [str(c) for c in range(probabilities.shape[1])])
    out = {key: metrics[key] for key in ("images", "accuracy", "balanced_accuracy", "macro_auc")}
    out["ece"] = metrics["calibration"]["ece"]
    if flags is not None:  # the flags as 0/1 scores at threshold 1: flagged exactly where the device flagged
        rates = binary_rates(np.asarray(flags, np.float64), np.isin(y_true, members), 1.0)
        out["operating_point"] = {key: rates[key] for key in ("positives", "negatives", "sensitivity", "specificity")}
    return out


def evaluate(classifier, folder: Path, rows: dict[str, list[tuple[str, int]]], progress) -> dict:
    """Per split, the metrics of the probabilities and flags the device gives, one image at a time."""
    import numpy as np

    point = classifier.metadata.operating_point or None
    members = [classifier.labels.index(label) for label in classifier.metadata.groups[point["group"]]] if point else None
    results = {}
    for split, items in rows.items():
        progress(f"{split}: {len(items)} images")
        predictions = [classifier.classify(folder / key, top_k=1) for key, _ in items]
        probabilities = np.stack([p.probabilities for p in predictions])
        flags = [p.flag for p in predictions] if point else None
        results[split] = split_metrics(probabilities, [label for _, label in items], flags, members)
    return results


def time_invokes(runtimes: dict[str, object], warmup: int, rounds: int) -> dict[str, dict]:
    """Invoke time of each model on one fixed input, the models in alternation: round r invokes
    every model once, starting from model r mod n, so no model always runs first (or just after
    the costliest one). p50 and p90 of each model's rounds, in ms."""
    import numpy as np

    names = list(runtimes)
    rng = np.random.default_rng(0)
    for runtime in runtimes.values():
        height, width = runtime.input_size
        image = rng.integers(0, 256, (height, width, runtime.channels), dtype=np.uint8)
        runtime.interpreter.set_tensor(runtime.input_details["index"], runtime.to_input(image))
    times = {name: [] for name in names}
    for r in range(warmup + rounds):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            invoke = runtimes[name].interpreter.invoke
            start = time.perf_counter_ns()
            invoke()
            elapsed = time.perf_counter_ns() - start
            if r >= warmup:
                times[name].append(elapsed / 1e6)
    return {name: {"p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90))} for name, t in times.items()}


def architecture(metadata) -> str | None:
    return metadata.provenance.get("architecture") or metadata.name or None


def measure(planned: list[dict], reference: str | None, warmup: int, rounds: int, log) -> dict:
    import numpy as np

    import edgecls
    from edgecls.core.native_stderr import quiet_native_stderr

    if reference is not None and reference not in [item["name"] for item in planned]:
        raise Refused(f"--reference {reference}: not among the models measured ({', '.join(item['name'] for item in planned)})")
    models, runtimes = [], {}
    for item in planned:
        name = item["name"]
        with quiet_native_stderr():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
            classifier = edgecls.Classifier(item["path"], threads=1)
        meta = classifier.metadata
        point = meta.operating_point or None
        splits = evaluate(classifier, item["folder"], item["rows"], lambda line, name=name: log(f"{name} {line}"))
        model = {
            "name": name,
            "architecture": architecture(meta),
            "dataset": item["folder"].name,
            "input_size": list(classifier.input_size),
            "input_dtype": np.dtype(classifier.runtime.input_details["dtype"]).name,
            "quantization": meta.quantization or None,
            "file_size_bytes": item["path"].stat().st_size,
            "temperature": meta.temperature,
            "operating_point": {"group": point["group"], "threshold": point["threshold"],
                                "members": list(meta.groups[point["group"]])} if point else None,  # fmt: skip
            "splits": splits,
        }
        models.append(model)
        runtimes[name] = classifier.runtime
    if reference is None:
        reference = next((m["name"] for m in models if m["architecture"] == DEFAULT_REFERENCE_ARCHITECTURE), None)
    log(f"invoke time: {len(runtimes)} models in alternation, {warmup} warm-up and {rounds} timed rounds at 1 thread")
    timed = time_invokes(runtimes, warmup, rounds)
    for model in models:
        model["invoke"] = timed[model["name"]]
        model["invoke"]["vs_reference"] = timed[model["name"]]["p50_ms"] / timed[reference]["p50_ms"] if reference else None
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "edgecls_version": edgecls.__version__,
        "interpreter": _interpreter(),
        "machine": machine(),
        "invoke": {"threads": 1, "warmup_rounds": warmup, "rounds": rounds, "reference": reference,
                   "how": "one loop, each round invokes every model once on a fixed random input, starting model rotating"},  # fmt: skip
        "models": models,
    }


# -- the table ----------------------------------------------------------------------------------
def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(data: dict) -> str:
    """The README's table of a builtin-models JSON: one row per model, val and test side by side."""
    lines = [
        "| model | architecture | val acc. | val bal. acc. | val macro AUC | val ECE | test acc. | test bal. acc. "
        "| test macro AUC | test ECE | test malignant sens. / spec. | int8 file (MB) | invoke p50 (ms, 1 thread) "
        "| invoke vs reference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in data["models"]:
        val, test = m["splits"]["val"], m["splits"]["test"]
        point = test.get("operating_point")
        rates = f"{_pct(point['sensitivity'])} / {_pct(point['specificity'])}" if point else "-"
        invoke = m.get("invoke") or {}
        ratio = invoke.get("vs_reference")
        lines.append(
            f"| `{m['name']}` | {m['architecture'] or '-'} | {_pct(val['accuracy'])} | {_pct(val['balanced_accuracy'])} | "
            f"{_num(val['macro_auc'])} | {_num(val['ece'])} | {_pct(test['accuracy'])} | {_pct(test['balanced_accuracy'])} | "
            f"{_num(test['macro_auc'])} | {_num(test['ece'])} | {rates} | {m['file_size_bytes'] / 1e6:.2f} | "
            f"{_num(invoke.get('p50_ms'), 2)} | {'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    mach, inv = data["machine"], data["invoke"]
    dot = ", ".join(mach.get("int8_dot_product") or []) or f"none ({mach.get('simd', '?')} only)"
    images = "; ".join(f"`{m['name']}` {m['splits']['val']['images']} / {m['splits']['test']['images']}" for m in data["models"])
    groups = [m for m in data["models"] if m.get("operating_point")]
    lines += [
        "",
        f"Accuracies in %, the int8 files as the device runs them (temperature and logits output from their metadata). "
        f"Val / test images: {images}.",
    ]
    if groups:
        lines.append("Malignant sensitivity / specificity: the device's flag at the file's own threshold ("
                     + ", ".join(f"`{m['name']}` {m['operating_point']['threshold']:.3f}" for m in groups) + ").")
    reference = f"`{inv['reference']}`" if inv.get("reference") else "none"
    lines.append(
        f"Invoke: p50 of {inv['rounds']} rounds at {inv['threads']} thread, the models in alternation; reference {reference}. "
        f"Measured on {mach['cpu']}, {mach['cores']} cores, int8 dot-product instructions: {dot}; "
        f"{data['date'][:10]}, edgecls {data['edgecls_version']}, {data.get('interpreter', '?')}. Rerun: `{RERUN}`."
    )
    return "\n".join(lines)


def update_page(text: str, table: str) -> str:
    """`text` with the builtin-models-table block replaced by `table`; the rest as it was."""
    if not BLOCK.search(text):
        raise Refused("no <!-- builtin-models-table --> ... <!-- /builtin-models-table --> block in the page")
    return BLOCK.sub(lambda m: f"{m.group(1)}\n{table}\n\n{m.group(3)}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root", nargs="?", type=Path, default=DEFAULT_DATA_ROOT,
                        help="folder holding each model's dataset folder (default: ../shared/data beside the repository)")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="only these models (default: all)")
    parser.add_argument("--models-dir", type=Path, help="measure the NAME.tflite files of this folder instead of the built-in ones")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON to write (default: docs/builtin-models.json)")
    parser.add_argument("--reference", metavar="NAME", help="the model invoke times are divided by (default: the edge-cnn-large one)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds first (default 10)")
    parser.add_argument("--rounds", type=int, default=200, help="timed rounds (default 200)")
    parser.add_argument("--markdown-from", type=Path, metavar="JSON", help="print the table of this JSON; measure nothing")
    parser.add_argument("--update", type=Path, metavar="PAGE", help="rewrite PAGE's builtin-models-table block with the table")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(f"builtin_models_table: {line}", file=sys.stderr, flush=True)

    try:
        page = None
        if args.update is not None:  # read first: a page without the block is refused before a run, not after
            try:
                page = args.update.read_bytes().decode("utf-8")  # not read_text: its CRLF -> LF would change the rest
            except (OSError, UnicodeDecodeError) as exc:
                raise Refused(f"{args.update}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
            update_page(page, "")
        if args.markdown_from is not None:
            try:
                data = json.loads(args.markdown_from.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise Refused(f"{args.markdown_from}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
        else:
            if args.warmup < 0 or args.rounds < 1:
                raise Refused("--warmup must be >= 0 and --rounds >= 1")
            planned = plan(model_files(args.models_dir, args.models), args.data_root)
            started = time.perf_counter()
            data = measure(planned, args.reference, args.warmup, args.rounds, log)
            write_bytes_atomic(args.output, (json.dumps(data, indent=1) + "\n").encode("utf-8"))
            log(f"wrote {args.output} in {time.perf_counter() - started:.0f} s")
        table = markdown(data)
        if page is not None:
            updated = update_page(page, table)
            if updated != page:
                write_bytes_atomic(args.update, updated.encode("utf-8"))
    except (Refused, EdgeclsError) as exc:  # EdgeclsError: an unreadable image, a damaged model
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
