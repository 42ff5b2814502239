"""The typer declarations of the options that `score` and `embed` share (one declaration each).

Their defaults come from :mod:`facequal.options`, the one place for each default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from facequal.models.session import DEVICES
from facequal.models.zoo import DEFAULT_QUALITY_MODEL, bundled_names
from facequal.options import BACKENDS, FACE_ALIASES, FACE_CHOICES

Inputs = Annotated[list[Path], typer.Argument(help="Image files, folders (walked recursively) or Parquet manifests.")]
Output = Annotated[str, typer.Option("-o", "--output", help="Output .parquet file, or a folder ending in '/'.")]
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
    "--batch-size", help="Faces per model call (16 suits a CPU; raise it for --device cuda).")]
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


def _no_bool_placeholder() -> None:
    """Flags (``--overwrite``, ``--help``) take no value: ``--help`` shows no ``<bool>`` after them."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_facequal", False):
        return

    def display_type_rich(self, ctx):
        if self.is_flag and self.metavar is None:
            return None
        return shown(self, ctx)

    display_type_rich._facequal = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_bool_placeholder()
