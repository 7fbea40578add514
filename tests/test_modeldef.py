"""The Fiji U-Net plugin's model files: our own small .modeldef.h5 in the plugin's layout,
with weights in a .caffemodel.h5, segmented as the plugin prepares images."""
import h5py
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

import unetcore
from test_caffe_unet_nets import cell_net
from unetcore.cli import main
from unetcore.errors import DataError
from unetcore.gradcheck import randomize_params
from unetcore.modeldef import normalize, read_modeldef, rescale, training_blobs
from unetcore.prototxt import parse
from unetcore.tiling import forward_tiles, segment, softmax

MODEL_TEXT = cell_net(44, depth=2, channels=2)


def write_modeldef(path, drop=(), normalization=1, element_size=(0.5, 0.5)):
    """A .modeldef.h5 as the plugin writes it, without the keys in `drop`."""
    values = {"/.unet-ident": "test-cell-net", "/model_prototxt": MODEL_TEXT,
              "/solver_prototxt": "base_lr: 0.0001 momentum: 0.9 lr_policy: 'fixed'",
              "/unet_param/name": "test cell net", "/unet_param/description": "depth 2",
              "/unet_param/input_blob_name": "d0a", "/unet_param/padding": "mirror",
              "/unet_param/normalization_type": np.int32(normalization),
              "/unet_param/element_size_um": np.array(element_size),
              "/unet_param/downsampleFactor": np.int32([4]),
              "/unet_param/padInput": np.int32([20]), "/unet_param/padOutput": np.int32([-20])}
    with h5py.File(path, "w") as f:
        for key, value in values.items():
            if key not in drop:
                f[key] = value
        f["/unet_param/pixelwise_loss_weights/borderWeightFactor"] = np.float32(50)
    return path


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    net = unetcore.Net(parse(MODEL_TEXT, "NetParameter"), unetcore.TEST, seed=0)
    randomize_params(net, np.random.default_rng(1))
    net.save(folder / "cell.caffemodel.h5")
    image = np.random.default_rng(2).integers(0, 4096, (30, 37)).astype(np.uint16)
    tifffile.imwrite(folder / "image.tif", image)
    return write_modeldef(folder / "cell.modeldef.h5"), folder / "cell.caffemodel.h5", image


def test_read_modeldef_with_the_plugins_geometry(model_files):
    model = read_modeldef(model_files[0])
    assert (model.name, model.input_blob_name, model.padding) == ("test cell net", "d0a", "mirror")
    assert model.element_size_um == (0.5, 0.5) and model.downsample_factor == (4, 4)
    assert model.pad_input == (20, 20) and model.pad_output == (-20, -20)
    # the plugin's default output tile: the smallest valid one (0) plus 10 pooling steps (40)
    assert model.default_tile() == (80, 80)
    assert model.loss_weights["borderWeightFactor"] == 50
    assert model.loss_weights["sigma1_um"] == 5.0                        # the plugin's default


def test_a_missing_key_names_the_file_and_the_key(tmp_path):
    path = write_modeldef(tmp_path / "bad.modeldef.h5", drop=("/unet_param/padInput",))
    with pytest.raises(DataError, match=r"bad.modeldef.h5: not a U-Net model definition: it has "
                                        r"no '/unet_param/padInput'"):
        read_modeldef(path)


def test_normalization_types_by_hand():
    image = np.array([[[1.0, 3.0], [5.0, 7.0]]])
    np.testing.assert_allclose(normalize(image, 0), image)
    np.testing.assert_allclose(normalize(image, 1), [[[0, 1 / 3], [2 / 3, 1]]])
    np.testing.assert_allclose(normalize(image, 2), (image - 4) / np.sqrt(5))
    two_channels = np.array([[[3.0, 0.0]], [[4.0, 1.0]]])                # norms 5 and 1
    np.testing.assert_allclose(normalize(two_channels, 3), two_channels / 5)
    with pytest.raises(DataError, match="normalization_type 7 is not one of"):
        normalize(image, 7)


