"""facequal: face image quality for curating face datasets (LightQNet).

The API mirrors the command line; heavy imports happen on first use, so that
``import facequal`` and ``facequal --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "score", "iter_score", "embed"]


def __getattr__(name: str) -> Any:
    if name in ("score", "iter_score", "embed", "Job"):
        from facequal import api

        return getattr(api, name)
    raise AttributeError(f"module 'facequal' has no attribute {name!r}")
