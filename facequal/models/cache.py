"""Where facequal keeps files it builds on first use (converted models and the like)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "FACEQUAL_CACHE"


def cache_dir() -> Path:
    """The user cache directory of facequal; it is not created here.

    ``$FACEQUAL_CACHE`` when set and non-empty, else ``$XDG_CACHE_HOME/facequal``, else
    ``~/.cache/facequal``.
    """
    explicit = os.environ.get(ENV_VAR, "")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "facequal"