def test_rescale_is_the_plugins_bilinear_with_mirrored_edge():
    image = np.array([[[0.0, 2.0], [4.0, 6.0]]])
    out = rescale(image, (2.0, 2.0))
    # rows and columns read at 0, 0.5, 1, 1.5; position 1.5 mixes pixel 1 and its mirror, 0
    np.testing.assert_allclose(out[0, 0], [0, 1, 2, 1])
    np.testing.assert_allclose(out[0, :, 0], [0, 2, 4, 2])


def test_segment_with_a_modeldef_is_the_plugins_pipeline(model_files, tmp_path):
    modeldef, weights, image = model_files
    result = CliRunner().invoke(main, ["segment", str(modeldef.parent / "image.tif"),
                                       "-o", str(tmp_path / "labels.tif"), "--modeldef",
                                       str(modeldef), "--weights", str(weights),
                                       "--probabilities", str(tmp_path / "p.tif")])
    assert result.exit_code == 0, result.output
    net = unetcore.Net(parse(MODEL_TEXT, "NetParameter"), unetcore.TEST, weights=str(weights))
    net.set_inputs({"d0a": np.zeros((1, 1, 80, 80))})                    # the default tile
    low, high = image.min(), image.max()
    expected = softmax(segment(net, ((image - low) / (high - low))[None].astype(np.float32)))
    np.testing.assert_allclose(tifffile.imread(tmp_path / "p.tif")[0], expected, atol=1e-6)
    labels = tifffile.imread(tmp_path / "labels.tif")
    np.testing.assert_array_equal(labels, 255 * (expected.argmax(axis=0) == 1))


def test_segment_with_a_modeldef_rescales_to_the_models_pixel_size(model_files, tmp_path):
    modeldef, weights, _ = model_files
    result = CliRunner().invoke(main, ["segment", str(modeldef.parent / "image.tif"), "-o",
                                       str(tmp_path / "labels.tif"), "--modeldef",
                                       str(modeldef), "--weights", str(weights),
                                       "--element-size", "0.25", "0.25"])
    assert result.exit_code == 0, result.output
    assert tifffile.imread(tmp_path / "labels.tif").shape == (15, 18)   # 30 x 37 at half size


def test_segment_refuses_mixed_or_missing_model_options(model_files, tmp_path):
    modeldef, weights, _ = model_files
    for extra, message in ((["--modeldef", str(modeldef), "--scale", "2"],
                            "--scale and --mean do not apply with --modeldef"),
                           ([], "give the net as --model DEPLOY.prototxt or --modeldef"),
                           (["--model", "prototxt/unet-deploy.prototxt", "--element-size", "1",
                             "1"], "--element-size needs --modeldef")):
        result = CliRunner().invoke(main, ["segment", str(modeldef.parent / "image.tif"), "-o",
                                           str(tmp_path / "x.tif"), "--weights", str(weights)]
                                    + extra)
        assert result.exit_code == 1 and message in result.output, result.output


def test_average_mirror_is_the_mean_over_four_flips(model_files):
    net = unetcore.Net(parse(MODEL_TEXT, "NetParameter"), unetcore.TEST,
                       weights=str(model_files[1]))
    tiles = np.random.default_rng(5).random((1, 1, 44, 44)).astype(np.float32)
    plain = forward_tiles(net, tiles)
    expected = plain.copy()
    for axes in ((-1,), (-2,), (-2, -1)):
        expected += np.flip(forward_tiles(net, np.flip(tiles, axes).copy()), axes)
    np.testing.assert_allclose(forward_tiles(net, tiles, average_mirror=True), expected / 4,
                               rtol=1e-6)
    assert not np.allclose(expected / 4, plain)


