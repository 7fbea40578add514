"""The 2015 release's formats: V1 prototxts (upgraded as Caffe's upgrade_proto does, with the
release's two-bottom centre CROP) and binary .caffemodel weights (read and written without
the protobuf library)."""
import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

import unetcore
from unetcore.formats.upgrade import upgrade_v1_net
from unetcore.models import unet
from unetcore.formats.caffemodel import (_length, encode_blob, encode_net, read_caffemodel,
                                 write_caffemodel)
from unetcore.cli import main
from unetcore.errors import DataError, NetError
from unetcore.gradcheck import randomize_params
from unetcore.formats.prototxt import parse, to_text
from unetcore.formats.schema import V1_TYPES

V1_NAMES = {v2: v1 for v1, v2 in V1_TYPES.items()}


def v1_text(v2_text):
    """A net written the way the 2015 release writes it, from our V2 text: `input` and
    `input_dim`, `layers` with enum types, blobs_lr / weight_decay, and a two-bottom CROP
    without offsets."""
    net = parse(v2_text, "NetParameter")
    lines = [f'name: "{net.name}"']
    for layer in net.layer:
        if layer.type == "Input":
            lines += [f'input: "{layer.top[0]}"'] + [f"input_dim: {d}"
                                                    for d in layer.input_param.shape[0].dim]
            continue
        parts = [f'name: "{layer.name}"', f"type: {V1_NAMES[layer.type]}"]
        parts += [f'bottom: "{b}"' for b in layer.bottom] + [f'top: "{t}"' for t in layer.top]
        parts += [f"blobs_lr: {p.lr_mult:g}" for p in layer.param]
        parts += [f"weight_decay: {p.decay_mult:g}" for p in layer.param]
        parts += [f"include {{ phase: {rule.phase} }}" for rule in layer.include]
        for field in ("convolution_param", "pooling_param", "dropout_param"):
            if layer.has(field):
                body = to_text(getattr(layer, field)).replace("\n", " ")
                parts.append(f"{field} {{ {body} }}")
        lines.append("layers { " + " ".join(parts) + " }")
    return "\n".join(lines) + "\n"


def same_nets(a, b):
    assert a.layer_names == b.layer_names
    for name, blob in a.blobs.items():
        assert b.blobs[name].shape == blob.shape, name
    assert list(a.params) == list(b.params)
    for name, blobs in a.params.items():
        assert [x.shape for x in blobs] == [y.shape for y in b.params[name]], name
    assert a.lr_mults == b.lr_mults and a.decay_mults == b.decay_mults


@pytest.mark.parametrize("name", ["unet-deploy", "unet-release-deploy", "unet-small-deploy"])
def test_a_v1_unet_upgrades_to_our_v2_net(name, tmp_path):
    """Same layers, blob shapes, parameter names and multipliers; and with the same weights
    the same scores, so every CROP is centred as our Crop layers are."""
    (tmp_path / "v1.prototxt").write_text(v1_text(open(f"prototxt/{name}.prototxt").read()))
    upgraded = unetcore.Net(str(tmp_path / "v1.prototxt"), dtype=np.float64)
    reference = unetcore.Net(f"prototxt/{name}.prototxt", dtype=np.float64, seed=0)
    same_nets(upgraded, reference)
    for layer_name, blobs in reference.params.items():
        for a, b in zip(upgraded.params[layer_name], blobs):
            a.data[...] = b.data
    size = 188 if reference.blobs["data"].shape[-1] > 100 else 60
    image = np.random.default_rng(0).random((1, 1, size, size))
    np.testing.assert_array_equal(upgraded.forward(data=image)["score"],
                                  reference.forward(data=image)["score"])


