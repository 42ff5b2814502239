"""facequal: face image quality for curating face datasets (LightQNet).

The API mirrors the command line; heavy imports happen on first use, so that
``import facequal`` and ``facequal --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from facequal.api import Job as Job
    from facequal.api import audit, calibrate, embed, evaluate, filter, iter_score, pool, report, score
    from facequal.pipeline.scorer import Embedder, Scorer

    __version__: str

__all__ = ["__version__", "score", "iter_score", "embed", "filter", "report", "pool", "evaluate", "calibrate",
           "audit", "Scorer", "Embedder"]


def _version() -> str:
    """The installed distribution's version; the one place it is written is pyproject.toml.

    A source checkout that was never installed has no distribution metadata: the version is then
    read from the checkout's pyproject.toml.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facequal")
    except PackageNotFoundError:
        import re
        from pathlib import Path

        try:
            text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8")
        except OSError:
            return "0+unknown"
        found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
        return found.group(1) if found else "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":  # on first use: importlib.metadata costs more than the rest of `import facequal`
        globals()["__version__"] = found = _version()
        return found
    if name in ("score", "iter_score", "embed", "filter", "report", "pool", "evaluate", "calibrate", "audit", "Job"):
        from facequal import api

        return getattr(api, name)
    if name in ("Scorer", "Embedder"):
        from facequal.pipeline import scorer

        return getattr(scorer, name)
    raise AttributeError(f"module 'facequal' has no attribute {name!r}")
