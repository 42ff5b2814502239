"""Export the student to ONNX with its contract and training metadata.

The graph: input ``input`` float32 [N, 3, 96, 96] (NCHW, normalised as the contract says),
output ``quality`` float32 [N, 1] = sigmoid of the logit (the contract says ``output="sigmoid"``,
like the reference models, so ``quality_raw`` is a probability-like number in (0, 1) and the
calibration map's x axis is that number). Batch norm is folded into the convolutions; the batch
dimension is dynamic.

Metadata (``metadata_props``): ``facequal.contract`` (the contract JSON, with its calibration),
``facequal.version``, and ``facequal.training`` (JSON: label parameters m and s, lambda, steps,
data description, ... whatever the trainer passes).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facequal.contract import METADATA_KEY, TRAINING_KEY, VERSION_KEY, Contract
from facequal.train.nets import fold_bn

DEFAULT_OPSET = 17


class _SigmoidHead(nn.Module):
    """Folded student -> sigmoid probability of shape [N, 1]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(x)).unsqueeze(1)


def exportable(model: nn.Module) -> nn.Module:
    """The module that is exported: BN folded, eval mode, float32, contiguous on the CPU."""
    folded = fold_bn(model).to("cpu", memory_format=torch.contiguous_format).float()
    return _SigmoidHead(folded).eval()


def _metadata(contract: Contract, training: Mapping[str, Any] | None) -> dict[str, str]:
    from facequal import __version__

    props = {METADATA_KEY: contract.to_json(), VERSION_KEY: __version__}
    if training:
        props[TRAINING_KEY] = json.dumps(dict(training), sort_keys=True, default=str)
    return props


def export_onnx(model: nn.Module, path: str | Path, contract: Contract,
                training: Mapping[str, Any] | None = None, *, opset: int = DEFAULT_OPSET,
                dynamo: bool | None = None) -> Path:
    """Write ``model`` (a LightQNet returning logits) to ``path`` as ONNX, atomically.

    ``dynamo=None`` uses the TorchScript exporter where this torch still has it (fast, no
    extra dependency) and the dynamo exporter (needs ``onnxscript``) otherwise.
    """
    import onnx

    if opset < 13:
        raise ValueError("opset must be 13 or newer")
    if contract.task != "quality" or contract.layout != "NCHW":
        raise ValueError("the student's contract must be a quality contract with NCHW layout")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = exportable(model)
    w, h = contract.crop_size
    example = torch.zeros(2, 3, h, w)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            if dynamo is None:
                dynamo = False
            if not dynamo:
                try:
                    torch.onnx.export(head, (example,), tmp, input_names=[contract.input_name],
                                      output_names=[contract.output_name],
                                      dynamic_axes={contract.input_name: {0: "N"},
                                                    contract.output_name: {0: "N"}},
                                      opset_version=opset, dynamo=False, do_constant_folding=True)
                except (TypeError, RuntimeError, ImportError):  # no legacy exporter in this torch
                    dynamo = True
            if dynamo:
                program = torch.onnx.export(head, (example,), input_names=[contract.input_name],
                                            output_names=[contract.output_name],
                                            dynamic_shapes=({0: torch.export.Dim("N")},),
                                            opset_version=max(opset, 18), dynamo=True)
                program.save(tmp)
        proto = onnx.load(tmp)
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, _metadata(contract, training))
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(sess.get_modelmeta().custom_metadata_map)


def onnx_parity(model: nn.Module, path: str | Path, n: int = 8, seed: int = 0) -> float:
    """Max |torch - onnxruntime| of the probability on ``n`` random inputs (torch: unfolded, eval mode)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    h, w = int(inp.shape[2]), int(inp.shape[3])
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 3, h, w)).astype(np.float32)
    # the unfolded model in eval mode: the check covers the BN folding too
    ref_model = copy.deepcopy(model).to("cpu").float().eval()
    with torch.no_grad():
        ref = torch.sigmoid(ref_model(torch.from_numpy(x))).unsqueeze(1).numpy()
    got = sess.run(None, {inp.name: x})[0]
    if got.shape != ref.shape:
        raise AssertionError(f"ONNX output shape {got.shape} != torch {ref.shape}")
    return float(np.max(np.abs(got - ref)))


CALIBRATION_KEY = "facequal.calibration"


def recalibrate(path: str | Path, calibration: Mapping[str, Any], out: str | Path,
                provenance: Mapping[str, Any] | None = None) -> Path:
    """Write a copy of the ONNX model at ``path`` to ``out`` with a new calibration map in its
    contract (the graph and weights are copied unchanged); ``provenance`` (what the map was
    fitted on) goes to the ``facequal.calibration`` metadata entry. ``out`` must differ from
    ``path`` and must not exist (the bundled file is replaced by hand, with its registry sha256)."""
    import onnx

    from facequal import _io

    src, dst = Path(path), Path(out)
    if dst.exists() or _io.is_inside(dst, src):
        raise ValueError(f"out: {dst} exists or is the input model")
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    contract = Contract.from_json(props[METADATA_KEY])
    d = contract.to_dict()
    d["calibration"] = dict(calibration)
    contract = Contract.from_dict(d)               # validates the map
    props[METADATA_KEY] = contract.to_json()
    if provenance:
        props[CALIBRATION_KEY] = json.dumps(dict(provenance), sort_keys=True, default=str)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    return _io.atomic_write(dst, lambda tmp: onnx.save(proto, str(tmp)))
