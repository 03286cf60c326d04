"""``modelreg report``: one self-contained HTML page from a validation results file.

The page is plain HTML with inline CSS and inline SVG charts: no script, no
font or style sheet fetched from anywhere, so it opens the same from a CI
artifact, an e-mail attachment or a laptop without network.

Charts are generic over checks, not tied to the built-in ones:

- a **latency row** is any check whose figures hold ``p50_ms``, ``p95_ms`` and
  ``p99_ms`` (torch's ``latency``, a runtime's ``FORMAT.dynamic_latency``...), or
  any check named ``latency`` / ``*latency`` that did not run; it is judged
  against its own ``target_ms`` and ``stat`` figures when it has them, else the
  registry entry's target. A block timing (an audio-rate model: figures with
  ``block_size``) is drawn in ms per block, its value label giving the real-time
  factor (``rtf``); one with ``judged: false`` (a runtime timed for comparison
  only) is drawn neutral, neither passed nor failed;
- a **parity row** is any check whose figures hold ``max_error`` and
  ``tolerance`` (``FORMAT.parity``, ``FORMAT.dynamic_parity``...), or any check
  named ``*parity`` that did not run.

A check that did not run, or failed before measuring all its figures, keeps
its row with its reason wrapped inside it. Each chart is sized from its texts
(widths estimated per character, see ``_text_width``), so that no label, figure
or reason is cut at the SVG's edge; tests/test_report_browser.py measures that
in Chromium.

Layer stacks are not in the results file; they are read from the registry
when one is available, and the page says so when it is not.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .atomic import atomic_write_text
from .errors import ModelRegError, Problem, UsageError
from .paths import display_path
from .registry import Registry, load_registry

__all__ = ["PARTIAL_REPORT_FILENAME", "REPORT_FILENAME", "load_results", "registry_for_results", "render_report", "write_report"]

#: Written beside the results file unless told otherwise.
REPORT_FILENAME = "validation_report.html"
#: ``validate NAME ... --report`` writes here instead, so that a run of a few models
#: does not replace the whole registry's report.
PARTIAL_REPORT_FILENAME = "validation_report.partial.html"

_STATUS_ORDER = ("fail", "error", "skip", "pass")


# ---------------------------------------------------------------- reading


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and schema-check a ``validation_results.json``; every problem is a :class:`UsageError`."""
    shown = display_path(Path(path))
    target = Path(path)
    if target.is_dir():
        raise UsageError.at("expected a validation results file, found a directory", file=shown)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError.at("validation results not found (`modelreg validate` writes them after a full run)",
                            file=shown) from None
    except UnicodeDecodeError:
        raise UsageError.at("not a validation results file", file=shown, expected="UTF-8 JSON",
                            found="bytes that are not UTF-8 text") from None
    except OSError as exc:
        raise UsageError.at(f"cannot read the file: {exc.strerror or exc}", file=shown) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (it looks like a registry: pass it as --registry)" if target.suffix.lower() == ".toml" else ""
        raise UsageError.at(f"not valid JSON: {exc.msg}{hint}", file=shown, line=exc.lineno, column=exc.colno) from None
    if not isinstance(document, dict) or "models" not in document:
        if not isinstance(document, dict):
            what = f"<a JSON {type(document).__name__.replace('dict', 'object').replace('list', 'array')}>"
        else:
            what = f"<an object with keys {', '.join(sorted(document)[:6])}>" if document else "<an empty object>"
        raise UsageError.at("not a validation results file", file=shown,
                            expected="the JSON object `modelreg validate` writes (with \"models\")", found=what)
    from .schemas import schema_problems

    problems = schema_problems(document, "validation_results", file=shown)
    if problems:
        raise UsageError(*problems)
    return document


def registry_for_results(document: Mapping[str, Any]) -> tuple[Registry | None, str | None]:
    """The registry a results file names, when it can still be read, else a note saying why not.

    Used when the caller gave a results file but no registry: layer stacks are
    then shown from the registry that made the results, if it is still there.
    """
    recorded = document.get("registry")
    if not isinstance(recorded, str) or not recorded:
        return None, "the results file names no registry"
    path = Path(recorded)
    if not path.is_file():
        return None, f"the registry the results name ({recorded}) is not there; pass --registry to show layers"
    try:
        return load_registry(path, strict=False), None
    except ModelRegError as exc:
        return None, f"the registry {recorded} could not be read ({exc.problems[0].reason}); layers not shown"


# ---------------------------------------------------------------- formatting


def _e(value: object) -> str:
    """Escape any text for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def _num(value: Any) -> float | None:
    """A finite number from a figure, else None (figures may hold "nan" strings, None, lists)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _tick_ms(value: float) -> str:
    return f"{value:g} ms"


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    if value >= 1:
        return f"{value:.2f} ms"
    return f"{value:.3g} ms"


def _err(value: float) -> str:
    return "0" if value == 0 else f"{value:.2g}"


#: What runs each built-in format's file, where the format's name alone would not say it: the
#: reference runtime, the C++ dynamic loader and the compiled header must never read alike.
_RUNTIMES = {"rtneural": "numpy reference", "rtneural.dynamic": "C++ parseJson", "rtneural-cpp": "C++ ModelT header",
             "rtneural-torch": "C++ torch_helpers header", "onnx": "onnxruntime"}


def runtime_label(check: str, kind: str) -> str:
    """The runtime a latency or parity check measures, for a chart row.

    ``latency`` is torch's; ``rtneural.parity`` is ``rtneural (numpy reference)``;
    ``rtneural.dynamic_latency`` is ``rtneural (C++ parseJson)``; ``rtneural-cpp.parity``
    is ``rtneural-cpp (C++ ModelT header)``; any other ``FORMAT.X_KIND`` is
    ``FORMAT (X)``, and ``FORMAT.KIND`` is ``FORMAT``.
    """
    if check == kind:
        return "torch"
    head, _, tail = check.rpartition(".")
    if not head:
        head, tail = check, ""
    qualifier = tail[: -len(kind)].rstrip("_") if tail.endswith(kind) else tail
    known = _RUNTIMES.get(f"{head}.{qualifier}" if qualifier else head)
    qualifier = known or {"cpp": "C++"}.get(qualifier, qualifier)
    return f"{head} ({qualifier})" if qualifier else head


