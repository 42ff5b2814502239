"""Per-face diagnostics in the report (pose, face size, focus, exposure) and the "likely cause"
of a low-quality face: the diagnostic that lies furthest outside its typical range.

The diagnostics are optional columns of a score file (``yaw``, ``pitch``, ``roll``,
``eye_distance`` -- or the older ``inter_eye`` --, ``sharpness``, ``brightness``, ``contrast``);
files written before they existed simply have none, and the report shows what is there.

Typical ranges are fixed, documented constants, except for sharpness, whose scale depends on
the focus measure: its lower bound is a fraction of the dataset's own median (a robust,
per-dataset statistic). How far a value lies outside its range is measured in one common unit
so that different diagnostics compare: for pose and brightness one unit is a fixed step
(``step``: 15 degrees of yaw, 10 of pitch or roll, 25 grey levels), for face size, contrast and
sharpness it is a halving (``log2`` of the ratio to the bound). A face whose diagnostics are
all inside their ranges has no likely cause.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Sharpness's lower bound: this fraction of the median sharpness of the dataset's faces.
SHARPNESS_FRACTION_OF_MEDIAN = 0.5


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic: where it is read from, its typical range and what being outside it means."""

    name: str                  # the key in the page (sorting, details)
    columns: tuple[str, ...]   # score-file columns holding it, the first present wins
    unit: str                  # appended to values in the page
    low: float | None          # typical range (None: unbounded on that side)
    high: float | None
    step: float | None         # one unit outside the range, in the value's unit; None: a halving (log2)
    low_label: str | None      # the likely cause when below the range ...
    high_label: str | None     # ... and when above it
    magnitude: bool = False    # signed angles: the range bounds |value|


# Typical ranges (README, "facequal report"), checked on LFW validation photos and CFP validation
# (python bench/diagnostics.py): |yaw| > 45 for 99.7% of CFP's profiles, none of its frontal
# photos and about 2% of LFW's; |pitch| > 25 for about 3% of LFW; an eye distance at least the
# one in the model's 96-px crop (about 30 px; smaller faces are upsampled into it); mid-tone
# exposure; the RMS contrast of normal portraits (LFW: p1 0.14, median 0.29).
DIAGNOSTICS: tuple[Diagnostic, ...] = (
    Diagnostic("yaw", ("yaw",), "°", None, 45.0, 15.0, None, "profile", magnitude=True),
    Diagnostic("pitch", ("pitch",), "°", None, 25.0, 10.0, None, "head up/down", magnitude=True),
    Diagnostic("roll", ("roll",), "°", None, 20.0, 10.0, None, "tilted", magnitude=True),
    Diagnostic("eye_distance", ("eye_distance", "inter_eye"), " px", 30.0, None, None, "small face", None),
    Diagnostic("sharpness", ("sharpness",), "", None, None, None, "blurred", None),  # low: per dataset
    Diagnostic("brightness", ("brightness",), "", 50.0, 205.0, 25.0, "dark", "over-exposed"),
    Diagnostic("contrast", ("contrast",), "", 0.15, None, None, "low contrast", None),
)
CAUSES: tuple[str, ...] = tuple(
    dict.fromkeys(lab for d in DIAGNOSTICS for lab in (d.low_label, d.high_label) if lab)
)


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


@dataclass
class Diagnostics:
    """The diagnostics present in a table: their specs, values (NaN where missing), the ranges
    used (sharpness's filled in from the data) and each face's likely cause (an index into
    :data:`CAUSES`, -1 for none)."""

    specs: list[Diagnostic]
    values: dict[str, np.ndarray]
    ranges: dict[str, tuple[float | None, float | None]]
    cause: np.ndarray

    def take(self, idx: np.ndarray) -> Diagnostics:
        """The same diagnostics for the rows ``idx`` (ranges unchanged)."""
        return Diagnostics(self.specs, {k: v[idx] for k, v in self.values.items()}, self.ranges, self.cause[idx])


