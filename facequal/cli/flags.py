"""The typer declarations of the options that `score` and `embed` share (one declaration each).

Their defaults come from :mod:`facequal.options`, the one place for each default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Inputs = Annotated[list[Path], typer.Argument(help="Image files, folders (walked recursively) or Parquet manifests.")]
Output = Annotated[str, typer.Option("-o", "--output", help="Output .parquet file, or a folder ending in '/'.")]
Contract = Annotated[Path, typer.Option("--contract", help="JSON contract for a model that carries none.")]
Faces = Annotated[str, typer.Option(
    "--faces", help="'largest' (one per image), 'center' (one per image: the subject of a centred photo, "
                    "as in LFW-style datasets) or 'all'.")]
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
Device = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
Backend = Annotated[str, typer.Option("--backend", help="local (worker processes here) or dask (a Dask cluster).")]
Scheduler = Annotated[str, typer.Option("--scheduler", help="Dask scheduler (tcp://HOST:PORT) for --backend dask.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
