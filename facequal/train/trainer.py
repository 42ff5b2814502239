"""The training loop: student + branch + distillation (Eq. 5) on a precomputed training cache.

``run(config)`` is the whole entry point: it reads the cache (never runs the teacher), chooses
the label parameters from the teacher's cosines unless given, trains with SGD and a step LR
schedule, writes a JSONL log and atomic checkpoints (``--resume`` continues from the last one,
bit-for-bit like an uninterrupted run on the same device), then exports the student to ONNX with
its contract, fitting the calibration map on the validation cache when there is one.

Files in ``out_dir``: ``config.json``, ``label_params.json``, ``log.jsonl``, ``checkpoint.pt``,
``<export_name>`` (the ONNX model), ``calibration.json`` (with the reliability table on the
validation faces) and ``summary.json``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facequal.contract import Contract
from facequal.eval.metrics import ranking_auc as pair_auc  # the validation pairs' ROC AUC
from facequal.train import calibrate as cal
from facequal.train import labels as lab
from facequal.train import losses
from facequal.train.cache import TrainingCache
from facequal.train.config import SELECT_ON, TrainConfig
from facequal.train.degrade import border_bands
from facequal.train.ema import WeightEMA
from facequal.train.framing import student_contract
from facequal.train.nets import BranchNet, LightQNet
from facequal.train.sampler import PKSampler

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # the student at the best validation step, when the run selects on validation
LOG = "log.jsonl"


# -- small helpers ------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Step schedule: ``lr * gamma ** (milestones passed)``, milestones as fractions of ``steps``."""
    passed = sum(step >= round(f * cfg.steps) for f in cfg.lr_milestones)
    return cfg.lr * cfg.lr_gamma ** passed


def run_file(path: Path) -> Any:
    """What a training run wrote at ``path`` (a checkpoint's or best weights' dict, or the log's
    lines), or None when the file is not one: a run's ``.pt`` files hold a dict with ``step`` and
    ``student``, its log one JSON object with a ``step`` per line."""
    try:
        if path.name == LOG:
            lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            return lines if all(isinstance(x, dict) and "step" in x for x in lines) else None
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable, not JSON, not a torch file: not ours
        return None
    return obj if isinstance(obj, dict) and "step" in obj and "student" in obj else None


def claim_run_folder(cfg: TrainConfig, *, remove: bool = False) -> None:
    """Refuse to start over in a folder that holds a run unless asked to (hours of training are
    in its checkpoint). With ``cfg.overwrite`` the run's own files must each show by their content
    that a run wrote them; ``remove`` then deletes them (nothing else in the folder is touched)."""
    from facequal.errors import UserError

    if cfg.resume:
        return
    out = Path(cfg.out_dir)
    ckpt_path = out / CHECKPOINT
    own = [p for p in (ckpt_path, out / BEST, out / LOG) if p.exists()]
    if not own:
        return
    if not cfg.overwrite:
        ckpt = run_file(ckpt_path) if ckpt_path in own else None
        step = f" (checkpoint at step {int(ckpt['step'])} of {cfg.steps})" if ckpt else ""
        raise UserError(f"{out} holds a training run{step}: continue it with --resume, "
                        "or start over with --overwrite")
    foreign = [p for p in own if run_file(p) is None]
    if foreign:
        raise UserError(f"{foreign[0]} was not written by a facequal training run: it is left alone; "
                        "move it or choose another --out")
    if remove:
        for p in own:
            p.unlink()


def _atomic_torch_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True, default=float)
    os.replace(tmp, path)


def training_rows(cache: TrainingCache, variants: list[str] | None) -> np.ndarray:
    """Rows of the cache whose variant kind is in ``variants`` (all rows when None)."""
    if variants is None:
        return np.arange(cache.n)
    names = list(cache.meta["variants"])
    unknown = set(variants) - set(names)
    if unknown:
        raise ValueError(f"variants {sorted(unknown)} are not in the cache (it has {names})")
    ids = [names.index(v) for v in variants]
    return np.flatnonzero(np.isin(np.asarray(cache.variant), ids))


def clean_rows(cache: TrainingCache, rows: np.ndarray | None = None) -> np.ndarray:
    """The rows of clean (variant 0) crops among ``rows``."""
    rows = np.arange(cache.n) if rows is None else rows
    return rows[np.asarray(cache.variant)[rows] == 0]


