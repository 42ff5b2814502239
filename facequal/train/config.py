"""The training configuration: one dataclass, read from / written to JSON (no torch here)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

LABELS = ("soft", "hard", "regression")
MODES = ("distill", "student", "branch")
# validation numbers a run can select its exported checkpoint on: True when higher is better
SELECT_ON = {"val_pair_auc": True, "val_idq": False}
# Members of one ensemble (or parts of a composed model) may differ this much in teacher threshold
# (cosine): more is another recipe.
THRESHOLD_TOLERANCE = 2e-3


def check_stem_channels(value: Any) -> None:
    """Raise ValueError unless ``value`` is None (the width's stem) or a multiple of 8 from 8 to 64."""
    if value is not None and not (isinstance(value, int) and 8 <= value <= 64 and value % 8 == 0):
        raise ValueError(f"stem_channels must be a multiple of 8 from 8 to 64, not {value!r}")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults follow the paper / issue 4 where they say.

    Steps and LR: SGD, momentum 0.9, weight decay 1e-5; the LR starts at ``lr`` and is multiplied
    by ``lr_gamma`` at each fraction of ``steps`` in ``lr_milestones`` (the paper's 32K / 48K of
    64K steps are 0.5 and 0.75).

    Labels: ``m`` and ``s`` of Eq. 1-2; ``None`` chooses them from the training cache's teacher
    cosines (:func:`facequal.train.labels.choose_label_params`). ``label="regression"`` is the
    cosine-L2 baseline, with the teacher's range ``reg_range`` (None: estimated).

    Losses: ``mode="distill"`` is Eq. 5 (student IDQ + branch IDQ + lambda KL), ``"student"``
    the student alone, ``"branch"`` the branch alone. ``kl_reduction="mean"`` averages the KL over
    the batch (the released trainer, lambda 20); the paper's Eq. 4 sums it (its lambda = ours /
    batch size). ``oof_folds >= 2`` distils from out-of-fold branches: identities are split into
    that many folds, branch f never trains on fold f, and a sample's distillation target comes
    from the branch of its own fold.

    Seed-ensemble distillation: ``quality_teacher`` names a finished quality model (an ONNX file
    with the student's framing, such as a :mod:`facequal.train.ensemble` of earlier runs); its
    outputs on every training crop, computed once when the run opens, are a further Bernoulli-KL
    target for the student, weighted by ``quality_teacher_lam``.

    Averaging: ``ema_decay`` keeps an exponential moving average of the student's weights
    (:mod:`facequal.train.ema`). Validation then scores both the raw and the averaged weights
    (``ema_val_*`` in the log), ``select_on`` picks the better of the two at the best step, and
    without ``select_on`` the averaged weights are exported.
    """

    cache: str
    out_dir: str
    val_cache: str | None = None
    # network
    width: float = 1.0
    stem_stride: int = 1  # 2: the stem halves the resolution (a quarter of the cost; not the paper's)
    stem_channels: int | None = None  # filters of the stem alone; None: the width's (8 at 0.25)
    # batches
    steps: int = 20000
    p: int = 16
    k: int = 8
    source_weights: dict[str, float] | None = None  # by source name; None: equal
    fill: str = "variants"
    same_image_pairs: bool = False
    singletons: int = 0
    variants: list[str] | None = None  # variant kinds to train on; None: all in the cache
    # optimisation
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-5
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    lr_gamma: float = 0.1
    # labels and losses
    label: str = "soft"
    m: float | None = None
    s: float | None = None
    fmr: float = 1e-3
    reg_range: tuple[float, float] | None = None
    idq_variant: str = "paper"
    mode: str = "distill"
    lam: float = 20.0
    kl_reduction: str = "mean"
    branch_hidden: int = 256
    branch_pool: str = "avg"
    oof_folds: int = 0
    # keep an exponential moving average of the student's weights with this decay (None: off);
    # evaluated next to the raw weights, and a candidate for ``select_on`` and export
    ema_decay: float | None = None
    # student-only online augmentation: probability per side of a random border band
    online_bands: float = 0.0
    # a finished quality model (ONNX with the student's framing, e.g. a seed ensemble from
    # facequal.train.ensemble) whose outputs on the training crops are one more distillation
    # target, weighted by quality_teacher_lam (Bernoulli KL, reduced like the branch's)
    quality_teacher: str | None = None
    quality_teacher_lam: float = 0.0
    # housekeeping
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = True
    deterministic: bool = True  # on CUDA: deterministic cuDNN (resume == uninterrupted run)
    log_every: int = 20
    checkpoint_every: int = 500
    eval_every: int = 0
    # export the checkpoint with the best value of this validation number (None: the last step)
    select_on: str | None = None
    resume: bool = False
    # start over in a folder that already holds a run (its checkpoint, best weights and log are replaced)
    overwrite: bool = False
    max_steps_this_run: int | None = None  # stop (after a checkpoint) once this many steps ran
    export: bool = True
    calibrate: bool = True
    export_name: str = "lightqnet.onnx"
    data_description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError on a setting out of its range."""
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, not {self.label!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.idq_variant not in ("paper", "released"):
            raise ValueError(f"idq_variant must be 'paper' or 'released', not {self.idq_variant!r}")
        if self.kl_reduction not in ("mean", "sum"):
            raise ValueError("kl_reduction must be 'mean' or 'sum'")
        if not 0 < self.width <= 2:
            raise ValueError(f"width {self.width} out of range")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, not {self.stem_stride!r}")
        check_stem_channels(self.stem_channels)
        if self.steps < 1 or self.p < 1 or self.k < 1:
            raise ValueError("steps, p and k must be positive")
        if any(not 0 < f < 1 for f in self.lr_milestones):
            raise ValueError("lr_milestones are fractions of the steps, in (0, 1)")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("checkpoint_every and log_every must be positive")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), not {self.ema_decay}")
        if (self.quality_teacher is None) != (self.quality_teacher_lam == 0):
            raise ValueError("quality_teacher and a positive quality_teacher_lam go together")
        if self.quality_teacher_lam < 0:
            raise ValueError("quality_teacher_lam must not be negative")
        if self.quality_teacher is not None and (self.online_bands > 0 or self.mode == "branch"):
            raise ValueError("quality_teacher scores the cached crops: not with online_bands or mode 'branch'")
        if self.select_on is not None:
            if self.select_on not in SELECT_ON:
                raise ValueError(f"select_on must be one of {sorted(SELECT_ON)}, not {self.select_on!r}")
            if not self.val_cache or self.eval_every < 1 or self.eval_every % self.log_every:
                raise ValueError("select_on needs val_cache and an eval_every that is a multiple of log_every")

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        if self.reg_range is not None:
            d["reg_range"] = list(self.reg_range)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        d = dict(d)
        if "lr_milestones" in d:
            d["lr_milestones"] = tuple(float(v) for v in d["lr_milestones"])
        if d.get("reg_range") is not None:
            d["reg_range"] = (float(d["reg_range"][0]), float(d["reg_range"][1]))
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
