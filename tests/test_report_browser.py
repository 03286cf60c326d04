"""The report rendered in a real browser: headless Chromium from the system packages.

CI installs it (.ci/run); elsewhere the test skips saying what to install.
The page is loaded from a file with Chromium's own command line (``--dump-dom``
for the DOM after parsing, ``--screenshot`` for the painted page); the PNG is
decoded here with zlib (no image library needed for counting pixel colours).
Text boxes are measured by a script injected into a copy of the page (the page
itself has none), which writes what it measured into the DOM that ``--dump-dom``
prints.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import write_registry
from test_html_report import REGISTRY, results_document

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    message = ("Chromium not found: install it to render the report in a real browser "
               "(Debian/Ubuntu: apt-get install chromium; or set CHROMIUM=/path/to/chromium)")
    if os.environ.get("MODELREG_REQUIRE_CHROMIUM"):  # CI: .ci/run installs it, so this test must run there
        pytest.fail(message)
    pytest.skip(message)


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) bytes of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    position, idat, header = 8, b"", b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line) if bpp == 3 else bytes(v for j in range(0, stride, 4) for v in line[j:j + 3]))
        previous = line
    return width, height, rows


def colour_counts(rows: list[bytes]) -> dict[tuple[int, int, int], int]:
    counts: dict[tuple[int, int, int], int] = {}
    for row in rows:
        for i in range(0, len(row), 3):
            pixel = (row[i], row[i + 1], row[i + 2])
            counts[pixel] = counts.get(pixel, 0) + 1
    return counts


def _hex(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def long_texts_document(registry: str) -> dict:
    """The shared results, with the longest texts a chart row holds in practice (each once clipped):
    a latency of six digits, a parity error in e-notation against its tolerance, and the reason
    the C++ checks skip when RTNeural is not configured. The number of rows and bars is unchanged."""
    from modelreg.rtneural.cpp import HOW_TO_CONFIGURE
    from test_html_report import _latency

    document = results_document(registry)
    alpha = {c["name"]: c for c in document["models"]["alpha"]["checks"]}
    alpha["rtneural.dynamic_latency"]["figures"].update(_latency(0.0004055, 5.0, "p99"))  # "p99 0.000811 ms"
    alpha["rtneural.dynamic_parity"]["figures"].update(max_error=3.8e-9, max_abs_error=3.8e-9, cases={"zeros": 3.8e-9})
    beta = {c["name"]: c for c in document["models"]["beta"]["checks"]}
    beta["rtneural.dynamic_latency"]["message"] = f"RTNeural C++ is not configured: {HOW_TO_CONFIGURE}"
    # A word wider than a line: a long path in a reason.
    beta["onnx.parity"]["message"] = f"not run: {'/a-rather-long-folder-name' * 12}/beta.onnx does not exist"
    return document


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    from modelreg.cli import main

    folder = tmp_path_factory.mktemp("browser")
    registry = write_registry(folder / "project", text=REGISTRY)
    results = registry.parent / "models" / "validation_results.json"
    results.parent.mkdir()
    results.write_text(json.dumps(long_texts_document(str(registry))))
    out = folder / "report.html"
    assert main(["report", "--registry", str(registry), "-o", str(out)]) == 0
    return out


def test_the_browser_builds_every_chart(page, tmp_path):
    dom = run_chromium(["--dump-dom", page.as_uri()], tmp_path / "profile").stdout
    assert "<tbody>" in dom  # the DOM as the browser built it (its parser adds <tbody>), not the file
    # alpha and beta: layers, latency, parity; gamma (an invalid entry, not in the registry) has none.
    charts = re.findall(r'<svg class="chart (\w+)".*?</svg>', dom, re.S)
    assert sorted(charts) == ["latency", "latency", "layers", "layers", "parity", "parity"]
    assert dom.count('class="bar p50"') == 3 and dom.count('class="bar err"') == 4 and dom.count('class="layer') == 6


def test_the_screenshot_shows_the_charts(page, tmp_path):
    shot = tmp_path / "shot.png"
    run_chromium([f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()], tmp_path / "profile")
    width, height, rows = read_png(shot)
    assert (width, height) == (1200, 2400)
    counts = colour_counts(rows)
    total = width * height
    background = max(counts.values())
    assert background < total * 0.9, "the page is (nearly) one colour"
    assert len(counts) > 50
    # Each chart's fill colours are painted: blue p50 bars (passing latency), dark red p50 bars
    # (failing latency), the green parity bar, the layer bars. Solid fills keep their exact colour.
    for name, colour in {"p50 bar": "#0969da", "failing p50 bar": "#a40e26", "parity bar": "#2da44e",
                         "dense layer": "#8250df", "lstm layer": "#bf3989"}.items():
        assert counts.get(_hex(colour), 0) >= 40, f"no {name} ({colour}) in the screenshot"


# Run in the browser after the page is laid out: every <text> of every chart against its <svg>,
# both as painted on the page (getBoundingClientRect, so a scaled-down chart is measured as shown).
MEASURE = """
<pre id="measured">%s</pre>
<script>
(function () {
  const out = {charts: 0, texts: 0, overflows: []};
  for (const svg of document.querySelectorAll("svg.chart")) {
    out.charts += 1;
    const box = svg.getBoundingClientRect();
    for (const text of svg.querySelectorAll("text")) {
      out.texts += 1;
      const r = text.getBoundingClientRect();
      const slack = 0.5;  // sub-pixel rounding
      if (r.left < box.left - slack || r.right > box.right + slack || r.top < box.top - slack
          || r.bottom > box.bottom + slack) {
        out.overflows.push({chart: svg.getAttribute("aria-label"), text: text.textContent,
                            left: r.left - box.left, right: r.right - box.right,
                            top: r.top - box.top, bottom: r.bottom - box.bottom});
      }
    }
  }
  document.getElementById("measured").textContent = JSON.stringify(out);
})();
</script>
"""


@pytest.mark.parametrize("window", ["1200,2400", "700,2400"])
def test_no_chart_text_overflows_its_svg(page, tmp_path, window):
    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE % "not measured" + "</body>"))
    dom = run_chromium([f"--window-size={window}", "--dump-dom", measured.as_uri()], tmp_path / "profile").stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found and found[1] != "not measured", "the measuring script did not run"
    result = json.loads(html.unescape(found[1]))
    assert result["charts"] == 6 and result["texts"] > 40
    assert result["overflows"] == [], [(o["chart"], o["text"]) for o in result["overflows"]]
    # The texts that used to be clipped are there, whole (a wrapped one across its lines).
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom))
    for whole in ("p99 0.000811 ms", "3.8e-09 \u2264 1e-05"):
        assert whole in text, whole
    assert "RTNeural C++ is not configured" in text and "MODELREG_RTNEURAL" in text
