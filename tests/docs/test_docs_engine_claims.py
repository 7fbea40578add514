"""No page names an engine for a layer that another engine runs. Which engine "auto" picks
for each layer of the shipped nets, on the CPU and on a GPU, is generated from the registry
(bin/docgen.py engine_rows); the prose outside the generated blocks is searched for
sentences and table rows that put an engine and a layer together, and each is held to the
registry. Every page whose prose names an engine carries a generated engine table."""
import fnmatch
import re
from pathlib import Path

import pytest

from docgen import ENGINE_NETS, engine_rows

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
BLOCK = re.compile(r"<!-- begin generated: (\S+) -->\n.*?<!-- end generated -->", re.S)
FENCE = re.compile(r"```.*?```", re.S)
# the generated blocks that say which engine runs which layer on which device
ENGINE_BLOCKS = {"unet-engines", "demo-engines", "three-d-engines", "winograd-unet-layers",
                 "flat-engine-use"}
# words that tie a sentence to one net or one device
NET_WORDS = {"2015 net": "unet-deploy.prototxt", "demo": "unet-demo-deploy.prototxt",
             "EM net": "unet3d-em-deploy.prototxt", "3-d demo": "unet3d-demo-deploy.prototxt"}
# a sentence that forces an engine (or records a patched run) claims nothing about "auto"
FORCING = re.compile(r"--engine|forced|asks for it|patched|using_engine|engine: CAFFE")
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b")
# a group of a net's layers: a claim about them must name them, or point at a table
GROUP = re.compile(r"2015 net|\bdemo\b|EM net|U-Net's|full-resolution|half-resolution|"
                   r"\blevels?\b|-channel layers|\d+ channels\)")
LAYER = re.compile(r"\b(?:up)?conv_[\w*]+-?[\w*]*|\bpool_[\w*]+-[\w*]+")


def engines():
    from unetcore.layer import ENGINES
    return {cls.engine for classes in ENGINES.values() for cls in classes} | {"reference"}


def truth():
    """{(net, layer): {"CPU": engine, "GPU": engine}} from the registry."""
    return {(net, row[0]): {"CPU": row[4], "GPU": row[5]}
            for net in ENGINE_NETS for row in engine_rows(net)}


def named_engines(unit, names):
    """The engines a sentence or table row names: 'the flat engine', 'engine "flat"', a
    table cell that is an engine's name."""
    found = set()
    for name in names:
        if re.search(rf"\b{name}\b\*? (?:engine|im2col|path)|engines? [`\"]?{name}\b", unit, re.I):
            found.add(name)
    if unit.lstrip().startswith("|"):
        found |= {cell.strip(" `").lower() for cell in unit.split("|")} & names
    return found


def units(text):
    """The prose of a page, generated blocks and code left out, as (section, unit): a unit is
    a sentence or a table row; a section is the text under one heading."""
    text = FENCE.sub("", BLOCK.sub("", text))
    for section in re.split(r"\n(?=#+ )", text):
        rows = [line for line in section.splitlines() if line.lstrip().startswith("|")]
        body = " ".join(line for line in section.splitlines()
                        if not line.lstrip().startswith("|"))
        sentences = re.split(r"(?<=[.!?:;])\s+(?=[A-Z`(\[*])", " ".join(body.split()))
        for unit in sentences + rows:
            yield section, unit


def false_claims(page_text, known=None, names=None):
    """The units of a page that name an engine for a layer that none of the named engines
    runs, on the net and device the unit names (any of them where it names none)."""
    known = truth() if known is None else known
    names = engines() if names is None else names
    wrong = []
    for section, unit in units(page_text):
        if COMMIT.search(section) or FORCING.search(unit):
            continue                     # a record of a past commit, or a forced engine
        claimed = named_engines(unit, names)
        layers = set(LAYER.findall(unit))
        if claimed - {"reference"} and not layers and GROUP.search(unit) and \
                not re.search(r"\btables?\b", unit):
            wrong.append(f"names {', '.join(sorted(claimed))} for a group of layers, not by "
                         f"name and not from a generated table: {unit}")
        if not claimed or not layers:
            continue
        nets = {net for word, net in NET_WORDS.items() if word in unit} or set(ENGINE_NETS)
        devices = [d for d in ("CPU", "GPU") if d in unit] or ["CPU", "GPU"]
        for pattern in layers:
            matched = [(net, layer) for net, layer in known
                       if net in nets and fnmatch.fnmatchcase(layer, pattern)]
            if not matched:
                wrong.append(f"{pattern}: no such layer in {sorted(nets)}: {unit}")
            elif not any(known[key][d] in claimed for key in matched for d in devices):
                runs = sorted({known[key][d] for key in matched for d in devices})
                wrong.append(f"{pattern} runs {', '.join(runs)}, not {', '.join(sorted(claimed))}"
                             f": {unit}")
    return wrong


