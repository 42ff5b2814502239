"""Bounded fuzzing of the decode path, and property-based tests (hypothesis) of the alignment
maths and the metric functions.

The decode fuzzing feeds random bytes, and mutants of valid files in every supported format,
to :func:`facequal.pipeline.decode.open_image` (which must return an RGB image or raise DecodeError,
nothing else) and a sample of them on through detection and alignment
(:func:`facequal.pipeline.faces.process_image`, which must never raise).
"""

from __future__ import annotations

import io
import os
import tempfile
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from facequal import schema
from facequal.contract import ARCFACE_112, Contract, scaled_template
from facequal.eval import metrics as M
from facequal.pipeline.align import (
    align_face,
    alignment_matrix,
    apply_transform,
    invert_transform,
    similarity_transform,
    transform_scale,
    warp_affine,
)
from facequal.pipeline.decode import DecodeError, open_image

FUZZ_MAX_PIXELS = 2_000_000          # mutated headers may declare any size: keep each decode small
MAX_SECONDS_PER_FILE = 5.0

# --------------------------------------------------------------------------------------------
# Decode fuzzing


def _seeds() -> dict[str, bytes]:
    """Small valid files in every format facequal decodes, and in the odd modes."""
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8))
    out: dict[str, bytes] = {}

    def save(name: str, im: Image.Image, fmt: str, **kw) -> None:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6
    save("jpeg", rgb, "JPEG", quality=80, exif=exif.tobytes())
    save("jpeg-progressive", rgb, "JPEG", progressive=True)
    save("jpeg-cmyk", rgb.convert("CMYK"), "JPEG")
    save("png", rgb, "PNG")
    save("png-palette", rgb.convert("P"), "PNG", transparency=3)
    save("png-16", Image.fromarray((rng.integers(0, 65535, (20, 20))).astype(np.uint16)), "PNG")
    save("png-la", rgb.convert("LA"), "PNG")
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    save("gif", frames[0], "GIF", save_all=True, append_images=frames[1:])
    save("webp", frames[0], "WEBP", save_all=True, append_images=frames[1:])
    save("webp-lossless", rgb, "WEBP", lossless=True)
    save("tiff", rgb, "TIFF", compression="tiff_deflate")
    save("tiff-float", Image.fromarray(rng.normal(size=(16, 16)).astype(np.float32), "F"), "TIFF")
    save("bmp", rgb, "BMP")
    save("ppm", rgb, "PPM")
    save("tga", rgb, "TGA")
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(0, 6))
    if kind == 0:                                     # flip a few bytes anywhere
        for i in rng.integers(0, len(b), int(rng.integers(1, 20))):
            b[i] = int(rng.integers(0, 256))
    elif kind == 1:                                   # ... or in the header
        for i in rng.integers(0, min(len(b), 64), int(rng.integers(1, 6))):
            b[i] = int(rng.integers(0, 256))
    elif kind == 2:                                   # truncate
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == 3:                                   # insert random bytes
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), np.uint8).tobytes()
    elif kind == 4:                                   # repeat a slice
        i, j = sorted(int(v) for v in rng.integers(0, len(b), 2))
        b[j:j] = b[i:j]
    else:                                             # delete a slice
        i, j = sorted(int(v) for v in rng.integers(0, len(b), 2))
        del b[i:j]
    return bytes(b)


def _check_decode(path: str) -> str:
    """Decode ``path``; returns 'decoded' or the status. Fails on anything but DecodeError."""
    t0 = time.perf_counter()
    try:
        d = open_image(path, max_pixels=FUZZ_MAX_PIXELS)
    except DecodeError as e:
        assert e.status in (schema.UNREADABLE, schema.TOO_LARGE), (e.status, e.message)
        assert e.message and "\n" not in e.message
        e.message.encode("utf-8")
        result = e.status
    else:
        assert d.image.mode == "RGB" and min(d.image.size) >= 1
        assert d.width * d.height <= FUZZ_MAX_PIXELS and d.scale > 0
        np.asarray(d.image)                            # the pixels are really there
        result = "decoded"
    assert time.perf_counter() - t0 < MAX_SECONDS_PER_FILE
    return result


