"""bench/cfp_pairs.py: the all frontal-profile pairs protocol on CFP validation people."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "cfp_pairs.py"
_spec = importlib.util.spec_from_file_location("cfp_pairs", _PATH)
cp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cp)


def _identities(tmp_path: Path) -> Path:
    """Four people: 001 and 002 in split 4, 003 in split 5, 004 in split 1 (left out)."""
    rows = []
    for ident, split in (("001", 4), ("002", 4), ("003", 5), ("004", 1)):
        rows += [(f"{ident}/frontal/{i:02d}.jpg", ident, "frontal", split) for i in range(1, 4)]
        rows += [(f"{ident}/profile/{i:02d}.jpg", ident, "profile", split) for i in range(1, 3)]
    p = tmp_path / "identities.tsv"
    with open(p, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["path", "identity", "pose", "split"])
        w.writerows(rows)
    return p


def test_every_mated_frontal_profile_pair_and_distinct_different_person_ones(tmp_path):
    people = cp.read_identities(str(_identities(tmp_path)), {4, 5})
    assert list(people) == ["001", "002", "003"]
    pairs = cp.frontal_profile_pairs(people, non_mated=10, seed=0)
    mated = [(a, b) for a, b, m in pairs if m]
    non = [(a, b) for a, b, m in pairs if not m]
    assert len(mated) == 3 * 3 * 2  # 3 frontal x 2 profile for each of 3 people
    assert all(a.split("/")[0] == b.split("/")[0] for a, b in mated)
    assert len(non) == len(set(non)) == 10
    assert all(a.split("/")[0] != b.split("/")[0] for a, b in non)
    assert all("/frontal/" in a and "/profile/" in b for a, b, _ in pairs)
    assert cp.frontal_profile_pairs(people, 10, 0) == pairs  # seeded: the same list every time
    assert cp.frontal_profile_pairs(people, 10, 1) != pairs


def test_asking_for_more_non_mated_pairs_than_exist_stops(tmp_path):
    people = cp.read_identities(str(_identities(tmp_path)), {4, 5})
    with pytest.raises(SystemExit, match="only 36"):  # 3 people x 2 others x 3 frontal x 2 profile
        cp.frontal_profile_pairs(people, non_mated=37, seed=0)


def test_the_script_never_replaces_an_existing_list(tmp_path):
    out = tmp_path / "pairs.csv"
    out.write_text("mine\n")
    r = subprocess.run([sys.executable, str(_PATH), str(_identities(tmp_path)), "--non-mated", "5",
                        "-o", str(out)], capture_output=True, text=True)
    assert r.returncode != 0 and "exists" in r.stderr and out.read_text() == "mine\n"
