"""The Fiji U-Net plugin's model files: read and written in the plugin's layout (every string
form, scalar or vector ints, loss weights in pixels or LMB's micrometres), caffe_unet's TEST
net, the plugin's image preparation and training blobs, and `segment` / `train --modeldef`
on a model file written here and on LMB's real 2d_cell_net_v0 file when ../shared is there."""
import re

import h5py
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from cases import LMB_MODEL, needs_lmb_model, write_plugin_modeldef
from unetcore.cli import main
from unetcore.errors import DataError
from unetcore.fiji.images import (java_round, normalize, prepare_image, rescale,
                                  rescale_labels, resample_to, tiff_element_size_um,
                                  training_blobs)
from unetcore.fiji.predict import averaged_scores
from unetcore.gradcheck import randomize_params
from unetcore.fiji.model import load
from unetcore.fiji.modeldef import caffe_unet_net, read_modeldef, write_modeldef
from unetcore.formats.prototxt import parse
from unetcore.inference.tiling import segment, softmax


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    modeldef = write_plugin_modeldef(folder / "cell.modeldef.h5")
    net = caffe_unet_net(read_modeldef(modeldef), 1, (44, 44))
    randomize_params(net, np.random.default_rng(1))
    net.save(folder / "cell.caffemodel.h5")
    image = np.random.default_rng(2).integers(0, 4096, (30, 37)).astype(np.uint16)
    tifffile.imwrite(folder / "image.tif", image)
    return modeldef, folder / "cell.caffemodel.h5", image


@pytest.fixture(scope="module")
def lmb_weights(tmp_path_factory):
    """Weights of 2d_cell_net_v0's layout (its trained weights are not public here)."""
    net = caffe_unet_net(read_modeldef(LMB_MODEL), 1, (188, 188))
    rng = np.random.default_rng(0)
    for blobs in net.params.values():
        fan_in = np.prod(blobs[0].shape[1:])
        blobs[0].data[...] = rng.normal(0, np.sqrt(2 / fan_in), blobs[0].shape)
    path = tmp_path_factory.mktemp("lmb") / "2d_cell_net_v0.caffemodel.h5"
    net.save(path)
    return path


# ---------------------------------------------------------------- reading and writing


@needs_lmb_model
def test_lmbs_real_model_file_reads_as_the_plugin_and_caffe_unet_read_it():
    model = read_modeldef(LMB_MODEL)
    assert (model.ident, model.name, model.input_blob_name) == \
        ("2d_cell_net_v0", "2D Cell Net (v0)", "data3")
    assert model.element_size_um == (0.5, 0.5) and model.normalization_type == 1
    assert (model.downsample_factor, model.pad_input, model.pad_output) == \
        ((16, 16), (60, 60), (-124, -124))
    assert model.memory_map.shape == (2, 79) and model.class_names == []
    # borderWeightSigma_um 3 and sigma1_um 5 at 0.5 um per pixel
    assert model.loss_weights["borderWeightSigmaPx"] == pytest.approx(6)
    assert model.loss_weights["sigma1Px"] == pytest.approx(10)
    assert model.loss_weights_from.startswith("micrometres")
    assert model.check_tile() == (188, 188)            # caffe_unet's check shape
    assert model.segmentation_tile() == model.finetuning_tile() == (348, 348)
    net = caffe_unet_net(model, 1, model.check_tile())
    assert net.inputs == ["data3"] and net.outputs == ["score"]
    assert net.blobs["score"].shape == (1, 2, 4, 4)


def test_every_string_form_and_scalar_or_vector_ints(tmp_path):
    path = write_plugin_modeldef(tmp_path / "m.modeldef.h5")
    with h5py.File(path, "a") as f:
        for key in ("/unet_param/name", "/unet_param/padInput", "/unet_param/padding",
                    "/unet_param/normalization_type", "/unet_param/input_blob_name"):
            del f[key]
        f["/unet_param/name"] = "variable-length"                    # h5py's vlen str
        f["/unet_param/padding"] = np.array([b"mirror"])             # a 1-element array
        f["/unet_param/input_blob_name"] = np.bytes_(b"d0a\0\0")     # NUL-padded ascii
        f["/unet_param/padInput"] = np.int32(20)                     # a scalar
        f["/unet_param/normalization_type"] = np.int64([1])          # a 1-element array
    model = read_modeldef(path)
    assert (model.name, model.padding, model.input_blob_name) == \
        ("variable-length", "mirror", "d0a")
    assert model.description == "depth 2, für Tests"                 # utf-8
    assert model.class_names == ["Background", "cell"]
    assert model.pad_input == (20, 20) and model.normalization_type == 1


