"""The model zoo: load a quality or embedding model by bundled name or by path, with its contract.

A model is an ONNX file plus a :class:`~facequal.contract.Contract`. Bundled models are listed in
``files/registry.json`` with their sha256 and verified before use; any other ONNX file is
loaded from its path, with the contract from its metadata or from ``--contract``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from facequal.contract import Contract, ContractError, contract_from_onnx_metadata, to_tensor
from facequal.errors import ModelError
from facequal.options import BATCH_SIZE

DEFAULT_QUALITY_MODEL = "lightqnet-dm025x4"  # chosen on validation: see MODEL_CARD.md
DEFAULT_EMBEDDING_MODEL = "dlib-resnet-v1"
CONVERT_BLOCK = 16  # crops converted to the model's input at once (a group's faces; see OnnxModel.run)


def _built_model(name: str) -> Path | None:
    """Models that are converted on first use from a registry package (not shipped as ONNX)."""
    if name == DEFAULT_EMBEDDING_MODEL:
        from facequal.models.dlib_resnet import DlibModelNotFoundError, dlib_model_path

        try:
            return dlib_model_path()
        except DlibModelNotFoundError as e:
            raise ModelError(str(e)) from None
    return None


def _files() -> Path:
    return Path(str(resources.files("facequal.models").joinpath("files")))


def registry() -> dict[str, dict[str, Any]]:
    """Bundled models: name -> {"file", "sha256", "task", "description"}."""
    path = _files() / "registry.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def bundled_names(task: str | None = None) -> list[str]:
    """Names of the bundled models (of one task, if given)."""
    return sorted(n for n, e in registry().items() if task is None or e.get("task") == task)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelSpec:
    """Where a model lives and what it is; cheap to pickle into worker processes."""

    name: str
    path: str
    sha256: str
    contract: Contract
    metadata: dict[str, str] = field(default_factory=dict)


def resolve_model(name_or_path: str | Path | None = None, *, contract_file: str | Path | None = None,
                  task: str = "quality") -> ModelSpec:
    """Find a model by bundled name or path, verify it, and attach its contract.

    Raises :class:`ModelError` (one clear line) when the model is missing, fails its checksum,
    or has no contract.
    """
    import onnxruntime as ort

    name_or_path = name_or_path or (DEFAULT_QUALITY_MODEL if task == "quality" else DEFAULT_EMBEDDING_MODEL)
    reg = registry()
    expected_sha: str | None = None
    built = _built_model(str(name_or_path))
    if built is not None:
        path, name = built, str(name_or_path)
    elif str(name_or_path) in reg:
        entry = reg[str(name_or_path)]
        path = _files() / entry["file"]
        name = str(name_or_path)
        expected_sha = entry["sha256"]
        if not path.is_file():
            raise ModelError(f"bundled model {name} is missing its file {path}; reinstall facequal")
    else:
        path = Path(name_or_path)
        name = path.stem
        if not path.is_file():
            known = ", ".join(reg) or "none installed"
            raise ModelError(f"model {name_or_path!s}: no such file and no bundled model of that name "
                             f"(bundled: {known})")
    digest = sha256_file(path)
    if expected_sha is not None and digest != expected_sha:
        raise ModelError(f"model {name} at {path} has sha256 {digest[:16]}..., expected "
                         f"{expected_sha[:16]}...: refusing a modified or corrupt model file")
    try:
        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(f"model {path} cannot be loaded by onnxruntime: {e}") from None
    metadata = dict(meta.custom_metadata_map)
    try:
        contract = Contract.from_file(contract_file) if contract_file else contract_from_onnx_metadata(metadata)
    except ContractError as e:
        raise ModelError(str(e)) from None
    if contract is None:
        raise ModelError(f"model {path} carries no facequal contract in its metadata; "
                         "pass one with --contract FILE.json")
    if contract.task != task:
        raise ModelError(f"model {name} is a {contract.task} model, not a {task} model")
    return ModelSpec(name=name, path=str(path), sha256=digest, contract=contract, metadata=metadata)


class OnnxModel:
    """A loaded model: runs batches of aligned uint8 crops through onnxruntime."""

    def __init__(self, spec: ModelSpec, *, threads: int = 0, device: str = "cpu",
                 batch_size: int = BATCH_SIZE, flip_tta: bool = False) -> None:
        self.spec = spec
        self.flip_tta = flip_tta
        self.contract = spec.contract
        self.threads = threads
        self.device = device
        self.batch_size = max(1, int(batch_size))

    @cached_property
    def session(self):
        from facequal.models.session import make_session

        return make_session(self.spec.path, threads=self.threads, device=self.device)

    def run(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 crops -> the model's output for each, stacked along axis 0."""
        c = self.contract
        outs = []
        # One conversion for a block of crops (one per small batch cost more than converting),
        # whose batches are contiguous slices that onnxruntime takes without a copy; a block
        # bounds the float copy when a crowd photo brings hundreds of faces.
        b = self.batch_size
        block = b * max(1, CONVERT_BLOCK // b)
        for start in range(0, len(crops), block):
            x = to_tensor(crops[start:start + block], c)
            for i in range(0, len(x), b):
                outs.append(self.session.run([c.output_name], {c.input_name: x[i:i + b]})[0])
        if not outs:
            return np.zeros((0,), dtype=np.float32)
        return np.concatenate(outs, axis=0)

    def quality(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quality of each crop: (calibrated float64, raw float32), each of shape (N,)."""
        return self.contract.postprocess(self.run(crops).reshape(len(crops), -1))

    def embed(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of each crop: (L2-normalised (N, D) float32, raw norms (N,)).

        With ``flip_tta`` (flip test-time augmentation) the raw embedding of a crop is the mean
        of the raw embeddings of the crop and of its left-right mirror image; the norm returned
        is that mean's.
        """
        n = len(crops)
        if self.flip_tta:
            both = self.run(np.concatenate([crops, crops[:, :, ::-1]]))
            e = both.reshape(2, n, -1).astype(np.float32).mean(axis=0)
        else:
            e = self.run(crops).reshape(n, -1).astype(np.float32)
        norms = np.linalg.norm(e, axis=1)
        return (e / np.maximum(norms, 1e-12)[:, None]).astype(np.float32), norms.astype(np.float32)
