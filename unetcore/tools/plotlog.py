"""Read a Caffe-format training log (ours or Caffe's) and draw its loss and lr curves as SVG.

The parsing follows Caffe's tools/extra/parse_log.py: 'Iteration N ..., loss = L',
'Iteration N, lr = R', 'Iteration N, Testing net (#0)' then 'Test net output #k: name = v'.
"""
import re
from pathlib import Path

from unetcore.errors import DataError
from unetcore.files import write_text

LOSS = re.compile(r"Iteration (\d+) \(.*\), loss = ([-+\d.eE]+|nan|inf)")
LEARNING_RATE = re.compile(r"Iteration (\d+), lr = ([-+\d.eE]+)")
TESTING = re.compile(r"Iteration (\d+), Testing net")
TEST_OUTPUT = re.compile(r"Test net output #\d+: (\S+) = ([-+\d.eE]+)")


def parse_log(path):
    """{'loss': [(iter, v)], 'lr': [...], 'test <name>': [...]} from a log file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such log file")
    series, test_iter = {"loss": [], "lr": []}, None
    for line in path.read_text(errors="replace").splitlines():
        if m := LOSS.search(line):
            series["loss"].append((int(m[1]), float(m[2])))
        elif m := LEARNING_RATE.search(line):
            series["lr"].append((int(m[1]), float(m[2])))
        elif m := TESTING.search(line):
            test_iter = int(m[1])
        elif (m := TEST_OUTPUT.search(line)) and test_iter is not None:
            series.setdefault(f"test {m[1]}", []).append((test_iter, float(m[2])))
    if not series["loss"]:
        raise DataError(f"{path}: no 'Iteration N (...), loss = L' lines; is this a training log?")
    return series


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def _panel(curves, top, width=640, height=220, left=60):
    """One SVG panel: polylines of (x, y) curves scaled into the box, with axis labels."""
    points = [p for _, values in curves for p in values]
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    sx = (width - left - 10) / ((x1 - x0) or 1)
    sy = (height - 30) / ((y1 - y0) or 1)
    at = lambda x, y: f"{left + (x - x0) * sx:.1f},{top + 10 + (y1 - y) * sy:.1f}"  # noqa: E731
    parts = [f'<rect x="{left}" y="{top + 10}" width="{width - left - 10}" '
             f'height="{height - 30}" fill="none" stroke="#999"/>',
             f'<text x="4" y="{top + 18}">{y1:.4g}</text>',
             f'<text x="4" y="{top + height - 20}">{y0:.4g}</text>',
             f'<text x="{left}" y="{top + height - 4}">{x0}</text>',
             f'<text x="{width - 60}" y="{top + height - 4}">{x1} iter</text>']
    for k, (name, values) in enumerate(curves):
        colour = COLOURS[k % len(COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" points="'
                     + " ".join(at(x, y) for x, y in values) + '"/>')
        parts.append(f'<text x="{left + 10 + 150 * k}" y="{top + 28}" fill="{colour}">{name}</text>')
    return parts


def plot_svg(series, output):
    losses = [(name, v) for name, v in series.items() if name != "lr" and v]
    panels = [losses] + ([[("lr", series["lr"])]] if series["lr"] else [])
    body = [p for i, curves in enumerate(panels) for p in _panel(curves, 230 * i)]
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="{230 * len(panels)}" '
           'font-family="sans-serif" font-size="12">\n' + "\n".join(body) + "\n</svg>\n")
    write_text(output, svg)