def test_loss_weights_in_pixels_micrometres_or_the_plugins_defaults(tmp_path):
    def weights(keys, element_size=(0.5, 0.5)):
        path = write_plugin_modeldef(tmp_path / "w.modeldef.h5", element_size,
                                     loss_weights=keys)
        model = read_modeldef(path)
        return model.loss_weights, model.loss_weights_from

    pixels = {"borderWeightFactor": 20, "borderWeightSigmaPx": 4,
              "foregroundBackgroundRatio": 0.5, "sigma1Px": 8}
    assert weights(pixels) == (pytest.approx(pixels), "pixels")
    lmb = {"borderWeightFactor": 50, "borderWeightSigma_um": 3,
           "foregroundBackgroundRatio": 0.1, "sigma1_um": 5}
    converted, origin = weights(lmb, (0.25, 0.25))
    assert converted["borderWeightSigmaPx"] == 12 and converted["sigma1Px"] == 20
    assert origin == "micrometres at 0.25 um per pixel"
    # one key missing: all four take the plugin's defaults, as ModelDefinition does
    partial = {"borderWeightFactor": 20, "sigma1Px": 8}
    assert weights(partial) == ({"borderWeightFactor": 50, "borderWeightSigmaPx": 6,
                                 "foregroundBackgroundRatio": 0.1, "sigma1Px": 10},
                                "the plugin's defaults")


def test_write_modeldef_round_trips_in_the_plugins_layout(model_files, tmp_path):
    model = read_modeldef(model_files[0])
    written = write_modeldef(model, tmp_path / "copy.modeldef.h5")
    again = read_modeldef(written.path)
    for key in ("ident", "name", "description", "input_blob_name", "model_prototxt",
                "padding", "element_size_um", "pad_output", "class_names", "loss_weights"):
        assert getattr(again, key) == pytest.approx(getattr(model, key)) \
            if key == "loss_weights" else getattr(again, key) == getattr(model, key)
    with h5py.File(written.path) as f:
        assert f["/unet_param/padInput"].dtype == np.int32
        assert f["/unet_param/element_size_um"].dtype == np.float64
        assert f["/unet_param/pixelwise_loss_weights/sigma1Px"].dtype == np.float32
        assert f["/unet_param/classNames"].shape == (2,)


def test_a_missing_or_malformed_key_names_the_file_and_the_key(tmp_path):
    path = write_plugin_modeldef(tmp_path / "bad.modeldef.h5")
    with h5py.File(path, "a") as f:
        del f["/unet_param/padInput"]
    with pytest.raises(DataError, match=r"bad.modeldef.h5: not a U-Net model definition: it has "
                                        r"no '/unet_param/padInput'"):
        read_modeldef(path)
    path = write_plugin_modeldef(tmp_path / "bad2.modeldef.h5", element_size=(1, 1, 1, 1))
    with pytest.raises(DataError, match=r"element_size_um: has 4 values"):
        read_modeldef(path)


def test_the_test_net_is_caffe_unets_input_layer_before_the_train_prototxt(model_files):
    model = read_modeldef(model_files[0])
    net = caffe_unet_net(model, 3, (44, 44))
    assert net.layer_names[0] == "d0a" and net.inputs == ["d0a"]
    assert net.blobs["d0a"].shape == (1, 3, 44, 44) and net.blobs["score"].shape[-1] == 4
    assert "loaddata" not in net.layer_names                       # TRAIN-only


# ---------------------------------------------------------------- images and labels


