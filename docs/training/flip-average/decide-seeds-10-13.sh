#!/bin/bash
# Addendum 4 of decision-rule.txt, once the eight runs of train-seeds-10-13.sh have finished:
# build E4'' and M8'', score both on the validation people and apply the rule (prints each
# condition and the decision). WORKDIR is a validation workdir (make-validation-workdir.sh).
#   bash docs/training/flip-average/decide-seeds-10-13.sh WORKDIR
set -euo pipefail
cd "$(dirname "$0")/../../.."
W=$(realpath "${1:?usage: decide-seeds-10-13.sh WORKDIR}")
V9="runs/dm025-v9-seed10 runs/dm025-v9-seed11 runs/dm025-v9-seed12 runs/dm025-v9-seed13"
V10="runs/dm025s2-v10-seed10 runs/dm025s2-v10-seed11 runs/dm025s2-v10-seed12 runs/dm025s2-v10-seed13"
K=docs/training/flip-average/seeds10-13   # each finished run's record and exported network, committed
if ls runs/dm025-v9-seed1{0,1,2,3}/checkpoint.pt runs/dm025s2-v10-seed1{0,1,2,3}/checkpoint.pt >/dev/null 2>&1; then
  [ -e runs/dm025-v9-e4s10 ] || python -m facequal.train.ensemble $V9 --val-cache runs/cache3/val --out runs/dm025-v9-e4s10
  [ -e runs/mix-m8s10 ] || python -m facequal.train.ensemble $V9 --flipped $V10 --val-cache runs/cache3/val --out runs/mix-m8s10
else   # the runs are gone: the same graphs from the committed networks (equal up to float rounding)
  mkdir -p runs/dm025-v9-e4s10 runs/mix-m8s10
  M9=$(printf "$K/dm025-v9-seed%s/lightqnet-dm025.onnx " 10 11 12 13)
  M10=$(printf "$K/dm025s2-v10-seed%s/lightqnet-dm025s2.onnx " 10 11 12 13)
  [ -e runs/dm025-v9-e4s10/lightqnet-dm025x4.onnx ] || python -m facequal.train.compose $M9 \
    --out runs/dm025-v9-e4s10/lightqnet-dm025x4.onnx
  [ -e runs/mix-m8s10/lightqnet-dm025x4+dm025s2x4f.onnx ] || python -m facequal.train.compose $M9 --flipped $M10 \
    --out runs/mix-m8s10/lightqnet-dm025x4+dm025s2x4f.onnx
fi
bash docs/training/validate-candidate.sh runs/dm025-v9-e4s10/lightqnet-dm025x4.onnx e4s10 "$W"
ALSO=e4s10 bash docs/training/validate-candidate.sh runs/mix-m8s10/lightqnet-dm025x4+dm025s2x4f.onnx m8s10 "$W"
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]

def diff(path, fmr, a, b):
    """b - a ERC AUC at fmr: (value, low, high)."""
    r = next(x for x in json.load(open(path))["results"] if abs(x["fmr"] - fmr) < 1e-12)
    d = next(x for x in r["differences"] if {x["a"], x["b"]} == {a, b})
    e = d["b_minus_a"]["erc_auc"]
    s = 1 if (d["a"], d["b"]) == (a, b) else -1
    lo, hi = sorted((s * e["ci"][0], s * e["ci"][1]))
    return s * e["value"], lo, hi

def value(path, fmr, src):
    r = next(x for x in json.load(open(path))["results"] if abs(x["fmr"] - fmr) < 1e-12)
    return r["sources"][src]["erc_auc"]["value"]

lfw, cfp_all, cfp_own = f"{w}/lfw-m8s10/all-pairs.json", f"{w}/cfp-all-m8s10.json", f"{w}/cfp-m8s10.json"
checks = []
for fmr in (1e-3, 1e-2):
    v, lo, hi = diff(lfw, fmr, "e4s10", "m8s10")
    checks.append((f"(1) LFW all-pairs FMR {fmr:g}: M8''-E4'' {v:+.4f} [{lo:+.4f}, {hi:+.4f}] not entirely above 0", lo <= 0))
for fmr in (1e-2, 1e-3):
    v, lo, hi = diff(cfp_all, fmr, "e4s10", "m8s10")
    checks.append((f"(2) CFP every pair FMR {fmr:g}: M8''-E4'' {v:+.4f} [{lo:+.4f}, {hi:+.4f}] not entirely above 0", lo <= 0))
m8 = value(cfp_all, 1e-2, "m8s10")
checks.append((f"(2) CFP every pair FMR 0.01: M8'' {m8:.4f} below dm025's 0.1135", m8 < 0.1135))
v, lo, hi = diff(cfp_own, 1e-2, "e4s10", "m8s10")
checks.append((f"(3) CFP own list FMR 0.01: M8''-E4'' {v:+.4f} [{lo:+.4f}, {hi:+.4f}] not entirely above 0", lo <= 0))
v, lo, hi = diff(cfp_all, 1e-2, "e4s10", "m8s10")
checks.append((f"addendum 4: M8''-E4'' CFP every pair FMR 0.01 point estimate {v:+.4f} below 0", v < 0))
v, lo, hi = diff(cfp_all, 1e-2, "m8s10", "ref-dm100")
checks.append((f"addendum 4: authors' dm100-M8'' CFP every pair FMR 0.01 point estimate {v:+.4f} above 0", v > 0))
for text, ok in checks:
    print(("PASS " if ok else "FAIL ") + text)
print("decision: M8 becomes the default" if all(ok for _, ok in checks) else "decision: E4 stays the default")
PY
