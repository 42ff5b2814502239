"""The options of a scoring / embedding run: the one place for each default, the domains of the
options, and the range checks run before any work.

Every default lives here once: the command-line declarations (:mod:`facequal.cli`),
:class:`facequal.api.Job`, :class:`FaceOptions`, the detector (:class:`facequal.pipeline.detect.RetinaFace`)
and the training cache builder all read them from this module. It imports nothing heavy (no numpy,
no Pillow), so that ``facequal --help`` stays fast.

A value outside its domain stops the run with one line naming the flag (a bad ``--det-size`` or
``--pad`` used to produce an empty output with exit code 0). Library functions raise these errors
with the command-line flag's name too, so that the message is the same whichever way facequal is
called.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from facequal.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

# ---------------------------------------------------------------------------------------------
# Defaults of `score` / `embed` (and of the API, the detector and the training cache builder)
# ---------------------------------------------------------------------------------------------
# Which face of an image: "subject" (the photo's subject: the largest face once off-centre distance
# is charged; a larger bystander at the edge is not picked), "largest" or "all". "subject" became
# the default when bench/face_choice.py found it never worse than "largest" on LFW / CFP
# validation and CelebA; "center" is its former name, still accepted.
FACES = "subject"
DET_SIZE = 640                   # longer side the detector sees (larger images are downscaled)
DET_THRESHOLD = 0.6              # detector confidence threshold
MIN_FACE = 0.0                   # faces whose box is smaller (pixels) are ignored
PAD = 0.0                        # canvas padding, as a fraction of the image's side (tight crops)
MAX_PIXELS = 100_000_000         # 100 MP: above this an image is refused (status too_large)
MAX_SIDE = 4096                  # JPEGs larger than this are decoded at a reduced scale
# `facequal audit`: a face closer to another identity than to its own is flagged (margin > 0);
# identity pairs scoring above this are reported as one person (LFW split folders >= 0.995,
# the closest two different people 0.974).
MISLABEL_THRESHOLD = 0.0
IDENTITY_THRESHOLD = 0.98
# Faces per quality-model call on a CPU: LightQNet's stride-1 stem keeps 16 x 96 x 96 float
# activations per face, and at two faces a call they stay in the core's cache. Measured with
# `bench/score_only.py --sweep 1,2,4,8,16,64` (dm025, 2-core machine): batch 2 runs 1.6x the
# faces/s of batch 16, batch 1 1.4x, batch 64 0.9x. The values do not depend on the batch.
BATCH_SIZE = 2
CUDA_BATCH_SIZE = 16             # a GPU wants larger calls (bench/gpu_speed.py measures them)
EMBED_BATCH_SIZE = 32            # `facequal embed`'s default --batch-size
CHUNK_SIZE = 64                  # images per chunk sent to a worker
THREADS = 1                      # onnxruntime threads per worker
DEVICE = "cpu"
BACKEND = "local"

# Domains of the options of `score` / `embed` (and of FaceOptions, which carries the first five).
DET_SIZE_RANGE = (32, 4096)      # below 32 the detector sees nothing; above, memory with no gain
PAD_MAX = 4.0                    # a canvas 9x the image's side: anything larger only wastes time
FACE_CHOICES = ("subject", "largest", "all")
FACE_ALIASES = {"center": "subject"}  # former names, still accepted
BACKENDS = ("local", "dask")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _param(flag: str) -> str | None:
    """The Python parameter of a flag (``--det-size`` -> ``det_size``): errors name it for API callers."""
    return flag[2:].replace("-", "_") if flag.startswith("--") else None


def check_int(flag: str, value: Any, lo: int | None = None, hi: int | None = None,
              note: str = "") -> int:
    """``value`` as an int in [lo, hi] (either bound may be None); else a UserError naming
    ``flag``. ``note`` is appended to the message (e.g. what 0 means)."""
    if not _is_int(value):
        raise UserError(f"{flag} must be a whole number, not {value!r}", param=_param(flag))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UserError(f"{flag} must be {_domain(lo, hi)}, not {value}{note}", param=_param(flag))
    return int(value)


def check_float(flag: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, note: str = "") -> float:
    """``value`` as a finite float in [lo, hi] ((lo, hi] with ``lo_open``); NaN and infinities
    are refused too, with a UserError naming ``flag``."""
    if not _is_number(value):
        raise UserError(f"{flag} must be a number, not {value!r}", param=_param(flag))
    v = float(value)
    below = lo is not None and (v <= lo if lo_open else v < lo)
    if not math.isfinite(v) or below or (hi is not None and v > hi):
        domain = _domain(lo, hi, lo_open)
        raise UserError(f"{flag} must be a finite number{'' if domain == 'a number' else ' ' + domain}, "
                        f"not {value}{note}", param=_param(flag))
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
    """The domains of the detection / alignment options (:class:`FaceOptions`);
    ``max_pixels`` / ``max_side`` None are not checked (the defaults)."""
    if faces not in FACE_CHOICES and faces not in FACE_ALIASES:
        raise UserError(f"--faces must be one of {', '.join(FACE_CHOICES)}, not {faces!r}", param="faces")
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


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found: the `score` / `embed` options that shape detection and alignment."""

    faces: str = FACES
    det_size: int = DET_SIZE
    det_threshold: float = DET_THRESHOLD
    min_face: float = MIN_FACE
    pad: float = PAD
    aligned: bool = False
    max_pixels: int = MAX_PIXELS
    max_side: int = MAX_SIDE

    def __post_init__(self) -> None:
        object.__setattr__(self, "faces", FACE_ALIASES.get(self.faces, self.faces))
        # Refused here, before any image is read: out of their domain these options used to
        # give an empty output and exit code 0 (a negative --det-size, a NaN --det-threshold).
        check_face_options(faces=self.faces, det_size=self.det_size, det_threshold=self.det_threshold,
                           min_face=self.min_face, pad=self.pad, max_pixels=self.max_pixels,
                           max_side=self.max_side)