PAGES = sorted(p.name for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("page", PAGES)
def test_no_page_names_an_engine_for_a_layer_that_another_engine_runs(page):
    wrong = false_claims((DOCS / page).read_text())
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("page", PAGES)
def test_a_page_that_names_an_engine_has_the_generated_table(page):
    text = (DOCS / page).read_text()
    prose = FENCE.sub("", BLOCK.sub("", text))
    named = {name for name in engines() - {"reference"}
             if re.search(rf"\b{name}\b engine|engines? [`\"]?{name}\b", prose, re.I)}
    if named:
        blocks = set(re.findall(r"<!-- begin generated: (\S+) -->", text))
        assert blocks & ENGINE_BLOCKS, (f"{page} names the engine(s) {sorted(named)} but has "
                                        f"none of the generated tables {sorted(ENGINE_BLOCKS)}")


def test_the_check_catches_a_false_claim():
    """Claims as a page would make them: true ones pass, false ones are caught."""
    true = ["On the CPU the Winograd engine runs `conv_d0b-c` of the 2015 net.",
            "On a GPU the correlation engine takes `conv_u*b-c`.",
            "The flat engine runs `conv_d1a-b` of the demo net on the CPU.",
            "| conv_u0d-score | pointwise | 64 -> 2 |",
            "Forced with `--engine flat`, the flat engine runs `conv_d0b-c` anywhere."]
    false = ["On the CPU the flat engine runs `conv_d0b-c` of the 2015 net.",
             "On the CPU, the full- and half-resolution layers (16 to 128 channels) use the "
             "*flat* im2col instead.",            # the first edition's, false since Winograd
             "In the 2015 net the flat engine runs the 16- to 128-channel layers.",
             "On a GPU the Winograd engine runs `conv_d1b-c`.",
             "The correlation engine takes `conv_u0d-score`.",
             "| conv_d4a-b | winograd | 512 -> 1024 |",
             "The tiled engine runs `pool_d9c-10a`."]
    for claim in true:
        assert not false_claims(f"# Page\n\n{claim}\n"), claim
    for claim in false:
        assert false_claims(f"# Page\n\n{claim}\n"), claim
    # a section that records a commit's measurements claims nothing about today
    assert not false_claims("# Page\n\n## At 5889c21\n\n| conv_d0b-c | flat | 64 x 570 |\n")


def test_the_engine_rules_block_agrees_with_the_registry():
    """Probes of engine_rules' sentences: what "auto" picks for 2-d 3x3 convolutions of a few
    channel counts on each device, and for the U-Net's pools and up-convolutions."""
    import numpy as np

    from docgen import _AnyGPU
    from unetcore import config
    from unetcore.formats.prototxt import parse
    from unetcore.layer import layer_class
    from unetcore.layers.convolution_flat import FLAT_MAX_CHANNELS, FLAT_MIN_CHANNELS
    from unetcore.layers.convolution_winograd import WINOGRAD_MIN_CHANNELS

    def picks(text, shape, xp):
        with config.using_engine("auto"):
            return layer_class(parse(text, "LayerParameter"), [shape], xp).engine

    def conv(c_in, c_out, size=200, kernel=3, xp=np):
        return picks(f'name: "c" type: "Convolution" convolution_param {{ num_output: {c_out} '
                     f'kernel_size: {kernel} }}', (1, c_in, size, size), xp)
    gpu = _AnyGPU()
    assert conv(WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_CHANNELS) == "winograd"
    assert conv(FLAT_MIN_CHANNELS, FLAT_MIN_CHANNELS) == "flat"
    assert conv(FLAT_MIN_CHANNELS - 1, FLAT_MIN_CHANNELS - 1) == "reference"
    assert conv(FLAT_MAX_CHANNELS[2] + 1, 8) == "correlation"     # more in than out, CPU
    assert conv(8, 8, xp=gpu) == "correlation"                     # at least as many, GPU
    assert conv(8, 9, xp=gpu) == "reference"
    assert conv(64, 64, xp=gpu) == "correlation"                   # no Winograd on a GPU
    assert conv(64, 2, kernel=1) == conv(64, 2, kernel=1, xp=gpu) == "pointwise"
    pool = 'name: "p" type: "Pooling" pooling_param { pool: MAX kernel_size: 2 stride: 2 }'
    assert (picks(pool, (1, 8, 64, 64), np), picks(pool, (1, 8, 64, 64), gpu)) == \
        ("tiled", "reference")
    up = ('name: "u" type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 2 '
          'stride: 2 }')
    assert picks(up, (1, 8, 16, 16), np) == picks(up, (1, 8, 16, 16), gpu) == "blocks"
