"""Print the README's tables from files that commands in this repo wrote; nothing typed by hand.

    python scripts/readme_tables.py results runs/ham10000 runs/all-blood
    python scripts/readme_tables.py speed out/benchmarks.json

`results` reads each run folder that scripts/build_builtin_models.sh made: metrics.json (float
Keras), convert/parity.json (float vs int8 through LiteRT) and evaluate/model_int8-val/metrics.json
(`edgecls evaluate` of the int8 file). `speed` reads the pytest-benchmark JSON that the README's
test command writes, and names the machine it was taken on.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

REBUILD = "bash scripts/build_builtin_models.sh"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results(run_dirs: list[Path]) -> str:
    lines = [
        "| model | split (images) | float accuracy | int8 accuracy | int8 balanced acc. | int8 macro AUC "
        "| int8 agrees with float | int8 file | int8 latency (1 image) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in run_dirs:
        name = run.name
        float_metrics = _load(run / "metrics.json")
        parity = _load(run / "convert" / "parity.json")
        rows = {row["name"]: row for row in parity["rows"]}
        int8_row = rows["qat"]
        int8_val = _load(run / "evaluate" / "model_int8-val" / "metrics.json")["val"]
        f_val, f_test = float_metrics["val"], float_metrics["test"]
        lines.append(
            f"| `{name}` | val ({int8_val['images']}) | {_pct(f_val['accuracy'])} | {_pct(int8_val['accuracy'])} | "
            f"{_pct(int8_val['balanced_accuracy'])} | {_num(int8_val['macro_auc'])} | - | "
            f"{int8_row['size_bytes'] / 1024:.0f} KB | {_num(int8_row['latency_ms'], 2)} ms |"
        )
        lines.append(
            f"| `{name}` | test ({parity['test_images']}) | {_pct(f_test['accuracy'])} | {_pct(int8_row['accuracy'])} | "
            f"{_pct(int8_row['balanced_accuracy'])} | {_num(int8_row['macro_auc'])} | {_pct(int8_row['agreement'])} | "
            f"{int8_row['size_bytes'] / 1024:.0f} KB | {_num(int8_row['latency_ms'], 2)} ms |"
        )
    lines += ["", "Accuracies in %. Reproduce every row: `" + REBUILD + "`."]
    return "\n".join(lines)


def _figures(bench_json: dict) -> dict[str, dict]:
    """Benchmark name -> its extra_info, with the median seconds added."""
    out = {}
    for bench in bench_json.get("benchmarks", []):
        figures = dict(bench.get("extra_info", {}))
        figures["median_s"] = bench.get("stats", {}).get("median")
        out[bench["name"]] = figures
    return out


def _find(figures: dict[str, dict], prefix: str) -> dict:
    return next((v for k, v in figures.items() if k.startswith(prefix)), {})


def speed(path: Path) -> str:
    data = _load(path)
    figs = _figures(data)
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {}).get("brand_raw") or platform.processor() or "unknown CPU"
    cores = info.get("cpu", {}).get("count", "?")
    machine = f"{cpu}, {cores} cores, {info.get('system', '')} {info.get('machine', '')}, Python {info.get('python_version', '')}"
    cold = _find(figs, "test_cli_cold_start[") or _find(figs, "test_cli_cold_start")
    e2e_int8 = _find(figs, "test_classify_folder[int8]")
    e2e_f32 = _find(figs, "test_classify_folder[float32]")
    naive = _find(figs, "test_naive_loop_baseline")
    keras = _find(figs, "test_keras_predict_baseline")
    draft, full = _find(figs, "test_decode_draft"), _find(figs, "test_decode_full_baseline")
    invoke = {k: v for k, v in figs.items() if k.startswith("test_invoke[")}
    int8_invokes = [v for k, v in invoke.items() if "int8" in k]
    best_int8 = max(int8_invokes, key=lambda v: v.get("threads", 0), default={})

    rows = [
        ("CLI cold start, one JPEG, int8 (`edgecls classify`)", f"{_num(cold.get('wall_median_s'), 2)} s wall, "
         f"{_num(cold.get('peak_rss_mib'), 0)} MiB peak", "< 0.35 s, < 60 MiB"),
    ]
    for v in sorted(invoke.values(), key=lambda v: (v.get("threads", 0), v.get("input_dtype", ""))):
        rows.append((f"invoke, {v.get('input_dtype')} input, {v.get('threads')} thread(s)",
                     f"{_num(v.get('median_ms'), 3)} ms ({_num(v.get('images_per_s'), 0)} images/s), file {v.get('file_kb')} KB", ""))
    if best_int8:
        rows.append((f"int8 vs float32, same model, {best_int8.get('threads')} thread(s), interleaved",
                     f"int8 {_num(best_int8.get('int8_speed_vs_float'), 2)}x the speed of float; "
                     f"file {_num(best_int8.get('int8_size_vs_float'), 2)}x", "speed >= 1.0x, size <= 0.3x"))
    rows += [
        ("end to end, 1,000 JPEGs 600x450, int8 (decode + resize + invoke)",
         f"{_num(e2e_int8.get('images_per_s'), 0)} images/s", ">= 500 images/s"),
        ("end to end, same, float32", f"{_num(e2e_f32.get('images_per_s'), 0)} images/s", ""),
        ("baseline: full decode, resize, float TFLite, one by one", f"{_num(naive.get('images_per_s'), 0)} images/s "
         f"(edgecls float32 is {_num(naive.get('edgecls_float32_speedup'), 1)}x)", ""),
        ("decode + resize one JPEG: draft mode vs full decode", f"{_num(draft.get('ms_per_image'), 2)} ms vs "
         f"{_num(full.get('ms_per_image'), 2)} ms ({_num(full.get('draft_speedup'), 1)}x)", ""),
        ("baseline: Keras `model.predict`, one image, float", f"{_num(keras.get('predict_ms'), 2)} ms "
         f"(float TFLite 1 thread: {_num(keras.get('tflite_float32_1t_ms'), 2)} ms)", ""),
    ]
    lines = [f"Measured on: {machine}.", "", "| what | measured | target |", "|---|---|---|"]
    lines += [f"| {what} | {value} | {target} |" for what, value, target in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("results", "speed"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "results":
        print(results([Path(p) for p in argv[1:]]))
    else:
        print(speed(Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
