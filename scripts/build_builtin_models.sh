#!/usr/bin/env bash
# Rebuild the built-in models shipped in src/edgecls/models/ from the real datasets, with
# edgecls's own `train` and `convert` (QAT int8). Deterministic seeds and grouped splits; the
# split each run used is saved in runs/<name>/split.csv and copied next to the model.
#
#   bash scripts/build_builtin_models.sh [DATA_ROOT]      (default: ../shared/data)
#
# Needs the workstation install: pip install -e '.[train]'. CPU is fine (2 cores: about 1 h in all).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-../shared/data}
MODELS=src/edgecls/models
mkdir -p runs "$MODELS"

build() {
    local name=$1 data=$2 card=$3; shift 3
    edgecls train "$data" --output "runs/$name" --seed 1234 --force "$@"
    # Exit code 3 means the parity gate failed: stop, don't ship that file.
    edgecls convert "runs/$name" --mode float32,qat --qat-epochs 3 --max-drop 1.0
    cp "runs/$name/convert/model_int8.tflite" "$MODELS/$name.tflite"
    cp "runs/$name/split.csv" "$MODELS/$name.split.csv"
    for split in val test; do
        edgecls evaluate "runs/$name/convert/model_int8.tflite" --run "runs/$name" --split $split
    done
    python scripts/model_card.py "runs/$name" "$name" "$card"
}

build ham10000 "$DATA_ROOT/ham10000" ham10000 ${HAM_TRAIN_ARGS:---model edge-cnn --epochs 25}
build all-blood "$DATA_ROOT/blood" blood ${BLOOD_TRAIN_ARGS:---model edge-cnn --epochs 20}
ls -l "$MODELS"