def test_java_rounding_and_the_rescaled_size():
    assert [java_round(x) for x in (2.5, 3.5, -2.5, 2.4999)] == [3, 4, -2, 2]
    image = np.arange(5 * 7, dtype=np.float32).reshape(1, 5, 7)
    assert rescale(image, (0.5, 0.5)).shape == (1, 3, 4)           # 2.5 -> 3, 3.5 -> 4


def test_rescale_is_the_plugins_bilinear_with_mirrored_edge():
    image = np.array([[[0.0, 2.0], [4.0, 6.0]]])
    out = rescale(image, (2.0, 2.0))
    # rows and columns read at 0, 0.5, 1, 1.5; position 1.5 mixes pixel 1 and its mirror, 0
    np.testing.assert_allclose(out[0, 0], [0, 1, 2, 1])
    np.testing.assert_allclose(out[0, :, 0], [0, 2, 4, 2])
    labels = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(rescale_labels(labels, (1.0, 2.0)), [[1, 2, 2, 3, 3, 2]])
    back = resample_to(out, (2, 2), (2.0, 2.0))
    np.testing.assert_allclose(back, image)


def test_calibration_uncalibrated_is_one_micrometre_per_pixel(tmp_path):
    image = np.zeros((4, 4), np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", image)
    assert tiff_element_size_um(tmp_path / "plain.tif") == (1.0, 1.0)
    tifffile.imwrite(tmp_path / "um.tif", image, imagej=True, resolution=(4.0, 2.0),
                     metadata={"unit": "um"})
    assert tiff_element_size_um(tmp_path / "um.tif") == pytest.approx((0.5, 0.25))
    tifffile.imwrite(tmp_path / "nm.tif", np.zeros((3, 4, 4), np.uint8), imagej=True,
                     resolution=(0.01, 0.01), metadata={"unit": "nm", "spacing": 200.0})
    assert tiff_element_size_um(tmp_path / "nm.tif", 3) == pytest.approx((0.2, 0.1, 0.1))


def test_normalization_types_by_hand():
    image = np.array([[[1.0, 3.0], [5.0, 7.0]]])
    np.testing.assert_allclose(normalize(image, 0), image)
    np.testing.assert_allclose(normalize(image, 1), [[[0, 1 / 3], [2 / 3, 1]]])
    np.testing.assert_allclose(normalize(image, 2), (image - 4) / np.sqrt(5))
    two_channels = np.array([[[3.0, 0.0]], [[4.0, 1.0]]])                # norms 5 and 1
    np.testing.assert_allclose(normalize(two_channels, 3), two_channels / 5)
    with pytest.raises(DataError, match="normalization_type 7 is not one of"):
        normalize(image, 7)


def test_training_blobs_by_hand(model_files):
    """Label 0 is ignored (weight 0, pdf 0), 1 is background, 2 the class. The two squares
    touch diagonally only: two 4-connected instances, and the pixel of the second whose
    upper-left neighbour is the first becomes a background gap."""
    model = read_modeldef(model_files[0])
    labels = np.ones((6, 8), int)
    labels[0, :] = 0
    labels[1:3, 1:3] = 2
    labels[3:5, 3:5] = 2
    out, weights, pdf = training_blobs(labels, model)
    kept = (labels == 2)
    kept[3, 3] = False                                   # the gap
    np.testing.assert_array_equal(out, kept)
    np.testing.assert_array_equal(weights[0], 0)
    np.testing.assert_array_equal(pdf[0], 0)
    np.testing.assert_array_equal(weights[kept], 1)
    np.testing.assert_allclose(pdf[1:], np.where(kept, 1.0, 0.1)[1:])
    # pixel (1, 4): 2 px from the first square's (1, 2), hypot(2, 0)... and the second's
    # nearest pixel (3, 4) 2 px below; distances in pixels, sigma 6 and 10 px
    d1, d2 = 2.0, 2.0
    expected = 0.1 + 50 * np.exp(-(d1 + d2) ** 2 / 72) + 0.9 * np.exp(-d1 ** 2 / 200)
    assert weights[1, 4] == pytest.approx(expected, rel=1e-6)


def test_instance_labels_mode_separates_touching_objects():
    from unetcore.fiji.images import instances_per_class
    labels = np.ones((3, 6), int)
    labels[:, 1:3], labels[:, 3:5] = 5, 7                  # two touching objects
    classes, (instances,) = instances_per_class(labels, 2, labels_are_classes=False)
    assert set(np.unique(classes)) == {1, 2} and len(np.unique(instances)) == 3


def test_labels_beyond_the_models_classes_are_refused(model_files):
    with pytest.raises(DataError, match="label 3 is class 2, but the model has 1 foreground"):
        training_blobs(np.full((4, 4), 3), read_modeldef(model_files[0]))


# ---------------------------------------------------------------- segmentation


def test_segment_with_a_modeldef_is_the_plugins_pipeline(model_files, tmp_path):
    """An uncalibrated image is 1 um per pixel: doubled to the model's 0.5 um, segmented,
    and the probabilities read back at the image's own pixels."""
    modeldef, weights, image = model_files
    result = CliRunner().invoke(main, ["segment", str(modeldef.parent / "image.tif"),
                                       "-o", str(tmp_path / "labels.tif"), "--modeldef",
                                       str(modeldef), "--weights", str(weights),
                                       "--probabilities", str(tmp_path / "p.tif")])
    assert result.exit_code == 0, result.output
    model = read_modeldef(modeldef)
    net = caffe_unet_net(model, 1, (80, 80))
    net.copy_from(str(weights))
    prepared = prepare_image(image[None].astype(np.float32), model, (1.0, 1.0))
    assert prepared.shape == (1, 60, 74)
    expected = resample_to(softmax(segment(net, prepared)), image.shape, (2.0, 2.0))
    probabilities = tifffile.imread(tmp_path / "p.tif")
    np.testing.assert_allclose(probabilities[0], expected, atol=1e-5)
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == image.shape
    np.testing.assert_array_equal(labels, 255 * (probabilities[0].argmax(axis=0) == 1))
    # the Python API computes the same
    np.testing.assert_allclose(load(modeldef).segment(image, weights), probabilities[0],
                               atol=1e-5)


def test_segment_with_the_models_pixel_size_does_not_rescale(model_files, tmp_path):
    modeldef, weights, image = model_files
    result = CliRunner().invoke(main, ["segment", str(modeldef.parent / "image.tif"), "-o",
                                       str(tmp_path / "labels.tif"), "--modeldef",
                                       str(modeldef), "--weights", str(weights),
                                       "--element-size", "0.5", "0.5", "--probabilities",
                                       str(tmp_path / "p.tif")])
    assert result.exit_code == 0, result.output
    net = caffe_unet_net(read_modeldef(modeldef), 1, (80, 80))
    net.copy_from(str(weights))
    low, high = image.min(), image.max()
    expected = softmax(segment(net, ((image - low) / (high - low))[None].astype(np.float32)))
    np.testing.assert_allclose(tifffile.imread(tmp_path / "p.tif")[0], expected, atol=1e-6)


@pytest.mark.parametrize("normalization,padding", [(1, "mirror"), (2, "zero"), (3, "mirror")])
def test_a_volume_segmented_chunk_by_chunk_with_a_modeldef_equals_the_tiff_path(
        model_files, tmp_path, normalization, padding):
    """-o OUT.zarr with --modeldef: each slice normalized over the whole slice and padded as
    the model says, whatever chunk it is cut into; the same probabilities as segmenting the
    stack into a TIFF at the model's pixel size."""
    pytest.importorskip("dask.distributed")
    import zarr
    _, weights, _ = model_files
    modeldef = write_plugin_modeldef(tmp_path / "m.modeldef.h5", padding=padding,
                                     normalization=normalization)
    stack = np.random.default_rng(8).integers(0, 4096, (2, 70, 61)).astype(np.uint16)
    stack[1] //= 3                                  # each slice its own range and mean
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    common = ["--modeldef", str(modeldef), "--weights", str(weights), "--tile", "80"]
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "stack.tif"), "-o",
                                       str(tmp_path / "l.tif"), "--element-size", "0.5", "0.5",
                                       "--probabilities", str(tmp_path / "p.tif"), *common])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "stack.tif"), "-o",
                                       str(tmp_path / "l.zarr"), "--chunk", "40",
                                       "--probabilities", str(tmp_path / "p.zarr"), *common])
    assert result.exit_code == 0, result.output
    assert "2 slice(s) of 70x61, 8 chunks of 40 px: 8 segmented" in result.output
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "p.zarr"))[:],
                               tifffile.imread(tmp_path / "p.tif"), atol=1e-5)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "l.zarr"))[:],
                                  tifffile.imread(tmp_path / "l.tif"))