def test_upgrade_writes_text_that_parses_to_the_same_net(tmp_path):
    (tmp_path / "v1.prototxt").write_text(v1_text(open("prototxt/unet-deploy.prototxt").read()))
    result = CliRunner().invoke(main, ["upgrade", str(tmp_path / "v1.prototxt"), "-o",
                                       str(tmp_path / "v2.prototxt")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "v2.prototxt").read_text()
    assert "layers {" not in text and 'type: "Crop"' in text and "lr_mult: 2.0" in text
    same_nets(unetcore.Net(str(tmp_path / "v2.prototxt")),
              unetcore.Net("prototxt/unet-deploy.prototxt"))


def test_upgrade_errors():
    with pytest.raises(NetError, match="a V0 layer .* is not supported"):
        unetcore.Net(parse('layers { layer { name: "a" type: "conv" } }'))
    with pytest.raises(NetError, match="mixes V1 'layers' and V2 'layer' entries"):
        unetcore.Net(parse('layers { name: "a" type: RELU } layer { name: "b" type: "ReLU" }'))
    odd = ('input: "a" input_dim: 1 input_dim: 1 input_dim: 5 input_dim: 5 input: "b" '
           'input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2 '
           'layers { name: "crop" type: CROP bottom: "a" bottom: "b" top: "c" }')
    with pytest.raises(NetError, match=r"layer 'crop' .*cannot centre a \(2, 2\) crop in "
                                       r"\(5, 5\)"):
        unetcore.Net(parse(odd))
    data = ('layers { name: "d" type: HDF5_DATA top: "x" top: "y" hdf5_data_param { source: '
            '"missing.txt" } } layers { name: "crop" type: CROP bottom: "x" bottom: "y" top: "c" }')
    with pytest.raises(NetError, match="layer 'crop' .*the upgrade needs the net's shapes, and "
                                       "building the net for them failed: .*missing.txt"):
        unetcore.Net(parse(data))


def test_the_upgrade_asks_its_caller_for_the_shapes_in_each_phase():
    v1 = parse('input: "a" input_dim: 1 input_dim: 1 input_dim: 7 input_dim: 7 input: "b" '
               'input_dim: 1 input_dim: 1 input_dim: 3 input_dim: 3 '
               'layers { name: "crop" type: CROP bottom: "a" bottom: "b" top: "c" }')
    asked = []

    def blob_shapes(net_param, phase):
        asked.append(phase)
        return {"a": (1, 1, 7, 7), "b": (1, 1, 3, 3), "c": (1, 1, 3, 3)}
    v2 = upgrade_v1_net(v1, blob_shapes)
    assert asked == ["TEST", "TRAIN"]
    assert v2.layer[0].type == "Crop" and list(v2.layer[0].crop_param.offset) == [2, 2]


def unetcore_modules_imported_by(module):
    """The unetcore.* modules that `module`'s source imports, at its top or in a function."""
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("unetcore.") and is_module(name)}


def is_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):       # an attribute such as unetcore.errors.NetError
        return False


def test_the_formats_package_never_imports_the_net():
    """Net imports the formats (it reads prototxts and upgrades V1 nets); the formats import
    neither unetcore.net nor any module that imports it, so there is no import circle."""
    formats = Path(importlib.util.find_spec("unetcore.formats").origin).parent
    to_visit = [f"unetcore.formats.{path.stem}" for path in formats.glob("*.py")
                if path.stem != "__init__"]
    reached = set()
    while to_visit:
        module = to_visit.pop()
        if module not in reached:
            reached.add(module)
            to_visit.extend(unetcore_modules_imported_by(module))
    assert "unetcore.formats.upgrade" in reached and "unetcore.net" not in reached


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("v1", [False, True])
def test_caffemodel_round_trip_bit_for_bit(tmp_path, dtype, packed, v1):
    rng = np.random.default_rng(0)
    layers = [("conv", "Convolution", [rng.standard_normal((4, 2, 3, 3)).astype(dtype),
                                        rng.standard_normal(4).astype(dtype)]),
              ("relu", "ReLU", []),
              ("score", "Convolution", [rng.standard_normal((2, 4, 1, 1)).astype(dtype)])]
    write_caffemodel(tmp_path / "w.caffemodel", layers, "net", packed, v1)
    back = read_caffemodel(tmp_path / "w.caffemodel")
    assert [name for name, _, _ in back] == ["conv", "relu", "score"]
    for (_, _, arrays), (_, read, _) in zip(layers, back):
        for a, b in zip(arrays, read):
            assert b.dtype == a.dtype
            np.testing.assert_array_equal(b.reshape(a.shape), a)    # V1: legacy 4-d shapes
            assert b.shape == ((1,) * (4 - a.ndim) + a.shape if v1 else a.shape)


