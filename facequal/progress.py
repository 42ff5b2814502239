"""A rich progress bar on stderr for scoring runs: images/s, faces, errors, ETA."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from facequal import schema


class RunProgress:
    """Counts rows as chunks finish and shows them on a live progress bar (unless quiet)."""

    def __init__(self, *, quiet: bool = False, label: str = "scoring") -> None:
        self.quiet = quiet
        self.label = label
        self.faces = 0
        self.errors = 0
        self.no_face = 0
        self.images = 0
        self._progress: Any = None
        self._task: Any = None
        self.t0 = time.perf_counter()

    def start(self, total: int, done: int = 0) -> None:
        self.t0 = time.perf_counter()
        if self.quiet:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} img/s"), TextColumn("faces {task.fields[faces]}"),
            TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total, completed=done, rate="-",
                                             faces=0, errors=0)

    def advance(self, table: pa.Table, n_images: int) -> None:
        status = table.column("status")
        self.images += n_images
        self.faces += pc.sum(pc.equal(status, schema.OK)).as_py() or 0
        self.no_face += pc.sum(pc.equal(status, schema.NO_FACE)).as_py() or 0
        bad = pc.sum(pc.invert(pc.is_in(status, pa.array([schema.OK, schema.NO_FACE])))).as_py() or 0
        self.errors += bad
        if self._progress is not None:
            dt = max(time.perf_counter() - self.t0, 1e-9)
            self._progress.update(self._task, advance=n_images, rate=f"{self.images / dt:.0f}",
                                  faces=self.faces, errors=self.errors)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
