# The validation protocols of a candidate quality model against the bundled dm025 and the
# authors' dm100: validation people only, on the bundled model's faces (--from-scores).
#
#   bash docs/training/validate-candidate.sh MODEL TAG [WORKDIR]
#
# WORKDIR (default: the current folder) holds the score and embedding files that
# docs/training/make-validation-workdir.sh makes ({lfw,cfp}-{bundled,dm025,ref,emb}.parquet); the candidate's
# scores and tables are written there as {lfw,cfp,cfp-all}-TAG.*. Runs the facequal and python on PATH.
# ALSO=TAG2 adds an earlier candidate's scores ({lfw,cfp}-TAG2.parquet in WORKDIR) as one more
# comparator in every table (paired differences against it too).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=$ROOT/../shared/data
M=$(realpath "${1:?usage: validate-candidate.sh MODEL TAG [WORKDIR]}")
TAG=${2:?usage: validate-candidate.sh MODEL TAG [WORKDIR]}
cd "${3:-.}"
for s in lfw cfp; do
  facequal score --from-scores "$s-bundled.parquet" --model "$M" -o "$s-$TAG.parquet" -q --overwrite
done
facequal eval "$TAG=cfp-$TAG.parquet" dm025=cfp-dm025.parquet ref-dm100=cfp-ref.parquet ${ALSO:+"$ALSO=cfp-$ALSO.parquet"} -e cfp-emb.parquet \
  -p "$DATA/cfp/pairs-fp-validation.csv" --fmr 0.01 --match-suffix 3 --bootstrap 1000 \
  --json "cfp-$TAG.json" --overwrite > "cfp-$TAG.txt" 2>&1
# Every frontal-profile pair of the validation people (bench/cfp_pairs.py; made once per WORKDIR).
[ -e cfp-fp-all-val.csv ] || python "$ROOT/bench/cfp_pairs.py" "$DATA/cfp/identities.tsv" --splits 4,5 \
  -o cfp-fp-all-val.csv
facequal eval "$TAG=cfp-$TAG.parquet" dm025=cfp-dm025.parquet ref-dm100=cfp-ref.parquet ${ALSO:+"$ALSO=cfp-$ALSO.parquet"} -e cfp-emb.parquet \
  -p cfp-fp-all-val.csv --fmr 0.001 --fmr 0.01 --match-suffix 3 --bootstrap 1000 \
  --json "cfp-all-$TAG.json" --overwrite > "cfp-all-$TAG.txt" 2>&1
python "$ROOT/bench/eval_lfw.py" lfw-emb.parquet "$TAG=lfw-$TAG.parquet" dm025=lfw-dm025.parquet \
  ref-dm100=lfw-ref.parquet ${ALSO:+"$ALSO=lfw-$ALSO.parquet"} --pairs "$DATA/lfw-pairs.tsv" --folds 4-5 --all-pairs --bootstrap 1000 \
  --out "lfw-$TAG" > "lfw-$TAG.txt" 2>&1
echo "wrote cfp-$TAG.txt, cfp-all-$TAG.txt and lfw-$TAG.txt"
