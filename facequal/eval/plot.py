"""ERC and EDC curves of every quality source in one figure, as SVG and PNG, without matplotlib.

One layout function draws on a small canvas interface with two back ends: SVG text written by hand
and a Pillow ``ImageDraw`` raster (drawn at twice the size and scaled down for smooth lines), so
both files show the same figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from xml.sax.saxutils import escape

import numpy as np

if TYPE_CHECKING:
    from facequal.eval.evaluate import EvalResult

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
PERFECT = "#555555"
WIDTH, HEIGHT = 1100, 470
PANEL_W = WIDTH // 2
MARGIN = {"left": 64, "right": 18, "top": 58, "bottom": 56}
MAX_POINTS = 4000                # longer step curves are sampled on a fine grid


@dataclass
class Series:
    """One curve: points in data units."""

    label: str
    x: np.ndarray
    y: np.ndarray
    color: str
    dashed: bool = False


@dataclass
class Panel:
    """One chart: title, axis labels, curves, and optional vertical marker at ``mark_x``."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    mark_x: float | None = None
    mark_label: str = ""


class Canvas(Protocol):
    def line(self, pts: Sequence[tuple[float, float]], color: str, width: float = 1.0,
             dash: bool = False) -> None: ...
    def text(self, x: float, y: float, s: str, size: float = 12, anchor: str = "start",
             color: str = "#000000", bold: bool = False) -> None: ...
    def rect(self, x: float, y: float, w: float, h: float, stroke: str, fill: str) -> None: ...


# --------------------------------------------------------------------------------------------
# Back ends


class SvgCanvas:
    """Collects SVG elements; ``text`` y is the baseline."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.parts: list[str] = []

    def line(self, pts: Sequence[tuple[float, float]], color: str, width: float = 1.0,
             dash: bool = False) -> None:
        d = " ".join(f"{x:.2f},{y:.2f}" for x, y in pts)
        extra = ' stroke-dasharray="6,4"' if dash else ""
        self.parts.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="{width}"'
                          f' stroke-linejoin="round"{extra}/>')

    def text(self, x: float, y: float, s: str, size: float = 12, anchor: str = "start",
             color: str = "#000000", bold: bool = False) -> None:
        weight = ' font-weight="bold"' if bold else ""
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"'
                          f' fill="{color}"{weight}>{escape(s)}</text>')

    def rect(self, x: float, y: float, w: float, h: float, stroke: str, fill: str) -> None:
        self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                          f'fill="{fill}" stroke="{stroke}"/>')

    def render(self) -> str:
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
                f'viewBox="0 0 {self.width} {self.height}" font-family="DejaVu Sans, Arial, sans-serif">\n'
                f'<rect width="100%" height="100%" fill="#ffffff"/>\n')
        return head + "\n".join(self.parts) + "\n</svg>\n"


def _font(size: int) -> Any:
    """Pillow's default font at ``size`` pixels (FreeType), or its bitmap font on old Pillow."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:          # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


