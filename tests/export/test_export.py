"""ONNX export: the graph passes onnx.checker, and onnxruntime computes what Net.forward
computes, to float32 rounding, at two input sizes of each net (the crops follow the size)."""

import numpy as np
import pytest
from click.testing import CliRunner

from cases import REPO, TEST_DATA, cell_net
import unetcore
from unetcore.cli import main
from unetcore.gradcheck import randomize_params
from unetcore.formats.prototxt import parse

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from unetcore.export.onnx import ExportError, export_onnx  # noqa: E402

PROTOTXT = REPO / "prototxt"


def onnx_equals_forward(net, path, sizes, channels=1):
    export_onnx(net, path)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in sizes:
        x = np.random.default_rng(size).random((1, channels, size, size), dtype=np.float32)
        ours = {name: array.copy() for name, array in net.forward(**{net.image_input: x}).items()}
        theirs = dict(zip([o.name for o in session.get_outputs()],
                          session.run(None, {net.image_input: x})))
        assert list(theirs) == list(ours)
        for name in ours:
            scale = max(1.0, float(np.abs(ours[name]).max()))
            np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-5, atol=1e-5 * scale)


def test_the_small_unet(tmp_path):
    net = unetcore.Net(PROTOTXT / "unet-small-deploy.prototxt", unetcore.TEST, seed=0)
    randomize_params(net, np.random.default_rng(0), scale=0.3)
    onnx_equals_forward(net, tmp_path / "small.onnx", [44, 60])


def test_the_demo_unet_trained_on_isbi(tmp_path):
    weights = TEST_DATA / "isbi-demo_iter_3000.caffemodel.h5"
    net = unetcore.Net(PROTOTXT / "unet-demo-deploy.prototxt", unetcore.TEST, weights=weights)
    onnx_equals_forward(net, tmp_path / "demo.onnx", [188, 220])


def test_a_caffe_unet_net_with_value_transformation_leaky_relu_and_cropping_concat(tmp_path):
    net = unetcore.Net(parse(cell_net(44, depth=2, channels=2), "NetParameter"), unetcore.TEST,
                       seed=1)
    assert {"ValueTransformation", "Concat"} <= {layer.type for layer in net.layers}
    assert "Crop" not in {layer.type for layer in net.layers}
    randomize_params(net, np.random.default_rng(1), scale=0.3)
    onnx_equals_forward(net, tmp_path / "cell.onnx", [44, 60])


def test_a_3d_unet_in_caffe_unets_style(tmp_path):
    """5-d input (batch, channels, depth, height, width), 1x3x3 and 3x3x3 Conv, 1x2x2 and
    2x2x2 MaxPool and ConvTranspose, cropping Concat: at the tile and at another valid size."""
    from unetcore.models import unet3d
    net = unetcore.Net(parse(unet3d.deploy_text("t", (18, 44, 44), 2, 2, 1), "NetParameter"),
                       unetcore.TEST, seed=2)
    randomize_params(net, np.random.default_rng(2), scale=0.3)
    path = tmp_path / "unet3d.onnx"
    export_onnx(net, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [d for d in session.get_inputs()[0].shape] == ["batch", 1, "depth", "height", "width"]
    for shape in ((18, 44, 44), (22, 48, 52)):
        x = np.random.default_rng(sum(shape)).random((1, 1, *shape), dtype=np.float32)
        ours = net.forward(d0a=x)["score"].copy()
        theirs = session.run(None, {"d0a": x})[0]
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5 * np.abs(ours).max())


def test_a_cropping_concat_whose_bottoms_differ_by_one_pixel(tmp_path):
    """(7 - 6) // 2 = 0: the larger bottom is cut at its end only, and still cut."""
    text = ('name: "t" input: "data" input_shape { dim: 1 dim: 1 dim: 7 dim: 7 } '
            'layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { '
            'num_output: 2 kernel_size: 2 weight_filler { type: "gaussian" } } } '
            'layer { name: "cat" type: "Concat" bottom: "a" bottom: "data" top: "cat" }')
    net = unetcore.Net(parse(text, "NetParameter"), unetcore.TEST, seed=2)
    assert net.blobs["cat"].shape == (1, 3, 6, 6)
    onnx_equals_forward(net, tmp_path / "cat.onnx", [7, 9])


def test_a_layer_without_a_mapping_is_refused_by_name_and_type(tmp_path):
    text = ('name: "t" input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 } '
            'layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "data" top: "s" }')
    net = unetcore.Net(parse(text, "NetParameter"), unetcore.TEST)
    with pytest.raises(ExportError, match=r"layer 'sum' \(Eltwise\) has no ONNX mapping"):
        export_onnx(net, tmp_path / "t.onnx")


