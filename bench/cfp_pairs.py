"""Every frontal-profile pair of some CFP people, as a pair list for `facequal eval`.

CFP's own validation list (``pairs-fp-validation.csv``) has 387 non-mated pairs, so its threshold
at FMR 1e-2 rests on four pairs and the ERC intervals are wide. This list takes every mated
frontal-profile pair of the people of ``--splits`` (10 frontal x 4 profile photos each) and a
seeded sample of ``--non-mated`` different-person frontal-profile pairs: the protocol of the
held-back large-pose check, on validation people.

    python bench/cfp_pairs.py ../shared/data/cfp/identities.tsv --splits 4,5 -o cfp-fp-all-val.csv
    facequal eval Q=cfp-q.parquet -e cfp-emb.parquet -p cfp-fp-all-val.csv --match-suffix 3 \
        --fmr 0.001 --fmr 0.01
"""

from __future__ import annotations

import argparse
import csv
import os
import random
from collections import defaultdict


def read_identities(path: str, splits: set[int]) -> dict[str, dict[str, list[str]]]:
    """identity -> pose -> sorted paths, for the rows of ``splits``."""
    people: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"frontal": [], "profile": []})
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if int(row["split"]) in splits:
                people[row["identity"]][row["pose"]].append(row["path"])
    for poses in people.values():
        for paths in poses.values():
            paths.sort()
    return dict(sorted(people.items()))


def frontal_profile_pairs(people: dict[str, dict[str, list[str]]], non_mated: int, seed: int
                          ) -> list[tuple[str, str, int]]:
    """All mated (frontal, profile) pairs, then ``non_mated`` distinct different-person ones."""
    pairs = [(f, p, 1) for poses in people.values() for f in poses["frontal"] for p in poses["profile"]]
    ids = list(people)
    total = sum(len(people[a]["frontal"]) * len(people[b]["profile"]) for a in ids for b in ids if a != b)
    if non_mated > total:
        raise SystemExit(f"--non-mated {non_mated}: only {total} different-person pairs exist")
    rng = random.Random(seed)
    chosen: set[tuple[str, str]] = set()
    while len(chosen) < non_mated:
        a, b = rng.sample(ids, 2)
        chosen.add((rng.choice(people[a]["frontal"]), rng.choice(people[b]["profile"])))
    pairs += [(f, p, 0) for f, p in sorted(chosen)]
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("identities", help="CFP identities.tsv (path, identity, pose, split)")
    ap.add_argument("--splits", default="4,5", help="CFP splits whose people make the pairs")
    ap.add_argument("--non-mated", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", required=True, help="CSV to write (path_a, path_b, mated)")
    a = ap.parse_args()
    if os.path.lexists(a.out):  # before any work; the "x" open below still refuses a late arrival
        raise SystemExit(f"{a.out} exists: not replaced")
    people = read_identities(a.identities, {int(s) for s in a.splits.split(",")})
    pairs = frontal_profile_pairs(people, a.non_mated, a.seed)
    try:
        f = open(a.out, "x", encoding="utf-8", newline="")  # "x": never replace a file
    except FileExistsError:
        raise SystemExit(f"{a.out} exists: not replaced") from None
    with f:
        w = csv.writer(f)
        w.writerow(["path_a", "path_b", "mated"])
        w.writerows(pairs)
    mated = sum(m for _, _, m in pairs)
    print(f"{a.out}: {len(people)} people, {mated} mated and {len(pairs) - mated} non-mated frontal-profile pairs")


if __name__ == "__main__":
    main()
