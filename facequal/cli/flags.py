"""The typer declarations of the options that `score` and `embed` share (one declaration each),
and :func:`run_flags`, which gives both commands the shared ones.

Their defaults come from :mod:`facequal.options`, the one place for each default."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from facequal import options
from facequal.models.session import DEVICES
from facequal.models.zoo import DEFAULT_QUALITY_MODEL, bundled_names
from facequal.options import BACKENDS, FACE_ALIASES, FACE_CHOICES

F = TypeVar("F", bound=Callable[..., Any])

Inputs = Annotated[list[Path], typer.Argument(help="Image files, folders (walked recursively) or Parquet manifests.")]
Output = Annotated[str, typer.Option("-o", "--output", help="Output .parquet file, or a folder ending in '/'.")]
FromScores = Annotated[Path, typer.Option(
    "--from-scores", help="Exactly the faces of this scores file (no detection).")]
Contract = Annotated[Path, typer.Option("--contract", help="JSON contract for a model that carries none.")]
# Closed sets as choices, so that --help lists them (and a typo is refused by the parser).
Faces = Annotated[Literal[(*FACE_CHOICES, *FACE_ALIASES)], typer.Option(  # type: ignore[valid-type]
    "--faces", help="'subject' (default: one per image, the photo's subject: a larger bystander at the "
                    "edge is not picked), 'largest' (one per image) or 'all'. 'center' is the former name "
                    "of 'subject'.")]
DetSize = Annotated[int, typer.Option("--det-size", help="Longer side the detector sees (larger are downscaled).")]
DetThreshold = Annotated[float, typer.Option("--det-threshold", help="Detector confidence threshold.")]
MinFace = Annotated[float, typer.Option("--min-face", help="Ignore faces whose box is smaller (pixels).")]
Pad = Annotated[float, typer.Option("--pad", help="Always pad the canvas by this fraction (tight crops).")]
PathColumn = Annotated[str, typer.Option("--path-column", help="Manifest column holding image paths.")]
IdentityFrom = Annotated[str, typer.Option("--identity-from", help="'parent': identity = parent folder.")]
Shard = Annotated[str, typer.Option("--shard", help="I/N: process only shard I of N.")]
BatchSize = Annotated[int, typer.Option(
    "--batch-size", help="Faces per model call. score: 2 on a CPU (small calls keep the activations in "
                         "cache), 16 with --device cuda.")]
Jobs = Annotated[int, typer.Option("--jobs", "-j", help="Worker processes (0 = all cores).")]
Threads = Annotated[int, typer.Option("--threads", help="onnxruntime threads per worker.")]
Device = Annotated[Literal[DEVICES], typer.Option(  # type: ignore[valid-type]
    "--device", help="cpu, or cuda (needs onnxruntime-gpu).")]
Backend = Annotated[Literal[BACKENDS], typer.Option(  # type: ignore[valid-type]
    "--backend", help="local (worker processes here) or dask (a Dask cluster).")]
Model = Annotated[str, typer.Option(
    "--model", help=f"Bundled model name ({', '.join(bundled_names('quality'))}; default "
                    f"{DEFAULT_QUALITY_MODEL}) or path to an ONNX file.")]
Scheduler = Annotated[str, typer.Option("--scheduler", help="Dask scheduler (tcp://HOST:PORT) for --backend dask.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run / add new inputs.")]

# The flags of `score` and `embed` that mean the same in both, in --help order, with their
# defaults; the parameter names are RunOptions' fields (and `overwrite`, `quiet`).
_SHARED_FIRST: tuple[tuple[str, Any, Any], ...] = (
    ("inputs", Inputs, None), ("output", Output, ...), ("from_scores", FromScores, None),
)
_SHARED: tuple[tuple[str, Any, Any], ...] = (
    ("contract", Contract, None), ("faces", Faces, options.FACES), ("det_size", DetSize, options.DET_SIZE),
    ("det_threshold", DetThreshold, options.DET_THRESHOLD), ("min_face", MinFace, options.MIN_FACE),
    ("pad", Pad, options.PAD), ("path_column", PathColumn, "path"), ("identity_from", IdentityFrom, None),
    ("shard", Shard, None), ("batch_size", BatchSize, None), ("jobs", Jobs, 0),
    ("threads", Threads, options.THREADS), ("device", Device, options.DEVICE),
    ("backend", Backend, options.BACKEND), ("scheduler", Scheduler, None),
)
_SHARED_LAST: tuple[tuple[str, Any, Any], ...] = (
    ("overwrite", Overwrite, False), ("resume", Resume, False), ("quiet", Quiet, False),
)


def run_flags(*, after: str, batch_size: int | None) -> Callable[[F], F]:
    """Declare the shared flags on a command written as ``def cmd(..., **flags)``: they are
    inserted into its signature (which typer reads) after its parameter ``after`` (the inputs,
    ``--output`` and ``--from-scores`` first; ``--overwrite``, ``--resume``, ``--quiet`` last), and
    arrive in ``flags``. ``batch_size`` is the command's
    default ``--batch-size`` (None: the device's, :func:`facequal.options.default_batch_size`)."""
    first, shared, last = ([inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                              default=batch_size if name == "batch_size" else default)
                            for name, kind, default in block] for block in (_SHARED_FIRST, _SHARED, _SHARED_LAST))

    def decorate(fn: F) -> F:
        own = [p.replace(kind=p.KEYWORD_ONLY)  # keyword-only: any order of defaults is valid
               for p in inspect.signature(fn, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
        at = [p.name for p in own].index(after) + 1
        fn.__signature__ = inspect.Signature([*first, *own[:at], *shared, *own[at:], *last])  # type: ignore[attr-defined]
        return fn

    return decorate


def _no_bool_placeholder() -> None:
    """Flags (``--overwrite``, ``--help``) take no value: ``--help`` shows no ``<bool>`` after them.

    Only typer versions that have the hook (0.29) print the placeholder; older ones show none.
    """
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_facequal", False):
        return

    def display_type_rich(self, ctx):
        if self.is_flag and self.metavar is None:
            return None
        return shown(self, ctx)

    display_type_rich._facequal = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_bool_placeholder()