# ---------------------------------------------------------------- chart geometry


@attrs.frozen
class _LogAxis:
    """A log10 axis from ``lo`` to ``hi`` drawn between pixels ``x0`` and ``x1``."""

    lo: float
    hi: float
    x0: float
    x1: float

    def x(self, value: float) -> float:
        value = min(max(value, self.lo), self.hi)
        span = math.log10(self.hi) - math.log10(self.lo)
        return self.x0 + (math.log10(value) - math.log10(self.lo)) / span * (self.x1 - self.x0)

    def ticks(self) -> list[float]:
        out = []
        for exponent in range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1):
            for mantissa in (1, 2, 5):
                value = mantissa * 10.0**exponent
                if self.lo * 0.999 <= value <= self.hi * 1.001:
                    out.append(value)
        return out


def _nice(value: float, up: bool) -> float:
    """The nearest 1-2-5 step at or above (``up``) or at or below ``value``."""
    exponent = math.floor(math.log10(value))
    steps = [m * 10.0**e for e in (exponent - 1, exponent, exponent + 1) for m in (1, 2, 5)]
    if up:
        return min(s for s in steps if s >= value * 0.9999)
    return max(s for s in steps if s <= value * 1.0001)


def _log_axis(values: Iterable[float], x0: float, x1: float) -> _LogAxis:
    positives = [v for v in values if v > 0 and math.isfinite(v)]
    if not positives:
        return _LogAxis(1e-3, 1.0, x0, x1)
    lo = _nice(min(positives) / 1.3, up=False)
    hi = _nice(max(positives) * 1.15, up=True)
    if hi / lo < 10:  # at least a decade, so that the scale reads as logarithmic
        lo = hi / 10
    return _LogAxis(lo, hi, x0, x1)


def _axis_svg(axis: _LogAxis, top: float, bottom: float, fmt: Any) -> list[str]:
    labelled = _labelled_ticks(axis)
    parts = []
    for tick in axis.ticks():
        x = axis.x(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}"/>')
        if tick in labelled:
            parts.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 14:.1f}" text-anchor="middle">{_e(fmt(tick))}</text>')
    parts.append(f'<line class="axis" x1="{axis.x0:.1f}" y1="{bottom:.1f}" x2="{axis.x1:.1f}" y2="{bottom:.1f}"/>')
    return parts


def _labelled_ticks(axis: _LogAxis) -> list[float]:
    ticks = axis.ticks()
    return ticks if len(ticks) <= 7 else [t for t in ticks if f"{t:.0e}".startswith("1")]


# ---------------------------------------------------------------- text widths
#
# Charts are sized from their texts, so that a long figure or reason is not cut by the SVG's
# edge. The page embeds no font (it is self-contained), so the browser picks one from the
# stack: widths are estimated per character at or above DejaVu Sans's, the widest common
# sans-serif and Linux's usual fallback; Arial, Helvetica, Segoe UI, Roboto and SF are narrower.

_FONT, _SMALL = 11.5, 10.5  # px: chart text, ticks and target labels (as in _CSS)
_EM_NARROW = frozenset("ijlI.,:;'|!`")  # at most 0.40 em
_EM_SLIM = frozenset("ftr()[]/\\- \"*_")  # at most 0.50 em
_EM_WIDE = frozenset("mwMW@%\u2026")  # up to 1 em
_EM_PLAIN = frozenset("abcdeghknopqsuvxyz0123456789$?{}^#")  # at most 0.64 em


def _text_width(text: str, size: float = _FONT, *, bold: bool = False) -> float:
    """An upper estimate of ``text``'s width in pixels at font size ``size`` (px)."""
    em = 0.0
    for char in text:
        if char in _EM_NARROW:
            em += 0.40
        elif char in _EM_SLIM:
            em += 0.50
        elif char in _EM_PLAIN:
            em += 0.64
        elif char in _EM_WIDE:
            em += 1.0
        elif "A" <= char <= "Z":
            em += 0.80
        else:  # symbols (\u2264, >, +, =), accents, other scripts
            em += 1.0
    return em * size * (1.15 if bold else 1.0)


def _fitting(text: str, width: float, size: float) -> int:
    """How many leading characters of ``text`` fit in ``width`` (at least one)."""
    count = 1
    while count < len(text) and _text_width(text[: count + 1], size) <= width:
        count += 1
    return count


def _wrap(text: str, width: float, size: float = _FONT, max_lines: int = 4) -> tuple[list[str], bool]:
    """``text`` in lines that fit ``width`` pixels, at most ``max_lines`` of them.

    The flag is True when the text was cut: its last line then ends in an ellipsis
    (the caller shows the whole text elsewhere, as a tooltip)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        joined = f"{line} {word}" if line else word
        if _text_width(joined, size) <= width:
            line = joined
        elif _text_width(word, size) > width:  # a word wider than a line (a path): split it where it falls
            line = joined
            while _text_width(line, size) > width:
                cut = _fitting(line, width, size)
                lines.append(line[:cut].rstrip())
                line = line[cut:].lstrip()
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    if len(lines) <= max_lines:
        return lines, False
    last = lines[max_lines - 1]
    while last and _text_width(last + "\u2026", size) > width:
        last = last[:-1]
    return [*lines[: max_lines - 1], last.rstrip() + "\u2026"], True


# ---------------------------------------------------------------- chart frame

_MIN_W, _LABEL_X, _MIN_X0, _PLOT_W = 500, 4, 104, 288
_ROW, _TOP, _LINE = 34, 26, 14  # a chart row, the space above the first, a note's line height


def _plot_start(labels: Iterable[str]) -> float:
    """Where a chart's plot starts: right of its widest row label."""
    return max(_MIN_X0, _LABEL_X + max((_text_width(label) for label in labels), default=0.0) + 10)


