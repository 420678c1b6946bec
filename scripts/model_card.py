"""Write the model card of a built-in model from its run folder's own reports.

    python scripts/model_card.py runs/ham10000 ham10000

Reads RUN/metrics.json (float Keras), RUN/convert/parity.json (float vs int8) and
RUN/evaluate/model_int8-{val,test}/metrics.json (`edgecls evaluate` of the int8 file, which
build_builtin_models.sh runs), and writes src/edgecls/models/NAME.md. Nothing is typed in by hand.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

DATASETS = {
    "ham10000": {
        "title": "HAM10000 dermatoscopic skin lesions (7 classes)",
        "source": "Tschandl, Rosendahl, Kittler, \"The HAM10000 dataset\", Sci. Data 5:180161 (2018), "
        "Harvard Dataverse doi:10.7910/DVN/DBW86T",
        "licence": "CC BY-NC 4.0: non-commercial use only, with attribution. This model is derived from "
        "the data and is shared under the same terms.",
        "grouping": "grouped by `lesion_id` (all images of one lesion on one side) and by byte-identical files",
        "limits": [
            "Class imbalance: `nv` is about two thirds of the images; `df` and `vasc` have about 100 each, "
            "so their per-class figures rest on a handful of validation images.",
            "Dermoscope and population bias: images come from two sites (Vienna, Queensland), mostly of "
            "light skin types; performance on other skin types, cameras or clinical (non-dermoscopic) "
            "photos is unknown and likely worse.",
            "Resolution: trained on 94x94 inputs made from 200x150 copies of the 600x450 originals; fine "
            "structures a dermatologist uses are lost.",
            "Labels: about half are histopathology-confirmed, the rest by follow-up, expert consensus or "
            "confocal microscopy (`dx_type`).",
        ],
    },
    "blood": {
        "title": "Blood Cell Cancer [ALL]: peripheral blood smears, acute lymphoblastic leukemia (4 classes)",
        "source": "Aria et al., \"Acute Lymphoblastic Leukemia (ALL) image dataset\", Taleqani Hospital, Tehran "
        "(Kaggle doi:10.34740/KAGGLE/DSV/2175623); Ghaderzadeh et al. 2022",
        "licence": "See the dataset's page; cite Aria et al. and Ghaderzadeh et al. when using the data or this model.",
        "grouping": "grouped by byte-identical files (duplicates within Pro-B kept on one side)",
        "limits": [
            "One hospital, one staining protocol and microscope setup: other labs' smears may look different "
            "enough to break the model.",
            "Images are whole fields at 224x224, reduced to 94x94; the dataset's benign class includes "
            "hematogones, which look like early Pre-B blasts.",
            "Near-duplicate (not byte-identical) fields of the same smear may sit on both sides of the split, "
            "which would make validation figures optimistic.",
        ],
    },
}


INT8_ROWS = {"qat": "quantization-aware int8", "ptq-int8": "post-training int8"}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def per_class_table(metrics: dict) -> list[str]:
    lines = ["| class | precision | recall | F1 | ROC AUC | images |", "|---|---|---|---|---|---|"]
    for label, m in metrics["per_class"].items():
        auc = "-" if m.get("auc") is None else f"{m['auc']:.3f}"
        lines.append(f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {auc} | {m['support']} |")
    return lines


def card(run: Path, name: str, dataset_key: str) -> str:
    info = DATASETS[dataset_key]
    config = _load(run / "config.json")
    float_metrics = _load(run / "metrics.json")
    parity = _load(run / "convert" / "parity.json")
    # `edgecls evaluate` keys its metrics by split name: {"val": {...}} in model_int8-val/metrics.json.
    int8 = {split: _load(run / "evaluate" / f"model_int8-{split}" / "metrics.json")[split] for split in ("val", "test")}
    tta = {split: _load(run / "evaluate" / f"model_int8-{split}-tta" / "metrics.json")[split] for split in ("val", "test")}
    # The shipped file is the conversion's one full-integer row: quantization-aware (qat) or post-training (ptq-int8).
    int8_row = next(row for row in parity["rows"] if row["name"] in INT8_ROWS)
    options = config.get("options", {})
    lines = [
        f"# Model card: `{name}`",
        "",
        f"int8 TFLite classifier of {info['title']}, trained and quantized by edgecls "
        f"(`{config.get('model', options.get('model'))}`, {config['image_size'][0]}x{config['image_size'][1]} RGB, "
        f"{int8_row['size_bytes'] / 1024:.0f} KB, {INT8_ROWS[int8_row['name']]}).",
        "",
        "## Intended use",
        "Research and education: a worked example of taking a medical image classifier to a phone or a "
        "Raspberry Pi and proving the int8 file matches its float model. **Not a medical device. Not for "
        "diagnosis, screening or any clinical decision.**",
        "",
        "## Data and licence",
        f"- Source: {info['source']}.",
        f"- Licence: {info['licence']}",
        *pretrained_lines(parity.get("pretrained_weights") or {}),
        f"- Split: 70/15/15 train/val/test of the development copy, stratified by class and {info['grouping']}; "
        f"seed {options.get('seed')}. The file -> split list is `{name}.split.csv` beside this card in the repository. "
        "A separate held-out test set, not used here, judges the shipped file.",
        "",
        "## Results (int8 file, run through LiteRT as on the device)",
        "",
        "| split | images | accuracy | balanced accuracy | macro ROC AUC | float Keras accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("val", "test"):
        m, f = int8[split], float_metrics[split]
        lines.append(
            f"| {split} | {m['images']} | {_pct(m['accuracy'])} | {_pct(m['balanced_accuracy'])} | "
            f"{m['macro_auc']:.3f} | {_pct(f['accuracy'])} |"
        )
    lines += [
        "",
        f"Parity on the test split: int8 agrees with float on {_pct(int8_row['agreement'])} of images, mean KL "
        f"{int8_row['mean_kl']:.4f}; {parity['verdict']}.",
        "",
        "Per class, int8, validation split:",
        "",
        *per_class_table(int8["val"]),
        "",
        *clinical_section(name, int8_row, int8, tta),
        "",
        "## Known limits",
        *[f"- {text}" for text in info["limits"]],
        "",
        "## Reproduce",
        "`bash scripts/build_builtin_models.sh` (with the datasets in `../shared/data`): the exact `edgecls train` "
        "and `edgecls convert` commands, seeds and split.",
        "",
    ]
    return "\n".join(lines)


def pretrained_lines(weights: dict) -> list[str]:
    """The weights the model was fine-tuned from, with their own licence and attribution."""
    if not weights:
        return ["- Initial weights: random (trained from scratch on this data alone)."]
    line = f"- Initial weights: {weights.get('name')}"
    if weights.get("attribution"):
        line += f", by {weights['attribution']}"
    if weights.get("license"):
        line += f"; licence {weights['license']}"
    if weights.get("url"):
        line += f" ({weights['url']})"
    return [line + "; fine-tuned on this data (docs/transfer-learning.md)."]


def clinical_section(name: str, int8_row: dict, int8: dict, tta: dict) -> list[str]:
    """Calibration, the malignant-vs-benign operating point, abstention and flip-averaging, all
    from the int8 file as the device runs it (its temperature and threshold applied)."""
    calibration = int8_row.get("calibration") or {}
    test = int8["test"]
    lines = [
        "## Probabilities you can act on (int8 file, test split unless said)",
        "",
        f"- Calibration: temperature {calibration.get('temperature', 1.0):.3f}, fitted on the validation split to "
        f"this int8 file's own outputs and applied by the device. Expected calibration error (10 bins) "
        f"{calibration.get('ece_before', float('nan')):.3f} before, **{test['calibration']['ece']:.3f}** after; a perfectly "
        f"calibrated model with these probabilities would show {test['calibration']['ece_sampling_floor']['mean']:.3f} ± "
        f"{test['calibration']['ece_sampling_floor']['std']:.3f} on these {test['images']} images from sampling alone.",
        "",
        f"![Reliability diagram of the int8 file on the test split]({name}.reliability.png)",
        "",
    ]
    if "macro_auc_before" in calibration:
        lines += [
            "- Probabilities from logits: the file's second output is the softmax's input, so the device computes the "
            "probabilities itself, in float; read from the quantized softmax (the first output, what other runtimes "
            "show), every probability under 1/512 is exactly 0 and images tie. Test macro ROC AUC "
            f"**{test['macro_auc']:.3f}** (from the quantized softmax: {calibration['macro_auc_before']:.3f})"
            + "".join(f", {group} vs the rest {rates.get('auc', float('nan')):.3f} ({calibration['group_auc_before'].get(group, float('nan')):.3f})"
                      for group, rates in (test.get("groups") or {}).items())
            + ".",
            "",
        ]
    point = (int8["val"].get("groups") or {})
    for group, rates in (test.get("groups") or {}).items():
        lines.append(
            f"- {group.capitalize()} ({', '.join(rates['members'])}) vs the rest: ROC AUC {rates.get('auc', float('nan')):.3f}. "
            f"At the shipped threshold {rates['threshold']:.3f} (chosen on validation for "
            f"{100 * calibration.get('operating_point', {}).get('target_sensitivity', 0.9):.0f}% sensitivity; "
            f"validation gave {_pct(point.get(group, {}).get('sensitivity'))} / {_pct(point.get(group, {}).get('specificity'))}): "
            f"**sensitivity {_pct(rates['sensitivity'])}, specificity {_pct(rates['specificity'])}** "
            f"({rates['positives']} {group} and {rates['negatives']} other images). "
            f"`edgecls classify` reports `{group}_probability` and `flag` for each image."
        )
    lines += ["", "Abstention (`classify --min-confidence P`): share of test images answered and their accuracy.", "",
              "| P | answered | accuracy |", "|---|---|---|"]  # fmt: skip
    for row in test["coverage"]:
        lines.append(f"| {row['min_confidence']:.1f} | {_pct(row['coverage'])} | {_pct(row['accuracy'])} |")
    lines += ["", "Flip-averaging (`classify --tta`, 4 invokes per image):", "",
              "| split | accuracy | balanced accuracy | macro ROC AUC |", "|---|---|---|---|"]  # fmt: skip
    for split in ("val", "test"):
        for label, m in (("one pass", int8[split]), ("--tta", tta[split])):
            lines.append(f"| {split}, {label} | {_pct(m['accuracy'])} | {_pct(m['balanced_accuracy'])} | {m['macro_auc']:.3f} |")
    return lines


def stamp_licence(model_path: Path, key: str) -> None:
    """Put the data's attribution, licence and intended use into the shipped file's own metadata."""
    from edgecls.edge_runtime.metadata import read_metadata, write_metadata
    from edgecls.files import write_bytes_atomic

    raw = model_path.read_bytes()
    meta = read_metadata(raw)
    meta.provenance.update(
        {
            "data_source": DATASETS[key]["source"],
            "licence": DATASETS[key]["licence"],
            "intended_use": "research and education; not a medical device, not for diagnosis",
            "model_card": f"edgecls/models/{model_path.stem}.md",
        }
    )
    write_bytes_atomic(model_path, write_metadata(raw, meta))


if __name__ == "__main__":
    run_dir, model_name, key = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    models = Path(__file__).resolve().parents[1] / "src" / "edgecls" / "models"
    (models / f"{model_name}.md").write_text(card(run_dir, model_name, key), encoding="utf-8")
    shutil.copyfile(run_dir / "evaluate" / "model_int8-test" / "plots" / "reliability_test.png", models / f"{model_name}.reliability.png")
    stamp_licence(models / f"{model_name}.tflite", key)
    print(f"wrote {models / model_name}.md and stamped {model_name}.tflite")
