"""The model contract: everything needed to turn a photo plus landmarks into a model's input tensor.

A contract is data, not code. It travels inside the ONNX file as the metadata key
``facequal.contract`` (JSON), or in a JSON file given with ``--contract``. One place knows
its fields: this module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METADATA_KEY = "facequal.contract"

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


class ContractError(ValueError):
    """A contract is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Contract:
    """How to feed a model: alignment, crop, colour, normalisation and tensor layout."""

    name: str
    task: str = "quality"
    input_name: str = "input"
    output_name: str = "quality"
    layout: str = "NCHW"
    color: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    landmarks: str = "five"
    template: tuple[tuple[float, float], ...] = ()
    warp_size: tuple[int, int] = (96, 96)
    crop_size: tuple[int, int] = (96, 96)
    resize: str = "none"
    # "sigmoid": the output is already a probability; "logit": apply a sigmoid; "embedding": a vector.
    output: str = "sigmoid"
    # Optional monotone map from the raw output to a calibrated probability:
    # piecewise linear through (x[i], y[i]), clamped at the ends.
    calibration: dict[str, list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # -- checks ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ContractError when a field is out of its closed set or shapes disagree."""
        def bad(msg: str) -> ContractError:
            return ContractError(f"contract {self.name!r}: {msg}")

        if self.task not in TASKS:
            raise bad(f"task must be one of {TASKS}, not {self.task!r}")
        if self.layout not in LAYOUTS:
            raise bad(f"layout must be one of {LAYOUTS}, not {self.layout!r}")
        if self.color not in COLORS:
            raise bad(f"color must be one of {COLORS}, not {self.color!r}")
        if self.landmarks not in LANDMARK_SETS:
            raise bad(f"landmarks must be one of {LANDMARK_SETS}, not {self.landmarks!r}")
        if self.resize not in RESIZE_FILTERS:
            raise bad(f"resize must be one of {RESIZE_FILTERS}, not {self.resize!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise bad("mean and std need three values, std non-zero")
        want = 5 if self.landmarks == "five" else 3
        if len(self.template) != want or any(len(p) != 2 for p in self.template):
            raise bad(f"template needs {want} (x, y) points for landmarks={self.landmarks!r}")
        if self.resize == "none" and tuple(self.warp_size) != tuple(self.crop_size):
            raise bad("warp_size must equal crop_size when resize is 'none'")
        if self.calibration is not None:
            x = self.calibration.get("x", [])
            y = self.calibration.get("y", [])
            if len(x) < 2 or len(x) != len(y) or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
                raise bad("calibration needs two equally long, non-decreasing lists x and y")

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
        raw = np.asarray(raw, dtype=np.float64)
        if self.calibration is None:
            return raw.astype(np.float32)
        return np.interp(raw, self.calibration["x"], self.calibration["y"]).astype(np.float32)

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
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ContractError(f"unknown contract fields: {sorted(unknown)}")
        if "name" not in d:
            raise ContractError("a contract needs a 'name'")
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(float(v) for v in d[key])
        for key in ("warp_size", "crop_size"):
            if key in d:
                d[key] = tuple(int(v) for v in d[key])
        if "template" in d:
            d["template"] = tuple((float(p[0]), float(p[1])) for p in d["template"])
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
