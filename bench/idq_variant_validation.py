"""Paper vs released IDQ loss, chosen on validation: the branch network trained with each form.

The paper's IDQ loss gives the gradient of a pair only to its lower-scored face ("loser takes
all"); the authors' released trainer trains every face against all of its pairs' labels. This
script trains the branch network alone (a small MLP on the teacher's pooled features: seconds per
thousand steps on the CPU) with each form and the settings of ``configs/train-dm100-6000.json``, and
prints its validation numbers (LFW folds 4-5 people and CFP splits 4-5, never the test folds)
every ``--eval-every`` steps:

    python bench/idq_variant_validation.py --cache-dir runs/cache [--steps 3000]

``val_pair_auc``: how well min(q_i, q_j) separates the same-person pairs the teacher accepts at
its threshold (higher is better); ``val_idq``: the soft-label IDQ loss on those pairs (lower is
better). The student learns the same labels through the same loss and is distilled from this
branch, so the branch is where the two forms differ most directly, at a fraction of the cost of
training two students.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", default="runs/cache", help="folder with the train/ and val/ caches")
    ap.add_argument("--config", default=str(REPO / "configs" / "train-dm100-6000.json"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (one run per form and seed)")
    a = ap.parse_args()

    from facequal.train import run

    base = json.loads(Path(a.config).read_text())
    cache = Path(a.cache_dir)
    base.update(cache=str(cache / "train"), val_cache=str(cache / "val"), steps=a.steps, mode="branch",
                eval_every=a.eval_every, log_every=a.eval_every, checkpoint_every=a.steps, export=False,
                calibrate=False, threads=a.threads, device="cpu", select_on=None)
    results: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in a.seeds.split(",")):
            for form in ("paper", "released"):
                out = Path(tmp) / f"{form}-{seed}"
                run(dict(base, idq_variant=form, seed=seed, out_dir=str(out)))
                log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
                results[form, seed] = [e for e in log if "val_pair_auc" in e]
    print(f"branch network, {a.steps} steps, validation numbers (pair AUC higher is better, IDQ lower)")
    print(f"{'form':<9} {'seed':>4} " + " ".join(f"{'step ' + str(e['step'] + 1):>15}"
                                                for e in next(iter(results.values()))))
    for (form, seed), evals in results.items():
        cells = " ".join(f"{e['val_pair_auc']:.4f}/{e['val_idq']:.4f}".rjust(15) for e in evals)
        print(f"{form:<9} {seed:>4} {cells}")
    for form in ("paper", "released"):
        finals = [results[f, s][-1] for f, s in results if f == form]
        auc = sum(e["val_pair_auc"] for e in finals) / len(finals)
        idq = sum(e["val_idq"] for e in finals) / len(finals)
        print(f"{form}: final val_pair_auc {auc:.4f}, val_idq {idq:.4f} (mean over seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
