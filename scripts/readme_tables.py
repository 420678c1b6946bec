"""Print the documentation's tables from files that commands in this repo wrote; nothing typed by hand.

    python scripts/readme_tables.py speed out/benchmarks.json
    python scripts/readme_tables.py speed-page docs/guides/speed.md

`speed` reads the pytest-benchmark JSON that the test command writes, and names the machine it
was taken on and the int8 dot-product instructions its CPU has. `speed-page` rewrites, in place, every block of the page that lies between
`<!-- speed-tables: docs/benchmarks-NAME.json -->` and `<!-- /speed-tables -->` with `speed` of
the JSON the marker names (paths relative to the repository root), and adds a section for each
docs/benchmarks-*.json that has none yet; tests/test_readme.py checks that each block is exactly
that, and that every kept JSON has one. (The built-in models' table is
scripts/builtin_models_table.py's.)
"""

from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEW_MACHINES = "<!-- speed-tables: new machines above -->"
SPEED_BLOCK = re.compile(r"(<!-- speed-tables: (\S+) -->\n)(.*?)(<!-- /speed-tables -->)", re.DOTALL)

# CPU flags (py-cpuinfo's names, as pytest-benchmark records them) of the instructions XNNPACK's
# int8 kernels use to multiply-add four int8 pairs in one step; without one, int8 convolutions run
# on widening 16-bit multiplies and can be slower than float32.
INT8_DOT_PRODUCT = {"avx512_vnni": "AVX-512 VNNI", "avx512vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
                    "asimddp": "ARM dot-product", "dotprod": "ARM dot-product"}


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


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


