"""The evaluation folder: metrics.json, predictions.csv, plots/*.png and report.md linking them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from edgecls.core.metrics import SplitResult
from edgecls.errors import EdgeclsError
from edgecls.files import write_json_atomic, write_text_atomic
from edgecls.train import plots

GRADCAM_IMAGES = 8


def write_report(
    output_dir: Path,
    results: Sequence[SplitResult],
    title: str,
    facts: dict[str, Any],
    history: pd.DataFrame | None = None,
    keras_model=None,
    dataset=None,
    image_size: tuple[int, int] | None = None,
) -> list[Path]:
    """Write everything for `results` into `output_dir`; return the files written.

    `facts` (model, dataset, image size...) go to the top of metrics.json and report.md.
    Grad-CAM overlays are drawn for the last split when a Keras model is given.
    """
    output_dir = Path(output_dir)
    plot_dir = output_dir / "plots"
    written: list[Path] = []
    labels = results[0].labels
    metrics = {**facts, "labels": labels, **{r.name: r.metrics for r in results}}
    written.append(write_json_atomic(output_dir / "metrics.json", metrics))
    predictions = pd.concat([r.predictions_table() for r in results], ignore_index=True)
    written.append(write_text_atomic(output_dir / "predictions.csv", predictions.to_csv(index=False, lineterminator="\n")))

    figures: list[tuple[str, Path]] = []
    if history is not None and (path := plots.plot_history(history, plot_dir / "history.png")):
        figures.append(("Training curves (validation metrics in inference mode)", path))
    for r in results:
        figures.append((f"Confusion matrix, {r.name}", plots.plot_confusion(
            r.metrics["confusion_matrix"], labels, plot_dir / f"confusion_{r.name}.png", f"{title}: {r.name}")))  # fmt: skip
        if r.metrics["macro_auc"] is not None:
            figures.append((f"ROC curves, {r.name}", plots.plot_roc(
                r.y_true, r.probabilities, labels, plot_dir / f"roc_{r.name}.png", f"{title}: {r.name}")))  # fmt: skip
        figures.append((f"Reliability diagram, {r.name} (ECE {r.metrics['calibration']['ece']:.3f}; points: images per bin)",
                        plots.plot_reliability({r.name: r.metrics["calibration"]["reliability"]},
                                               plot_dir / f"reliability_{r.name}.png", f"{title}: {r.name}")))  # fmt: skip
    notes = []
    if keras_model is not None and dataset is not None and image_size is not None and _has_feature_map(keras_model):
        try:
            path = _gradcam(keras_model, dataset, results[-1], image_size, plot_dir / f"gradcam_{results[-1].name}.png")
            figures.append((f"Grad-CAM, {results[-1].name} (mistakes first)", path))
        except EdgeclsError as exc:
            notes.append(f"No Grad-CAM overlays: {exc}.")
    written += [path for _, path in figures]
    notes += [] if keras_model is not None else [
        "No Grad-CAM overlays: they need the model's gradients, which a .tflite file does not have; "
        "`edgecls evaluate` on the Keras model (a run folder's model.keras) draws them."]  # fmt: skip
    written.append(write_text_atomic(output_dir / "report.md", _markdown(title, facts, results, figures, output_dir, notes)))
    return written


def _has_feature_map(model) -> bool:
    from edgecls.train.gradcam import last_spatial_layer

    return last_spatial_layer(model) is not None


def _gradcam(model, dataset, result: SplitResult, size: tuple[int, int], path: Path) -> Path:
    from edgecls.train.gradcam import gradcam_heatmaps

    wrong = np.flatnonzero(result.y_pred != result.y_true)
    right = np.flatnonzero(result.y_pred == result.y_true)
    rng = np.random.default_rng(0)
    half = GRADCAM_IMAGES // 2
    chosen = np.concatenate([rng.permutation(wrong)[:half], rng.permutation(right)[: GRADCAM_IMAGES - min(half, len(wrong))]])
    images = dataset.load_images([result.keys[i] for i in chosen], size)
    heatmaps = gradcam_heatmaps(model, images, result.y_pred[chosen])
    labels = np.asarray(result.labels)
    captions = [f"true {labels[result.y_true[i]]}\npred {labels[result.y_pred[i]]} ({result.probabilities[i].max():.2f})" for i in chosen]
    return plots.plot_gradcam_grid(images, heatmaps, captions, path)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _markdown(title: str, facts: dict[str, Any], results: Sequence[SplitResult], figures, output_dir: Path,
              notes: Sequence[str] = ()) -> str:  # fmt: skip
    lines = [f"# {title}", ""]
    lines += [f"- **{key.replace('_', ' ')}**: {value}" for key, value in facts.items() if value not in (None, "", [])]
    lines += ["", "Measured in inference mode on held images the model was not trained on.", "",
              "| split | images | accuracy | balanced accuracy | macro AUC | macro F1 |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        m = r.metrics
        lines.append(f"| {r.name} | {m['images']} | {_number(m['accuracy'])} | {_number(m['balanced_accuracy'])} | "
                     f"{_number(m['macro_auc'])} | {_number(m['macro_f1'])} |")  # fmt: skip
    last = results[-1]
    lines += ["", f"## Per class ({last.name})", "",
              "| class | precision | recall | F1 | AUC | images |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for label, m in last.metrics["per_class"].items():
        lines.append(f"| {label} | {_number(m['precision'])} | {_number(m['recall'])} | {_number(m['f1'])} | "
                     f"{_number(m['auc'])} | {m['support']} |")  # fmt: skip
    if last.metrics["classes_absent"]:
        lines += ["", f"Not in this split (no recall or AUC): {', '.join(last.metrics['classes_absent'])}."]
    lines += clinical_markdown(last.name, last.metrics)
    lines += ["", "## Plots", ""]
    for caption, path in figures:
        lines += [f"### {caption}", "", f"![{caption}]({path.relative_to(output_dir).as_posix()})", ""]
    lines += [*notes, "", "Files: `metrics.json` (all numbers), `predictions.csv` (per image probabilities).", ""]
    return "\n".join(lines)


def clinical_markdown(split: str, metrics: dict) -> list[str]:
    """Calibration error, accuracy against coverage, and each class group's operating point."""
    lines = ["", f"## Calibration and abstention ({split})", "",
             f"Expected calibration error (10 bins of top-1 confidence): **{metrics['calibration']['ece']:.3f}**"
             + (f" (a perfectly calibrated model would show {floor['mean']:.3f} ± {floor['std']:.3f} here, from sampling alone)."
                if (floor := metrics["calibration"].get("ece_sampling_floor")) else "."), "",
             "Answering only when the top probability reaches a minimum (`classify --min-confidence`), "
             "the rest being `uncertain`:", "",
             "| min confidence | images answered | accuracy of those |", "|---:|---:|---:|"]  # fmt: skip
    for row in metrics["coverage"]:
        lines.append(f"| {row['min_confidence']:.1f} | {100 * row['coverage']:.1f}% | {_number(row['accuracy'])} |")
    for name, group in (metrics.get("groups") or {}).items():
        lines += ["", f"## {name.capitalize()} vs the rest ({split})", "",
                  f"{name}: {', '.join(group['members'])} ({group['positives']} images; {group['negatives']} others). "
                  f"ROC AUC {_number(group.get('auc'))}. At threshold {group['threshold']:.3f} ({group['threshold_source']}): "
                  f"sensitivity **{_number(group['sensitivity'])}**, specificity **{_number(group['specificity'])}**."]  # fmt: skip
    return lines