def test_mutants_of_valid_files_decode_or_fail_cleanly(tmp_path):
    rng = np.random.default_rng(20240607)
    seeds = _seeds()
    outcomes: dict[str, int] = {}
    path = str(tmp_path / "mutant")
    for name, data in seeds.items():
        with open(path, "wb") as f:
            f.write(data)
        assert _check_decode(path) == "decoded", name     # the seeds themselves are valid
        for _ in range(30):
            with open(path, "wb") as f:
                f.write(_mutate(data, rng))
            r = _check_decode(path)
            outcomes[r] = outcomes.get(r, 0) + 1
    assert sum(outcomes.values()) == 30 * len(seeds)
    assert outcomes.get("decoded", 0) > 50 and outcomes.get(schema.UNREADABLE, 0) > 50, outcomes


_MAGIC = [b"", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a",
          b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"II*\x00", b"MM\x00*", b"BM", b"P6\n", b"\x00\x00\x00\x0cjP  "]
_tmpdir = tempfile.TemporaryDirectory(prefix="facequal-fuzz-")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(magic=st.sampled_from(_MAGIC), body=st.binary(max_size=2048))
def test_random_bytes_never_escape_decode_error(magic, body):
    path = os.path.join(_tmpdir.name, "random.jpg")
    with open(path, "wb") as f:
        f.write(magic + body)
    _check_decode(path)


def test_mutants_through_detection_and_alignment(tmp_path, astronaut):
    """process_image (decode -> detect -> align) never raises, whatever the bytes."""
    from facequal.options import FaceOptions
    from facequal.pipeline.detect import RetinaFace
    from facequal.pipeline.faces import process_image

    contract = Contract(name="t", template=scaled_template(ARCFACE_112, 96 / 112), warp_size=(96, 96),
                        crop_size=(96, 96))
    det = RetinaFace(det_size=160)
    opts = FaceOptions(det_size=160, max_pixels=FUZZ_MAX_PIXELS)
    face = Image.fromarray(astronaut).crop((150, 40, 290, 200)).resize((70, 80))
    seeds = []
    for fmt in ("JPEG", "PNG", "WEBP", "GIF"):
        buf = io.BytesIO()
        face.save(buf, fmt)
        seeds.append(buf.getvalue())
    rng = np.random.default_rng(7)
    statuses: dict[str, int] = {}
    path = str(tmp_path / "x.img")
    for i in range(60):
        with open(path, "wb") as f:
            f.write(_mutate(seeds[i % len(seeds)], rng) if i >= len(seeds) else seeds[i])
        res = process_image(path, contract, opts, det)
        assert res.rows and len(res.crops) == sum(r["status"] == schema.OK for r in res.rows)
        for r in res.rows:
            assert r["status"] in schema.STATUSES
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        for c in res.crops:
            assert c.shape == (96, 96, 3) and c.dtype == np.uint8
    assert statuses.get(schema.OK, 0) >= 4, statuses      # the seeds themselves show a face


# --------------------------------------------------------------------------------------------
# Alignment maths

coords = st.floats(-2000, 2000, allow_nan=False)


@st.composite
def point_sets(draw, k_min: int = 2, k_max: int = 8, k: int | None = None):
    k = draw(st.integers(k_min, k_max)) if k is None else k
    pts = np.array(draw(st.lists(st.tuples(coords, coords), min_size=k, max_size=k)), dtype=np.float64)
    if ((pts - pts.mean(axis=0)) ** 2).sum() / k <= 1.0:            # (nearly) all one point:
        pts = pts + np.stack([np.arange(k) * 2.0, np.arange(k) * 3.0], axis=1)  # spread, don't reject
    return pts


@st.composite
def similarities(draw):
    angle = draw(st.floats(-np.pi, np.pi))
    scale = draw(st.floats(0.01, 100.0))
    tx, ty = draw(coords), draw(coords)
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of ``a`` after ``b``."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


@settings(max_examples=80, deadline=None)
@given(src=point_sets(), m_true=similarities())
def test_similarity_fit_recovers_any_exact_similarity(src, m_true):
    m = similarity_transform(src, apply_transform(m_true, src))
    spread = np.abs(src).max() + 1
    np.testing.assert_allclose(apply_transform(m, src), apply_transform(m_true, src),
                               atol=1e-6 * spread * max(1.0, transform_scale(m_true)) + 1e-6 * np.abs(m_true).max())
    assert transform_scale(m) == pytest.approx(transform_scale(m_true), rel=1e-6)