def _chart_width(axis: _LogAxis, fmt: Any, values: Iterable[str], rights: Iterable[float] = ()) -> float:
    """The narrowest chart width (at least ``_MIN_W``) that holds the value column right of the
    plot, the last tick label centred on its tick, and anything else ending at ``rights``."""
    value_width = max((_text_width(v, bold=True) for v in values), default=0.0)
    ticks = max((axis.x(t) + _text_width(fmt(t), _SMALL) / 2 for t in _labelled_ticks(axis)), default=0.0)
    return math.ceil(max(_MIN_W, axis.x1 + 8 + value_width + 6, ticks + 4, *rights))


@attrs.frozen
class _Slot:
    """A chart row's place: ``top`` and ``height``, and the note lines it holds instead of bars."""

    top: float
    height: float
    note: Sequence[str] = ()
    cut: bool = False

    @property
    def y(self) -> float:
        return self.top + self.height / 2

    @property
    def bottom(self) -> float:
        return self.top + self.height


def _slots(notes: Sequence[str | None], x: float, width: float) -> list[_Slot]:
    """One slot per row; a row that did not run holds its reason, wrapped between ``x`` and the
    chart's right edge, and is as tall as its lines need."""
    slots, top = [], float(_TOP)
    for note in notes:
        lines, cut = _wrap(note, width - 6 - x) if note is not None else ([], False)
        height = max(_ROW, len(lines) * _LINE + 12)
        slots.append(_Slot(top, height, lines, cut))
        top += height
    return slots


def _not_run(slot: _Slot, x: float, text: str, status: str) -> str:
    """The reason a row did not run, on its lines (the whole reason as a tooltip when it was cut)."""
    first = slot.y + 4 - (len(slot.note) - 1) * _LINE / 2
    spans = "".join(f'<tspan x="{x:.1f}" dy="{0 if i == 0 else _LINE}">{_e(line)}</tspan>' for i, line in enumerate(slot.note))
    title = f"<title>{_e(text)}</title>" if slot.cut else ""
    return f'<g class="not-run">{title}<text class="note {_e(status)}" x="{x:.1f}" y="{first:.1f}">{spans}</text></g>'


def _svg(width: float, height: float, label: str, parts: Sequence[str], css_class: str) -> str:
    return (f'<svg class="chart {css_class}" role="img" aria-label="{_e(label)}" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" preserveAspectRatio="xMinYMin meet">'
            f'<title>{_e(label)}</title>{"".join(parts)}</svg>')


# ---------------------------------------------------------------- rows


@attrs.frozen
class _LatencyRow:
    check: str
    label: str
    status: str
    message: str
    figures: Mapping[str, float] = attrs.field(factory=dict)  # empty when the check did not measure
    target: float | None = None
    stat: str = "p99"
    # A block timing (an audio-rate model): samples per block, the sample rate, the real-time factor.
    block_size: int | None = None
    sample_rate: float | None = None
    rtf: float | None = None
    judged: bool = True

    def value_text(self, value: float) -> str:
        """The label right of the bars: ``p99 0.04 ms``, or ``p99 0.423 ms/blk, 152x RT`` for a block."""
        if self.block_size is None:
            return f"{self.stat} {_ms(value)}"
        from .latency import rtf_text

        factor = f", {rtf_text(self.rtf)} RT" if self.rtf is not None else ""
        return f"{self.stat} {_ms(value)}/blk{factor}" + ("" if self.judged else " (not judged)")


@attrs.frozen
class _ParityRow:
    check: str
    label: str
    status: str
    message: str
    error: float | None = None
    tolerance: float | None = None
    abs_error: float | None = None
    cases: Mapping[str, float] = attrs.field(factory=dict)  # raw max abs error per input case


_PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")


def _figures(check: Mapping[str, Any]) -> Mapping[str, Any]:
    """A check's figures; empty when it recorded none (a check that failed or errored may not have)."""
    figures = check.get("figures")
    return figures if isinstance(figures, Mapping) else {}


def _is_latency(check: Mapping[str, Any]) -> bool:
    # By its figures, or by its name: a latency check that failed before measuring has no figures.
    figures = _figures(check)
    return str(check.get("name", "")).endswith("latency") or all(_num(figures.get(k)) is not None for k in _PERCENTILES)


def _is_parity(check: Mapping[str, Any]) -> bool:
    figures = _figures(check)
    return str(check.get("name", "")).endswith("parity") or ("max_error" in figures and "tolerance" in figures)


