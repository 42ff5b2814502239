#!/bin/bash
# Only after decide-seeds-10-13.sh says "M8 becomes the default": the mechanical half of bundling
# M8 (addendum 4 bundles M8 itself, seeds 0-3, which the two bundled files hold). It rebuilds M8
# from those files, fits the bundled models' calibration on the validation people's clean and
# degraded photos (clean weight 0.75, as for dm025x4), writes the calibrated file into
# facequal/models/files and prints its sha256. By hand afterwards: its registry.json entry,
# DEFAULT_QUALITY_MODEL in facequal/models/zoo.py, the model card, bench/lfw_table.py on the test
# folds (once, after the decision), the CFP table, the README and CHANGELOG.
#   bash docs/training/flip-average/bundle-m8.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
NAME=lightqnet-dm025x4+dm025s2x4f
OUT=facequal/models/files/$NAME.onnx
REC=docs/training/flip-average/m8/bundle
[ ! -e "$OUT" ] || { echo "$OUT exists: nothing done" >&2; exit 1; }
mkdir -p runs/m8-bundle "$REC"
[ -e runs/m8-bundle/$NAME.onnx ] || python -m facequal.train.compose lightqnet-dm025x4 --flipped lightqnet-dm025s2x4 \
  --out runs/m8-bundle/$NAME.onnx
python bench/calibration_shift.py --data ../shared/data --people validation --model runs/m8-bundle/$NAME.onnx \
  --fit "$REC/calibration-m8.json" --clean-weight 0.75 --json "$REC/validation-m8.json" > "$REC/validation-m8.txt"
python -m facequal.train.recalibrate runs/m8-bundle/$NAME.onnx --map "$REC/calibration-m8.json" -o "$OUT"
sha256sum "$OUT"
