"""Range checks of numeric options, run before any work: a value outside its domain stops the run
with one line naming the flag (a bad ``--det-size`` or ``--pad`` used to produce an empty output
with exit code 0).

Library functions raise these errors with the command-line flag's name too, so that the message
is the same whichever way facequal is called.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

from facequal.errors import UserError

# Domains of the options of `score` / `embed` (and of FaceOptions, which carries the first five).
DET_SIZE_RANGE = (32, 4096)      # below 32 the detector sees nothing; above, memory with no gain
PAD_MAX = 4.0                    # a canvas 9x the image's side: anything larger only wastes time
FACE_CHOICES = ("largest", "center", "all")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(flag: str, value: Any, lo: int | None = None, hi: int | None = None,
              note: str = "") -> int:
    """``value`` as an int in [lo, hi] (either bound may be None); else a UserError naming
    ``flag``. ``note`` is appended to the message (e.g. what 0 means)."""
    if not _is_int(value):
        raise UserError(f"{flag} must be a whole number, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UserError(f"{flag} must be {_domain(lo, hi)}, not {value}{note}")
    return int(value)


def check_float(flag: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, note: str = "") -> float:
    """``value`` as a finite float in [lo, hi] ((lo, hi] with ``lo_open``); NaN and infinities
    are refused too, with a UserError naming ``flag``."""
    if not _is_number(value):
        raise UserError(f"{flag} must be a number, not {value!r}")
    v = float(value)
    below = lo is not None and (v <= lo if lo_open else v < lo)
    if not math.isfinite(v) or below or (hi is not None and v > hi):
        raise UserError(f"{flag} must be a finite number {_domain(lo, hi, lo_open)}, not {value}{note}")
    return v


def _domain(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "a number"


def check_face_options(*, faces: str, det_size: int, det_threshold: float, min_face: float,
                       pad: float, max_pixels: int | None = None, max_side: int | None = None) -> None:
    """The domains of the detection / alignment options (:class:`facequal.faces.FaceOptions`);
    ``max_pixels`` / ``max_side`` None are not checked (the defaults)."""
    if faces not in FACE_CHOICES:
        raise UserError(f"--faces must be one of {', '.join(FACE_CHOICES)}, not {faces!r}")
    check_int("--det-size", det_size, *DET_SIZE_RANGE)
    check_float("--det-threshold", det_threshold, 0.0, 1.0)
    check_float("--min-face", min_face, 0.0)
    check_float("--pad", pad, 0.0, PAD_MAX)
    if max_pixels is not None:  # 0 used to mean the default silently: refused, like -1
        check_int("--max-pixels", max_pixels, 1)
    if max_side is not None:
        check_int("max_side", max_side, 1)


def check_job_options(*, faces: str, det_size: int, det_threshold: float, min_face: float,
                      pad: float, max_pixels: int | None, batch_size: int, jobs: int | None,
                      threads: int, chunk_size: int) -> None:
    """Every option of a scoring / embedding run (:class:`facequal.api.Job`) that has a domain,
    checked before any work. ``max_pixels`` None means the default (100 M pixels); ``jobs`` None
    or 0 means all cores."""
    check_face_options(faces=faces, det_size=det_size, det_threshold=det_threshold,
                       min_face=min_face, pad=pad, max_pixels=max_pixels)
    check_int("--batch-size", batch_size, 1)
    if jobs is not None:
        check_int("--jobs", jobs, 0, note=" (0: all cores)")
    check_int("--threads", threads, 1)
    check_int("chunk_size", chunk_size, 1)


def check_unit(flag: str, value: float | None) -> float | None:
    """None, or a finite number in [0, 1] (a quality threshold: qualities are probabilities)."""
    return None if value is None else check_float(flag, value, 0.0, 1.0)


def check_output_writable(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """:func:`facequal.curate.check_output` (not a folder, not an existing file without
    ``overwrite``, the parent folder exists), then make sure a file can be created in that folder
    (a read-only file system, ``/proc``): run before any rendering or computing, so a report or an
    evaluation is not done for nothing."""
    from facequal import _io
    from facequal.curate import check_output

    p = check_output(path, overwrite)
    _io.probe_writable(p.parent if str(p.parent) else Path("."), p)
    return p