def test_caffemodel_bad_input_names_the_file_and_the_byte(tmp_path):
    good = encode_net([("conv", "Convolution", [np.ones((2, 3), np.float32)])])
    path = tmp_path / "w.caffemodel"
    path.write_bytes(good[:-5])
    with pytest.raises(DataError, match=r"w.caffemodel: byte 0: a field of \d+ bytes runs past "
                                        "the end"):
        read_caffemodel(path)
    path.write_bytes(good + bytes([0x0B]))                     # field 1 with wire type 3
    with pytest.raises(DataError, match=f"byte {len(good)}: field 1 has wire type 3"):
        read_caffemodel(path)
    shape = encode_blob(np.ones((2, 3), np.float32))[:-26]     # the shape field alone
    five = encode_blob(np.ones(5, np.float32))[-22:]           # a data field of 5 floats
    layer = _length(1, b"conv") + _length(7, shape + five)     # the blob field at byte 3 + 6
    path.write_bytes(_length(100, layer))
    with pytest.raises(DataError, match=r"byte 9: a blob of shape \(2, 3\) holds 5 values"):
        read_caffemodel(path)
    net = unetcore.Net("prototxt/unet-small-deploy.prototxt")
    write_caffemodel(path, [("not_in_the_net", "Convolution", [np.ones(3, np.float32)])])
    with pytest.raises(DataError, match=r"w.caffemodel: byte 0: layer 'not_in_the_net' has "
                                        "weights but the net has no learnable layer"):
        net.copy_from(path, strict=True)
    assert net.copy_from(path) == []                           # training: skipped, as Caffe


def test_segment_with_the_v1_net_and_binary_weights_equals_the_hdf5_path(tmp_path):
    net = unetcore.Net("prototxt/unet-small-deploy.prototxt", seed=0)
    randomize_params(net, np.random.default_rng(1))
    net.save(tmp_path / "w.caffemodel.h5")
    layers = [(layer.name, layer.type, [b.data.copy() for b in layer.blobs])
              for layer in net.layers]
    write_caffemodel(tmp_path / "w.caffemodel", layers, v1=True)   # as the 2015 release
    (tmp_path / "v1.prototxt").write_text(
        v1_text(open("prototxt/unet-small-deploy.prototxt").read()))
    tifffile.imwrite(tmp_path / "image.tif",
                     np.random.default_rng(2).integers(0, 255, (50, 61)).astype(np.uint8))
    outputs = []
    for model, weights in (("prototxt/unet-small-deploy.prototxt", "w.caffemodel.h5"),
                           (str(tmp_path / "v1.prototxt"), "w.caffemodel")):
        out = tmp_path / f"p-{weights}.tif"
        result = CliRunner().invoke(main, ["segment", str(tmp_path / "image.tif"), "-o",
                                           str(tmp_path / "l.tif"), "--model", model,
                                           "--weights", str(tmp_path / weights),
                                           "--probabilities", str(out)])
        assert result.exit_code == 0, result.output
        outputs.append(tifffile.imread(out))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_convert_both_ways_and_binary_snapshots(tmp_path):
    net = unetcore.Net("prototxt/unet-small-deploy.prototxt", seed=0)
    net.save(tmp_path / "a.caffemodel.h5")
    runner = CliRunner()
    for source, target in (("a.caffemodel.h5", "b.caffemodel"), ("b.caffemodel", "c.caffemodel.h5")):
        result = runner.invoke(main, ["convert", str(tmp_path / source), "-o", str(tmp_path / target)])
        assert result.exit_code == 0, result.output
    again = unetcore.Net("prototxt/unet-small-deploy.prototxt", weights=str(tmp_path / "c.caffemodel.h5"))
    for name, blobs in net.params.items():
        for a, b in zip(blobs, again.params[name]):
            np.testing.assert_array_equal(a.data, b.data)