@settings(max_examples=80, deadline=None)
@given(k=st.integers(3, 8), data=st.data(), t=similarities())
def test_similarity_fit_is_equivariant(k, data, t):
    src, dst = data.draw(point_sets(k=k)), data.draw(point_sets(k=k))
    m = similarity_transform(src, dst)
    mt = similarity_transform(src, apply_transform(t, dst))
    pred, pred_t = apply_transform(_compose(t, m), src), apply_transform(mt, src)
    tol = 1e-6 * (np.abs(pred).max() + 1)
    np.testing.assert_allclose(pred_t, pred, atol=tol)


@settings(max_examples=80, deadline=None)
@given(src=point_sets(k_min=3, k_max=6), data=st.data())
def test_similarity_fit_is_least_squares(src, data):
    noise = np.array(data.draw(st.lists(st.tuples(st.floats(-20, 20), st.floats(-20, 20)),
                                        min_size=len(src), max_size=len(src))))
    dst = src * 0.7 + 5 + noise
    m = similarity_transform(src, dst)

    def residual(mm: np.ndarray) -> float:
        return float(((apply_transform(mm, src) - dst) ** 2).sum())

    best = residual(m)
    a, b = m[0, 0], m[1, 0]
    for da, db, dx, dy in [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)]:
        for eps in (1e-3, -1e-3):
            p = np.array([[a + eps * da, -(b + eps * db), m[0, 2] + eps * dx],
                          [b + eps * db, a + eps * da, m[1, 2] + eps * dy]])
            assert residual(p) >= best - 1e-6 * (1 + best)


@settings(max_examples=80, deadline=None)
@given(m=similarities(), pts=point_sets())
def test_inverse_transform_round_trips(m, pts):
    back = apply_transform(invert_transform(m), apply_transform(m, pts))
    np.testing.assert_allclose(back, pts, atol=1e-7 * (np.abs(pts).max() + np.abs(m).max() / 0.01 + 1))


CONTRACTS = [
    Contract(name="same", template=scaled_template(ARCFACE_112, 96 / 112), warp_size=(96, 96), crop_size=(96, 96)),
    Contract(name="resized", landmarks="eyes_mouth", template=((54.0, 73.0), (105.0, 73.0), (80.0, 110.0)),
             warp_size=(160, 160), crop_size=(96, 96), resize="bilinear_noaa"),
]


@settings(max_examples=60, deadline=None)
@given(t=similarities(), which=st.sampled_from([0, 1]))
def test_alignment_matrix_maps_the_landmarks_onto_the_template(t, which):
    c = CONTRACTS[which]
    # five landmarks whose selected points are an exact similarity image of the template
    five = apply_transform(t, np.array(ARCFACE_112, dtype=np.float64))
    m = alignment_matrix(five, c)
    target = np.array(c.template_array(), dtype=np.float64)
    if tuple(c.warp_size) != tuple(c.crop_size):
        s = c.crop_size[0] / c.warp_size[0]
        target = (target + 0.5) * s - 0.5
    got = apply_transform(m, c.select_landmarks(five))
    fit = similarity_transform(c.select_landmarks(five), c.template_array())
    resid = np.abs(apply_transform(fit, c.select_landmarks(five)) - c.template_array()).max()
    np.testing.assert_allclose(got, target, atol=resid * 1.0 + 1e-6 * (1 + np.abs(target).max()))


_image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (60, 80, 3), np.uint8))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pts=point_sets(k_min=5, k_max=5), which=st.sampled_from([0, 1]))
def test_align_face_never_fails_for_any_non_degenerate_landmarks(pts, which):
    c = CONTRACTS[which]
    sel = c.select_landmarks(pts)
    assume(((sel - sel.mean(axis=0)) ** 2).sum() / len(sel) > 1.0)
    crop = align_face(_image, pts, c)
    assert crop.shape == (c.crop_size[1], c.crop_size[0], 3) and crop.dtype == np.uint8


@settings(max_examples=40, deadline=None)
@given(m=similarities(), w=st.integers(1, 64), h=st.integers(1, 64))
def test_warp_has_the_requested_size(m, w, h):
    out = warp_affine(_image, m, (w, h))
    assert out.size == (w, h) and out.mode == "RGB"


# --------------------------------------------------------------------------------------------
# Metric functions