def test_training_blobs_of_two_touching_objects_by_hand(model_files):
    """Instance labels 1 and 2 touch: the pixels of 2 that touch 1 in scan order become a
    background gap. Background weights follow the plugin's formula, in um."""
    model = read_modeldef(model_files[0])                 # element size 0.5 um
    labels = np.zeros((5, 8), int)
    labels[1:4, 1:4] = 1
    labels[1:4, 4:7] = 2
    out_labels, weights, pdf = training_blobs(labels, model)
    gap = np.zeros_like(labels, bool)
    gap[1:4, 4] = True          # object 2's pixels whose left or upper-left neighbour is 1
    gap[2:4, 3] = True          # object 1's pixels whose upper-right neighbour is 2
    np.testing.assert_array_equal(out_labels, (labels > 0) & ~gap)
    np.testing.assert_array_equal(weights[out_labels == 1], 1)
    np.testing.assert_allclose(pdf, np.where(out_labels == 1, 1.0, 0.1))
    # pixel (0, 2): 1 px from object 1, (1, 2) px from object 2's nearest pixel (1, 4);
    # distances are taken to the objects as labelled, gaps included
    d1, d2 = 0.5, 0.5 * np.hypot(1, 2)
    expected = 0.1 + 50 * np.exp(-(d1 + d2) ** 2 / 18) + 0.9 * np.exp(-d1 ** 2 / 50)
    assert weights[0, 2] == pytest.approx(expected, rel=1e-6)


def test_binary_masks_have_no_gaps_and_classes_per_pixel_for_more_classes():
    from unetcore.modeldef import separated_instances
    mask = np.zeros((4, 7), int)
    mask[:, 1:3] = 255
    mask[:, 3:5] = 255                                    # one object: its components
    instances, gaps = separated_instances(mask)
    assert instances[0].max() == 1 and not gaps.any()
    classes = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    per_class, gaps = separated_instances(classes, num_classes=3)
    assert len(per_class) == 2 and not gaps.any()         # two classes touch: no gap


def test_train_with_a_modeldef_fine_tunes_on_images_and_labels(model_files, tmp_path):
    modeldef, weights, image = model_files
    labels = (np.random.default_rng(3).random(image.shape) > 0.6).astype(np.uint8) * 255
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    result = CliRunner().invoke(main, ["train", "--modeldef", str(modeldef), "--weights",
                                       str(weights), "--images",
                                       str(modeldef.parent / "image.tif"), "--labels",
                                       str(tmp_path / "labels.tif"), "--max-iter", "3",
                                       "--snapshot-prefix", str(tmp_path / "ft")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ft_iter_3.caffemodel.h5").exists()
    with h5py.File(tmp_path / "ft-training-data" / "train-0.h5") as f:
        assert set(f) == {"data", "labels", "weights", "weights2"}
        assert f["data"].shape == (1, 1, 30, 37) and f["weights2"].shape == (1, 1, 30, 37)
    tuned = unetcore.Net(parse(MODEL_TEXT, "NetParameter"), unetcore.TEST,
                         weights=str(tmp_path / "ft_iter_3.caffemodel.h5"))
    before = unetcore.Net(parse(MODEL_TEXT, "NetParameter"), unetcore.TEST, weights=str(weights))
    assert not np.allclose(tuned.params["conv_d0a-b"][0].data, before.params["conv_d0a-b"][0].data)


def test_segment_refuses_weights_that_leave_layers_random(model_files, tmp_path):
    modeldef, weights, _ = model_files
    with h5py.File(weights) as source, h5py.File(tmp_path / "part.caffemodel.h5", "w") as part:
        source.copy("data/conv_d0a-b", part, "data/conv_d0a-b")
    result = CliRunner().invoke(main, ["segment", str(modeldef.parent / "image.tif"), "-o",
                                       str(tmp_path / "x.tif"), "--modeldef", str(modeldef),
                                       "--weights", str(tmp_path / "part.caffemodel.h5")])
    assert result.exit_code == 1
    assert "part.caffemodel.h5: has no weights for layer(s) conv_d0b-c, conv_d1a-b" in result.output


def test_segment_refuses_a_padding_it_does_not_do(model_files, tmp_path):
    modeldef = tmp_path / "zero.modeldef.h5"
    write_modeldef(modeldef)
    with h5py.File(modeldef, "a") as f:
        del f["/unet_param/padding"]
        f["/unet_param/padding"] = "zero"
    result = CliRunner().invoke(main, ["segment", str(model_files[0].parent / "image.tif"), "-o",
                                       str(tmp_path / "x.tif"), "--modeldef", str(modeldef),
                                       "--weights", str(model_files[1])])
    assert result.exit_code == 1 and "padding 'zero' is not supported yet" in result.output
