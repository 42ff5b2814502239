# Validation protocols of a candidate quality model against the bundled dm025 and the authors' dm100
# (validation people only, the bundled model's faces): bash docs/training/validate-candidate.sh MODEL TAG
# e.g. MODEL=runs/dm025-v4/lightqnet-dm025.onnx TAG=v4. Run from a folder (here /tmp/val) holding the score and embedding files that docs/training/validation.md makes.
set -e
cd /tmp/val
FQ=/work/main/.venv/bin/facequal
PY=/work/main/.venv/bin/python
M=${1:?model}
TAG=${2:?tag}
for s in lfw cfp; do
  $FQ score --from-scores $s-bundled.parquet --model $M -o $s-$TAG.parquet -q --overwrite
done
$FQ eval $TAG=cfp-$TAG.parquet dm025=cfp-dm025.parquet ref-dm100=cfp-ref.parquet -e cfp-emb.parquet \
  -p /work/shared/data/cfp/pairs-fp-validation.csv --fmr 0.01 --match-suffix 3 --bootstrap 1000 --json cfp-$TAG.json > cfp-$TAG.txt 2>&1
$PY /work/main/bench/eval_lfw.py lfw-emb.parquet $TAG=lfw-$TAG.parquet dm025=lfw-dm025.parquet ref-dm100=lfw-ref.parquet \
  --pairs /work/shared/data/lfw-pairs.tsv --folds 4-5 --all-pairs --bootstrap 1000 --out lfw-$TAG > lfw-$TAG.txt 2>&1
echo done