def _x(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def _rate(value) -> str:
    return "-" if value is None else f"{value:.0f} images/s"


def _span(values) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def _where_the_time_goes(figs: dict[str, dict]) -> list[str]:
    """Per photo, same run: the floor's decode and edgecls's decode (CPU ms, in the run's decode
    threads), the invoke, the ceiling they allow, each round's ratio, and what a process pays to start."""
    lines = ["Where the time goes, same run (CPU ms per photo; each decode in the run's 2 threads, timed in alternation; "
             "ceiling = the floor's decode / (edgecls's decode + invoke)):", "",
             "| photos | floor's Pillow decode | edgecls's decode | invoke (batch of 8) | ceiling "
             "| rounds in process | rounds as a process |",
             "|---|---|---|---|---|---|---|"]
    for param in ("heavy", "light"):
        lib = _find(figs, f"test_classify_in_process_vs_decode_only[{param}]")
        cli = _find(figs, f"test_classify_cli_vs_decode_only[{param}]")
        if lib:
            lines.append(f"| {lib.get('photos')} | {_num(lib.get('pillow_decode_threads_cpu_ms_per_image'), 2)} | "
                         f"{_num(lib.get('edgecls_decode_threads_cpu_ms_per_image'), 2)} | {_num(lib.get('invoke_cpu_ms_per_image'), 2)} | "
                         f"{_num(lib.get('ceiling'), 2)} | {_span(lib.get('vs_decode_only_rounds'))} | "
                         f"{_span(cli.get('vs_decode_only_rounds'))} |")
    start = _find(figs, "test_cli_cold_start_vs_floor")
    imported = _find(figs, "test_import_edgecls")
    if start:
        cli_s, floor_s = start.get("cli_wall_s") or 0.0, start.get("floor_wall_s") or 0.0
        lines += ["", f"Process start, one photo: `edgecls classify` {_num(cli_s, 2)} s against the bare numpy + Pillow + "
                  f"LiteRT script's {_num(floor_s, 2)} s (+{_num(cli_s - floor_s, 2)} s)"
                  + (f"; `import edgecls` alone: {_num(imported.get('ab_import_edgecls_s'), 3)} s, "
                     f"{_num(imported.get('extra_rss_mib'), 2)} MiB over a bare interpreter." if imported else ".")]
    return lines


def _cpu(machine_info: dict) -> tuple[str, object, str, str]:
    """(CPU name, core count, its int8 dot-product instructions or "none (AVX2 only)", and the
    same in short: "AVX-512 VNNI" or "AVX2 only")."""
    cpu_info = machine_info.get("cpu", {})
    cpu = cpu_info.get("brand_raw") or platform.processor() or "unknown CPU"
    flags = set(cpu_info.get("flags", []))
    dot = ", ".join(sorted({name for flag, name in INT8_DOT_PRODUCT.items() if flag in flags}))
    simd = "AVX2" if "avx2" in flags else ("NEON" if "asimd" in flags else "no AVX2")
    return cpu, cpu_info.get("count", "?"), dot or f"none ({simd} only)", dot or f"{simd} only"


def speed(path: Path) -> str:
    """One machine's speed tables (docs/guides/speed.md): photographs against their floor and a peer first, then
    cold start, memory, int8 vs float32 and the single-invoke figures."""
    data = _load(path)
    figs = _figures(data)
    info = data.get("machine_info", {})
    cpu, cores, int8_isa, _ = _cpu(info)
    machine = f"{cpu}, {cores} cores, {info.get('system', '')} {info.get('machine', '')}, Python {info.get('python_version', '')}"

    photo_rows = []
    names = {"real": "real HAM10000 originals", "synthetic heavy": "synthetic heavy JPEGs", "synthetic light": "synthetic light JPEGs"}
    for param in ("heavy", "light"):
        cli = _find(figs, f"test_classify_cli_vs_decode_only[{param}]")
        lib = _find(figs, f"test_classify_in_process_vs_decode_only[{param}]")
        if not cli and not lib:
            continue
        first = cli or lib
        label = (f"{names.get(first.get('photos'), first.get('photos'))} ({first.get('distinct_files')} files cycled to "
                 f"{first.get('images'):,}, {_num(first.get('mean_jpeg_kb'), 0)} KB)")
        headline = param == "heavy"
        if cli:
            photo_rows.append(
                (f"**{label}: `edgecls classify` process**" if headline else f"{label}: `edgecls classify` process",
                 _rate(cli.get("images_per_s")), f"decode-only script process: {_rate(cli.get('decode_only_images_per_s'))}",
                 f"**{_num(cli.get('vs_decode_only'), 2)}**" if headline else _num(cli.get("vs_decode_only"), 2),
                 f"CPU {_num(cli.get('cpu_vs_decode_only'), 2)}")
            )
        if lib:
            ceiling = f"CPU {_num(lib.get('cpu_vs_decode_only'), 2)}; ceiling {_num(lib.get('ceiling'), 2)}"
            photo_rows.append(
                ("same, `classify_paths` in process", _rate(lib.get("images_per_s")),
                 f"decode-only threads: {_rate(lib.get('decode_only_images_per_s'))}", _num(lib.get("vs_decode_only"), 2), ceiling)
            )
    mp = _find(figs, "test_mediapipe_tasks_vs_edgecls")
    if mp:
        photo_rows.append(
            (f"MediaPipe Tasks `ImageClassifier` {mp.get('mediapipe_version', '')}, same uint8 model, {mp.get('images')} "
             f"{names.get(mp.get('photos'), mp.get('photos'))}, process start included",
             _rate(mp.get("edgecls_images_per_s")), f"MediaPipe: {_rate(mp.get('mediapipe_images_per_s'))}",
             f"**{_x(mp.get('edgecls_vs_mediapipe'), 1)}** faster", "")
        )
    workers = next((v.get("workers") for k, v in figs.items() if k.startswith("test_classify_cli_vs_decode_only")), None)
    head = [
        f"Measured on: {machine}; int8 dot-product instructions: {int8_isa}.",
        "",
        f"Photographs, 600x450 JPEGs, built-in `ham10000` (uint8 I/O), {workers or '?'} decode threads; the floor is "
        "Pillow's draft decode and bilinear resize to 94x94 alone, in as many threads, on the same files, "
        "timed in alternation with edgecls in the same run (median of rounds):",
        "",
        "| what | edgecls | floor or peer, same run | ratio | CPU ratio, ceiling |",
        "|---|---|---|---|---|",
    ]
    head += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in photo_rows]
    head += ["", *_where_the_time_goes(figs)]

    rows = []
    floor = _find(figs, "test_cli_cold_start_vs_floor")
    if floor:
        rows.append(
            (f"cold start, one photo: `edgecls classify --model ham10000 {floor.get('image', 'PHOTO')}`",
             f"{_num(floor.get('cli_wall_s'), 2)} s, {_num(floor.get('peak_rss_mib'), 0)} MiB; bare numpy + Pillow + LiteRT "
             f"script, same file, one invoke: {_num(floor.get('floor_wall_s'), 2)} s, {_num(floor.get('floor_peak_rss_mib'), 0)} MiB "
             f"(**{_x(floor.get('vs_floor'))}**)", "<= 2x the floor")
        )
    sustained = _find(figs, "test_sustained_run_memory")
    if sustained:
        rows.append(
            ("20,000 images in one `edgecls classify` call (small JPEGs, csv)",
             f"RSS {_num(sustained.get('rss_after_1000_mib'), 1)} MiB after 1,000, {_num(sustained.get('rss_near_end_mib'), 1)} MiB "
             f"at the end (**{_x(sustained.get('rss_end_vs_1000'), 3)}**), peak {_num(sustained.get('peak_rss_mib'), 1)} MiB; "
             f"{_rate(sustained.get('images_per_s'))}", "end within 10% of after 1,000")
        )
    for kind in ("ham10000", "ham10000-small", "all-blood", "all-blood-small", "qat", "ptq"):
        v = _find(figs, f"test_int8_vs_float_by_model_kind[{kind}]")
        if not v:
            continue
        threads = sorted(int(k.rsplit("_", 1)[1][:-1]) for k in v if k.startswith("int8_speed_vs_float_"))
        speeds = ", ".join(f"{_x(v.get(f'int8_speed_vs_float_{t}t'))} ({_num(v.get(f'int8_ms_{t}t'), 3)} vs "
                           f"{_num(v.get(f'float32_ms_{t}t'), 3)} ms) at {t} thread{'s' if t > 1 else ''}" for t in threads)
        rows.append((f"int8 vs float32 invoke: {v.get('what', kind)}", f"int8 {speeds}", ""))
    invoke = {k: v for k, v in figs.items() if k.startswith("test_invoke[")}
    for v in sorted(invoke.values(), key=lambda v: (v.get("threads", 0), v.get("input_dtype", ""))):
        rows.append((f"invoke, benchmark edge-cnn, {v.get('input_dtype')} input, {v.get('threads')} thread(s)",
                     f"{_num(v.get('median_ms'), 3)} ms (not interleaved: see the rows above for ratios), file {v.get('file_kb')} KB", ""))
    draft, full = _find(figs, "test_decode_draft"), _find(figs, "test_decode_full_baseline")
    naive, keras = _find(figs, "test_naive_loop_baseline"), _find(figs, "test_keras_predict_baseline")
    rows += [
        ("decode + resize one light JPEG: draft mode vs full decode", f"{_num(draft.get('ms_per_image'), 2)} ms vs "
         f"{_num(full.get('ms_per_image'), 2)} ms ({_x(full.get('draft_speedup'), 1)})", ""),
        ("baseline: full decode, resize, float TFLite, one by one (light JPEGs)", f"{_rate(naive.get('images_per_s'))} "
         f"(edgecls float32 is {_x(naive.get('edgecls_float32_speedup'), 1)})", ""),
        ("baseline: Keras `model.predict`, one image, float", f"{_num(keras.get('predict_ms'), 2)} ms "
         f"(float TFLite 1 thread: {_num(keras.get('tflite_float32_1t_ms'), 2)} ms)", ""),
    ]
    lines = head + ["", "| what | measured | target |", "|---|---|---|"]
    lines += [f"| {what} | {value} | {target} |" for what, value, target in rows]
    return "\n".join(lines)