unit = st.floats(0, 1, allow_nan=False)


@st.composite
def vector_pairs(draw):
    """Two (n, dim) arrays of finite floats whose rows all have a usable norm."""
    dim, n = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    values = draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2 * n * dim, max_size=2 * n * dim))
    v = np.array(values).reshape(2, n, dim)
    # A row of (near) zeros has no direction: give it one instead of discarding the example,
    # which would make Hypothesis reject most draws (it likes zeros).
    flat = np.linalg.norm(v, axis=2) <= 1e-3
    v[flat, 0] = 1.0
    return v[0], v[1]


@settings(max_examples=60, deadline=None)
@given(vector_pairs(), st.floats(0.01, 100))
def test_cosine_similarity_is_bounded_symmetric_and_scale_free(ab, k):
    a, b = ab
    s = M.cosine_similarity(a, b)
    assert (np.abs(s) <= 1 + 1e-9).all()
    np.testing.assert_allclose(s, M.cosine_similarity(b, a))
    np.testing.assert_allclose(s, M.cosine_similarity(a * k, b), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(unit, min_size=1, max_size=40), st.lists(unit, min_size=1, max_size=200), st.integers(1, 3))
def test_erc_drop_counts_follow_the_authors_percentile_rule(fractions, q, digits):
    r = np.sort(np.array(fractions))
    qs = np.sort(np.round(np.array(q), digits))           # rounding: many ties
    d = M.erc_drop_counts(qs[None, :], r)[0]
    assert (np.diff(d) >= 0).all() and (d >= 0).all() and (d < qs.size).all()
    for ri, di in zip(r, d, strict=True):
        risk = -qs
        kept = risk <= np.percentile(risk, (1 - ri) * 100)  # the authors' released rule, literally
        assert di == qs.size - kept.sum()
        assert di == 0 or qs[di - 1] < qs[di]                # a tie group is never split
    assert M.erc_drop_counts(qs[None, :], [0.0])[0, 0] == 0


@st.composite
def scored_pairs(draw):
    n = draw(st.integers(2, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mated = rng.random(n) < draw(st.floats(0.1, 0.9))
    mated[0], mated[-1] = True, False  # both kinds present (n >= 2), instead of rejecting draws
    scores = np.where(mated, rng.normal(0.6, 0.25, n), rng.normal(0.1, 0.2, n))
    q = np.round(rng.random(n), int(draw(st.integers(1, 3))))       # rounding: ties
    return scores, mated, q


@settings(max_examples=60, deadline=None)
@given(scored_pairs(), st.sampled_from([0.01, 0.1, 0.3]))
def test_erc_and_edc_are_rates_and_start_at_the_plain_fnmr(data, fmr):
    scores, mated, q = data
    t = M.fmr_threshold(scores[~mated], fmr)
    fnmr = float(np.mean(scores[mated] < t))
    curve = M.erc(scores, mated, q, t)
    assert curve.shape == M.REJECT_FRACTIONS.shape and ((curve >= 0) & (curve <= 1)).all()
    assert curve[0] == pytest.approx(fnmr)
    e = M.edc(scores[mated], q[mated], t)
    assert e.discard[0] == 0 and (np.diff(e.discard) > 0).all() and e.discard[-1] < 1
    assert ((e.fnmr >= 0) & (e.fnmr <= 1)).all() and e.fnmr0 == pytest.approx(fnmr)
    for limit in (0.1, 0.5, 1.0):
        assert 0 <= M.edc_pauc(e, limit) <= limit + 1e-12
    np.testing.assert_array_equal(M.edc_step_at(e, e.discard), e.fnmr)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=80))
def test_a_higher_fmr_never_raises_the_threshold(nm):
    nm = np.array(nm)
    ts = [M.fmr_threshold(nm, f) for f in (0.001, 0.01, 0.1, 0.5, 0.9)]
    assert all(a >= b for a, b in zip(ts, ts[1:], strict=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(unit, unit), min_size=1, max_size=50))
def test_pair_quality_is_the_symmetric_minimum(pairs):
    a, b = np.array(pairs).T
    pq_ = M.pair_quality(a, b)
    np.testing.assert_array_equal(pq_, M.pair_quality(b, a))
    assert (pq_ <= a).all() and (pq_ <= b).all() and np.isin(pq_, np.concatenate([a, b])).all()
