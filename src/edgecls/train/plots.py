"""PNG plots for the report: training curves, confusion matrix, ROC curves, reliability diagram.

matplotlib's object API (`Figure`, no pyplot): no global state, no GUI backend, works headless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from edgecls.files import atomic_path


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def save_figure(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_history(history: pd.DataFrame, path: Path) -> Path | None:
    """Loss, and accuracy-like metrics, per epoch: train against validation."""
    from matplotlib.ticker import MaxNLocator

    if history is None or history.empty or "epoch" not in history:
        return None
    epochs = history["epoch"].to_numpy() + 1
    panels = [("loss", ["loss", "val_loss"]),
              ("accuracy", ["accuracy", "val_accuracy", "val_balanced_accuracy", "val_auc"])]  # fmt: skip
    fig = _figure(10, 3.8)
    for ax, (title, columns) in zip(fig.subplots(1, 2), panels):
        for column in columns:
            if column in history and history[column].notna().any():
                ax.plot(epochs, history[column], marker="o", markersize=3, label=column)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if "learning_rate" in history:
        lr_ax = fig.axes[0].twinx()
        lr_ax.plot(epochs, history["learning_rate"], color="grey", linestyle=":", linewidth=1)
        lr_ax.set_ylabel("learning rate (dotted)", fontsize=8)
    return save_figure(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised colours (recall per true class), raw counts written in the cells."""
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    size = 2.5 + 0.6 * len(labels)
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in ticks:
        for j in ticks:
            colour = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
    return save_figure(fig, path)


def plot_roc(y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """One-vs-rest ROC curve per class present in the split."""
    from sklearn.metrics import auc, roc_curve

    fig = _figure(5.5, 5)
    ax = fig.subplots()
    for c, label in enumerate(labels):
        positives = y_true == c
        if not 0 < positives.sum() < len(y_true):
            continue
        fpr, tpr, _ = roc_curve(positives, probabilities[:, c])
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    _unit_square(ax, "false positive rate", "true positive rate", title, "lower right")
    return save_figure(fig, path)


def _unit_square(ax, xlabel: str, ylabel: str, title: str, legend: str) -> None:
    """Labels, title, legend and grid of a plot of rates against rates (ROC, reliability)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc=legend)
    ax.grid(alpha=0.3)


def plot_reliability(curves: dict[str, Sequence[dict]], path: Path, title: str) -> Path:
    """Reliability diagram: accuracy against mean top-1 confidence per bin, one line per curve
    (e.g. before and after temperature scaling); the diagonal is perfect calibration."""
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, bins in curves.items():
        points = [(b["confidence"], b["accuracy"], b["count"]) for b in bins if b["count"]]
        if points:
            x, y, n = zip(*points)
            ax.plot(x, y, marker="o", linewidth=1.5, label=name)
            if len(curves) == 1:
                for xi, yi, ni in points:
                    ax.annotate(str(ni), (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    _unit_square(ax, "mean top-1 confidence in bin", "accuracy in bin", title, "upper left")
    return save_figure(fig, path)


def plot_gradcam_grid(images: np.ndarray, heatmaps: np.ndarray, captions: Sequence[str], path: Path) -> Path:
    """Each image beside its Grad-CAM overlay (heatmap 0..1 at image size, jet, 40%)."""
    from matplotlib import colormaps

    jet = colormaps["jet"]
    columns = 4
    rows = int(np.ceil(len(images) / (columns // 2)))
    fig = _figure(2.2 * columns, 2.4 * rows)
    axes = np.atleast_2d(fig.subplots(rows, columns))
    for ax in axes.ravel():
        ax.axis("off")
    for n, (image, heatmap, caption) in enumerate(zip(images, heatmaps, captions)):
        row, col = divmod(n * 2, columns)
        overlay = 0.6 * image.astype(np.float32) / 255.0 + 0.4 * jet(heatmap)[..., :3]
        axes[row, col].imshow(image)
        axes[row, col].set_title(caption, fontsize=7)
        axes[row, col + 1].imshow(np.clip(overlay, 0, 1))
        axes[row, col + 1].set_title("Grad-CAM", fontsize=7)
    return save_figure(fig, path)
