"""How far a classifier's probabilities can be trusted and acted on: calibration error, a class
group's (e.g. malignant vs benign) sensitivity and specificity at a threshold chosen on
validation data, and accuracy against coverage when the model may abstain.

numpy (scikit-learn for the ROC), shared by `edgecls evaluate` (train) and the parity report (convert); the device
applies the results with edgecls.edge_runtime.calibration.
"""

from __future__ import annotations

import numpy as np

RELIABILITY_BINS = 10
DEFAULT_TARGET_SENSITIVITY = 0.90
COVERAGE_CONFIDENCES = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Top-1 confidence in equal-width bins: per bin, how many images, their mean confidence and
    their accuracy (a reliability diagram's points)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        chosen = index == b
        out.append({
            "low": float(edges[b]), "high": float(edges[b + 1]), "count": int(chosen.sum()),
            "confidence": float(confidence[chosen].mean()) if chosen.any() else None,
            "accuracy": float(correct[chosen].mean()) if chosen.any() else None,
        })  # fmt: skip
    return out


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    """ECE: the count-weighted mean gap between top-1 confidence and accuracy over the bins."""
    total = len(labels)
    return float(sum(b["count"] / total * abs(b["confidence"] - b["accuracy"]) for b in reliability_bins(probabilities, labels, bins) if b["count"]))


def ece_sampling_floor(probabilities: np.ndarray, draws: int = 100, seed: int = 0) -> dict:
    """The ECE a perfectly calibrated model with these very probabilities would show on this many
    images, from sampling alone: labels drawn from each row's probabilities, `draws` times.
    An ECE within about two standard deviations of this mean is as good as the split can show."""
    probabilities = np.asarray(probabilities, np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(probabilities, axis=1)
    rng = np.random.default_rng(seed)
    eces = []
    for _ in range(draws):
        labels = (rng.random((len(probabilities), 1)) > cumulative).sum(axis=1).clip(max=probabilities.shape[1] - 1)
        eces.append(expected_calibration_error(probabilities, labels))
    return {"mean": float(np.mean(eces)), "std": float(np.std(eces)), "draws": draws}


def coverage_curve(probabilities: np.ndarray, labels: np.ndarray, confidences=COVERAGE_CONFIDENCES) -> list[dict]:
    """For each minimum confidence: the share of images still answered and their accuracy
    (the rest are 'uncertain')."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    rows = []
    for minimum in confidences:
        answered = confidence >= minimum
        rows.append({
            "min_confidence": float(minimum), "coverage": float(answered.mean()),
            "accuracy": float(correct[answered].mean()) if answered.any() else None,
        })  # fmt: skip
    return rows


def binary_rates(scores: np.ndarray, positive: np.ndarray, threshold: float) -> dict:
    """Sensitivity and specificity of `scores >= threshold` against the boolean `positive`."""
    flagged = np.asarray(scores) >= threshold
    positive = np.asarray(positive, bool)
    return {
        "threshold": float(threshold),
        "sensitivity": float(flagged[positive].mean()) if positive.any() else None,
        "specificity": float((~flagged[~positive]).mean()) if (~positive).any() else None,
        "positives": int(positive.sum()),
        "negatives": int((~positive).sum()),
    }


def threshold_for_sensitivity(scores: np.ndarray, positive: np.ndarray, target: float = DEFAULT_TARGET_SENSITIVITY) -> float:
    """The operating point on (`scores`, `positive`): of the thresholds whose sensitivity is at
    least `target`, the one with the highest specificity, and of those the highest sensitivity.

    Candidates are the positives' own scores (flagged at `>=`). A near-perfect model thus gets
    every positive it can flag without flagging one more negative, not just the target share.
    """
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    candidates = np.unique(scores[positive])[::-1]  # high to low: sensitivity rises, specificity falls
    if not len(candidates):
        raise ValueError("no positive images to choose a threshold on")
    positives, negatives = np.sort(scores[positive]), np.sort(scores[~positive])
    sensitivity = 1.0 - np.searchsorted(positives, candidates, side="left") / len(positives)
    specificity = np.searchsorted(negatives, candidates, side="left") / max(len(negatives), 1)
    reaching = np.flatnonzero(sensitivity >= target - 1e-12)  # the last candidate always reaches 1.0
    best = reaching[np.lexsort((-sensitivity[reaching], -specificity[reaching]))[0]]
    return float(candidates[best])


def group_report(probabilities: np.ndarray, labels: np.ndarray, members: list[int], threshold: float) -> dict:
    """A class group (e.g. malignant) against the rest: ROC AUC, and rates at `threshold`."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = np.asarray(probabilities, np.float64)[:, members].sum(axis=1)
    positive = np.isin(np.asarray(labels), members)
    report = binary_rates(scores, positive, threshold)
    if positive.any() and (~positive).any():
        report["auc"] = float(roc_auc_score(positive, scores))
        fpr, tpr, _ = roc_curve(positive, scores)
        report["roc"] = {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
    return report


# HAM10000's diagnosis codes (Tschandl et al. 2018): actinic keratosis / intraepithelial
# carcinoma, basal cell carcinoma and melanoma are the malignant ones; bkl, df, nv, vasc benign.
HAM10000_MALIGNANT = ("akiec", "bcc", "mel")


def default_groups(labels: list[str]) -> dict[str, list[str]]:
    """The malignant group of a dataset edgecls knows: HAM10000's codes, or labels that say
    "malignant" (the ALL smear set's "[Malignant] Pre-B", ...). {} when neither applies."""
    if set(HAM10000_MALIGNANT) <= set(labels) and len(labels) > len(HAM10000_MALIGNANT):
        return {"malignant": [label for label in labels if label in HAM10000_MALIGNANT]}
    malignant = [label for label in labels if "malignant" in label.lower() and "benign" not in label.lower()]
    if malignant and len(malignant) < len(labels):
        return {"malignant": malignant}
    return {}


def group_metrics(y_true: np.ndarray, probabilities: np.ndarray, labels: list[str], groups: dict[str, list[str]],
                  operating_point: dict | None = None, target: float = DEFAULT_TARGET_SENSITIVITY) -> dict:  # fmt: skip
    """Each group against the rest, at the model's own threshold where it has one for that group,
    else at the threshold that reaches `target` sensitivity on these very images (optimistic)."""
    out = {}
    for name, members in groups.items():
        index = [labels.index(m) for m in members]
        positive = np.isin(np.asarray(y_true), index)
        if not positive.any():
            continue
        if operating_point and operating_point.get("group") == name:
            threshold, source = float(operating_point["threshold"]), "the model's operating point"
        else:
            scores = np.asarray(probabilities, np.float64)[:, index].sum(axis=1)
            threshold = threshold_for_sensitivity(scores, positive, target)
            source = f"chosen on these images for {target:.0%} sensitivity (optimistic)"
        out[name] = {"members": list(members), **group_report(probabilities, y_true, index, threshold), "threshold_source": source}
    return out
