"""Benchmark: error-versus-reject figures of quality models on LFW's test folds.

Usage (files from `facequal score` / `facequal embed` run over the LFW folder, any number of
quality sources, e.g. the bundled model and the authors' reference models)::

    python bench/eval_lfw.py EMBEDDINGS QUALITY [QUALITY ...] \
        [--pairs ../shared/data/lfw-pairs.tsv] [--folds 6-10] [--all-pairs] \
        [--per-identity 50] [--non-mated 20000] [--fmr 1e-3 1e-2] [--bootstrap 1000] [--seed 0] \
        [--out runs/eval-lfw]

QUALITY is a facequal score file or ``[LABEL=]PATH[:COLUMN]`` (see ``facequal eval --help``).
Two protocols on the same sources, each written as ``<out>/<protocol>.json`` plus an ERC/EDC
figure ``<out>/<protocol>.png`` / ``.svg``:

* ``pairs``: the listed pairs of ``--folds`` (LFW View 2 test folds 6-10: 3,000 pairs, 1,500
  non-mated, which is too few for FMR 1e-3: the tool warns);
* ``all-pairs`` (with ``--all-pairs``): every same-person pair of the people in those folds
  (capped per person) and a seeded sample of different-person pairs; identities are the parent
  folders.

A summary table (Markdown) is printed on stdout: per protocol, FMR and source, the paper's ERC AUC,
FNMR at 10 % / 20 % rejected, and the EDC pAUC minus the theoretical best, with 95 % intervals.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facequal.eval.evaluate import evaluate, write_json  # noqa: E402
from facequal.eval.pairs import parse_folds  # noqa: E402
from facequal.eval.plot import write_plot  # noqa: E402

DEFAULT_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-pairs.tsv"


def _fmt(est: object) -> str:
    v, lo, hi = est.value, est.low, est.high  # type: ignore[attr-defined]
    return f"{v:.4f}" if lo is None else f"{v:.4f} [{lo:.4f}, {hi:.4f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("embeddings", help="embeddings file (facequal embed or your recogniser)")
    ap.add_argument("quality", nargs="+", help="quality sources: [LABEL=]PATH[:COLUMN[,COLUMN]]")
    ap.add_argument("--pairs", default=str(DEFAULT_PAIRS), help="LFW pairs file (pairs.txt layout)")
    ap.add_argument("--folds", default="6-10", help="pair folds (default: the test folds 6-10)")
    ap.add_argument("--all-pairs", action="store_true", help="also run the all-pairs protocol")
    ap.add_argument("--per-identity", type=int, default=50)
    ap.add_argument("--non-mated", type=int, default=20_000)
    ap.add_argument("--match-suffix", type=int, default=None)
    ap.add_argument("--fmr", type=float, nargs="+", default=[1e-3, 1e-2])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/eval-lfw", help="output folder (created; files replaced)")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folds = parse_folds(args.folds)
    protocols = [("pairs", None)] + ([("all-pairs", "parent")] if args.all_pairs else [])
    print("| protocol | FMR | source | pairs (mated) | ERC AUC | FNMR r=0.1 | FNMR r=0.2 "
          "| EDC pAUC - best |")
    print("|---|---|---|---|---|---|---|---|")
    for name, by in protocols:
        t0 = time.perf_counter()
        res = evaluate(args.quality, args.embeddings, args.pairs, folds=folds, all_pairs_by=by,
                       per_identity=args.per_identity, non_mated=args.non_mated,
                       match_suffix=args.match_suffix, fmrs=args.fmr, bootstrap=args.bootstrap,
                       seed=args.seed)
        write_json(res.to_dict(), out / f"{name}.json", overwrite=True)
        write_plot(res, out / name, overwrite=True)
        for w in res.warnings:
            print(f"warning ({name}): {w}", file=sys.stderr)
        acc = res.accounting
        for r in res.results:
            for s in r.sources:
                f = s.figures
                print(f"| {name} | {r.fmr:g} | {s.label} | {acc.used:,} ({acc.mated:,}) "
                      f"| {_fmt(f['erc_auc'])} | {_fmt(f['erc_fnmr@0.1'])} | {_fmt(f['erc_fnmr@0.2'])} "
                      f"| {_fmt(f['edc_pauc_minus_best'])} |")
        print(f"{name}: {time.perf_counter() - t0:.1f} s, files in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
