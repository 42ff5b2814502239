"""One model from several finished runs of a recipe: the mean of their students' logits.

Runs of one recipe that differ only in their seed disagree on held-out faces by more than the
differences between recipes (``docs/training/dm025-v9/``). Averaging their logits in one graph
keeps the student's contract (one 96 x 96 input, one sigmoid output), so the pipeline scores an
ensemble like any other quality model. The members are fused into one network of grouped
convolutions (:func:`fuse`): two dm025 members cost about what one dm050 does on the CPU, a
quarter less than running them one after the other. Each member brings
the weights its run exported: the best validation step's when the run selected on validation,
else the moving average, else the last step's. The ensemble is then calibrated and exported as
a run's student is (:func:`facequal.train.trainer.finish`), as ``lightqnet-dm025x2.onnx`` for two
dm025 members:

    python -m facequal.train.ensemble runs/dm025-v9 runs/dm025-v9-seed1 \\
        --val-cache runs/cache3/val --out runs/dm025-v9-ens

``--flip-average`` also scores each crop's left-right mirror in the same batch and averages the
two logits (test-time augmentation: the networks were trained on mirrored crops too). It costs
2.5 x the network time a face (measured for dm025x4); the name gains an ``f``
(``lightqnet-dm025x4f``), and one run is then enough.

``--flipped RUN...`` adds members that alone are flip-averaged, and members may differ in their
network (width, stem): each kind is fused on its own and the graph returns the mean of all the
members' logits, e.g. the default's four stride-1 networks with the fast choice's four stride-2
ones flipped (``lightqnet-dm025x4+dm025s2x4f``).
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facequal.train.cache import TrainingCache
from facequal.train.config import THRESHOLD_TOLERANCE, TrainConfig
from facequal.train.framing import model_name
from facequal.train.nets import INPUT_SIZE, LightQNet, fold_bn
from facequal.train.trainer import BEST, CHECKPOINT, _write_json, finish

SUMMARY = "summary.json"


class LogitMean(nn.Module):
    """The mean of its members' logits ([N] each, like :class:`LightQNet`)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


class FlipMean(nn.Module):
    """The mean of ``model``'s logits on each crop and on its left-right mirror ([N])."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        # one batch of 2N: one pass through the graph, not two
        z = self.model(torch.cat([x, torch.flip(x, dims=[3])]))
        return (z[:n] + z[n:]) / 2


class PartsMean(nn.Module):
    """The mean of the members' logits when the members come in parts (each part a fused network,
    perhaps flip-averaged): each part's logit weighted by its number of members."""

    def __init__(self, parts: Sequence[nn.Module], sizes: Sequence[int]) -> None:
        super().__init__()
        if len(parts) != len(sizes) or not parts:
            raise ValueError("one size per part, at least one part")
        self.parts = nn.ModuleList(parts)
        total = float(sum(sizes))
        self.weights = [k / total for k in sizes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(w * p(x) for w, p in zip(self.weights, self.parts, strict=True))


def _kind(cfg: TrainConfig) -> tuple[float, int, int | None]:
    return (cfg.width, cfg.stem_stride, cfg.stem_channels)


def _describe(cfg: TrainConfig) -> str:
    return (f"width {cfg.width}, stem stride {cfg.stem_stride}, "
            f"{cfg.stem_channels or 'default'} stem filters")


def fuse(members: Sequence[LightQNet]) -> LightQNet:
    """One LightQNet computing the logit mean of ``members`` in a single pass (BN folded).

    The members run side by side as groups of one wider network: the stem's filters are
    stacked (all read the image), every later convolution becomes a grouped one whose groups
    are the members' (so no member sees another's channels), and the head averages the pooled
    features' logits, which is linear, so it is one fully connected layer. The result equals
    :class:`LogitMean` up to float rounding, with half the operators of running them one by one.
    """
    folded = [fold_bn(m) for m in members]
    n, fused = len(folded), copy.deepcopy(folded[0])
    convs = [[mod for mod in f.modules() if isinstance(mod, nn.Conv2d)] for f in folded]
    targets = [mod for mod in fused.modules() if isinstance(mod, nn.Conv2d)]
    for i, (target, parts) in enumerate(zip(targets, zip(*convs, strict=True), strict=True)):
        first = parts[0]
        stem = i == 0  # the only convolution that reads the image, shared by every member
        wide = nn.Conv2d(first.in_channels * (1 if stem else n), first.out_channels * n, first.kernel_size,
                         stride=first.stride, padding=first.padding, groups=first.groups * (1 if stem else n),
                         bias=True)
        with torch.no_grad():
            wide.weight.copy_(torch.cat([p.weight for p in parts]))
            wide.bias.copy_(torch.cat([p.bias for p in parts]))
        _replace(fused, target, wide)
    head = nn.Linear(folded[0].fc.in_features * n, 1)
    with torch.no_grad():
        head.weight.copy_(torch.cat([f.fc.weight for f in folded], dim=1) / n)
        head.bias.copy_(torch.stack([f.fc.bias for f in folded]).mean(0))
    fused.fc = head
    return fused.eval()


def _fusion_error(fused: nn.Module, mean: nn.Module, n: int = 8, seed: int = 0) -> float:
    """Max |fused - mean| logit on random inputs; raises when the fusion is wrong."""
    x = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (n, 3, INPUT_SIZE, INPUT_SIZE))
                         .astype(np.float32))
    with torch.no_grad():
        err = float((fused(x) - mean(x)).abs().max())
    if not err <= 1e-4:
        raise AssertionError(f"the fused ensemble is {err} logits off the members' mean")
    return err


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in root.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return
    raise KeyError("module not found")