def test_a_chunked_modeldef_segmentation_refuses_another_pixel_size_and_averaging(
        model_files, tmp_path):
    pytest.importorskip("dask.distributed")
    modeldef, weights, _ = model_files
    common = [str(modeldef.parent / "image.tif"), "-o", str(tmp_path / "l.zarr"), "--modeldef",
              str(modeldef), "--weights", str(weights)]
    for extra, message in ((["--element-size", "1", "1"], "--element-size 1 1: -o OUT.zarr "
                            "segments at the model's pixel size, 0.5 x 0.5 um, and does not "
                            "rescale"),
                           (["--average-rotate"], "-o OUT.zarr segments without "
                            "--average-mirror or --average-rotate"),
                           (["--bits", "12"], "--scale, --mean and --bits do not apply with "
                            "--modeldef")):
        result = CliRunner().invoke(main, ["segment", *common, *extra])
        assert result.exit_code == 1 and message in result.output, result.output


def test_zero_padding_is_one_pass_over_the_zero_extended_image(model_files):
    net = caffe_unet_net(read_modeldef(model_files[0]), 1, (84, 84))       # output 44 >= 30
    net.copy_from(str(model_files[1]))
    image = np.random.default_rng(3).random((1, 30, 30)).astype(np.float32)
    padded = np.pad(image, [(0, 0), (20, 34), (20, 34)])              # margin 20, to 84
    single = net.forward(d0a=padded[None])["score"][0][:, :30, :30].copy()
    np.testing.assert_allclose(segment(net, image, padding="zero"), single, atol=1e-5)
    assert not np.allclose(segment(net, image), single, atol=1e-3)