def _latency_rows(checks: Sequence[Mapping[str, Any]], entry_target: float | None, entry_stat: str | None) -> list[_LatencyRow]:
    rows = []
    for check in checks:
        if not _is_latency(check):
            continue
        name = str(check["name"])
        raw = _figures(check)
        figures = {k: v for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms") if (v := _num(raw.get(k))) is not None}
        target = _num(raw.get("target_ms"))
        stat = raw.get("stat") if raw.get("stat") in ("mean", "p50", "p95", "p99") else None
        # A block timing: per block, with its real-time factor (an audio-rate model's checks).
        block, rate = raw.get("block_size"), _num(raw.get("sample_rate"))
        is_block = isinstance(block, int) and not isinstance(block, bool) and block > 0 and rate is not None
        # Bars need all three percentiles: a check that measured fewer is drawn as not run.
        rows.append(_LatencyRow(name, runtime_label(name, "latency"), str(check["status"]),
                                str(check.get("message", "")), figures if all(k in figures for k in _PERCENTILES) else {},
                                target if target is not None else entry_target, stat or entry_stat or "p99",
                                block_size=block if is_block else None, sample_rate=rate if is_block else None,
                                rtf=_num(raw.get("rtf")) if is_block else None,
                                judged=not is_block or raw.get("judged") is not False))
    return rows


def _parity_rows(checks: Sequence[Mapping[str, Any]]) -> list[_ParityRow]:
    rows = []
    for check in checks:
        if not _is_parity(check):
            continue
        name = str(check["name"])
        raw = _figures(check)
        cases = raw.get("cases")
        per_case = {str(k): v for k, c in cases.items() if (v := _num(c)) is not None} if isinstance(cases, Mapping) else {}
        rows.append(_ParityRow(name, runtime_label(name, "parity"), str(check["status"]), str(check.get("message", "")),
                               _num(raw.get("max_error")), _num(raw.get("tolerance")), _num(raw.get("max_abs_error")),
                               per_case))
    return rows


def latency_chart(model: str, rows: Sequence[_LatencyRow]) -> str:
    """One SVG: per runtime, p50/p95/p99 bars and the max, on a log axis, against the target."""
    values = [v for r in rows for v in r.figures.values()] + [r.target for r in rows if r.target is not None]
    x0 = _plot_start(r.label for r in rows)
    axis = _log_axis(values, x0, x0 + _PLOT_W)
    judged = [r.figures.get(f"{r.stat}_ms", r.figures["p99_ms"]) if r.figures else None for r in rows]
    shown = [r.value_text(v) if v is not None else "" for r, v in zip(rows, judged)]
    # One label per target, over its line: left of it, or right of it where the left has no room.
    labels: dict[float, tuple[str, float, bool]] = {}
    for row in rows:
        if row.target is not None and row.figures and row.target not in labels:
            per = "/blk" if row.block_size is not None else ""
            text, xt = f"target {row.stat} \u2264 {_ms(row.target)}{per}", axis.x(row.target)
            labels[row.target] = (text, xt, xt - _text_width(text, _SMALL) >= 2)
    rights = [xt + 4 + _text_width(text, _SMALL) + 4 for text, xt, left in labels.values() if not left]
    width = _chart_width(axis, _tick_ms, shown, rights)
    slots = _slots([None if r.figures else (r.message or r.status) for r in rows], x0 + 4, width)
    bottom = slots[-1].bottom if slots else _TOP
    parts = _axis_svg(axis, _TOP - 6, bottom, _tick_ms)
    for row, slot, value, text in zip(rows, slots, judged, shown):
        y = slot.y
        parts.append(f'<text class="label" x="{_LABEL_X}" y="{y + 4:.1f}">{_e(row.label)}</text>')
        figures = row.figures
        if value is None:
            parts.append(_not_run(slot, x0 + 4, row.message or row.status, row.status))
        else:
            # A runtime timed for comparison only is neither passed nor failed: drawn neutral.
            verdict = "info" if not row.judged else "pass" if row.target is None or value <= row.target else "fail"
            tip = ", ".join(f"{k[:-3]} {_ms(v)}" for k, v in figures.items())
            parts.append(f'<g class="runtime {verdict}" data-check="{_e(row.check)}"><title>{_e(row.label)}: {_e(tip)}</title>')
            for key, css in (("p99_ms", "p99"), ("p95_ms", "p95"), ("p50_ms", "p50")):
                bar = max(axis.x(figures[key]) - x0, 1.5)
                parts.append(f'<rect class="bar {css}" x="{x0:.1f}" y="{y - 8:.1f}" width="{bar:.1f}" height="16"/>')
            if "max_ms" in figures:
                xm = axis.x(figures["max_ms"])
                parts.append(f'<path class="max" d="M{xm:.1f} {y - 6:.1f} l5 6 l-5 6 l-5 -6 z"/>')
            parts.append("</g>")
            parts.append(f'<text class="value {verdict}" x="{axis.x1 + 8:.1f}" y="{y + 4:.1f}">{_e(text)}</text>')
        if row.target is not None and value is not None:  # not across a reason
            xt = axis.x(row.target)
            parts.append(f'<line class="target" x1="{xt:.1f}" y1="{slot.top:.1f}" x2="{xt:.1f}" y2="{slot.bottom:.1f}"/>')
    for text, xt, left in labels.values():
        anchor = f'x="{xt:.1f}" text-anchor="end"' if left else f'x="{xt + 4:.1f}"'
        parts.append(f'<text class="target-label" {anchor} y="{_TOP - 10:.1f}">{_e(text)}</text>')
    per = " per block" if any(r.block_size is not None for r in rows) else ""
    return _svg(width, bottom + 24, f"{model}: latency{per} per runtime (log scale)", parts, "latency")


def _parity_value(row: _ParityRow, verdict: str) -> str:
    """The text right of a parity row: its deciding error against the tolerance ("" when it did not run)."""
    if row.error is None:
        return ""
    if row.error == 0 and verdict == "pass":
        return "within float32 rounding"  # a 0 beside the dots' raw errors would read as a second figure
    relation = "\u2264" if verdict == "pass" else ">"
    return _err(row.error) + (f" {relation} {_err(row.tolerance)}" if row.tolerance is not None else "")


def parity_chart(model: str, rows: Sequence[_ParityRow]) -> str:
    """One SVG: per export, the deciding parity error (bar) against its tolerance (dashed),
    with the raw max abs error of each input case (dots), on a log axis."""
    values = [v for r in rows for v in (r.error, r.tolerance, r.abs_error, *r.cases.values()) if v is not None]
    x0 = _plot_start(r.label for r in rows)
    axis = _log_axis(values, x0, x0 + _PLOT_W)
    verdicts = ["pass" if r.status == "pass" else "fail" for r in rows]
    shown = [_parity_value(r, v) for r, v in zip(rows, verdicts)]
    width = _chart_width(axis, _err, shown)
    slots = _slots([None if r.error is not None else (r.message or r.status) for r in rows], x0 + 4, width)
    bottom = slots[-1].bottom if slots else _TOP
    parts = _axis_svg(axis, _TOP - 6, bottom, _err)
    for row, slot, verdict, text in zip(rows, slots, verdicts, shown):
        y = slot.y
        parts.append(f'<text class="label" x="{_LABEL_X}" y="{y + 4:.1f}">{_e(row.label)}</text>')
        if row.error is None:
            parts.append(_not_run(slot, x0 + 4, row.message or row.status, row.status))
            continue
        tip = f"deciding error {_err(row.error)}" + (f", tolerance {_err(row.tolerance)}" if row.tolerance is not None else "")
        if row.abs_error is not None:
            tip += f", max abs error {_err(row.abs_error)}"
        parts.append(f'<g class="export {verdict}" data-check="{_e(row.check)}"><title>{_e(row.label)}: {_e(tip)}</title>')
        # A deciding error of 0 (all within float32 rounding) is drawn as a sliver at the axis start.
        bar = max(axis.x(row.error) - x0, 2.0) if row.error > 0 else 2.0
        parts.append(f'<rect class="bar err" x="{x0:.1f}" y="{y - 8:.1f}" width="{bar:.1f}" height="16"/>')
        for case, value in row.cases.items():
            if value > 0:
                parts.append(f'<circle class="case" cx="{axis.x(value):.1f}" cy="{y:.1f}" r="3.5">'
                             f"<title>{_e(case)}: max abs error {_e(_err(value))}</title></circle>")
        parts.append("</g>")
        if row.tolerance is not None:
            xt = axis.x(row.tolerance)
            parts.append(f'<line class="target" x1="{xt:.1f}" y1="{slot.top:.1f}" x2="{xt:.1f}" y2="{slot.bottom:.1f}"/>')
        parts.append(f'<text class="value {verdict}" x="{axis.x1 + 8:.1f}" y="{y + 4:.1f}">{_e(text)}</text>')
    parts.append(f'<text class="target-label" x="{axis.x1:.1f}" y="{_TOP - 10:.1f}" text-anchor="end">tolerance</text>')
    return _svg(width, bottom + 24, f"{model}: parity error per export (log scale)", parts, "parity")


def layer_chart(spec: Any) -> str:
    """One SVG: the layer stack from input to output, bar widths by units."""
    from .spec import layer_keys, layer_params, layer_rows

    rows: list[tuple[str, int, str]] = [("input", spec.in_features, "")]
    indents = [0]  # a residual block's paths follow its row, indented ([3].layers[0], [3].skip[0]...)
    for depth, where, layer, size in layer_rows(spec.layers, spec.in_features):
        keys = layer_keys(layer)  # every key that changes what the layer computes (issue 23)
        rows.append((f"{where} {layer.type}" + (f" {keys}" if keys else ""), layer.units,
                     f"{layer_params(layer, size):,} params"))
        indents.append(12 * depth)
    widest = max(units for _, units, _ in rows)
    bar_x = max(122.0, _LABEL_X + max(_text_width(label) + indent for (label, _, _), indent in zip(rows, indents)) + 10)
    # Room right of the widest bar for its units, then the params column, right-aligned.
    right = (bar_x + 200 + 6 + max(_text_width(f"{units:,}") for _, units, _ in rows) + 16
             + max(_text_width(params, _SMALL) for _, _, params in rows) + 8)
    width = math.ceil(max(_MIN_W, right))
    height = 22 * len(rows) + 6
    parts = []
    for index, ((label, units, params), indent) in enumerate(zip(rows, indents)):
        y = 4 + index * 22
        bar = max(200 * units / widest, 3)
        css = "io" if index == 0 else ("rec" if "lstm" in label or "gru" in label else "dense")
        parts.append(f'<text class="label" x="{_LABEL_X + indent}" y="{y + 14}">{_e(label)}</text>')
        parts.append(f'<rect class="layer {css}" x="{bar_x:.1f}" y="{y + 2}" width="{bar:.1f}" height="16"/>')
        parts.append(f'<text class="units" x="{bar_x + bar + 6:.1f}" y="{y + 14}">{units:,}</text>')
        if params:
            parts.append(f'<text class="tick" x="{width - 8}" y="{y + 14}" text-anchor="end">{_e(params)}</text>')
    return _svg(width, height, f"{spec.name}: layer stack", parts, "layers")


# ---------------------------------------------------------------- page

_CSS = """
:root{color-scheme:light}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;
 background:#f6f8fa;color:#1f2328}
main{max-width:1120px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0}h3{font-size:13px;margin:14px 0 4px;color:#57606a;
 text-transform:uppercase;letter-spacing:.04em}
.meta{color:#57606a;margin:0 0 12px}.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
 font-size:12.5px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 18px;margin:14px 0}
.card.failed{border-left:5px solid #cf222e}.card.passed{border-left:5px solid #2da44e}
.head{display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;color:#fff}
.badge.pass{background:#2da44e}.badge.fail{background:#cf222e}.badge.error{background:#bc4c00}.badge.skip{background:#8c959f}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eaeef2;
 vertical-align:top}th{font-weight:600;color:#57606a;font-size:12px}
td.msg{word-break:break-word}tr.fail td,tr.error td{background:#fff5f5}tr.skip td{color:#6e7781}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(470px,1fr));gap:4px 24px}
svg.chart{max-width:100%;height:auto;display:block}
svg text{font:11.5px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#1f2328}
svg text.tick{fill:#57606a;font-size:10.5px}svg text.note{fill:#6e7781;font-style:italic}
svg text.note.fail,svg text.note.error{fill:#cf222e}
svg text.value.pass{fill:#1a7f37;font-weight:600}svg text.value.fail{fill:#cf222e;font-weight:600}
svg text.value.info{fill:#57606a;font-weight:600}
svg text.target-label{fill:#cf222e;font-size:10.5px}
svg line.grid{stroke:#eaeef2}svg line.axis{stroke:#8c959f}
svg line.target{stroke:#cf222e;stroke-width:2;stroke-dasharray:4 3}
svg .pass rect.p50{fill:#0969da}svg .pass rect.p95{fill:#54aeff}svg .pass rect.p99{fill:#b6e3ff}
svg .info rect.p50{fill:#57606a}svg .info rect.p95{fill:#8c959f}svg .info rect.p99{fill:#d0d7de}
svg .fail rect.p50{fill:#a40e26}svg .fail rect.p95{fill:#fa4549}svg .fail rect.p99{fill:#ffaba8}
svg path.max{fill:#1f2328}
svg .pass rect.err{fill:#2da44e}svg .fail rect.err{fill:#cf222e}svg circle.case{fill:#fff;stroke:#57606a;stroke-width:1.3}
svg rect.layer.io{fill:#8c959f}svg rect.layer.dense{fill:#8250df}svg rect.layer.rec{fill:#bf3989}
svg text.units{fill:#57606a}
.legend{color:#57606a;font-size:12px;margin:2px 0 0}.sw{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px;
 vertical-align:-1px}
.strip{display:flex;gap:2px;flex-wrap:wrap;margin:8px 0 0}.strip span{width:12px;height:12px;border-radius:2px}
.strip .pass{background:#2da44e}.strip .fail{background:#cf222e}.strip .error{background:#bc4c00}.strip .skip{background:#d0d7de}
details summary{cursor:pointer;color:#0969da;margin-top:10px}
.note{color:#6e7781;font-style:italic}.problems li{color:#cf222e}
"""


def _badge(status: str, text: str | None = None) -> str:
    return f'<span class="badge {_e(status)}">{_e(text or status)}</span>'


def _overview(models: Mapping[str, Any], registry: Registry | None) -> str:
    rows = ["<tr><th>model</th><th>status</th><th>checks</th><th>latency (runtimes)</th><th>worst parity error</th></tr>"]
    for name, model in models.items():
        checks = model["checks"]
        spec = registry.get(name) if registry is not None else None
        passed = sum(c["status"] == "pass" for c in checks)
        lat = _latency_rows(checks, spec.latency_ms if spec else None, spec.latency_stat if spec else None)
        shown = []
        for row in lat:
            if row.figures:
                value = row.figures.get(f"{row.stat}_ms", row.figures["p99_ms"])
                target = f" / {_ms(row.target)}" if row.target is not None else ""
                if row.block_size is not None:  # per block, with the real-time factor
                    from .latency import rtf_text

                    factor = f", {rtf_text(row.rtf)} real time" if row.rtf is not None else ""
                    target = f"{target} per block{factor}" + ("" if row.judged else " (not judged)")
                shown.append(f"{_e(row.label)}: {_e(row.stat)} {_e(_ms(value))}{_e(target)}")
        par = [r for r in _parity_rows(checks) if r.error is not None]
        worst = max(par, key=lambda r: (r.error or 0.0, r.abs_error or 0.0), default=None)
        worst_text = "-"
        if worst is not None:
            # One figure: "within float32 rounding" in words when the deciding error is 0 (issue 23).
            raw = f"max abs {_err(worst.abs_error)}, " if worst.abs_error is not None else ""
            verdict = ("within float32 rounding" if not worst.error
                       else f"{_err(worst.error)} beyond float32 rounding")
            worst_text = f"{verdict} ({raw}{_e(worst.label)})"
        status = "pass" if model["ok"] else "fail"
        rows.append(f'<tr class="{status}"><td><a href="#model-{_e(name)}">{_e(name)}</a></td><td>{_badge(status)}</td>'
                    f"<td>{passed}/{len(checks)}</td><td>{'<br>'.join(shown) or '-'}</td><td>{worst_text}</td></tr>")
    return f'<table class="overview">{"".join(rows)}</table>'


def _audio_note(rows: Sequence[_LatencyRow]) -> str:
    """What a block timing means, under an audio-rate model's latency chart ("" for other models)."""
    block = next((r for r in rows if r.block_size is not None and r.sample_rate is not None), None)
    if block is None or block.block_size is None or block.sample_rate is None:
        return ""
    from .latency import ms_text
    from .spec import audio_rate_text, block_duration_ms

    duration = block_duration_ms(block.block_size, block.sample_rate)
    text = (f"Audio rate, {audio_rate_text(block.sample_rate, block.block_size)}: each bar is the time of one block "
            f"({block.block_size} calls of one sample, as a host's audio callback makes them), which lasts "
            f"{ms_text(duration)}; RT is the real-time factor, the block's duration over its {block.stat} time "
            "(above 1x: faster than real time).")
    compared = [r.label for r in rows if r.block_size is not None and not r.judged]
    if compared:
        text += (f" Not judged, for comparison only: {', '.join(compared)} (called from Python once per sample); "
                 "the C++ runtimes are what a host runs.")
    if any(r.block_size is not None and r.judged and r.status == "fail" for r in rows):
        text += " " + _BLOCK_ADVICE
    return f'<p class="note">{_e(text)}</p>'


#: What a host developer does about a block slower than its target (an audio-rate model).
_BLOCK_ADVICE = ("A block slower than its target makes the host's callback miss its deadline: a dropout. A larger "
                 "block does not help (a per-sample model's block time grows with it); a smaller model, or RTNeural's "
                 "compile-time API (the rtneural-cpp header) instead of parseJson's dynamic model, does.")


#: What a host developer does about each real-time finding, by the check name's last word.
_REALTIME_ADVICE = {
    "realtime": "reset() and forward() run on the audio thread: an allocation, lock or system call there can "
                "block for milliseconds. The first offending call is named above (RealtimeSanitizer's report adds "
                "its stack); build with your plugin's flags ($MODELREG_CXXFLAGS) to see what your build does.",
    "denormals": "Flush denormals on the audio thread: put modelreg_rt::ScopedFlushDenormals (in every header) or "
                 "JUCE's ScopedNoDenormals at the top of the audio callback.",
    "rest": "After reset() the first frames jump from the zero state to where the model rests (a click). "
            "Declare reset = \"rest\" in the registry entry: reset() then restores the resting state.",
}


def _realtime_section(checks: Sequence[Mapping[str, Any]]) -> str:
    """The checks a C++ host cares about on its audio thread (allocations, denormals, resting state,
    load time), each with what was measured and, when it failed, what to do."""
    rows = []
    for check in checks:
        last = str(check["name"]).rsplit(".", 1)[-1]
        kind = next((k for k in _REALTIME_ADVICE if last.endswith(k)), None)
        if kind is None:
            continue
        status = str(check["status"])
        advice = _REALTIME_ADVICE[kind] if status in ("fail", "error") else ""
        rows.append(f'<tr class="{_e(status)}"><td class="mono">{_e(check["name"])}</td><td>{_badge(status)}</td>'
                    f'<td class="msg">{_e(check["message"])}' + (f'<br><b>What to do:</b> {_e(advice)}' if advice else "")
                    + "</td></tr>")
    for check in checks:  # an audio-rate model's judged block timing: its real-time factor
        figures = _figures(check)
        if "block_size" in figures and figures.get("judged") is True:
            status = str(check["status"])
            advice = _BLOCK_ADVICE if status in ("fail", "error") else ""
            rows.append(f'<tr class="{_e(status)}"><td class="mono">{_e(check["name"])}</td><td>{_badge(status)}</td>'
                        f'<td class="msg">{_e(check["message"])}' + (f'<br><b>What to do:</b> {_e(advice)}' if advice else "")
                        + "</td></tr>")
    for check in checks:
        load_ms = _num(_figures(check).get("load_ms"))
        if load_ms is not None:
            weights = _figures(check).get("weights") or ""
            rows.append(f'<tr class="pass"><td class="mono">{_e(check["name"])}</td><td>load</td><td class="msg">'
                        f"construct and set the weights ({_e(str(weights))}): {_e(_ms(load_ms))}</td></tr>")
    if not rows:
        return ""
    return ('<div class="realtime"><h3>On the audio thread (C++)</h3><table class="checks">'
            "<tr><th>check</th><th>status</th><th>measured</th></tr>" + "".join(rows) + "</table></div>")


def _engines_section(checks: Sequence[Mapping[str, Any]], spec: Any) -> str:
    """One model, every engine (an audio-rate model): a table of each engine's parity against torch
    and its real-time factor at the entry's rate and block ("" for other models)."""
    from .audio import engine_comparison
    from .latency import ms_text, rtf_text
    from .spec import audio_rate_text

    rows = engine_comparison(checks, audio_rate=spec.is_audio_rate if spec is not None else None)
    if not rows:
        return ""
    stat = next((r.stat for r in rows if r.stat), "p99")
    body = []
    for row in rows:
        if row.parity_status == "reference":
            parity = "reference"
        elif row.max_abs_error is not None:
            parity = f"{_err(row.max_abs_error)}" + ("" if row.parity_status == "pass" else f" ({row.parity_status})")
        else:
            parity = row.parity_status or "-"
        cells = [row.engine, parity]
        if row.rtf is not None and row.rtf_p50 is not None and row.stat_ms is not None and row.p50_ms is not None:
            cells += [f"{rtf_text(row.rtf_p50)} ({ms_text(row.p50_ms)})",
                      f"{rtf_text(row.rtf)} ({ms_text(row.stat_ms)})" + ("" if row.stat == stat else f" {row.stat}"),
                      "yes" if row.judged else "no: from Python, for comparison"]
        else:
            cells += [row.latency_status, row.latency_status, "-"]
        status = "fail" if "fail" in (row.latency_status, row.parity_status) else (
            "skip" if row.latency_status == "skip" else "pass")
        reason = f'<br><span class="note">{_e(row.reason)}</span>' if row.reason else ""
        body.append(f'<tr class="{status}" data-engine="{_e(row.latency_check)}">'
                    + "".join(f"<td>{_e(c)}</td>" for c in cells[:-1]) + f"<td>{_e(cells[-1])}{reason}</td></tr>")
    first = next((r for r in _latency_rows(checks, None, None) if r.block_size and r.sample_rate), None)
    rate = f" at {audio_rate_text(first.sample_rate, first.block_size)}" if first is not None and first.sample_rate \
        and first.block_size else ""
    return ('<div class="engines"><h3>Engines</h3><table class="checks engines"><tr><th>engine</th>'
            "<th>parity (max abs error vs torch)</th><th>real time, p50 block</th>"
            f"<th>real time, {_e(stat)} block</th><th>judged</th></tr>" + "".join(body) + "</table>"
            f'<p class="note">One model, every engine it was exported to{_e(rate)}: each runs the same blocks of the '
            "same seeded signal; the real-time factor is the block's duration over the time of one block (above 1x: "
            "faster than real time).</p></div>")


def _model_card(name: str, model: Mapping[str, Any], registry: Registry | None, registry_note: str | None) -> str:
    checks = model["checks"]
    spec = registry.get(name) if registry is not None else None
    passed = sum(c["status"] == "pass" for c in checks)
    status = "pass" if model["ok"] else "fail"
    out = [f'<section class="card {"passed" if model["ok"] else "failed"}" id="model-{_e(name)}">',
           f'<div class="head"><h2>{_e(name)}</h2>{_badge(status, "passed" if model["ok"] else "failed")}'
           f'<span class="meta">{passed}/{len(checks)} checks passed \u00b7 {float(model["seconds"]):.2f} s</span></div>']
    if spec is not None and spec.description:
        out.append(f'<p class="meta">{_e(spec.description)}</p>')
    out.append('<div class="strip" aria-label="checks">' + "".join(
        f'<span class="{_e(c["status"])}" title="{_e(c["name"])}: {_e(c["status"])}"></span>' for c in checks) + "</div>")
    out.append('<div class="grid">')
    # Layer stack
    out.append("<div><h3>Layer stack</h3>")
    if spec is not None:
        entry = next((c for c in checks if c["name"] == "entry"), None)
        then = _num(_figures(entry).get("params")) if entry else None
        if then is not None and int(then) != spec.computed_params:
            out.append(f'<p class="note">The registry entry changed since this run ({int(then):,} parameters then, '
                       f"{spec.computed_params:,} now): the layers below are today's.</p>")
        out.append(layer_chart(spec))
    elif registry is not None and name in registry.invalid:
        out.append('<p class="note">The registry entry is invalid: no layer stack to show.</p>')
    else:
        why = registry_note or (f"{name} is not in the registry any more" if registry is not None else "no registry given")
        out.append(f'<p class="note">Layer stack not shown: {_e(why)}.</p>')
    out.append("</div>")
    # Latency per runtime
    lat = _latency_rows(checks, spec.latency_ms if spec else None, spec.latency_stat if spec else None)
    out.append("<div><h3>Latency per runtime</h3>")
    if lat:
        out.append(latency_chart(name, lat))
        out.append('<p class="legend"><span class="sw" style="background:#0969da"></span>p50'
                   '<span class="sw" style="background:#54aeff"></span>p95<span class="sw" style="background:#b6e3ff"></span>p99'
                   ' &nbsp;\u25c6 max &nbsp;<span style="color:#cf222e">\u2506 target</span> &nbsp;(log scale, single thread, batch 1)</p>')
        out.append(_audio_note(lat))
    else:
        out.append('<p class="note">No latency was measured.</p>')
    out.append("</div>")
    # Parity per export
    par = _parity_rows(checks)
    out.append("<div><h3>Parity per export</h3>")
    if par:
        out.append(parity_chart(name, par))
        out.append('<p class="legend"><span class="sw" style="background:#2da44e"></span>deciding error (beyond float32 rounding) '
                   '&nbsp;\u25cb max abs error per input case &nbsp;<span style="color:#cf222e">\u2506 tolerance</span> (log scale)</p>')
    else:
        out.append('<p class="note">The entry declares no exports.</p>')
    out.append("</div></div>")
    out.append(_engines_section(checks, spec))
    out.append(_realtime_section(checks))
    # Every check
    failing = [c for c in checks if c["status"] in ("fail", "error")]
    rows = ["<tr><th>check</th><th>status</th><th>message</th></tr>"]
    for check in checks:
        rows.append(f'<tr class="{_e(check["status"])}"><td class="mono">{_e(check["name"])}</td>'
                    f'<td>{_badge(str(check["status"]))}</td><td class="msg">{_e(check["message"])}</td></tr>')
    opened = " open" if failing else ""
    out.append(f"<details{opened}><summary>Every check ({passed} passed, {len(failing)} failed, "
               f"{sum(c['status'] == 'skip' for c in checks)} skipped)</summary><table class=\"checks\">{''.join(rows)}</table></details>")
    out.append("</section>")
    return "".join(out)


def render_report(document: Mapping[str, Any], registry: Registry | None = None, *, registry_note: str | None = None,
                  diff: Mapping[str, Any] | None = None) -> str:
    """The HTML page for a results document (as :func:`load_results` returns or ``ValidationReport.to_json()``).

    ``registry`` supplies layer stacks, descriptions and latency targets the
    checks do not record; ``registry_note`` says why there is none. ``diff`` (a
    ``modelreg diff`` document) adds the section *Changes since BASE*.
    """
    models: Mapping[str, Any] = document.get("models", {})
    environment: Mapping[str, Any] = document.get("environment", {})
    passed_models = sum(bool(m["ok"]) for m in models.values())
    total_checks = sum(len(m["checks"]) for m in models.values())
    passed_checks = sum(c["status"] == "pass" for m in models.values() for c in m["checks"])
    ok = bool(document.get("ok"))
    title = f"modelreg report: {Path(str(document.get('registry', 'registry'))).name}"
    env = " \u00b7 ".join(f"{k} {_e(environment[k])}" for k in ("python", "torch", "onnxruntime", "modelreg")
                          if k in environment)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(title)}</title><style>{_CSS}{_diff_css(diff)}</style></head><body><main>",
             f'<div class="head"><h1>modelreg validation report</h1>{_badge("pass" if ok else "fail", "all passed" if ok else "not all passed")}</div>',
             f'<p class="meta"><span class="mono">{_e(document.get("registry", ""))}</span> \u00b7 run {_e(environment.get("time", "?"))}</p>',
             f'<p class="meta">{passed_models} of {len(models)} models passed \u00b7 {passed_checks}/{total_checks} checks passed'
             f" \u00b7 {env} \u00b7 {_e(environment.get('platform', ''))}</p>"]
    problems = [str(p) for p in document.get("problems", [])]
    warnings = [str(w) for w in document.get("warnings", [])]
    if problems:
        parts.append('<div class="card failed"><h3>Registry problems</h3><ul class="problems">'
                     + "".join(f"<li>{_e(p)}</li>" for p in problems) + "</ul></div>")
    if warnings:
        parts.append('<div class="card"><h3>Warnings</h3><ul>' + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></div>")
    if registry_note and registry is None:
        parts.append(f'<p class="note">{_e(registry_note)}</p>')
    if models:
        parts.append(f'<div class="card">{_overview(models, registry)}</div>')
    else:
        parts.append('<p class="note">The results hold no models.</p>')
    if diff is not None:
        from .diff import render_html

        parts.append(render_html(diff))
    parts += [_model_card(name, model, registry, registry_note) for name, model in models.items()]
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _diff_css(diff: Mapping[str, Any] | None) -> str:
    if diff is None:
        return ""
    from .diff import HTML_CSS

    return HTML_CSS


def write_report(
    out: str | os.PathLike[str],
    results: Mapping[str, Any] | Any,
    registry: Registry | None = None,
    *,
    registry_note: str | None = None,
    diff: Mapping[str, Any] | None = None,
) -> Path:
    """Render ``results`` and write the page to ``out`` atomically; returns the path written.

    ``results`` is a :class:`~modelreg.ValidationReport` or a results document
    (:func:`load_results`); ``registry`` adds layer stacks and latency targets.
    """
    document = results.to_json() if hasattr(results, "to_json") else results
    target = Path(out)
    if target.is_dir():
        raise UsageError.at("expected a file to write the report to, found a directory", file=display_path(target))
    text = render_report(document, registry, registry_note=registry_note, diff=diff)
    try:
        atomic_write_text(target, text)
    except OSError as exc:
        from .errors import WriteError

        raise WriteError(Problem(f"cannot write the report: {exc.strerror or exc}", file=display_path(target))) from None
    return target