def test_the_export_command(tmp_path):
    net = unetcore.Net(PROTOTXT / "unet-small-deploy.prototxt", unetcore.TEST, seed=0)
    net.save(tmp_path / "w.caffemodel.h5")
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(PROTOTXT / "unet-small-deploy.prototxt"),
                                  "--weights", str(tmp_path / "w.caffemodel.h5"),
                                  "-o", str(tmp_path / "out" / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (tmp_path / "out" / "m.onnx").exists()
    missing = runner.invoke(main, ["export", str(PROTOTXT / "unet-small-deploy.prototxt"),
                                   "--weights", str(tmp_path / "none.h5"),
                                   "-o", str(tmp_path / "m.onnx")])
    assert missing.exit_code == 1
    assert missing.output.startswith("unetcore: error: ") and "no such weights file" in \
        missing.output and len(missing.output.splitlines()) == 1


def test_a_bioimage_model_zoo_package_validates_and_reproduces_its_test_output(tmp_path):
    spec = pytest.importorskip("bioimageio.spec")
    weights = TEST_DATA / "isbi-demo_iter_3000.caffemodel.h5"
    result = CliRunner().invoke(main, [
        "export", str(PROTOTXT / "unet-demo-deploy.prototxt"), "--weights", str(weights),
        "--bioimageio", str(tmp_path / "pkg"), "--name", "unetcore demo U-Net (ISBI 2012)",
        "--author", "A. Tester", "--data-citation", "Cardona A. et al. (2010), PLoS Biol 8(10)",
        "10.1371/journal.pbio.1000502"])
    assert result.exit_code == 0, result.output
    description = spec.load_description(tmp_path / "pkg" / "rdf.yaml")
    assert type(description).__name__ == "ModelDescr", description.validation_summary.format()
    # the described preprocessing (uint8 -> float32, * 1/255), then the ONNX weights
    x = np.load(tmp_path / "pkg" / "test_input.npy")
    expected = np.load(tmp_path / "pkg" / "test_output.npy")
    assert x.dtype == np.uint8 and x.shape == (1, 1, 188, 188)
    assert expected.shape == (1, 2, 4, 4)                   # 92 px a side cropped by the model
    session = ort.InferenceSession(str(tmp_path / "pkg" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"data": x.astype(np.float32) / 255})
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_a_3d_unet_package_validates_with_a_z_axis_and_reproduces_its_test_output(tmp_path):
    """A 3-d net's package: space axes z, y and x, each with its own smallest size, step
    and halo (the demo net's z differs from y and x), and ONNX Runtime reproduces the test
    output from the test input of the smallest valid volume."""
    spec = pytest.importorskip("bioimageio.spec")
    net = unetcore.Net(PROTOTXT / "unet3d-demo-deploy.prototxt", unetcore.TEST, seed=3)
    net.save(tmp_path / "w.caffemodel.h5")
    result = CliRunner().invoke(main, [
        "export", str(PROTOTXT / "unet3d-demo-deploy.prototxt"), "--weights",
        str(tmp_path / "w.caffemodel.h5"), "--bioimageio", str(tmp_path / "pkg"),
        "--name", "unetcore 3-d demo U-Net", "--author", "A. Tester"])
    assert result.exit_code == 0, result.output
    description = spec.load_description(tmp_path / "pkg" / "rdf.yaml")
    assert type(description).__name__ == "ModelDescr", description.validation_summary.format()
    import json
    rdf = json.loads((tmp_path / "pkg" / "rdf.yaml").read_text())
    axes = rdf["inputs"][0]["axes"][2:]
    assert [(a["id"], a["size"]["min"], a["size"]["step"]) for a in axes] == \
        [("z", 18, 2), ("y", 44, 4), ("x", 44, 4)]
    assert [a["size"]["offset"] for a in rdf["outputs"][0]["axes"][2:]] == [-16, -40, -40]
    x = np.load(tmp_path / "pkg" / "test_input.npy")
    expected = np.load(tmp_path / "pkg" / "test_output.npy")
    assert x.shape == (1, 1, 18, 44, 44) and expected.shape == (1, 2, 2, 4, 4)
    session = ort.InferenceSession(str(tmp_path / "pkg" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"d0a": x.astype(np.float32) / 255})
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert "of size z 18 + 2k, y 44 + 4k, x 44 + 4k pixels per axis" in \
        (tmp_path / "pkg" / "README.md").read_text()


def test_the_package_needs_an_author_and_a_name_the_spec_allows(tmp_path):
    net = unetcore.Net(PROTOTXT / "unet-small-deploy.prototxt", unetcore.TEST, seed=0)
    net.save(tmp_path / "w.caffemodel.h5")
    args = ["export", str(PROTOTXT / "unet-small-deploy.prototxt"), "--weights",
            str(tmp_path / "w.caffemodel.h5"), "--bioimageio", str(tmp_path / "pkg")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "needs --author" in result.output
    result = CliRunner().invoke(main, args + ["--author", "A", "--name", "U-Net, v2"])
    assert result.exit_code == 1 and "may hold only letters" in result.output


def test_the_package_as_one_zip_file(tmp_path):
    import zipfile
    net = unetcore.Net(PROTOTXT / "unet-small-deploy.prototxt", unetcore.TEST, seed=0)
    net.save(tmp_path / "w.caffemodel.h5")
    result = CliRunner().invoke(main, [
        "export", str(PROTOTXT / "unet-small-deploy.prototxt"), "--weights",
        str(tmp_path / "w.caffemodel.h5"), "--bioimageio", str(tmp_path / "unet.zip"),
        "--author", "A"])
    assert result.exit_code == 0, result.output
    names = zipfile.ZipFile(tmp_path / "unet.zip").namelist()
    assert sorted(names) == ["README.md", "model.onnx", "rdf.yaml", "test_input.npy",
                             "test_output.npy"]


def test_a_deploy_net_of_a_size_no_tile_rule_allows_is_refused(tmp_path):
    text = (PROTOTXT / "unet-demo-deploy.prototxt").read_text().replace(
        "dim: 316 dim: 316", "dim: 318 dim: 318")
    (tmp_path / "bad.prototxt").write_text(text)
    weights = TEST_DATA / "isbi-demo_iter_3000.caffemodel.h5"
    result = CliRunner().invoke(main, ["export", str(tmp_path / "bad.prototxt"), "--weights",
                                       str(weights), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1
    assert "input size 318x318" in result.output and "nearest valid sizes: 300, 316" in \
        result.output