def test_averaging_is_the_mean_over_whole_image_flips_and_rotations(model_files):
    net = caffe_unet_net(read_modeldef(model_files[0]), 1, (44, 44))
    net.copy_from(str(model_files[1]))
    image = np.random.default_rng(5).random((1, 12, 20)).astype(np.float32)
    flips = [np.flip(segment(net, np.flip(image, axes).copy()), axes)
             for axes in ((), (-1,), (-2,), (-2, -1))]
    np.testing.assert_allclose(averaged_scores(net, image, "mirror"), np.mean(flips, axis=0),
                               rtol=1e-5, atol=1e-6)
    turns = [np.rot90(segment(net, np.rot90(image, k, (1, 2)).copy()), -k, (1, 2))
             for k in range(4)]
    np.testing.assert_allclose(averaged_scores(net, image, "rotate"), np.mean(turns, axis=0),
                               rtol=1e-5, atol=1e-6)


def test_segment_with_a_modeldef_averages_rotations_as_caffe_unet(model_files, tmp_path):
    modeldef, weights, image = model_files
    result = CliRunner().invoke(main, ["segment", str(modeldef.parent / "image.tif"), "-o",
                                       str(tmp_path / "labels.tif"), "--modeldef",
                                       str(modeldef), "--weights", str(weights),
                                       "--element-size", "0.5", "0.5", "--average-rotate",
                                       "--probabilities", str(tmp_path / "p.tif")])
    assert result.exit_code == 0, result.output
    net = caffe_unet_net(read_modeldef(modeldef), 1, (80, 80))
    net.copy_from(str(weights))
    low, high = image.min(), image.max()
    prepared = ((image - low) / (high - low))[None].astype(np.float32)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "p.tif")[0],
                               softmax(averaged_scores(net, prepared, "rotate")), atol=1e-5)