def read_diagnostics(table: pa.Table) -> Diagnostics:
    """The diagnostics of the faces in ``table`` (rows are faces) and their likely causes."""
    specs, values, ranges = [], {}, {}
    for d in DIAGNOSTICS:
        col = next((c for c in d.columns if c in table.column_names), None)
        if col is None or not (pa.types.is_floating(table[col].type) or pa.types.is_integer(table[col].type)
                               or pa.types.is_null(table[col].type)):
            continue
        v = _floats(table, col) if not pa.types.is_null(table[col].type) else np.full(table.num_rows, np.nan)
        if not np.isfinite(v).any():
            continue  # a column of nulls (images without faces, or a file that has the column empty)
        low, high = d.low, d.high
        if d.name == "sharpness":
            fin = v[np.isfinite(v) & (v > 0)]
            low = float(np.median(fin)) * SHARPNESS_FRACTION_OF_MEDIAN if len(fin) else None
        specs.append(d)
        values[d.name] = v
        ranges[d.name] = (low, high)
    return Diagnostics(specs, values, ranges, likely_causes(specs, values, ranges, table.num_rows))


def outside(d: Diagnostic, v: np.ndarray, low: float | None, high: float | None) -> tuple[np.ndarray, np.ndarray]:
    """How far each value lies below and above its range, in the common unit (0 inside, NaN
    where the value is missing)."""
    x = np.abs(v) if d.magnitude else v
    below = np.zeros_like(x)
    above = np.zeros_like(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        if low is not None:
            if d.step is None:  # halvings below the bound; zero or negative counts as far below
                below = np.where(x < low, np.log2(low / np.maximum(x, low / 1024.0)), 0.0)
            else:
                below = np.maximum(0.0, (low - x) / d.step)
        if high is not None:
            if d.step is None:
                above = np.where(x > high, np.log2(x / high), 0.0)
            else:
                above = np.maximum(0.0, (x - high) / d.step)
    miss = ~np.isfinite(x)
    below[miss] = np.nan
    above[miss] = np.nan
    return below, above


def likely_causes(specs: list[Diagnostic], values: dict[str, np.ndarray],
                  ranges: dict[str, tuple[float | None, float | None]], n: int) -> np.ndarray:
    """Per face (``n`` of them), the index in :data:`CAUSES` of the diagnostic furthest outside
    its range, or -1 when none is outside (ties: the earlier diagnostic in :data:`DIAGNOSTICS`)."""
    best = np.zeros(n)
    cause = np.full(n, -1, dtype=np.int64)
    for d in specs:
        low, high = ranges[d.name]
        below, above = outside(d, values[d.name], low, high)
        for amount, label in ((below, d.low_label), (above, d.high_label)):
            if label is None:
                continue
            worse = np.nan_to_num(amount, nan=0.0) > best
            best = np.where(worse, amount, best)
            cause[worse] = CAUSES.index(label)
    return cause


def _short(x: float) -> float | None:
    """Four significant digits: enough to read and sort by, and short in the page's JSON."""
    return float(f"{x:.4g}") if math.isfinite(x) else None


def diagnostics_spec(diag: Diagnostics) -> list[dict]:
    """What the page needs to know about each diagnostic present (order, labels, ranges)."""
    out = []
    for d in diag.specs:
        low, high = diag.ranges[d.name]
        out.append({"name": d.name, "unit": d.unit, "abs": d.magnitude,
                    "low": _short(low) if low is not None else None,
                    "high": _short(high) if high is not None else None,
                    "low_label": d.low_label, "high_label": d.high_label})
    return out


def diagnostics_payload(diag: Diagnostics) -> dict[str, list[float | None]]:
    """Each diagnostic's values for the page, one list per diagnostic."""
    return {name: [_short(float(x)) for x in v] for name, v in diag.values.items()}
