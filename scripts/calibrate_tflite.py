"""Calibrate an existing edgecls `.tflite` file in place: fit its temperature and its malignant
group's operating point on the validation split of the split.csv it was made with, as
`edgecls convert` does for the files it writes (edgecls.convert.calibrate), and print what that
does on the test split.

    python scripts/calibrate_tflite.py MODEL.tflite DATA SPLIT_CSV [--target-sensitivity 0.9]

For files converted before calibration existed (or to recalibrate a built-in model without its
float model): the int8 maths are untouched, only the metadata changes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecls.convert.calibrate import calibrate_file
from edgecls.convert.samples import ConversionData
from edgecls.core.clinical_metrics import default_groups
from edgecls.data.datasets import load_dataset
from edgecls.data.split import load_split
from edgecls.edge_runtime.metadata import read_metadata, write_metadata
from edgecls.files import write_bytes_atomic


def calibrate_in_place(model: Path, data: Path, split: Path, target_sensitivity: float = 0.9):
    """Fit and store `model`'s temperature and operating point; returns the Calibration."""
    raw = model.read_bytes()
    meta = read_metadata(raw)
    dataset = load_dataset(data)
    conversion_data = ConversionData(dataset, load_split(split, dataset), meta.labels, tuple(meta.input_size))
    # Fitted on the file at temperature 1, whatever it carried before.
    meta.temperature, meta.groups, meta.operating_point = 1.0, {}, {}
    result = calibrate_file(write_metadata(raw, meta), conversion_data.load("val"), conversion_data.test(), meta.labels,
                            default_groups(meta.labels), target_sensitivity, measure_tta=True)  # fmt: skip
    meta.temperature, meta.groups, meta.operating_point = result.temperature, result.groups, result.operating_point
    meta.provenance["calibration"] = f"temperature and operating point fitted on the validation split of {split.name}"
    write_bytes_atomic(model, write_metadata(raw, meta))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("split", type=Path)
    parser.add_argument("--target-sensitivity", type=float, default=0.9)
    args = parser.parse_args()
    result = calibrate_in_place(args.model, args.data, args.split, args.target_sensitivity)
    summary = {key: value for key, value in result.to_dict().items() if not key.startswith("reliability")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
