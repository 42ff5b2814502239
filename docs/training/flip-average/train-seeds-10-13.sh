#!/bin/bash
# v9 (stride-1) and v10 (stride-2) seeds 10-13 for addendum 4; rerun with RESUME=--resume to continue.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
run() { facequal train configs/train-$1-seed$2.json --data ../shared/data --cache-dir runs/cache3 --out runs/$1-seed$2 $RESUME >> runs/$1-seed$2.log 2>&1; }
run dm025-v9 10 & run dm025-v9 11 & wait
run dm025-v9 12 & run dm025-v9 13 & wait
run dm025s2-v10 10 & run dm025s2-v10 11 & wait
run dm025s2-v10 12 & run dm025s2-v10 13 & wait
echo done > runs/seeds10-13.done