def test_segment_refuses_mixed_or_missing_model_options(model_files, tmp_path):
    modeldef, weights, _ = model_files
    for extra, message in ((["--modeldef", str(modeldef), "--scale", "2"],
                            "--scale, --mean and --bits do not apply with --modeldef"),
                           ([], "give the net as --model DEPLOY.prototxt or --modeldef"),
                           (["--model", "prototxt/unet-deploy.prototxt", "--element-size", "1",
                             "1"], "--element-size needs --modeldef"),
                           (["--model", "prototxt/unet-deploy.prototxt", "--average-rotate"],
                            "--average-rotate needs --modeldef"),
                           (["--modeldef", str(modeldef), "--average-rotate",
                             "--average-mirror"], "exclude each other")):
        result = CliRunner().invoke(main, ["segment", str(modeldef.parent / "image.tif"), "-o",
                                           str(tmp_path / "x.tif"), "--weights", str(weights)]
                                    + extra)
        assert result.exit_code == 1 and message in result.output, result.output


def test_segment_refuses_weights_that_leave_layers_random(model_files, tmp_path):
    modeldef, weights, _ = model_files
    with h5py.File(weights) as source, h5py.File(tmp_path / "part.caffemodel.h5", "w") as part:
        source.copy("data/conv_d0a-b", part, "data/conv_d0a-b")
    result = CliRunner().invoke(main, ["segment", str(modeldef.parent / "image.tif"), "-o",
                                       str(tmp_path / "x.tif"), "--modeldef", str(modeldef),
                                       "--weights", str(tmp_path / "part.caffemodel.h5")])
    assert result.exit_code == 1
    assert "part.caffemodel.h5: has no weights for layer(s) conv_d0b-c, conv_d1a-b" in result.output


@needs_lmb_model
def test_segment_with_lmbs_real_model_file(lmb_weights, tmp_path):
    image = np.random.default_rng(4).integers(0, 255, (20, 26)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "cells.tif"), "-o",
                                       str(tmp_path / "labels.tif"), "--modeldef",
                                       str(LMB_MODEL), "--weights", str(lmb_weights)])
    assert result.exit_code == 0, result.output
    assert tifffile.imread(tmp_path / "labels.tif").shape == (20, 26)


# ---------------------------------------------------------------- fine-tuning


