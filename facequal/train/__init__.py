"""Training our own LightQNet (issue 4): torch-only code, behind the ``train`` extra.

Importing this package is cheap: torch is imported by the modules that need it (``nets``,
``losses``, ``export``, ``trainer``); ``config``, ``cache``, ``sampler``, ``degrade``,
``framing``, ``labels``, ``calibrate`` and ``build_cache`` are numpy / Pillow only.

The whole training entry point is :func:`run` (the ``facequal train`` command wraps it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facequal.train.config import TrainConfig

__all__ = ["TrainConfig", "run"]


def run(config: TrainConfig | Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Train, checkpoint, export and calibrate one model; see :func:`facequal.train.trainer.run`."""
    from facequal.train.trainer import run as _run

    return _run(config)