def label_parameters(cache: TrainingCache, rows: np.ndarray, cfg: TrainConfig) -> dict[str, Any]:
    """m, s (Eq. 1-2), the teacher's FMR threshold and cosine range, from the clean training rows."""
    sel = clean_rows(cache, rows)
    if sel.size == 0:
        sel = rows
    emb = np.asarray(cache.emb[sel])
    ident = np.asarray(cache.identity[sel])
    image = np.asarray(cache.image[sel])
    gen = lab.genuine_cosines(emb, ident, image, seed=cfg.seed)
    n_imp = int(min(1_000_000, max(10_000, sel.size * 50)))
    imp = lab.impostor_cosines(emb, ident, n_pairs=n_imp, seed=cfg.seed)
    params = lab.choose_label_params(gen, imp, cfg.fmr)
    params["threshold"] = params["m"]  # the teacher's threshold at FMR, whatever m is set to
    params["m_auto"], params["s_auto"] = params["m"], params["s"]
    if cfg.m is not None:
        params["m"] = float(cfg.m)
    if cfg.s is not None:
        params["s"] = float(cfg.s)
    params["share_below_half_soft"] = float(np.mean(lab.soft_labels(gen, params["m"], params["s"]) < 0.5))
    params["share_below_half_hard"] = float(np.mean(gen <= params["m"]))
    lo, hi = cfg.reg_range if cfg.reg_range is not None else lab.cosine_range(gen)
    params["reg_lo"], params["reg_hi"] = float(lo), float(hi)
    return params


def quality_teacher_logits(model: str, cache: TrainingCache, rows: np.ndarray, contract: Contract,
                           block: int = 4096) -> np.ndarray:
    """The logits of a finished quality model on the cache's student crops at ``rows`` (NaN
    elsewhere), for ``cfg.quality_teacher``. The model must frame faces as the student does.
    Read a block of crops at a time, so a large cache is never loaded whole."""
    from facequal.models.zoo import OnnxModel, resolve_model

    try:
        spec = resolve_model(model)
    except (OSError, ValueError) as e:   # ModelError is a ValueError: one line, before any training
        raise ValueError(f"quality_teacher {model}: {e}") from None
    theirs = spec.contract
    framing = ("layout", "color", "mean", "std", "landmarks", "template", "warp_size", "crop_size", "resize")
    differs = [k for k in framing if getattr(theirs, k) != getattr(contract, k)]
    if theirs.task != "quality" or theirs.output != "sigmoid" or differs:
        raise ValueError(f"quality_teacher {model}: not a sigmoid quality model with the student's framing "
                         f"(differs in {differs or ['task or output']})")
    session = OnnxModel(spec, threads=0, batch_size=256)
    z = np.full(cache.n, np.nan, np.float32)
    todo = np.sort(np.asarray(rows))
    for i in range(0, len(todo), block):
        r = todo[i:i + block]
        p = np.clip(session.quality(np.asarray(cache.crops_student[r]))[1].astype(np.float64), 1e-6, 1 - 1e-6)
        z[r] = np.log(p) - np.log1p(-p)
    return z