def write_training_pair(folder, shapes, seed=3):
    """Images and plugin labels (1 background, 2 cells) of the given shapes, as stacks."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for shape in shapes:
        label = np.ones(shape, np.uint8)
        label[2:8, 2:9] = 2
        label[10:16, 12:20] = 2
        label[0, :] = 0
        images.append((label * 60 + rng.integers(0, 40, shape)).astype(np.uint8))
        labels.append(label)
    for name, arrays in (("images", images), ("labels", labels)):
        for k, array in enumerate(arrays):
            tifffile.imwrite(folder / f"{name}-{k}.tif", array)
    return images, labels


def test_train_with_a_modeldef_fine_tunes_as_the_plugin(model_files, tmp_path):
    modeldef, weights, _ = model_files
    write_training_pair(tmp_path, [(24, 30)])
    result = CliRunner().invoke(main, ["train", "--modeldef", str(modeldef), "--weights",
                                       str(weights), "--images", str(tmp_path / "images-0.tif"),
                                       "--labels", str(tmp_path / "labels-0.tif"),
                                       "--element-size", "0.5", "0.5", "--max-iter", "3",
                                       "--snapshot-prefix", str(tmp_path / "ft")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ft_iter_3.caffemodel.h5").exists()
    with h5py.File(tmp_path / "ft_train_0.h5") as f:
        assert set(f) == {"data", "labels", "weights", "weights2"}
        assert f["data"].shape == (1, 1, 24, 30) and f["weights2"].shape == (1, 1, 24, 30)
        assert list(f["data"].attrs["element_size_um"]) == [0.5, 0.5]
    solver = parse((tmp_path / "ft-solver.prototxt").read_text(), "SolverParameter")
    assert (solver.type, solver.lr_policy, solver.base_lr, solver.max_iter, solver.snapshot) \
        == ("Adam", "fixed", pytest.approx(1e-4), 3, 3)
    tuned = read_modeldef(tmp_path / "ft.modeldef.h5")
    assert tuned.ident == "test-cell-net-ft" and tuned.class_names == ["Background", "cell"]
    net_param = parse(tuned.model_prototxt, "NetParameter")
    deformation = [layer for layer in net_param.layer if layer.type == "CreateDeformation"][0]
    assert (deformation.create_deformation_param.ny, deformation.create_deformation_param.nx) \
        == (80, 80)       # the plugin's tile: the smallest input, 40, + 10 pooling steps of 4
    assert tuned.solver_prototxt == read_modeldef(modeldef).solver_prototxt
    model = read_modeldef(tmp_path / "ft.modeldef.h5")
    after = caffe_unet_net(model, 1, (44, 44))
    after.copy_from(str(tmp_path / "ft_iter_3.caffemodel.h5"))
    before = caffe_unet_net(model, 1, (44, 44))
    before.copy_from(str(weights))
    assert not np.allclose(after.params["conv_d0a-b"][0].data, before.params["conv_d0a-b"][0].data)


def test_train_with_a_modeldef_takes_images_of_different_sizes(model_files, tmp_path):
    """One HDF5 file per image, of its own size, as the plugin writes them; the plugin's
    defaults overridden: another tile and learning rate."""
    modeldef, weights, _ = model_files
    images, labels = write_training_pair(tmp_path, [(24, 30), (20, 26)])
    for name, arrays in (("images", images), ("labels", labels)):
        padded = [np.pad(a, [(0, 24 - a.shape[0]), (0, 30 - a.shape[1])], mode="edge")
                  for a in arrays]
        tifffile.imwrite(tmp_path / f"{name}.tif", np.stack(padded))
    result = CliRunner().invoke(main, ["train", "--modeldef", str(modeldef), "--weights",
                                       str(weights), "--images", str(tmp_path / "images.tif"),
                                       "--labels", str(tmp_path / "labels.tif"),
                                       "--max-iter", "2", "--tile", "48", "--base-lr", "0.001",
                                       "--snapshot-prefix", str(tmp_path / "two")])
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "two_train_1.h5") as f:
        assert f["data"].shape == (1, 1, 48, 60)            # uncalibrated: 1 um -> 0.5 um
    solver = parse((tmp_path / "two-solver.prototxt").read_text(), "SolverParameter")
    assert solver.base_lr == pytest.approx(1e-3)
    assert "ny: 48" in read_modeldef(tmp_path / "two.modeldef.h5").model_prototxt


@needs_lmb_model
def test_train_with_lmbs_real_model_file(lmb_weights, tmp_path):
    write_training_pair(tmp_path, [(40, 44)])
    result = CliRunner().invoke(main, ["train", "--modeldef", str(LMB_MODEL), "--weights",
                                       str(lmb_weights), "--images",
                                       str(tmp_path / "images-0.tif"), "--labels",
                                       str(tmp_path / "labels-0.tif"), "--max-iter", "1",
                                       "--tile", "188", "--snapshot-prefix",
                                       str(tmp_path / "lmb")])
    assert result.exit_code == 0, result.output
    tuned = read_modeldef(tmp_path / "lmb.modeldef.h5")
    assert tuned.ident == "2d_cell_net_v0-lmb" and tuned.loss_weights_from == "pixels"
    assert (tmp_path / "lmb_iter_1.caffemodel.h5").exists()


def finetune_with_validation(model_files, tmp_path, *options):
    """train --modeldef on images-0.tif with images-1.tif as the validation set (as
    write_training_pair writes them), prefix ft, log train.log; the command must succeed."""
    modeldef, weights, _ = model_files
    result = CliRunner().invoke(main, ["train", "--modeldef", str(modeldef), "--weights",
                                       str(weights), "--images", str(tmp_path / "images-0.tif"),
                                       "--labels", str(tmp_path / "labels-0.tif"),
                                       "--validation-images", str(tmp_path / "images-1.tif"),
                                       "--validation-labels", str(tmp_path / "labels-1.tif"),
                                       "--element-size", "0.5", "0.5", "--snapshot-prefix",
                                       str(tmp_path / "ft"), "--log", str(tmp_path / "train.log"),
                                       *options])
    assert result.exit_code == 0, result.output


def test_train_with_a_modeldef_validates_as_the_plugin(model_files, tmp_path):
    """--validation-images and --validation-labels: the plugin's validation tiles, TEST
    layers and test settings, and the IoU and F1 lines it parses in the log."""
    write_training_pair(tmp_path, [(24, 30), (50, 45)])
    finetune_with_validation(model_files, tmp_path, "--max-iter", "2")
    tiles = (tmp_path / "ft-validfilelist.txt").read_text().splitlines()
    assert len(tiles) == 4                    # 50 x 45 in output tiles of 40 x 40 (tile 80)
    solver = parse((tmp_path / "ft-solver.prototxt").read_text(), "SolverParameter")
    assert (list(solver.test_iter), solver.test_interval) == ([4], 1)
    net = parse((tmp_path / "ft-model.prototxt").read_text(), "NetParameter")
    assert net.layer[0].name == "loaddata_valid"
    assert {"loss_valid", "IoU", "F1_detection", "F1_segmentation"} <= {l.name for l in net.layer}
    log = (tmp_path / "train.log").read_text()
    assert "IoU - Per class intersection: " in log
    assert "F1_detection - Per class object count: " in log
    assert "Test net output #0: loss_valid = " in log
    # the model file keeps the net without the validation layers, as the plugin's
    assert "loaddata_valid" not in read_modeldef(tmp_path / "ft.modeldef.h5").model_prototxt


def test_the_validation_step_sets_how_often_the_plugin_validates(model_files, tmp_path):
    """--validation-step N: the solver's test_interval, so the log validates at iterations
    0, N, 2N, ... (the plugin's default validates after every iteration)."""
    write_training_pair(tmp_path, [(24, 30), (30, 30)])
    finetune_with_validation(model_files, tmp_path, "--validation-step", "2", "--max-iter", "4")
    solver = parse((tmp_path / "ft-solver.prototxt").read_text(), "SolverParameter")
    assert solver.test_interval == 2
    tested = re.findall(r"Iteration (\d+), Testing net", (tmp_path / "train.log").read_text())
    assert tested == ["0", "2", "4"]


def test_train_with_a_modeldef_takes_instance_labels(model_files, tmp_path):
    """--instance-labels: every value from 2 up is one object of the one foreground class;
    touching objects are kept apart by a background gap."""
    modeldef, weights, _ = model_files
    image = np.random.default_rng(7).integers(0, 255, (24, 30)).astype(np.uint8)
    labels = np.ones((24, 30), np.uint8)
    labels[4:12, 4:10], labels[4:12, 10:16] = 2, 3           # two touching cells
    labels[14:20, 18:26] = 4
    tifffile.imwrite(tmp_path / "image.tif", image)
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    result = CliRunner().invoke(main, ["train", "--modeldef", str(modeldef), "--weights",
                                       str(weights), "--images", str(tmp_path / "image.tif"),
                                       "--labels", str(tmp_path / "labels.tif"),
                                       "--instance-labels", "--element-size", "0.5", "0.5",
                                       "--max-iter", "1", "--snapshot-prefix",
                                       str(tmp_path / "inst")])
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "inst_train_0.h5") as f:
        stored = f["labels"][0, 0]
    assert set(np.unique(stored)) == {0, 1}                  # one foreground class
    assert stored[6, 10] == 0 and stored[6, 8] == stored[6, 11] == 1   # a gap between them
    assert read_modeldef(tmp_path / "inst.modeldef.h5").class_names == ["Background", "cell"]
    assert (tmp_path / "inst_iter_1.caffemodel.h5").exists()


def test_train_refuses_half_a_validation_set_and_model_options_without_modeldef(tmp_path):
    for args, message in ((["--modeldef", "m.modeldef.h5", "--images", "i.tif", "--labels",
                            "l.tif", "--validation-images", "v.tif"],
                           "give --validation-images and --validation-labels together"),
                          (["--modeldef", "m.modeldef.h5", "--images", "i.tif", "--labels",
                            "l.tif", "--validation-step", "5"],
                           "--validation-step needs --validation-images"),
                          (["prototxt/unet-train.prototxt", "--validation-images", "v.tif"],
                           "go with --modeldef")):
        result = CliRunner().invoke(main, ["train", *args])
        assert result.exit_code == 1 and message in result.output, result.output
