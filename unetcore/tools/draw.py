"""Pictures of a net, drawn from its prototxt: Graphviz DOT text, and an SVG of our own
layout (no Graphviz needed) where x is the layer's place in the net and y its scale, so a
U-Net is drawn as a U: the contracting path goes down, the expansive path comes back up.
"""
import html
import math
import shutil
import subprocess

from unetcore.files import atomic_file, write_text

COLOURS = {"Convolution": "#9ecae1", "Deconvolution": "#a1d99b", "Pooling": "#fdae6b",
           "Crop": "#dadaeb", "Concat": "#bcbddc", "SoftmaxWithLoss": "#fc9272",
           "Dropout": "#fee391"}


def _drawn_layers(net):
    """The layers worth drawing (not the in-place ReLU/Dropout, not automatic Splits)."""
    return [(layer, spec, top) for layer, spec, top in zip(net.layers, net.specs, net.top_vecs)
            if layer.type != "Split" and not set(spec.tops) & set(spec.bottoms)]


def _producers(net):
    """blob name -> the drawn layer that made it (through splits and in-place layers)."""
    made = {}
    for layer, spec in zip(net.layers, net.specs):
        for name in spec.tops:
            if layer.type == "Split" or set(spec.tops) & set(spec.bottoms):
                made[name] = made.get(spec.bottoms[0], made.get(name))
            else:
                made[name] = layer.name
    return made


def _dot(text):
    """A string inside DOT's double quotes: backslashes and quotes escaped."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def _label(layer, top):
    shape = "x".join(map(str, top[0].shape[1:])) if top and top[0].shape else ""
    return f"{_dot(layer.name)}\\n{_dot(layer.type)} {shape}"


def dot_text(net):
    made = _producers(net)
    lines = [f'digraph "{_dot(net.name)}" {{', "  rankdir=LR;",
             "  node [shape=box, style=filled];"]
    for layer, spec, top in _drawn_layers(net):
        colour = COLOURS.get(layer.type, "#eeeeee")
        lines.append(f'  "{_dot(layer.name)}" [label="{_label(layer, top)}", '
                     f'fillcolor="{colour}"];')
        for name in spec.bottoms:
            if made.get(name):
                lines.append(f'  "{_dot(made[name])}" -> "{_dot(layer.name)}" '
                             f'[label="{_dot(name)}"];')
    return "\n".join(lines + ["}"]) + "\n"


def svg_text(net, box_w=118, box_h=34, gap_x=14, level_h=70):
    layers = _drawn_layers(net)
    made = _producers(net)
    first = next((t[0].shape[-1] for _, _, t in layers if t and len(t[0].shape) == 4), 1)
    place = {}
    for k, (layer, spec, top) in enumerate(layers):
        size = top[0].shape[-1] if top and len(top[0].shape) == 4 else first
        level = max(0.0, math.log2(first / max(size, 1)))
        place[layer.name] = (10 + k * (box_w + gap_x) * 0.5, 10 + round(level) * level_h)
    width = max(x for x, _ in place.values()) + box_w + 10
    height = max(y for _, y in place.values()) + box_h + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
             'font-family="sans-serif" font-size="9">']
    for layer, spec, _ in layers:
        x1, y1 = place[layer.name]
        for name in spec.bottoms:
            if made.get(name) in place:
                x0, y0 = place[made[name]]
                parts.append(f'<line x1="{x0 + box_w / 2:.0f}" y1="{y0 + box_h / 2:.0f}" '
                             f'x2="{x1 + box_w / 2:.0f}" y2="{y1 + box_h / 2:.0f}" '
                             'stroke="#888"/>')
    for layer, spec, top in layers:
        x, y = place[layer.name]
        colour = COLOURS.get(layer.type, "#eeeeee")
        shape = "x".join(map(str, top[0].shape[1:])) if top and top[0].shape else ""
        parts.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{box_w}" height="{box_h}" rx="4" '
                     f'fill="{colour}" stroke="#555"/>')
        parts.append(f'<text x="{x + 4:.0f}" y="{y + 13:.0f}">{html.escape(layer.name)}</text>')
        parts.append(f'<text x="{x + 4:.0f}" y="{y + 26:.0f}">{shape}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


def render(net, output):
    """Write .dot, or .svg/.png: through Graphviz's `dot` when installed, else .svg our way."""
    suffix = str(output).rsplit(".", 1)[-1].lower()
    if suffix == "dot":
        write_text(output, dot_text(net))
        return "dot"
    if shutil.which("dot") and suffix in ("svg", "png"):
        drawn = subprocess.run(["dot", f"-T{suffix}"], input=dot_text(net).encode(),
                               capture_output=True, check=True)
        with atomic_file(output) as f:
            f.write(drawn.stdout)
        return "graphviz"
    if suffix == "svg":
        write_text(output, svg_text(net))
        return "builtin"
    from unetcore.errors import UnetcoreError
    raise UnetcoreError(f"{output}: without Graphviz installed, draw writes .svg or .dot")
