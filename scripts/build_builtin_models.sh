#!/usr/bin/env bash
# Rebuild the built-in models shipped in src/edgecls/models/ from the real datasets, with
# edgecls's own `train` and `convert` (QAT int8). Deterministic seeds and grouped splits; the
# split each run used is saved in runs/<name>/split.csv and copied next to the model.
#
#   bash scripts/build_builtin_models.sh [DATA_ROOT] [NAME...]
#       DATA_ROOT: default ../shared/data;  NAME: any of the four below (default: all of them).
#
#   ham10000, all-blood              EfficientNet-Lite0 fine-tuned from ImageNet (--weights imagenet,
#                                    offline: docs/transfer-learning.md); the more accurate files
#   ham10000-small, all-blood-small  edge-cnn-large / edge-cnn trained from scratch: an eighth of the
#                                    size and about half the invoke time
#
# Needs the workstation install: pip install -e '.[train]'. CPU is fine: on 2 cores (Xeon with
# AVX-512 VNNI, one build at a time) ham10000 trains in about 20 minutes, ham10000-small in about
# 35, each all-blood model in under 10.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-../shared/data}
shift || true
NAMES=${*:-ham10000 ham10000-small all-blood all-blood-small}
MODELS=src/edgecls/models
mkdir -p runs "$MODELS"

# build NAME DATA CARD INT8_MODE TRAIN_FLAGS...: INT8_MODE is qat, or ptq-int8 where it measured
# closer to the float model (EfficientNet-Lite0 on HAM10000: docs/transfer-learning.md).
build() {
    local name=$1 data=$2 card=$3 int8=$4; shift 4
    edgecls train "$data" --output "runs/$name" --seed 1234 --force "$@"
    # Exit code 3 (the parity gate failed) or 4 (inconclusive): set -e stops here, nothing is shipped.
    # uint8 I/O (the default) for MediaPipe Tasks and Android; each file's temperature and the
    # malignant group's threshold (90% sensitivity) are fitted on the validation split.
    edgecls convert "runs/$name" --mode "float32,$int8" --qat-epochs 3 --max-drop 1.0 --target-sensitivity 0.9 --force
    cp "runs/$name/convert/model_int8.tflite" "$MODELS/$name.tflite"
    cp "runs/$name/split.csv" "$MODELS/$name.split.csv"
    for split in val test; do
        edgecls evaluate "runs/$name/convert/model_int8.tflite" --run "runs/$name" --split $split --force
        edgecls evaluate "runs/$name/convert/model_int8.tflite" --run "runs/$name" --split $split --tta --force
    done
    python scripts/model_card.py "runs/$name" "$name" "$card"
}

for name in $NAMES; do
    case $name in
        ham10000) build ham10000 "$DATA_ROOT/ham10000" ham10000 ptq-int8 --model efficientnet-lite0 --weights imagenet \
            --epochs 22 --head-epochs 2 --patience 8 --class-weight-power 0.75 --monitor val_acc_balacc_mean ;;
        ham10000-small) build ham10000-small "$DATA_ROOT/ham10000" ham10000 qat --model edge-cnn-large --epochs 60 --patience 15 ;;
        all-blood) build all-blood "$DATA_ROOT/blood" blood qat --model efficientnet-lite0 --weights imagenet \
            --epochs 25 --head-epochs 2 --patience 8 ;;
        all-blood-small) build all-blood-small "$DATA_ROOT/blood" blood qat --model edge-cnn --epochs 20 ;;
        *) echo "unknown built-in model: $name (ham10000, ham10000-small, all-blood, all-blood-small)" >&2; exit 2 ;;
    esac
done
ls -l "$MODELS"
