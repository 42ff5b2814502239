"""One quality model from finished ONNX quality models: the weighted mean of their logits.

:mod:`facequal.train.ensemble` builds an ensemble from training run folders (their torch
checkpoints). This does the same from exported models, so that an ensemble of bundled models
can be rebuilt without the runs that made them: each part is a facequal LightQNet export (one
``input``, a sigmoid ``quality`` output), its logit is the input of its final sigmoid, and the
composed graph returns the sigmoid of the parts' logit mean, each part weighted by its number of
members (the length of its training metadata's ``ensemble`` list, else 1), which is the mean of
all members' logits, as :class:`facequal.train.ensemble.PartsMean` computes it. ``--flipped``
parts are scored on each crop and on its left-right mirror in one batch, their two logits
averaged, as :class:`facequal.train.ensemble.FlipMean` does. For instance the default's four
stride-1 networks with the fast choice's four stride-2 ones flipped:

    python -m facequal.train.compose lightqnet-dm025x4 --flipped lightqnet-dm025s2x4 \\
        --out runs/m8/lightqnet-dm025x4+dm025s2x4f.onnx

The result carries no calibration (its raw output is a new quantity): refit one with
:mod:`facequal.train.recalibrate`. Numpy, onnx and onnxruntime only (no torch).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facequal.contract import METADATA_KEY, TRAINING_KEY, VERSION_KEY, Contract
from facequal.models.zoo import sha256_file
from facequal.train.config import THRESHOLD_TOLERANCE

PARITY_TOLERANCE = 1e-5        # composed output against the parts run one by one (probability)
# Contract fields that may differ between parts (everything else is how the crop is made).
_PART_FIELDS = ("name", "calibration")


def _load(model: str | Path) -> tuple[Any, Contract, dict[str, Any], Path]:
    """The ONNX proto of a bundled model name or file, its contract, training metadata and path."""
    import onnx

    from facequal.errors import UserError
    from facequal.models.zoo import resolve_model

    try:
        spec = resolve_model(str(model))
    except UserError as e:   # its advice (--contract) is for scoring; a part must be our own export
        msg, advice, _ = str(e).partition("; pass one with")
        raise ValueError(msg + (" (compose takes facequal's own exports)" if advice else "")) from None
    proto = onnx.load(str(spec.path))
    contract = spec.contract   # resolve_model refuses a model without one
    if contract.task != "quality" or contract.output != "sigmoid":
        raise ValueError(f"{model}: a {contract.task} model with {contract.output} output, "
                         "not a quality model with a sigmoid output")
    return proto, contract, json.loads(spec.metadata.get(TRAINING_KEY, "{}")), Path(spec.path)


def _producers(graph: Any) -> dict[str, Any]:
    """Each tensor name -> the node that writes it."""
    return {out: n for n in graph.node for out in n.output}


def _logit_name(graph: Any, producer: dict[str, Any]) -> str:
    """The tensor that the graph's final sigmoid reads (an unsqueeze may follow the sigmoid)."""
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError("a part needs exactly one input and one output")
    node = producer.get(graph.output[0].name)
    if node is not None and node.op_type == "Unsqueeze":
        node = producer.get(node.input[0])
    if node is None or node.op_type != "Sigmoid":
        raise ValueError("the output is not a sigmoid of a logit (not a facequal LightQNet export)")
    return node.input[0]


def _subgraph(graph: Any, producer: dict[str, Any], logit: str) -> tuple[list[Any], list[Any]]:
    """The nodes (in graph order) and initialisers that ``logit`` depends on."""
    needed, stack = set(), [logit]
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(i for i in node.input if i)
    nodes = [n for n in graph.node if id(n) in needed]
    used = {i for n in nodes for i in n.input}
    return nodes, [t for t in graph.initializer if t.name in used]


def _members(training: dict[str, Any]) -> int:
    return len(training.get("ensemble") or []) or 1


def _part_name(contract: Contract, flipped: bool) -> str:
    return contract.name.removeprefix("facequal-").removeprefix("lightqnet-") + ("f" if flipped else "")


