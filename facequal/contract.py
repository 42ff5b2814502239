"""The model contract: everything needed to turn a photo plus landmarks into a model's input tensor.

A contract is data, not code. It travels inside the ONNX file as the metadata key
``facequal.contract`` (JSON), or in a JSON file given with ``--contract``. One place knows
its fields: this module.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

METADATA_KEY = "facequal.contract"
# The other ONNX metadata entries a facequal export carries (training provenance, version).
TRAINING_KEY = "facequal.training"
VERSION_KEY = "facequal.version"

# Which detector landmarks a template refers to. The detector yields five points:
# left eye, right eye, nose tip, left mouth corner, right mouth corner (image left / right).
LANDMARK_SETS = ("five", "eyes_mouth")
LAYOUTS = ("NCHW", "NHWC")
COLORS = ("RGB", "BGR")
# How the warped image (warp_size) is brought to crop_size:
#   "none": warp_size must equal crop_size;
#   "bilinear": Pillow bilinear with antialiasing (area-aware);
#   "bilinear_noaa": plain 2x2 bilinear interpolation, as cv2.resize(INTER_LINEAR) does.
RESIZE_FILTERS = ("none", "bilinear", "bilinear_noaa")
TASKS = ("quality", "embedding")
OUTPUTS = ("sigmoid", "logit", "embedding")
MAX_SIDE = 4096  # pixels: a warp or crop side beyond this is a typo, not a face model
# The contract format's version, written into every contract. A contract of a newer version is
# refused (this facequal would misread it); unknown fields of this one are ignored with a warning,
# so that a contract written by a later facequal with an extra field still loads.
CONTRACT_VERSION = 1

# The closed sets as types (the tuples above are their values, checked by Contract.validate).
Task = Literal["quality", "embedding"]
Layout = Literal["NCHW", "NHWC"]
Color = Literal["RGB", "BGR"]
LandmarkSet = Literal["five", "eyes_mouth"]
Resize = Literal["none", "bilinear", "bilinear_noaa"]
Output = Literal["sigmoid", "logit", "embedding"]


class ContractError(ValueError):
    """A contract is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Contract:
    """How to feed a model: alignment, crop, colour, normalisation and tensor layout."""

    name: str
    task: Task = "quality"
    input_name: str = "input"
    output_name: str = "quality"
    layout: Layout = "NCHW"
    color: Color = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    landmarks: LandmarkSet = "five"
    template: tuple[tuple[float, float], ...] = ()
    warp_size: tuple[int, int] = (96, 96)
    crop_size: tuple[int, int] = (96, 96)
    resize: Resize = "none"
    # "sigmoid": the output is already a probability; "logit": apply a sigmoid; "embedding": a vector.
    output: Output = "sigmoid"
    # Optional monotone map from the raw output to a calibrated probability, applied by
    # :func:`apply_calibration` (see there for the two forms, "probability" and "logit").
    calibration: dict[str, list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    contract_version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        self.validate()

    # -- checks ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ContractError when a field is out of its closed set or shapes disagree."""
        def bad(msg: str) -> ContractError:
            return ContractError(f"contract {self.name!r}: {msg}")

        for key in ("name", "input_name", "output_name"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise bad(f"{key} must be a non-empty string, not {_shown(getattr(self, key))}")
        for key, choices in (("task", TASKS), ("output", OUTPUTS), ("layout", LAYOUTS), ("color", COLORS),
                             ("landmarks", LANDMARK_SETS), ("resize", RESIZE_FILTERS)):
            if getattr(self, key) not in choices:
                raise bad(f"{key} must be one of {choices}, not {getattr(self, key)!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise bad("mean and std need three values, std non-zero")
        if not all(_finite(v) for v in (*self.mean, *self.std)):
            raise bad("mean and std must be finite numbers")
        want = 5 if self.landmarks == "five" else 3
        if len(self.template) != want or any(len(p) != 2 for p in self.template):
            raise bad(f"template needs {want} (x, y) points for landmarks={self.landmarks!r}")
        if not all(_finite(v) for p in self.template for v in p):
            raise bad("template points must be finite numbers")
        for key in ("warp_size", "crop_size"):
            size = tuple(getattr(self, key))
            if len(size) != 2 or not all(_whole(v) and 1 <= v <= MAX_SIDE for v in size):
                raise bad(f"{key} must be two whole numbers of pixels in [1, {MAX_SIDE}], not {_shown(size)}")
        if not _whole(self.contract_version) or not 1 <= self.contract_version <= CONTRACT_VERSION:
            raise bad(f"contract_version must be a whole number in [1, {CONTRACT_VERSION}], "
                      f"not {_shown(self.contract_version)}")
        if not isinstance(self.extra, dict):
            raise bad(f"extra must be an object, not {_shown(self.extra)}")
        if self.resize == "none" and tuple(self.warp_size) != tuple(self.crop_size):
            raise bad("warp_size must equal crop_size when resize is 'none'")
        if self.calibration is not None:
            if not isinstance(self.calibration, dict):
                raise bad(f"calibration must be an object with lists x and y, not {_shown(self.calibration)}")
            x = self.calibration.get("x", [])
            y = self.calibration.get("y", [])
            if not (_numbers(x) and _numbers(y)):
                raise bad("calibration x and y must be lists of finite numbers")
            if len(x) < 2 or len(x) != len(y) or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
                raise bad("calibration needs two equally long, non-decreasing lists x and y")
            if self.calibration.get("space", "probability") not in CALIBRATION_SPACES:
                raise bad(f"calibration space must be one of {CALIBRATION_SPACES}")

    # -- derived values ---------------------------------------------------------------------------
    def template_array(self) -> np.ndarray:
        """The template as a float64 array of shape (K, 2), in warp_size pixels."""
        return np.asarray(self.template, dtype=np.float64)

    def select_landmarks(self, five: np.ndarray) -> np.ndarray:
        """Pick from the detector's five points the ones this template refers to."""
        five = np.asarray(five, dtype=np.float64).reshape(5, 2)
        if self.landmarks == "five":
            return five
        return np.stack([five[0], five[1], (five[3] + five[4]) / 2.0])

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Map raw model outputs to calibrated quality (identity when there is no calibration)."""
        return apply_calibration(raw, self.calibration)

    def postprocess(self, raw_output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A quality model's output for N crops (any shape with N rows; the first value of each
        is used) -> (calibrated quality float64, raw quality float32): the sigmoid for
        ``output="logit"``, then the calibration. Every post-processing step is here."""
        n = len(raw_output)
        out = np.asarray(raw_output).reshape(n, -1)[:, 0].astype(np.float64)
        if self.output == "logit":
            out = 1.0 / (1.0 + np.exp(-out))
        raw = out.astype(np.float32)
        return self.calibrate(raw), raw

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["template"] = [list(p) for p in self.template]
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["warp_size"], d["crop_size"] = list(self.warp_size), list(self.crop_size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Contract:
        """A contract from its JSON object; every field's type and range is checked, and a wrong
        one raises a :class:`ContractError` naming the field (``"template": "abc"`` used to end
        in a ValueError traceback)."""
        if not isinstance(d, dict):
            raise ContractError(f"a contract must be a JSON object, not {_shown(d)}")
        version = d.get("contract_version", 1)
        if not _whole(version) or version < 1:
            raise ContractError(f"contract_version must be a whole number >= 1, not {_shown(version)}")
        if version > CONTRACT_VERSION:
            raise ContractError(f"contract version {version} is newer than this facequal reads "
                                f"({CONTRACT_VERSION}); upgrade facequal")
        if "name" not in d:
            raise ContractError("a contract needs a 'name'")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:  # forward-compatible: a later facequal may add fields
            warnings.warn(f"contract {d['name']!r}: ignoring unknown fields {sorted(unknown)}", stacklevel=2)
        d = {k: v for k, v in d.items() if k in known}
        where = f"contract {d['name']!r}" if isinstance(d["name"], str) else "contract"
        for key in ("mean", "std"):
            if key in d:
                if not (_numbers(d[key]) and len(d[key]) == 3):
                    raise ContractError(f"{where}: {key} must be a list of three finite numbers, "
                                        f"not {_shown(d[key])}")
                d[key] = tuple(float(v) for v in d[key])
        for key in ("warp_size", "crop_size"):
            if key in d:
                v = d[key]
                if not (isinstance(v, list | tuple) and len(v) == 2 and all(_whole(x) for x in v)):
                    raise ContractError(f"{where}: {key} must be two whole numbers [width, height], "
                                        f"not {_shown(v)}")
                d[key] = tuple(int(x) for x in v)
        if "template" in d:
            t = d["template"]
            if not (isinstance(t, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2
                                                         and _numbers(p) for p in t)):
                raise ContractError(f"{where}: template must be a list of [x, y] points (finite numbers), "
                                    f"not {_shown(t)}")
            d["template"] = tuple((float(p[0]), float(p[1])) for p in t)
        for key in ("task", "input_name", "output_name", "layout", "color", "landmarks", "resize", "output"):
            if key in d and not isinstance(d[key], str):
                raise ContractError(f"{where}: {key} must be a string, not {_shown(d[key])}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> Contract:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ContractError(f"contract is not valid JSON: {e}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> Contract:
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ContractError(f"cannot read contract file {path}: {e.strerror}") from None


def _shown(value: Any) -> str:
    """A short repr for messages (a crafted contract may hold a huge value)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _finite(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _numbers(values: Any) -> bool:
    """Whether ``values`` is a list (or tuple) of finite numbers."""
    return isinstance(values, list | tuple) and all(_finite(v) for v in values)


def contract_from_onnx_metadata(metadata: dict[str, str]) -> Contract | None:
    """The contract stored in an ONNX model's custom metadata, or None when it has none."""
    text = metadata.get(METADATA_KEY)
    return None if text is None else Contract.from_json(text)


# The ArcFace 112x112 five-point template: the framing of the reference LightQNet and of ours.
ARCFACE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


def scaled_template(points: tuple[tuple[float, float], ...], factor: float) -> tuple[tuple[float, float], ...]:
    """A template scaled about the origin (templates are in pixels of a square crop)."""
    return tuple((x * factor, y * factor) for x, y in points)


CALIBRATION_SPACES = ("probability", "logit")
_LOGIT_CLIP = 1e-12


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped into (0, 1) so that 0 and 1 stay finite."""
    p = np.clip(np.asarray(p, dtype=np.float64), _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def apply_calibration(raw: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """The one place raw quality becomes calibrated quality (float64).

    ``calibration`` is None (identity) or ``{"x": [...], "y": [...], "space": ...}``:

    * ``"logit"`` (what facequal fits now): x and y are logits, both strictly increasing, the map
      is ``sigmoid(interp(logit(raw), x, y))``. The outermost knots lie far out on straight
      tails, so the map is strictly increasing over every output a model can give: no plateau,
      and hopeless faces go towards 0;
    * ``"probability"`` (the default, for maps written before): piecewise linear through
      (x, y) in probability units, clamped at the ends.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if calibration is None:
        return raw
    x, y = calibration["x"], calibration["y"]
    if calibration.get("space", "probability") == "logit":
        z = np.interp(logit(raw), x, y)
        return 1.0 / (1.0 + np.exp(-z))
    return np.interp(raw, x, y)


def to_tensor(crops: np.ndarray, contract: Contract) -> np.ndarray:
    """Stack of (N, H, W, 3) uint8 RGB crops -> the float32 batch the model expects."""
    crops = np.asarray(crops)
    if contract.color == "BGR":
        crops = crops[..., ::-1]
    if contract.layout == "NCHW":
        crops = crops.transpose(0, 3, 1, 2)
    # The reordering as a uint8 copy (a quarter of the bytes to move in strided order), then one
    # contiguous float conversion, then normalise in place: about 1.5x faster than converting
    # while transposing, with the same values.
    x = np.ascontiguousarray(crops).astype(np.float32)
    shape = (1, 3, 1, 1) if contract.layout == "NCHW" else (1, 1, 1, 3)
    x -= np.asarray(contract.mean, dtype=np.float32).reshape(shape)
    x *= (1.0 / np.asarray(contract.std, dtype=np.float32)).reshape(shape)
    return x
