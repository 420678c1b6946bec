"""Calibrate the shipped built-in models without retraining them, and put the evidence in their
model cards: each file's temperature and malignant threshold are fitted on the validation split
of the split.csv shipped beside it (scripts/calibrate_tflite.py), then `edgecls evaluate` measures
the file as the device runs it, before and after, with and without --tta.

    python scripts/calibrate_builtin_models.py [DATA_ROOT]      # default ../shared/data

Writes runs/builtin-<name>/ (an evaluation run folder: the dataset and the shipped split, no
model) and its evaluate/ reports; updates src/edgecls/models/<name>.tflite, the "Probabilities"
section of <name>.md and <name>.reliability.png.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate_tflite import calibrate_in_place  # noqa: E402
from model_card import _load, clinical_section  # noqa: E402

from edgecls.convert.retype_io import drop_logits_output  # noqa: E402
from edgecls.data.datasets import load_dataset  # noqa: E402
from edgecls.data.split import load_split, save_split  # noqa: E402
from edgecls.edge_runtime.builtin import builtin_models  # noqa: E402
from edgecls.edge_runtime.metadata import read_metadata, write_metadata  # noqa: E402
from edgecls.train.evaluate import evaluate_model_file  # noqa: E402
from edgecls.train.options import TrainOptions  # noqa: E402
from edgecls.train.run import write_run_config  # noqa: E402

DATA = {"ham10000": "ham10000", "ham10000-small": "ham10000", "all-blood": "blood", "all-blood-small": "blood"}
MODELS = Path(__file__).resolve().parents[1] / "src" / "edgecls" / "models"
SECTION = "## Probabilities you can act on"


def evaluation_run(name: str, data_root: Path) -> Path:
    """A run folder holding the dataset and the model's shipped split, so `edgecls evaluate
    --run` measures the built-in file on exactly the images it was validated and tested on."""
    run_dir = Path("runs") / f"builtin-{name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(data_root / DATA[name])
    save_split(run_dir, dataset, load_split(MODELS / f"{name}.split.csv", dataset))
    write_run_config(run_dir, data_root / DATA[name], dataset, TrainOptions(image_size=94))
    return run_dir


def evaluate(model: Path, run_dir: Path, folder: str, split: str, tta: bool = False) -> dict:
    output = run_dir / "evaluate" / folder
    evaluate_model_file(model, run_dir=run_dir, split=split, output=output, force=True, tta=tta)
    return _load(output / "metrics.json")[split]


def main(data_root: Path) -> None:
    for name, model in builtin_models().items():
        run_dir = evaluation_run(name, data_root)
        # "Before": the file as it shipped before calibration, read as any runtime reads it (the
        # quantized softmax output at temperature 1), so reruns compare against the same thing.
        with tempfile.TemporaryDirectory() as tmp:
            before = Path(tmp) / model.name
            meta = read_metadata(model.read_bytes())
            meta.temperature, meta.groups, meta.operating_point, meta.logits_output = 1.0, {}, {}, ""
            before.write_bytes(write_metadata(drop_logits_output(model.read_bytes()), meta))
            before_test = evaluate(before, run_dir, "before-test", "test")
            before_val = evaluate(before, run_dir, "before-val", "val")
        result = calibrate_in_place(model, data_root / DATA[name], MODELS / f"{name}.split.csv")
        int8 = {split: evaluate(model, run_dir, f"model_int8-{split}", split) for split in ("val", "test")}
        tta = {split: evaluate(model, run_dir, f"model_int8-{split}-tta", split, tta=True) for split in ("val", "test")}
        calibration = result.to_dict() | {
            "ece_before": before_test["calibration"]["ece"],
            "macro_auc_before": before_test["macro_auc"],
            "group_auc_before": {group: rates["auc"] for group, rates in (before_test.get("groups") or {}).items()},
        }
        section = "\n".join(clinical_section(name, {"calibration": calibration}, int8, tta))
        card = MODELS / f"{name}.md"
        text = card.read_text(encoding="utf-8")
        if SECTION in text:  # replace the section up to the next heading
            start = text.index(SECTION)
            end = text.find("\n## ", start + len(SECTION))
            text = text[:start] + section + "\n\n" + (text[end + 1 :] if end != -1 else "")
        else:
            marker = text.index("## Known limits")
            text = text[:marker] + section + "\n\n" + text[marker:]
        card.write_text(text, encoding="utf-8")
        shutil.copyfile(run_dir / "evaluate" / "model_int8-test" / "plots" / "reliability_test.png", MODELS / f"{name}.reliability.png")
        print(f"{name}: temperature {result.temperature}; ECE val {before_val['calibration']['ece']:.3f} -> "
              f"{int8['val']['calibration']['ece']:.3f}, test {calibration['ece_before']:.3f} -> "
              f"{int8['test']['calibration']['ece']:.3f}; {result.operating_point}")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data"))
