"""Give the shipped built-in models uint8 input and output (what MediaPipe Tasks and Android load),
a second output with the logits (exact small probabilities for edgecls's runtime) and the standard
TFLite Model Metadata, without retraining: the int8 maths stay bit for bit.

    python scripts/retype_builtin_models.py [DATA_ROOT]     # DATA_ROOT default ../shared/data

Each file's int8 graph gets exact uint8 <-> int8 QUANTIZE ops at both ends
(edgecls.convert.retype_io); the result is checked to give exactly the old output + 128 on real
images of its own dataset (or on random images where the data is absent), its provenance
records the change, and both metadata sets are written. The logits output
(edgecls.convert.retype_io.add_logits_output) is checked to leave the probabilities output
unchanged on the same images. Files already done are only re-stamped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgecls.convert.retype_io import add_logits_output, int8_io_to_uint8, logits_output_name, verify_same_maths
from edgecls.edge_runtime.builtin import builtin_models
from edgecls.edge_runtime.metadata import read_metadata, write_metadata
from edgecls.edge_runtime.preprocess import load_image
from edgecls.files import write_bytes_atomic

DATA = {"ham10000": "ham10000", "ham10000-small": "ham10000", "all-blood": "blood", "all-blood-small": "blood"}


def sample_images(data_root: Path, name: str, size: tuple[int, int], count: int = 400) -> np.ndarray:
    files = sorted((data_root / DATA.get(name, name)).rglob("*.jpg"))[:count]
    if not files:
        print(f"{name}: no images under {data_root}; checking on random images", file=sys.stderr)
        return np.random.default_rng(0).integers(0, 256, (count, *size, 3), dtype=np.uint8)
    return np.stack([load_image(f, size) for f in files])


def main(data_root: Path) -> None:
    for name, path in builtin_models().items():
        raw = path.read_bytes()
        meta = read_metadata(raw)
        if meta.provenance.get("io_type", "int8") == "int8":
            retyped = int8_io_to_uint8(raw)
            images = sample_images(data_root, name, meta.input_size)
            verify_same_maths(raw, retyped, images)
            meta.provenance["io_type"] = "uint8"
            meta.provenance["io_retyped"] = (
                "int8 I/O given exact uint8<->int8 QUANTIZE ops by scripts/retype_builtin_models.py; "
                f"output identical (+128) on {len(images)} images"
            )
            raw = retyped
        if not logits_output_name(raw):
            with_logits = add_logits_output(raw)
            images = sample_images(data_root, name, meta.input_size)
            verify_same_maths(raw, with_logits, images, offset=0)
            meta.provenance["logits_output"] = (
                "second output 'logits' (the softmax's input) added by scripts/retype_builtin_models.py; "
                f"first output identical on {len(images)} images"
            )
            raw = with_logits
        meta.logits_output = logits_output_name(raw)
        write_bytes_atomic(path, write_metadata(raw, meta))
        print(f"{name}: {path} ({path.stat().st_size / 1024:.1f} KB), uint8 I/O, logits output, edgecls + TFLite metadata")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data"))