class PngCanvas:
    """Pillow raster at ``scale`` times the size; ``text`` y is the baseline, like SVG."""

    def __init__(self, width: int, height: int, scale: int = 2) -> None:
        from PIL import Image, ImageDraw

        self.width, self.height, self.s = width, height, scale
        self.image = Image.new("RGB", (width * scale, height * scale), "white")
        self.draw = ImageDraw.Draw(self.image)
        self._fonts: dict[int, object] = {}

    def line(self, pts: Sequence[tuple[float, float]], color: str, width: float = 1.0,
             dash: bool = False) -> None:
        s = self.s
        p = [(x * s, y * s) for x, y in pts]
        w = max(1, round(width * s))
        for seg in (_dashes(p, 6 * s, 4 * s) if dash else [p]):
            if len(seg) >= 2:
                self.draw.line(seg, fill=color, width=w, joint="curve")

    def text(self, x: float, y: float, s: str, size: float = 12, anchor: str = "start",
             color: str = "#000000", bold: bool = False) -> None:
        px = round(size * self.s)
        font = self._fonts.setdefault(px, _font(px))
        left, top, right, bottom = self.draw.textbbox((0, 0), s, font=font)
        w = right - left
        x0 = x * self.s - {"start": 0, "middle": w / 2, "end": w}[anchor]
        # Place the text so its baseline sits near y (approximate: bottom of the ink of capitals).
        y0 = y * self.s - bottom + (bottom - top) * 0.18
        self.draw.text((x0 - left, y0), s, fill=color, font=font,
                       stroke_width=1 if bold else 0, stroke_fill=color)

    def rect(self, x: float, y: float, w: float, h: float, stroke: str, fill: str) -> None:
        s = self.s
        self.draw.rectangle([x * s, y * s, (x + w) * s, (y + h) * s], fill=None if fill == "none" else fill,
                            outline=stroke,
                            width=max(1, s // 2))

    def render(self) -> bytes:
        import io

        from PIL import Image

        out = self.image.resize((self.width, self.height), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        out.save(buf, format="PNG", optimize=True)
        return buf.getvalue()


def _dashes(pts: list[tuple[float, float]], on: float, off: float) -> list[list[tuple[float, float]]]:
    """Split a polyline into dash segments of length ``on`` separated by gaps of ``off``."""
    out: list[list[tuple[float, float]]] = []
    cur: list[tuple[float, float]] = []
    drawing, left = True, on
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:], strict=True):
        seg = math.hypot(x1 - x0, y1 - y0)
        pos = 0.0
        while seg - pos > 1e-9:
            step = min(left, seg - pos)
            t0, t1 = pos / seg, (pos + step) / seg
            a = (x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0)
            b = (x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1)
            if drawing:
                if not cur:
                    cur.append(a)
                cur.append(b)
            pos += step
            left -= step
            if left <= 1e-9:
                if drawing and cur:
                    out.append(cur)
                    cur = []
                drawing = not drawing
                left = on if drawing else off
    if cur:
        out.append(cur)
    return out


# --------------------------------------------------------------------------------------------
# Layout


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1-2-2.5-5 x 10^k tick step giving about ``ticks`` intervals over ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _fmt(v: float, step: float) -> str:
    """A tick label with as many decimals as the step needs."""
    decimals = next((d for d in range(10) if abs(round(step, d) - step) < 1e-9 * step), 10)
    return f"{v:.{decimals}f}"


def draw_panel(c: Canvas, panel: Panel, x0: float, y0: float, w: float, h: float) -> None:
    """Draw one chart in the box (x0, y0, w, h) of the canvas."""
    left, top = x0 + MARGIN["left"], y0 + MARGIN["top"]
    pw, ph = w - MARGIN["left"] - MARGIN["right"], h - MARGIN["top"] - MARGIN["bottom"]
    ymax = max([float(np.nanmax(s.y)) for s in panel.series if s.y.size] + [1e-3])
    ystep = nice_step(ymax * 1.05)
    ytop = ystep * math.ceil(ymax * 1.05 / ystep - 1e-9)

    def px(x: float) -> float:
        return left + min(max(x, 0.0), 1.0) * pw

    def py(y: float) -> float:
        return top + ph - min(max(y / ytop, 0.0), 1.0) * ph

    c.text(x0 + w / 2, y0 + 22, panel.title, size=14, anchor="middle", bold=True)
    c.text(left, top - 10, panel.ylabel, size=12, anchor="start")
    c.text(left + pw / 2, top + ph + 42, panel.xlabel, size=12, anchor="middle")
    c.rect(left, top, pw, ph, stroke="#000000", fill="#ffffff")
    for i in range(6):                                    # x: 0, 0.2, ..., 1
        xv = i / 5
        c.line([(px(xv), top), (px(xv), top + ph)], "#e5e5e5", 1)
        c.line([(px(xv), top + ph), (px(xv), top + ph + 5)], "#000000", 1)
        c.text(px(xv), top + ph + 20, f"{xv:.1f}", size=11, anchor="middle")
    n_y = int(round(ytop / ystep))
    for i in range(n_y + 1):
        yv = i * ystep
        c.line([(left, py(yv)), (left + pw, py(yv))], "#e5e5e5", 1)
        c.line([(left - 5, py(yv)), (left, py(yv))], "#000000", 1)
        c.text(left - 8, py(yv) + 4, _fmt(yv, ystep), size=11, anchor="end")
    c.rect(left, top, pw, ph, stroke="#000000", fill="none")
    if panel.mark_x is not None:
        c.line([(px(panel.mark_x), top), (px(panel.mark_x), top + ph)], "#999999", 1, dash=True)
        c.text(px(panel.mark_x) + 4, top + ph - 6, panel.mark_label, size=10, color="#666666")
    for s in panel.series:
        if s.x.size:
            c.line([(px(float(a)), py(float(b))) for a, b in zip(s.x, s.y, strict=True)], s.color,
                   1.5 if s.dashed else 2, dash=s.dashed)
    # Legend, top right inside the plot.
    labels = [s.label for s in panel.series]
    lw = 36 + 7 * max(len(t) for t in labels) if labels else 0
    lx, ly = left + pw - lw - 8, top + 8
    c.rect(lx, ly, lw, 18 * len(labels) + 8, stroke="#bbbbbb", fill="#ffffff")
    for i, s in enumerate(panel.series):
        yy = ly + 14 + 18 * i
        c.line([(lx + 6, yy - 4), (lx + 28, yy - 4)], s.color, 2, dash=s.dashed)
        c.text(lx + 34, yy, s.label, size=11)


def draw_figure(c: Canvas, panels: Sequence[Panel], width: int = WIDTH, height: int = HEIGHT) -> None:
    """Panels side by side, equal widths."""
    pw = width / max(len(panels), 1)
    for i, p in enumerate(panels):
        draw_panel(c, p, i * pw, 0, pw, height)


def step_points(discard: np.ndarray, fnmr: np.ndarray, end: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of a step curve: each value holds until the next discard fraction (last: ``end``)."""
    d = np.asarray(discard, dtype=np.float64)
    f = np.asarray(fnmr, dtype=np.float64)
    if d.size == 0:
        return d, f
    if d.size > MAX_POINTS:                 # sample the step function on a fine grid
        grid = np.linspace(0, end, MAX_POINTS)
        j = np.searchsorted(d, grid + 1e-12, side="right") - 1
        d, f = grid, f[np.clip(j, 0, None)]
    nxt = np.append(d[1:], end)
    x = np.empty(2 * d.size)
    y = np.empty(2 * d.size)
    x[0::2], x[1::2] = d, nxt
    y[0::2], y[1::2] = f, f
    return x, y


def eval_panels(result: EvalResult, fmr_index: int = 0) -> list[Panel]:
    """The ERC and EDC panels of an evaluation at one of its FMRs."""
    r = result.results[fmr_index]
    rf = np.asarray(result.reject_fractions, dtype=np.float64)
    e0 = r.fnmr0.value
    limit = float(result.settings.get("edc_limit", 0.2))
    erc_series = [Series(s.label, rf, s.erc, PALETTE[i % len(PALETTE)]) for i, s in enumerate(r.sources)]
    erc_series.append(Series("perfect", rf, np.maximum(e0 - rf, 0), PERFECT, dashed=True))
    edc_series = []
    for i, s in enumerate(r.sources):
        x, y = step_points(s.edc.discard, s.edc.fnmr)
        edc_series.append(Series(s.label, x, y, PALETTE[i % len(PALETTE)]))
    d = np.linspace(0, 1, 101)
    edc_series.append(Series("theoretical best", d, np.maximum(e0 - d, 0), PERFECT, dashed=True))
    n = result.accounting
    return [
        Panel(f"ERC (paper), FMR {r.fmr:g}: {n.used:,} pairs", "fraction of all pairs rejected",
              "FNMR", erc_series),
        Panel(f"EDC, FMR {r.fmr:g}: {n.mated:,} mated pairs", "fraction of mated pairs discarded",
              "FNMR", edc_series, mark_x=limit, mark_label=f"pAUC limit {limit:g}"),
    ]


def render_svg(panels: Sequence[Panel]) -> str:
    """The figure as SVG text."""
    c = SvgCanvas(WIDTH, HEIGHT)
    draw_figure(c, panels)
    return c.render()


def render_png(panels: Sequence[Panel]) -> bytes:
    """The figure as PNG bytes."""
    c = PngCanvas(WIDTH, HEIGHT)
    draw_figure(c, panels)
    return c.render()


def plot_paths(prefix: str | Path) -> tuple[Path, Path]:
    """``PREFIX`` (or ``PREFIX.png`` / ``PREFIX.svg``) -> (PREFIX.png, PREFIX.svg)."""
    p = Path(prefix)
    if p.suffix.lower() in (".png", ".svg"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".png"), p.with_name(p.name + ".svg")


def write_plot(result: EvalResult, prefix: str | Path, overwrite: bool = False,
               fmr_index: int = 0) -> tuple[Path, Path]:
    """Write the ERC/EDC figure as PNG and SVG, atomically; returns both paths."""
    from facequal._io import check_output, write_output

    png, svg = plot_paths(prefix)
    for p in (png, svg):
        check_output(p, overwrite)
    panels = eval_panels(result, fmr_index)
    write_output(svg, render_svg(panels), overwrite=overwrite)
    write_output(png, render_png(panels), overwrite=overwrite)
    return png, svg