def compose(parts: Sequence[str | Path], out: str | Path, *, flipped: Sequence[str | Path] = (),
            name: str | None = None) -> dict[str, Any]:
    """Write the weighted logit mean of ``parts`` (unflipped) and ``flipped`` (flip-averaged)
    to the new file ``out``; returns what was written (name, parts, weights, parity).

    Every part must make its crop the same way (the contracts agree but for name and
    calibration) and be trained at the same teacher threshold; a part that already
    flip-averages cannot be flipped again."""
    import onnx
    from onnx import TensorProto, helper

    from facequal import __version__, _io

    out = Path(out)
    specs = [(p, False) for p in parts] + [(p, True) for p in flipped]
    if len(specs) < 2 and not flipped:
        raise ValueError("compose two or more models (or flip one with --flipped)")
    if out.exists():
        raise ValueError(f"{out}: exists; the composed model goes to a new file")
    if out.suffix != ".onnx" or not out.parent.is_dir():
        raise ValueError(f"{out}: a .onnx file in an existing folder")
    loaded = [(*_load(p), f) for p, f in specs]
    first = loaded[0][1].to_dict()
    thr0 = loaded[0][2].get("teacher_threshold")
    opset0 = {o.domain: o.version for o in loaded[0][0].opset_import}
    for (p, _), (proto, contract, training, _path, f) in zip(specs, loaded, strict=True):
        d = contract.to_dict()
        diff = sorted(k for k in set(d) | set(first) if k not in _PART_FIELDS and d.get(k) != first.get(k))
        if diff:
            raise ValueError(f"{p}: makes its crop differently from {specs[0][0]} ({', '.join(diff)})")
        thr = training.get("teacher_threshold")
        if thr is None or thr0 is None or abs(float(thr) - float(thr0)) > THRESHOLD_TOLERANCE:
            raise ValueError(f"{p}: trained at teacher threshold {thr}, not {thr0}: another recipe")
        if f and training.get("flip_average"):
            raise ValueError(f"{p}: already averages each crop with its mirror")
        if {o.domain: o.version for o in proto.opset_import} != opset0:
            raise ValueError(f"{p}: another opset than {specs[0][0]}")

    input_name, output_name = first["input_name"], first["output_name"]
    nodes: list[Any] = []
    inits: list[Any] = []
    weights = np.array([_members(t) for _, _, t, _, _ in loaded], dtype=np.float64)
    weights = weights / weights.sum()
    if flipped:
        inits += [helper.make_tensor("flip/starts", TensorProto.INT64, [1], [-1]),
                  helper.make_tensor("flip/ends", TensorProto.INT64, [1], [-(2 ** 62)]),
                  helper.make_tensor("flip/axes", TensorProto.INT64, [1], [3]),
                  helper.make_tensor("flip/steps", TensorProto.INT64, [1], [-1]),
                  helper.make_tensor("flip/pairs", TensorProto.INT64, [2], [2, -1])]
        nodes += [helper.make_node("Slice", [input_name, "flip/starts", "flip/ends", "flip/axes", "flip/steps"],
                                   ["flip/mirror"], name="flip/Slice"),
                  helper.make_node("Concat", [input_name, "flip/mirror"], ["flip/both"], axis=0,
                                   name="flip/Concat")]
    terms = []
    for i, (proto, _c, _t, _p, f) in enumerate(loaded):
        prefix = f"part{i}/"
        g = onnx.compose.add_prefix(proto, prefix).graph
        producer = _producers(g)
        logit = _logit_name(g, producer)
        part_nodes, part_inits = _subgraph(g, producer, logit)
        feed = "flip/both" if f else input_name
        for n in part_nodes:   # the part reads the composed graph's input (or the doubled batch)
            n.input[:] = [feed if x == prefix + proto.graph.input[0].name else x for x in n.input]
        nodes += part_nodes
        inits += part_inits
        if f:
            nodes += [helper.make_node("Reshape", [logit, "flip/pairs"], [prefix + "pairs"], name=prefix + "Reshape"),
                      helper.make_node("ReduceMean", [prefix + "pairs"], [prefix + "flipmean"], axes=[0],
                                       keepdims=0, name=prefix + "FlipMean")]
            logit = prefix + "flipmean"
        inits.append(helper.make_tensor(prefix + "weight", TensorProto.FLOAT, [], [float(weights[i])]))
        nodes.append(helper.make_node("Mul", [logit, prefix + "weight"], [prefix + "weighted"], name=prefix + "Weight"))
        terms.append(prefix + "weighted")
    inits.append(helper.make_tensor("axis1", TensorProto.INT64, [1], [1]))
    nodes += [helper.make_node("Sum", terms, ["logit"], name="LogitMean"),
              helper.make_node("Sigmoid", ["logit"], ["probability"], name="Sigmoid"),
              helper.make_node("Unsqueeze", ["probability", "axis1"], [output_name], name="Unsqueeze")]
    g0 = loaded[0][0].graph
    graph = helper.make_graph(nodes, "composed", [g0.input[0]],
                              [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", 1])], inits)
    model = helper.make_model(graph, opset_imports=list(loaded[0][0].opset_import))
    model.ir_version = loaded[0][0].ir_version

    name = name or "facequal-lightqnet-" + "+".join(_part_name(c, f) for _, c, _, _, f in loaded)
    contract = Contract.from_dict({**first, "name": name, "calibration": None})
    composed = [{"model": str(p), "file": path.name, "sha256": sha256_file(path), "members": _members(t),
                 "weight": float(w), "flip_average": f, "name": c.name}
                for (p, _), (_, c, t, path, f), w in zip(specs, loaded, weights, strict=True)]
    training = {k: v for k, v in loaded[0][2].items() if k not in ("ensemble", "seed", "flip_average", "weights")}
    training.update({"composed": composed, "flip_average": all(f for *_, f in loaded),
                     # every member, as its part lists them (a single network: its contract name)
                     "ensemble": [m for _, c, t, _, _ in loaded for m in (t.get("ensemble") or [{"model": c.name}])],
                     "weights": "logit mean of the members" + (", the flipped parts on each crop and its mirror"
                                                              if flipped else "")})
    helper.set_model_props(model, {METADATA_KEY: contract.to_json(), VERSION_KEY: __version__,
                                   TRAINING_KEY: json.dumps(training, sort_keys=True, default=str)})
    onnx.checker.check_model(model, full_check=True)
    parity = _parity(model.SerializeToString(), [(str(path), f, float(w)) for (_, _, _, path, f), w
                                                  in zip(loaded, weights, strict=True)], input_name)
    _io.atomic_write(out, lambda tmp: onnx.save(model, str(tmp)))
    return {"onnx": str(out), "name": name, "parts": composed, "parity_max_abs": parity}


def _parity(composed: bytes, parts: Sequence[tuple[str, bool, float]], input_name: str,
            n: int = 6, seed: int = 0) -> float:
    """Max |composed - parts run one by one| probability on random inputs; raises when wrong."""
    from facequal.models.session import make_session

    x = np.random.default_rng(seed).uniform(-1, 1, (n, 3, 96, 96)).astype(np.float32)
    got = make_session(composed, threads=1).run(None, {input_name: x})[0][:, 0].astype(np.float64)
    logit = np.zeros(n)
    for path, flip, w in parts:
        sess = make_session(path, threads=1)
        for xx, share in ([(x, 1.0)] if not flip else [(x, 0.5), (x[:, :, :, ::-1].copy(), 0.5)]):
            p = np.clip(sess.run(None, {input_name: xx})[0][:, 0].astype(np.float64), 1e-12, 1 - 1e-12)
            logit += w * share * np.log(p / (1 - p))
    err = float(np.abs(got - 1 / (1 + np.exp(-logit))).max())
    if not err <= PARITY_TOLERANCE:
        raise AssertionError(f"the composed model is {err} off its parts' logit mean")
    return err


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facequal.train.compose", description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help="quality models (bundled names or .onnx files)")
    ap.add_argument("--flipped", nargs="+", default=[], metavar="MODEL",
                    help="more models, each scored on the crop and its mirror")
    ap.add_argument("--out", type=Path, required=True, help="the composed model (a new .onnx file)")
    ap.add_argument("--name", default=None, help="contract name (default: the parts' names joined by +)")
    args = ap.parse_args(argv)
    try:
        result = compose(args.models, args.out, flipped=args.flipped, name=args.name)
    except ValueError as e:
        ap.exit(2, f"error: {e}\n")
    print(json.dumps({k: result[k] for k in ("onnx", "name", "parity_max_abs")}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
