# The score and embedding files that docs/training/validate-candidate.sh compares a candidate on:
# every LFW and CFP photo scored once with the bundled default (whose faces every model then
# reuses, --from-scores), the bundled dm025, the authors' dm100 (../shared/reference, with its
# contract) and the dlib embeddings. (validate-candidate.sh makes the list of every
# frontal-profile pair of the CFP validation people on its first run.) About 10 minutes on 2 cores.
#
#   bash docs/training/make-validation-workdir.sh WORKDIR
#
# Runs the facequal and python on PATH.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=$ROOT/../shared/data
REF=$ROOT/../shared/reference/lightqnet-dm100.onnx
CONTRACT=$ROOT/bench/contracts/lightqnet-reference.json
mkdir -p "${1:?usage: make-validation-workdir.sh WORKDIR}"
cd "$1"
for s in lfw cfp; do
  facequal score "$DATA/$s" -o "$s-bundled.parquet" -j 2 -q
  facequal score -o "$s-dm025.parquet" --from-scores "$s-bundled.parquet" --model lightqnet-dm025 -q
  facequal score -o "$s-ref.parquet" --from-scores "$s-bundled.parquet" --model "$REF" --contract "$CONTRACT" -q
  facequal embed "$DATA/$s" -o "$s-emb.parquet" --from-scores "$s-bundled.parquet" -q
done
echo "wrote {lfw,cfp}-{bundled,dm025,ref,emb}.parquet in $PWD"