def identity_folds(identity: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """A fold number per row: identities are shuffled (seeded) and dealt into ``n_folds`` folds."""
    identity = np.asarray(identity)
    if n_folds <= 1:
        return np.zeros(identity.size, dtype=np.int64)
    uniq = np.unique(identity)
    perm = np.random.default_rng([seed, 7919]).permutation(uniq.size)
    fold_of = np.empty(uniq.size, dtype=np.int64)
    fold_of[perm] = np.arange(uniq.size) % n_folds
    return fold_of[np.searchsorted(uniq, identity)]


def to_input(crops: np.ndarray, contract: Contract, device: torch.device,
             channels_last: bool) -> torch.Tensor:
    """uint8 [N, H, W, 3] RGB crops -> the normalised float NCHW tensor the student takes."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).to(device)
    if contract.color == "BGR":
        x = x.flip(-1)
    x = x.permute(0, 3, 1, 2).float()  # NHWC memory: already channels_last strides
    mean = torch.tensor(contract.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(contract.std, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@torch.no_grad()
def predict_logits(student: torch.nn.Module, crops: np.ndarray, contract: Contract,
                   device: torch.device | None = None, batch: int = 256,
                   channels_last: bool = True) -> np.ndarray:
    """The student's logits on uint8 crops (eval mode; the module's mode is restored)."""
    device = device or next(student.parameters()).device
    was = student.training
    student.eval()
    out = []
    try:
        for start in range(0, len(crops), batch):
            x = to_input(np.asarray(crops[start:start + batch]), contract, device, channels_last)
            out.append(student(x).float().cpu().numpy())
    finally:
        student.train(was)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def pair_metrics(z: np.ndarray, cache: TrainingCache, rows: np.ndarray,
                 params: Mapping[str, Any]) -> dict[str, float]:
    """Validation numbers of logits ``z`` for the faces ``rows`` of ``cache``.

    ``val_idq``: the paper's soft-label IDQ loss over all same-person pairs of different photos;
    ``val_pair_auc``: how well min(q_i, q_j) separates the pairs the teacher accepts at ``m``.
    """
    emb = np.asarray(cache.emb[rows], dtype=np.float64)
    ident, image = np.asarray(cache.identity[rows]), np.asarray(cache.image[rows])
    a, b = lab.genuine_pairs(ident, image)
    if a.size == 0:
        return {}
    cos = np.einsum("nd,nd->n", emb[a], emb[b])
    zz, tt, hh = np.minimum(z[a], z[b]), lab.soft_labels(cos, params["m"], params["s"]), cos > params["m"]
    bce = np.maximum(zz, 0) - zz * tt + np.log1p(np.exp(-np.abs(zz)))
    return {"val_idq": float(bce.mean()), "val_pair_auc": pair_auc(zz, hh), "val_pairs": int(zz.size)}


def evaluate(student: torch.nn.Module, cache: TrainingCache, params: Mapping[str, Any], contract: Contract,
             device: torch.device, channels_last: bool = True) -> dict[str, float]:
    """The student's validation numbers (:func:`pair_metrics`) on the clean rows of ``cache``."""
    rows = clean_rows(cache)
    if rows.size == 0:
        return {}
    z = predict_logits(student, cache.crops_student[rows], contract, device, channels_last=channels_last)
    return pair_metrics(z, cache, rows, params)


@torch.no_grad()
def evaluate_branch(branch: torch.nn.Module, cache: TrainingCache, params: Mapping[str, Any],
                    device: torch.device) -> dict[str, float]:
    """The branch network's validation numbers on the teacher features of the clean rows of ``cache``."""
    rows = clean_rows(cache)
    if rows.size == 0:
        return {}
    was = branch.training
    branch.eval()
    try:
        z = np.concatenate([
            branch(torch.from_numpy(np.asarray(cache.feat[rows[i:i + 1024]], dtype=np.float32)).to(device))
            .float().cpu().numpy() for i in range(0, rows.size, 1024)])
    finally:
        branch.train(was)
    return pair_metrics(z, cache, rows, params)


# -- the run ------------------------------------------------------------------------------------