@dataclass(frozen=True)
class RunOptions(FaceOptions):
    """Every option of a scoring / embedding run but its inputs and output: what the command
    line's ``score`` / ``embed`` flags and the API's ``score`` / ``iter_score`` / ``embed`` keywords
    carry into :class:`facequal.api.Job`, one definition for both.

    ``batch_size`` None is the task's and device's default (:func:`default_batch_size`);
    ``jobs`` None or 0 means all cores; ``flip_tta`` None is the model's default. Paths may be
    ``os.PathLike``; they are kept as strings. The detection / alignment fields are
    :class:`FaceOptions`' (checked when the object is made).
    """

    max_pixels: int | None = MAX_PIXELS  # None: the default
    model: str | None = None
    contract: str | None = None
    path_column: str = "path"
    identity_from: str | None = None
    shard: str | None = None
    batch_size: int | None = None
    jobs: int | None = None
    threads: int = THREADS
    device: str = DEVICE
    save_crops: str | None = None
    from_scores: str | None = None
    backend: str = BACKEND
    scheduler: str | None = None
    chunk_size: int = CHUNK_SIZE
    flip_tta: bool | None = None

    def __post_init__(self) -> None:
        import os

        super().__post_init__()
        for name in ("model", "contract", "save_crops", "from_scores"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, os.fspath(value))
        if self.jobs == 0:
            object.__setattr__(self, "jobs", None)

    @classmethod
    def pick(cls, keywords: dict[str, Any]) -> RunOptions:
        """The options among ``keywords`` (a function's ``locals()``, a flag mapping); other
        names (``inputs``, ``output``, ``overwrite``, ...) are ignored."""
        from dataclasses import fields

        return cls(**{f.name: keywords[f.name] for f in fields(cls) if f.name in keywords})

    def face_options(self) -> FaceOptions:
        """The detection / alignment part."""
        from dataclasses import fields

        face = {f.name: getattr(self, f.name) for f in fields(FaceOptions)}
        return FaceOptions(**{**face, "max_pixels": self.max_pixels or MAX_PIXELS})