def load_member(run_dir: str | Path) -> tuple[LightQNet, TrainConfig, dict[str, Any], str]:
    """The student a finished run exported, its config, label parameters and weights kind.

    Refuses a run that has not finished (its checkpoint is short of ``steps``): an unfinished
    member would be a different recipe from the one its config names.
    """
    run_dir = Path(run_dir)
    try:
        cfg = TrainConfig.from_file(run_dir / "config.json")
        ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(f"{run_dir}: not a training run ({e})") from None
    if int(ckpt["step"]) < cfg.steps:
        raise ValueError(f"{run_dir}: the run stopped at step {int(ckpt['step'])} of {cfg.steps}")
    student = LightQNet(cfg.width, cfg.stem_stride, cfg.stem_channels)
    if cfg.select_on and (run_dir / BEST).is_file():
        state, weights = torch.load(run_dir / BEST, map_location="cpu", weights_only=True), "best"
        student.load_state_dict(state["student"])
    elif "ema" in ckpt:
        student.load_state_dict(ckpt["ema"]["module"])
        weights = "ema"
    else:
        student.load_state_dict(ckpt["student"])
        weights = "raw"
    return student.eval(), cfg, dict(ckpt["label_params"]), weights


def build(run_dirs: Sequence[str | Path], out_dir: str | Path, val_cache: str | Path | None = None,
          export_name: str | None = None, *, flip_average: bool = False,
          flipped: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Export the logit mean of the runs' students to ``out_dir`` (which must not exist yet),
    calibrated on ``val_cache`` when given; returns and writes the summary. ``flip_average``:
    the mean over each crop and its mirror too (then one run is enough). ``flipped``: more runs
    whose students alone are flip-averaged. Members of one network kind are fused together;
    kinds may differ only when ``flipped`` is given."""
    all_dirs = [*run_dirs, *flipped]
    if len(all_dirs) < (1 if flip_average else 2):
        raise ValueError("an ensemble needs two or more runs (or one with flip averaging)")
    if flip_average and flipped:
        raise ValueError("--flip-average flips every member; --flipped names the ones to flip: use one")
    out = Path(out_dir)
    if export_name is not None and (Path(export_name).name != export_name or not export_name.endswith(".onnx")):
        raise ValueError(f"export name {export_name!r}: a file name ending in .onnx, without folders")
    if out.exists():
        raise ValueError(f"{out}: exists; the ensemble goes to a new folder")
    members = [load_member(d) for d in all_dirs]
    flips = [flip_average] * len(run_dirs) + [True] * len(flipped)
    first_cfg, params = members[0][1], members[0][2]
    for d, (_, cfg, p, _) in zip(all_dirs, members, strict=True):
        if not flipped and _kind(cfg) != _kind(first_cfg):
            raise ValueError(f"{d}: {_describe(cfg)}, not {_describe(first_cfg)} like {all_dirs[0]} "
                             "(members of other kinds go after --flipped)")
        # the threshold is estimated from a seeded sample of impostor pairs: seeds move it a little
        if abs(p["threshold"] - params["threshold"]) > THRESHOLD_TOLERANCE:
            raise ValueError(f"{d}: trained at teacher threshold {p['threshold']:.4f}, not "
                             f"{params['threshold']:.4f}: another recipe")
    # parts: members of one network kind and one flip setting, in order of first appearance
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, ((_, cfg, _, _), f) in enumerate(zip(members, flips, strict=True)):
        groups.setdefault((*_kind(cfg), f), []).append(i)
    parts, names, fusion_max_abs = [], [], 0.0
    for (width, stride, stem, f), idx in groups.items():
        nets = [members[i][0] for i in idx]
        part: nn.Module = fuse(nets) if len(nets) > 1 else fold_bn(nets[0]).eval()
        fusion_max_abs = max(fusion_max_abs, _fusion_error(part, LogitMean(nets).eval()))
        parts.append(FlipMean(part).eval() if f else part)
        names.append(model_name(width, stride, len(idx), stem) + ("f" if f else ""))
    model: nn.Module = parts[0] if len(parts) == 1 else PartsMean(parts, [len(i) for i in groups.values()]).eval()
    name = names[0] + "".join("+" + n.removeprefix("facequal-lightqnet-") for n in names[1:])
    cfg = TrainConfig.from_dict({**first_cfg.to_dict(), "out_dir": str(out), "resume": False,
                                 "export_name": export_name or f"{name.removeprefix('facequal-')}.onnx"})
    extra = {"ensemble": [{"run": str(d), "seed": c.seed, "steps": c.steps, "weights": w,
                           "width": c.width, "stem_stride": c.stem_stride, "flip_average": f}
                          for d, (_, c, _, w), f in zip(all_dirs, members, flips, strict=True)],
             "seed": [c.seed for _, c, _, _ in members], "flip_average": all(flips),
             "weights": "logit mean of the members" + (" on each crop and its mirror" if all(flips) else
                                                      ", the flipped ones on each crop and its mirror"
                                                      if any(flips) else "")}
    cache = TrainingCache.open(val_cache) if val_cache is not None else None  # checked before any writing
    out.mkdir(parents=True)
    summary = {"members": extra["ensemble"], "label_params": params, "out_dir": str(out),
               "fusion_max_abs": fusion_max_abs,
               **finish(model, cfg, params, cache, torch.device("cpu"), training_extra=extra,
                        contract_name=name)}
    _write_json(out / SUMMARY, summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facequal.train.ensemble", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path,
                    help="finished training run folders (two or more; one is enough with --flip-average)")
    ap.add_argument("--out", type=Path, required=True, help="new folder for the ensemble")
    ap.add_argument("--val-cache", type=Path, default=None, help="calibrate on this validation cache")
    ap.add_argument("--export-name", default=None, help="ONNX file name (default: lightqnet-dmWWWxN.onnx)")
    ap.add_argument("--flip-average", action="store_true",
                    help="average each crop's logit with its mirror image's (2.5 x the network time a face)")
    ap.add_argument("--flipped", nargs="+", type=Path, default=[], metavar="RUN",
                    help="more runs whose networks alone are flip-averaged (they may be of another kind)")
    args = ap.parse_args(argv)
    try:
        summary = build(args.runs, args.out, args.val_cache, args.export_name, flip_average=args.flip_average,
                        flipped=args.flipped)
    except ValueError as e:
        ap.exit(2, f"error: {e}\n")
    print(json.dumps({k: summary[k] for k in ("onnx", "parity_max_abs")}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