class _State:
    """The modules and optimiser of a run."""

    def __init__(self, cfg: TrainConfig, feat_shape: tuple[int, ...], device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.student = LightQNet(cfg.width, cfg.stem_stride, cfg.stem_channels).to(device)
        if cfg.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        if cfg.branch_pool == "avg" or len(feat_shape) == 1:
            in_features = int(feat_shape[0])
        else:
            in_features = int(np.prod(feat_shape))
        n_branches = 0 if cfg.mode == "student" else max(1, cfg.oof_folds)
        self.branches = torch.nn.ModuleList(
            [BranchNet(in_features, cfg.branch_hidden, cfg.branch_pool) for _ in range(n_branches)])
        self.branches.to(device)
        params = list(self.branches.parameters())
        if cfg.mode != "branch":
            params = list(self.student.parameters()) + params
        self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        use_ema = cfg.ema_decay is not None and cfg.mode != "branch"
        self.ema = WeightEMA(self.student, cfg.ema_decay) if use_ema else None

    def state_dict(self) -> dict[str, Any]:
        d = {"student": self.student.state_dict(), "branches": self.branches.state_dict(),
             "optimizer": self.optimizer.state_dict()}
        if self.ema is not None:
            d["ema"] = self.ema.state_dict()
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.student.load_state_dict(d["student"])
        self.branches.load_state_dict(d["branches"])
        self.optimizer.load_state_dict(d["optimizer"])
        if self.ema is not None:
            if "ema" not in d:
                raise ValueError("the checkpoint has no weight average: resume with the run's own ema_decay")
            self.ema.load_state_dict(d["ema"])


def _trim_log(path: Path, before_step: int) -> None:
    """Drop log lines at or after ``before_step`` (written after the checkpoint we resume from)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", -1) < before_step]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def train_step(state: _State, cfg: TrainConfig, params: Mapping[str, Any], x: torch.Tensor, emb: torch.Tensor,
               feat: torch.Tensor, identity: torch.Tensor, image: torch.Tensor,
               fold: torch.Tensor, teacher_z: torch.Tensor | None = None) -> dict[str, float]:
    """One optimisation step of Eq. 5 (or its ablations); returns the loss terms.

    ``teacher_z``: the quality teacher's logits for the batch (``cfg.quality_teacher``), or None."""
    cos = losses.cosine_matrix(emb)
    mask = losses.pair_mask(identity, image, cfg.same_image_pairs)
    if cfg.label == "regression":
        def pair_loss(z: torch.Tensor, msk: torch.Tensor) -> torch.Tensor:
            return losses.regression_loss(z, cos, msk, params["reg_lo"], params["reg_hi"])
        labels = None
    else:
        labels = losses.pair_labels(cos, params["m"], params["s"], cfg.label)

        def pair_loss(z: torch.Tensor, msk: torch.Tensor) -> torch.Tensor:
            return losses.idq_loss(z, labels, msk, cfg.idq_variant)

    out: dict[str, float] = {"pairs": int(mask.sum())}
    total = x.new_zeros(())
    z = None
    if cfg.mode != "branch":
        z = state.student(x)
        l_q = pair_loss(z, mask)
        total = total + l_q
        out["idq_q"] = float(l_q.detach())
    if len(state.branches):
        logits = [b(feat) for b in state.branches]
        if len(logits) == 1:
            l_b = pair_loss(logits[0], mask)
            target = logits[0]
        else:
            l_b = sum(pair_loss(a, mask & (fold != f)[:, None]) for f, a in enumerate(logits)) / len(logits)
            stacked = torch.stack(logits, dim=1)
            target = stacked.gather(1, fold[:, None]).squeeze(1)
        total = total + l_b
        out["idq_b"] = float(l_b.detach())
        if cfg.mode == "distill" and z is not None:
            kl = losses.bernoulli_kl(target, z, cfg.kl_reduction)
            total = total + cfg.lam * kl
            out["kl"] = float(kl.detach())
    if teacher_z is not None and z is not None:
        kl_t = losses.bernoulli_kl(teacher_z, z, cfg.kl_reduction)
        total = total + cfg.quality_teacher_lam * kl_t
        out["kl_teacher"] = float(kl_t.detach())
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()
    state.optimizer.step()
    if state.ema is not None:
        state.ema.update(state.student)
    out["loss"] = float(total.detach())
    if labels is not None:
        out["below_half"] = losses.share_below_half(labels, mask)
    return out


def _as_config(config: TrainConfig | Mapping[str, Any] | str | Path) -> TrainConfig:
    if isinstance(config, (str, Path)):
        return TrainConfig.from_file(config)
    if isinstance(config, Mapping):
        return TrainConfig.from_dict(dict(config))
    return config


class _Run:
    """What one training run holds: the config, the cache rows it trains on, the label
    parameters, the batch sampler, the trainable state and where it writes (``out_dir``).
    Built by :meth:`open` (fresh, or from the last checkpoint with ``resume``)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.out_dir = Path(cfg.out_dir)
        self.device = resolve_device(cfg.device)
        self.cache = TrainingCache.open(cfg.cache)
        self.rows = training_rows(self.cache, cfg.variants)
        self.contract = student_contract(cfg.width, stem_stride=cfg.stem_stride, stem_channels=cfg.stem_channels)
        if tuple(self.cache.crops_student.shape[1:3]) != tuple(self.contract.crop_size[::-1]):
            raise ValueError(f"cache crops are {self.cache.crops_student.shape[1:3]}, "
                             f"the student takes {self.contract.crop_size}")
        self.val_cache = TrainingCache.open(cfg.val_cache) if cfg.val_cache else None
        self.teacher_z = (quality_teacher_logits(cfg.quality_teacher, self.cache, self.rows, self.contract)
                          if cfg.quality_teacher else None)
        self.ckpt_path = self.out_dir / CHECKPOINT
        self.best_path = self.out_dir / BEST
        self.best: dict[str, Any] = {}
        self.start = 0

    @classmethod
    def open(cls, cfg: TrainConfig) -> _Run:
        claim_run_folder(cfg, remove=True)  # before the caches are opened: refuse before any work
        run = cls(cfg)
        run.out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if run.device.type == "cuda":
            torch.backends.cudnn.deterministic = cfg.deterministic
            torch.backends.cudnn.benchmark = not cfg.deterministic
        resume_state = None
        if cfg.resume and run.ckpt_path.is_file():
            resume_state = torch.load(run.ckpt_path, map_location=run.device, weights_only=True)
            run.params = dict(resume_state["label_params"])
        else:
            run.params = label_parameters(run.cache, run.rows, cfg)
        _write_json(run.out_dir / "config.json", cfg.to_dict())
        _write_json(run.out_dir / "label_params.json", run.params)
        run.sampler = run._sampler()
        run.folds = identity_folds(np.asarray(run.cache.identity), cfg.oof_folds, cfg.seed)
        run.state = _State(cfg, tuple(run.cache.feat.shape[1:]), run.device)
        if resume_state is not None:
            run.state.load_state_dict(resume_state)
            run.start = int(resume_state["step"])
            torch.set_rng_state(resume_state["torch_rng"].cpu())
            if run.device.type == "cuda" and resume_state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(resume_state["cuda_rng"].cpu())
        _trim_log(run.out_dir / LOG, run.start)
        if cfg.select_on and resume_state is not None and run.best_path.is_file():
            saved = torch.load(run.best_path, map_location="cpu", weights_only=True)
            run.best = {"step": int(saved["step"]), "value": float(saved["value"])}
        elif run.best_path.is_file() and run_file(run.best_path) is not None:
            run.best_path.unlink()  # a fresh run: a best checkpoint from an earlier run must not be exported
        return run

    def _sampler(self) -> PKSampler:
        cfg, cache, rows = self.cfg, self.cache, self.rows
        sources = list(cache.meta["sources"])
        weights = None
        if cfg.source_weights is not None:
            weights = {sources.index(name): float(w) for name, w in cfg.source_weights.items() if name in sources}
        return PKSampler(np.asarray(cache.identity[rows]), np.asarray(cache.source[rows]),
                         np.asarray(cache.image[rows]), p=cfg.p, k=cfg.k, source_weights=weights,
                         seed=cfg.seed, fill=cfg.fill, singletons=cfg.singletons)

    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        """Step ``step``'s batch as tensors: input crops, teacher embeddings and features,
        identity, image and out-of-fold fold of each row."""
        cfg, cache, device = self.cfg, self.cache, self.device
        r = self.rows[np.sort(self.sampler.batch(step))]
        crops = np.asarray(cache.crops_student[r])
        if cfg.online_bands > 0:
            rng = np.random.default_rng([cfg.seed, step, 1])
            crops = np.stack([border_bands(c, rng, p_side=cfg.online_bands)[0] for c in crops])

        def tensor(a: Any, dtype: Any) -> torch.Tensor:
            return torch.from_numpy(np.asarray(a, dtype=dtype)).to(device)

        return (to_input(crops, self.contract, device, cfg.channels_last), tensor(cache.emb[r], np.float32),
                tensor(cache.feat[r], np.float32), tensor(cache.identity[r], np.int64),
                tensor(cache.image[r], np.int64), tensor(self.folds[r], self.folds.dtype),
                None if self.teacher_z is None else tensor(self.teacher_z[r], np.float32))

    def validate(self) -> dict[str, Any]:
        """The validation numbers of the current weights (and of their average, ``ema_*``)."""
        cfg, state, val = self.cfg, self.state, self.val_cache
        if cfg.mode == "branch":   # the branch alone: its own validation numbers
            return evaluate_branch(state.branches[0], val, self.params, self.device)
        entry = evaluate(state.student, val, self.params, self.contract, self.device, cfg.channels_last)
        if state.ema is not None:
            entry.update({"ema_" + k: v for k, v in evaluate(
                state.ema.module, val, self.params, self.contract, self.device, cfg.channels_last).items()})
        return entry

    def checkpoint(self, next_step: int) -> None:
        _atomic_torch_save({**self.state.state_dict(), "step": next_step, "config": self.cfg.to_json(),
                            "label_params": self.params, "torch_rng": torch.get_rng_state(),
                            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None},
                           self.ckpt_path)

    def consider_best(self, step: int, entry: Mapping[str, Any]) -> None:
        """Keep the student of the best validation step so far (``select_on``), raw or averaged."""
        cfg, state, best = self.cfg, self.state, self.best
        if not cfg.select_on:
            return
        higher = SELECT_ON[cfg.select_on]
        candidates = [("raw", state.student, entry.get(cfg.select_on))]
        if state.ema is not None:
            candidates.append(("ema", state.ema.module, entry.get("ema_" + cfg.select_on)))
        candidates = [c for c in candidates if c[2] is not None and math.isfinite(c[2])]
        if not candidates:
            return
        # the better of raw and averaged weights at this step (raw on a tie), saved once
        weights, module, value = (max if higher else min)(candidates, key=lambda c: c[2])
        if best and not (value > best["value"] if higher else value < best["value"]):
            return
        best.update(step=step, value=float(value))
        _atomic_torch_save({"student": module.state_dict(), "step": step, "value": float(value),
                            "select_on": cfg.select_on, "weights": weights}, self.best_path)

    def train(self) -> int:
        """Steps from the last checkpoint to ``steps`` (or ``max_steps_this_run`` of them),
        logging, validating and checkpointing on the config's schedule; returns the steps done."""
        cfg, state = self.cfg, self.state
        state.student.train()
        state.branches.train()
        stop = cfg.steps if cfg.max_steps_this_run is None else min(cfg.steps, self.start + cfg.max_steps_this_run)
        t0, seen = time.perf_counter(), 0
        with (self.out_dir / LOG).open("a", encoding="utf-8") as log:
            for step in range(self.start, stop):
                lr = lr_at(cfg, step)
                for group in state.optimizer.param_groups:
                    group["lr"] = lr
                batch = self.batch(step)
                terms = train_step(state, cfg, self.params, *batch)
                seen += len(batch[0])
                if not math.isfinite(terms["loss"]):
                    raise FloatingPointError(f"loss is {terms['loss']} at step {step}")
                last = step + 1 == stop
                if step % cfg.log_every == 0 or last:
                    entry = {"step": step, "lr": lr, **terms, "batch": len(batch[0]),
                             "images_per_s": seen / max(time.perf_counter() - t0, 1e-9)}
                    if self.val_cache is not None and cfg.eval_every and (step % cfg.eval_every == 0 or last):
                        entry.update(self.validate())
                        # the weights after this step's update: the ones validate() just scored
                        self.consider_best(step + 1, entry)
                    log.write(json.dumps(entry, default=float) + "\n")
                    log.flush()
                if (step + 1) % cfg.checkpoint_every == 0 or last:
                    self.checkpoint(step + 1)
        return max(self.start, stop)

    def export(self, summary: dict[str, Any]) -> None:
        """Load the selected weights (best validation step, else the average, else the last)
        into the student, then export and calibrate it (:func:`finish`) into ``summary``."""
        cfg, state = self.cfg, self.state
        weights = "raw"
        if cfg.select_on and self.best_path.is_file():
            saved = torch.load(self.best_path, map_location=self.device, weights_only=True)
            state.student.load_state_dict(saved["student"])
            weights = str(saved.get("weights", "raw"))
            summary["selected"] = {"on": cfg.select_on, "step": int(saved["step"]), "value": float(saved["value"]),
                                   "weights": weights}
        elif state.ema is not None:   # no validation choice: the average is what was asked for
            state.student.load_state_dict(state.ema.module.state_dict())
            weights = "ema"
        summary.update(finish(state.student, cfg, self.params, self.val_cache, self.device,
                              selected_step=summary.get("selected", {}).get("step"), weights=weights))


def run(config: TrainConfig | Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Train, checkpoint, export and calibrate as ``config`` says; returns the run's summary."""
    cfg = _as_config(config)
    job = _Run.open(cfg)
    done = job.train()
    summary: dict[str, Any] = {"steps_done": done, "steps": cfg.steps, "device": str(job.device),
                               "label_params": job.params, "out_dir": str(job.out_dir)}
    if done >= cfg.steps and cfg.export and cfg.mode != "branch":
        job.export(summary)
    _write_json(job.out_dir / "summary.json", summary)
    return summary


def finish(student: torch.nn.Module, cfg: TrainConfig, params: Mapping[str, Any],
           val_cache: TrainingCache | None, device: torch.device,
           selected_step: int | None = None, weights: str = "raw",
           training_extra: Mapping[str, Any] | None = None, contract_name: str | None = None) -> dict[str, Any]:
    """Calibrate on the validation cache (when given), export to ONNX and check parity.

    ``weights`` says whether ``student`` holds a step's raw weights or their moving average;
    ``training_extra`` is merged into the training metadata and ``contract_name`` replaces the
    contract's default name (an ensemble says what it is made of).
    """
    from facequal.train.export import export_onnx, onnx_parity

    out_dir = Path(cfg.out_dir)
    contract = student_contract(cfg.width, name=contract_name, stem_stride=cfg.stem_stride,
                                stem_channels=cfg.stem_channels)
    result: dict[str, Any] = {}
    calibration = None
    if val_cache is not None and cfg.calibrate:
        rows = clean_rows(val_cache)
        z = predict_logits(student, val_cache.crops_student[rows], contract, device,
                           channels_last=cfg.channels_last)
        raw = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
        target, valid = cal.acceptance_targets(
            np.asarray(val_cache.emb[rows]), np.asarray(val_cache.identity[rows]), params["threshold"],
            np.asarray(val_cache.image[rows]))
        if valid.sum() >= 2:
            calibration = cal.fit_calibration(raw[valid], target[valid])
            table = cal.reliability_table(cal.apply_calibration(raw[valid], calibration), target[valid])
            _write_json(out_dir / "calibration.json", {
                "calibration": calibration, "reliability_validation": table,
                "ece_validation": cal.expected_calibration_error(table), "n_faces": int(valid.sum()),
                "acceptance_rate": float(target[valid].mean()), "threshold": params["threshold"]})
            result["calibrated_on"] = int(valid.sum())
    training = {
        "method": "LightQNet IDQ (Chen et al. 2021), facequal reimplementation",
        "mode": cfg.mode, "label": cfg.label, "idq_variant": cfg.idq_variant,
        "m": params["m"], "s": params["s"], "teacher_threshold": params["threshold"], "fmr": cfg.fmr,
        "lambda": cfg.lam, "kl_reduction": cfg.kl_reduction, "oof_folds": cfg.oof_folds,
        "steps": cfg.steps if selected_step is None else selected_step,
        "steps_budget": cfg.steps, "selected_on": cfg.select_on,
        "weights": weights if weights == "raw" else f"ema (decay {cfg.ema_decay})",
        "batch": f"{cfg.p}x{cfg.k}", "lr": cfg.lr, "width": cfg.width, "stem_stride": cfg.stem_stride,
        **({"stem_channels": cfg.stem_channels} if cfg.stem_channels else {}),
        "seed": cfg.seed,
        "teacher": "dlib_face_recognition_resnet_model_v1", "data": cfg.data_description,
        **({"quality_teacher": cfg.quality_teacher, "quality_teacher_lam": cfg.quality_teacher_lam}
           if cfg.quality_teacher else {}),
        **(training_extra or {}),
    }
    full = student_contract(cfg.width, calibration=calibration, name=contract_name,
                            stem_stride=cfg.stem_stride, stem_channels=cfg.stem_channels)
    path = export_onnx(copy.deepcopy(student).cpu(), out_dir / cfg.export_name, full, training)
    result["onnx"] = str(path)
    result["parity_max_abs"] = onnx_parity(student.cpu(), path)
    student.to(device)
    return result