def speed_page(text: str, kept: list[Path] | None = None, root: Path = ROOT) -> str:
    """`text` with every speed-tables block replaced by `speed` of the JSON its marker names
    (relative to `root`, the repository).

    Each JSON of `kept` that no block names yet gets a heading (its CPU and int8 instructions) and
    a block of its own, just before the `<!-- speed-tables: new machines above -->` line."""
    text = SPEED_BLOCK.sub(lambda m: f"{m.group(1)}\n{speed(root / m.group(2))}\n\n{m.group(4)}", text)
    named = {m.group(2) for m in SPEED_BLOCK.finditer(text)}
    for path in kept or []:
        name = path.resolve().relative_to(root.resolve()).as_posix()
        if name in named or NEW_MACHINES not in text:
            continue
        cpu, cores, _, short = _cpu(_load(path).get("machine_info", {}))
        section = (f"### {cores}-core {cpu} ({short})\n\n<!-- speed-tables: {name} -->\n\n{speed(path)}\n\n"
                   "<!-- /speed-tables -->\n\n")
        text = text.replace(NEW_MACHINES, section + NEW_MACHINES)
    return text


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("speed", "speed-page"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "speed":
        print(speed(Path(argv[1])))
    else:
        page = Path(argv[1])
        kept = sorted((ROOT / "docs").glob("benchmarks-*.json"))
        page.write_text(speed_page(page.read_text(encoding="utf-8"), kept), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
