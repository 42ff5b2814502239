"""The Linux process table from /proc, for the benchmarks that watch their own process tree."""

from __future__ import annotations

import os


def proc_stats() -> dict[int, list[str]]:
    """pid -> the fields of /proc/PID/stat after the command name (state, ppid, ...)."""
    out: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue
        out[int(entry)] = raw[raw.rindex(")") + 2:].split()
    return out