# Fields that are neither a keyword of the API verbs nor a flag: the reduced-scale JPEG bound.
INTERNAL_FIELDS = frozenset({"max_side"})

if TYPE_CHECKING:
    from os import PathLike


class RunKeywords(TypedDict, total=False):
    """The run options as keywords, for static type checkers and editors: the verbs declare
    ``**options: Unpack[RunKeywords]``, while :func:`run_keywords` gives them the same keywords,
    with their defaults, at run time. Every :class:`RunOptions` field but the internal ones and
    ``flip_tta`` (:class:`EmbedKeywords`);
    ``tests/test_run_options.py`` keeps the two in step."""

    faces: str
    det_size: int
    det_threshold: float
    min_face: float
    pad: float
    aligned: bool
    max_pixels: int | None
    model: str | PathLike[str] | None
    contract: str | PathLike[str] | None
    path_column: str
    identity_from: str | None
    shard: str | None
    batch_size: int | None
    jobs: int | None
    threads: int
    device: str
    save_crops: str | PathLike[str] | None
    from_scores: str | PathLike[str] | None
    backend: str
    scheduler: str | None
    chunk_size: int


class EmbedKeywords(RunKeywords, total=False):
    """:class:`RunKeywords` and the embedding-only ``flip_tta``."""

    flip_tta: bool | None


def default_batch_size(task: str, device: str) -> int:
    """The default faces per model call: :data:`EMBED_BATCH_SIZE` for embeddings;
    :data:`BATCH_SIZE` for the quality model on a CPU, :data:`CUDA_BATCH_SIZE` on a GPU."""
    if task == "embedding":
        return EMBED_BATCH_SIZE
    return CUDA_BATCH_SIZE if device == "cuda" else BATCH_SIZE


def run_keywords(*, leave_out: Collection[str] = (), **defaults: Any) -> Callable[[F], F]:
    """Give a verb written as ``def verb(inputs, ..., *, overwrite=..., **options: Unpack[RunKeywords])`` the explicit
    signature of a plain function: its own positional parameters, then every :class:`RunOptions`
    field as a keyword-only parameter with its default (``defaults`` override some, ``leave_out``
    drops some), then its own keyword-only ones.

    The fields are declared once, here, instead of in each verb: ``help()``, ``inspect.signature``
    and IPython list every keyword with its default and type, and an unknown keyword is a
    ``TypeError`` naming it, as for any function.
    """
    import functools
    import inspect
    from dataclasses import MISSING, fields
    from typing import get_type_hints

    hints = get_type_hints(RunOptions)
    keywords = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                  default=defaults.get(f.name, f.default))
                for f in fields(RunOptions)
                if f.name not in INTERNAL_FIELDS and f.name not in leave_out and f.default is not MISSING]
    unknown = set(defaults) - {p.name for p in keywords}
    if unknown:
        raise TypeError(f"run_keywords: not run options: {sorted(unknown)}")

    def decorate(fn: F) -> F:
        own = [p for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD]
        positional = [p for p in own if p.kind is not p.KEYWORD_ONLY]
        signature = inspect.signature(fn).replace(
            parameters=[*positional, *keywords, *(p for p in own if p.kind is p.KEYWORD_ONLY)])

        @functools.wraps(fn)
        def verb(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as e:  # as Python words it for a plain function: "score() got ..."
                raise TypeError(f"{fn.__name__}() {e}") from None
            bound.apply_defaults()
            return fn(**bound.arguments)

        verb.__signature__ = signature  # type: ignore[attr-defined]
        return verb  # type: ignore[return-value]

    return decorate
