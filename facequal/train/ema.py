"""An exponential moving average (EMA) of the student's weights, for evaluation and export.

SGD with small P x K batches leaves the weights jittering around a good point; their running
average is often a better model than any single step's weights. The average covers parameters
and the batch-norm running statistics alike, so the averaged copy can be evaluated as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch


class WeightEMA:
    """``ema = d * ema + (1 - d) * weights`` after every optimiser step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so that the
    average is not dominated by the random initial weights early in a run.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current weights (integer buffers are copied)."""
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        current = model.state_dict()
        for name, avg in self.module.state_dict().items():
            value = current[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(value, alpha=1.0 - d)
            else:
                avg.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.module.load_state_dict(d["module"])
        self.updates = int(d["updates"])
