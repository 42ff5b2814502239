"""Progress of scoring runs on stderr: images/s, faces, errors, ETA.

On a terminal a rich progress bar; without one (a Slurm log, CI, ``2> log``) a plain line every
:data:`PLAIN_INTERVAL` seconds and one at the end, since a bar that redraws itself leaves only
its last state in a file.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import IO, Any

import pyarrow as pa

from facequal import schema

PLAIN_INTERVAL = 10.0  # seconds between two plain progress lines


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunProgress:
    """Counts rows as chunks finish and shows them (unless quiet): a live bar on a terminal,
    plain lines elsewhere. ``stream`` is where plain lines go (default: stderr); ``plain``
    forces (True) or forbids (False) plain lines instead of asking whether stderr is a TTY."""

    def __init__(self, *, quiet: bool = False, label: str = "scoring", stream: IO[str] | None = None,
                 plain: bool | None = None, interval: float | None = None) -> None:
        self.quiet = quiet
        self.label = label
        self.faces = 0
        self.errors = 0
        self.no_face = 0
        self.images = 0
        self._progress: Any = None
        self._task: Any = None
        self._stream = stream
        self._plain = plain
        self._interval = interval
        self._plain_on = False
        self._total = 0
        self._done0 = 0          # inputs already done when the run started (--resume)
        self._last_line = 0.0
        self.t0 = time.perf_counter()

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    def _is_plain(self) -> bool:
        if self._plain is not None:
            return self._plain
        try:
            return not self.stream.isatty()
        except (AttributeError, ValueError):  # no isatty, or closed
            return True

    def start(self, total: int, done: int = 0) -> None:
        self.t0 = time.perf_counter()
        self._total, self._done0 = total, done
        if self.quiet:
            return
        if self._is_plain():
            self._plain_on = True
            self._last_line = self.t0
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
        self.images += n_images
        # a chunk's statuses counted in Python: pyarrow.compute would cost a one-image run 60 ms of import
        counts = Counter(table.column("status").to_pylist())
        self.faces += counts.get(schema.OK, 0)
        self.no_face += counts.get(schema.NO_FACE, 0)
        bad = sum(v for k, v in counts.items() if k not in (schema.OK, schema.NO_FACE))
        self.errors += bad
        if self._progress is not None:
            dt = max(time.perf_counter() - self.t0, 1e-9)
            self._progress.update(self._task, advance=n_images, rate=f"{self.images / dt:.0f}",
                                  faces=self.faces, errors=self.errors)
        elif self._plain_on:
            now = time.perf_counter()
            interval = PLAIN_INTERVAL if self._interval is None else self._interval
            if now - self._last_line >= interval:
                self._last_line = now
                self._print_line(now)

    def plain_line(self, now: float | None = None) -> str:
        """The plain progress line: done/total, percent, rate, faces, errors, elapsed, ETA."""
        now = time.perf_counter() if now is None else now
        dt = max(now - self.t0, 1e-9)
        done = self._done0 + self.images
        total = max(self._total, done)
        rate = self.images / dt
        pct = f" ({done / total:.0%})" if total else ""
        eta = _duration((total - done) / rate) if rate > 0 and done < total else "-"
        return (f"facequal: {self.label} {done:,}/{total:,}{pct}, {rate:.0f} img/s, faces {self.faces:,}, "
                f"errors {self.errors:,}, elapsed {_duration(dt)}, ETA {eta}")

    def _print_line(self, now: float | None = None) -> None:
        try:
            print(self.plain_line(now), file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed or broken log must not stop the run
            self._plain_on = False

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._plain_on:
            self._print_line()  # the final state, whatever the interval
            self._plain_on = False

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
