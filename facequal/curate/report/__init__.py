"""The HTML contact sheet of `facequal report` (see :mod:`facequal.curate.report.build`)."""

from __future__ import annotations

from facequal.curate.report.build import DEFAULT_MAX_FACES, ReportResult, build_report, sample_even

__all__ = ["DEFAULT_MAX_FACES", "ReportResult", "build_report", "sample_even"]
