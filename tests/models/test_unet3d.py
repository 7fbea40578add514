"""3-d U-Nets (issue 20): the caffe_unet-style nets build as train and deploy nets with the
shapes of the per-axis tile rule, pass the gradient check end to end, tile a volume by
overlap-tile exactly as one pass over it, and the 3-d demo trains, segments and scores."""
import math
import re
import shlex
import shutil

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from cases import REPO
import unetcore
from unetcore import config
from unetcore.models import unet3d
from unetcore.cli import main
from unetcore.gradcheck import check_net, randomize_params
from unetcore.net import Net
from unetcore.formats.prototxt import parse
from unetcore.sizes import valid_sizes_per_axis
from unetcore.inference.tiling import axis_geometry, mirror_pad, segment, tiles_per_batch



def net_of(text, phase="TEST", dtype=np.float32):
    return Net(parse(text, "NetParameter"), phase, dtype=dtype)


def test_the_prototxt_files_are_the_generators(tmp_path):
    unet3d.write_files(tmp_path)
    for name in unet3d.FILES:
        assert (tmp_path / name).read_text() == open(f"prototxt/{name}").read(), name


def test_the_em_net_has_snemi_v6s_tile_and_shapes():
    """Depth 4, two anisotropic levels: the 44 x 268 x 268 tile of snemi_v6's
    CreateDeformation gives a 4 x 84 x 84 output; z is convolved from level 2 on."""
    net = Net("prototxt/unet3d-em-deploy.prototxt", "TEST")
    assert net.blobs["d0a"].shape == (1, 1, 44, 268, 268)
    assert net.blobs["d0c"].shape == (1, 32, 44, 264, 264)       # 1x3x3: z kept
    assert net.blobs["d2a"].shape == (1, 64, 44, 64, 64)         # pooled 1x2x2 twice
    assert net.blobs["d3a"].shape == (1, 128, 20, 30, 30)        # then 2x2x2
    assert net.blobs["score"].shape == (1, 2, 4, 84, 84)
    assert unet3d.output_shape((44, 268, 268), 4, 2) == (4, 84, 84)
    assert net.params["conv_d0a-b"][0].shape == (32, 1, 1, 3, 3)
    assert net.params["upconv_u1d_u0a"][0].shape == (64, 32, 1, 2, 2)


def test_valid_tiles_per_axis_agree_with_the_net(tmp_path):
    """The generator's per-axis rule and the built net's (unetcore.sizes) list the same sizes."""
    net = Net("prototxt/unet3d-demo-deploy.prototxt", "TEST")
    by_net = valid_sizes_per_axis(net, "d0a", [(10, 100)] * 3)
    depth, flat = unet3d.DEMO["depth"], unet3d.DEMO["flat_levels"]
    for axis in range(3):
        assert by_net[axis] == unet3d.valid_tiles(axis, depth, flat, 10, 100)
    assert by_net[0][:3] == [18, 20, 22] and by_net[1][:3] == [44, 48, 52]


def test_the_train_nets_build_with_3d_deformation(tmp_path):
    h5 = tmp_path / "v.h5"
    import h5py
    with h5py.File(h5, "w") as f:
        f["data"] = np.random.default_rng(0).random((1, 1, 30, 90, 90), dtype=np.float32)
        f["labels"] = np.ones((1, 1, 30, 90, 90), np.float32)
        f["weights"] = np.ones((1, 1, 30, 90, 90), np.float32)
    (tmp_path / "list.txt").write_text(f"{h5}\n")
    text = unet3d.train_text("t", source=str(tmp_path / "list.txt"), **unet3d.DEMO)
    net = net_of(text, "TRAIN")
    assert net.blobs["def"].shape == (1, 20, 76, 76, 3)
    assert net.blobs["d0a"].shape == (1, 1, 20, 76, 76)
    assert net.blobs["labelscrop"].shape == net.blobs["score"].shape[:1] + (1, 4, 36, 36)
    net.forward()
    assert np.isfinite(net.loss) and net.loss > 0


def tiny_3d(tile, channels=2, flat_levels=1, depth=1):
    return unet3d.deploy_text("tiny", tile, depth, channels, flat_levels)


@pytest.mark.parametrize("engine", ["auto", "reference", "slices", "flat", "correlation"])
def test_a_3d_unet_passes_the_gradient_check_end_to_end(engine):
    """Depth 1 with an anisotropic level (1x3x3 convolutions, 1x2x2 pooling and up-conv)
    and an isotropic one, a weighted loss over every output voxel; with each engine forced
    wherever it can run."""
    tile = (5, 20, 20)
    out = unet3d.output_shape(tile, 1, 1)
    assert out == (1, 4, 4)
    with config.using_engine(engine):
        net = net_of(unet3d.inputs_train_text("tiny", tile, 1, 2, 1), "TRAIN", np.float64)
    if engine != "auto":
        assert engine in {layer.engine for layer in net.layers}
    rng = np.random.default_rng(0)
    randomize_params(net, rng)
    net.set_inputs({"d0a": rng.standard_normal((1, 1, 5, 20, 20)),
                    "label": rng.integers(0, 2, (1, 1, 1, 4, 4)).astype(float),
                    "weights": 1 + rng.random((1, 1, 1, 4, 4))})
    results = check_net(net, max_checks=8, seed=1)
    failed = [r.line() for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert len(results) >= len(net.learnable_params)


def single_pass_3d(text, weights_from, volume):
    """The reference: the whole volume, mirror-extended to a valid size, in one forward."""
    geometry = axis_geometry(weights_from, "d0a", "score")
    need = [tile + step * math.ceil(max(n - out, 0) / step)
            for n, (tile, out, _, step) in zip(volume.shape[1:], geometry)]
    padded = mirror_pad(volume, tuple(m for _, _, m, _ in geometry),
                        tuple(s - n - m for s, n, (_, _, m, _) in zip(need, volume.shape[1:],
                                                                      geometry)))
    whole = net_of(text, dtype=np.float64)
    for name, blobs in weights_from.params.items():
        for a, b in zip(whole.params[name], blobs):
            a.data[...] = b.data
    scores = whole.forward(d0a=padded[None])["score"][0]
    return scores[(slice(None),) + tuple(slice(0, n) for n in volume.shape[1:])]


@settings(max_examples=8, deadline=None)
@given(shape=st.tuples(st.integers(1, 9), st.integers(1, 30), st.integers(1, 30)),
       budget_tiles=st.integers(1, 4), seed=st.integers(0, 100))
def test_3d_overlap_tile_equals_a_single_pass(shape, budget_tiles, seed):
    """Tiles in z, y and x with mirrored borders, batched within a memory budget of
    `budget_tiles` tiles: the stitched scores equal one pass over the whole volume."""
    text = tiny_3d((5, 20, 20))
    net = net_of(text, dtype=np.float64)
    randomize_params(net, np.random.default_rng(seed))
    net.release_activations = True
    volume = np.random.default_rng(seed + 1).random((1, *shape))
    per_tile = sum(b.count for b in net.blobs.values()) * 8
    batch = tiles_per_batch(net, "d0a", budget_tiles * per_tile, 10 ** 6)
    assert batch == budget_tiles
    tiled = segment(net, volume, batch=batch)
    assert tiled.shape == (2, *shape)
    np.testing.assert_allclose(tiled, single_pass_3d(text, net, volume), atol=1e-5)


def test_3d_average_mirror_averages_all_eight_flips():
    """--average-mirror in 3-d: the tile and its flips in every non-empty set of z, y, x."""
    from unetcore.inference.tiling import forward_tiles, mirror_axes
    assert mirror_axes(2) == [(-2,), (-1,), (-2, -1)]
    assert len(mirror_axes(3)) == 7
    net = net_of(tiny_3d((5, 20, 20)), dtype=np.float64)
    randomize_params(net, np.random.default_rng(3))
    tiles = np.random.default_rng(4).random((1, 1, 5, 20, 20))
    expected = sum(np.flip(net.forward(d0a=np.flip(tiles, axes).copy())["score"], axes)
                   for axes in [()] + mirror_axes(3)) / 8
    np.testing.assert_allclose(forward_tiles(net, tiles, average_mirror=True), expected,
                               atol=1e-12)


def demo_commands():
    """The `sh` block of docs/3d.md, a command per line."""
    text = (REPO / "docs" / "3d.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)[1]
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_the_3d_demo_of_the_docs_trains_segments_and_scores(tmp_path, monkeypatch):
    """docs/3d.md's demo, command by command, on a smaller volume (20 x 80 x 80) and for 4
    iterations: synth --3d, train, segment and test the held-out volume as one volume."""
    shutil.copytree(REPO / "prototxt", tmp_path / "prototxt")
    monkeypatch.chdir(tmp_path)
    smaller = {"synth": ["--slices", "20", "--size", "80"],
               "train": ["--max-iter", "4", "--snapshot-every", "4"]}
    outputs = []
    for command in demo_commands():
        assert command[0] == "unetcore"
        args = [arg.replace("_iter_600", "_iter_4") for arg in command[1:]]
        result = CliRunner().invoke(main, args + smaller.get(args[0], []))
        assert result.exit_code == 0, f"{' '.join(command)}\n{result.output}"
        outputs.append(result.output)
    assert tifffile.imread("data/volume3d-test.tif").shape == (20, 80, 80)
    assert "20 slice(s) of 80x80, segmented as one volume by the 3-d net" in outputs[2]
    labels = tifffile.imread("volume3d-segmentation.tif")
    assert labels.shape == (20, 80, 80) and set(np.unique(labels)) <= {0, 255}
    assert "IoU per class (argmax)" in outputs[3] and "best rand error" in outputs[3]


def test_3d_nets_refuse_what_is_for_2d_nets_in_one_line(tmp_path):
    runner = CliRunner()
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((20, 76, 76), np.uint8),
                     photometric="minisblack")
    cases = [
        (["segment", str(tmp_path / "v.tif"), "-o", str(tmp_path / "s.tif"), "--model",
          "prototxt/unet3d-demo-deploy.prototxt", "--weights", "none.h5", "--tile", "76"],
         "a 3-d net's tile (D, H, W) is its prototxt's input shape"),
        (["shapes", "prototxt/unet3d-demo-deploy.prototxt", "--size", "76"],
         "a 3-d net's tile (D, H, W) is its prototxt's input shape"),
        (["shapes", "prototxt/unet3d-demo-deploy.prototxt", "--receptive-field"],
         "--receptive-field is for 2-d nets"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code != 0 and message in result.output, result.output
    result = runner.invoke(main, ["shapes", "prototxt/unet3d-demo-deploy.prototxt"])
    assert "valid input sizes near 20x76x76: z 18, 22, 24, 26; y 64, 68, 72, 80, 84, 88" \
        in result.output


def test_a_misaligned_3d_tile_names_the_valid_sizes_per_axis():
    with pytest.raises(unetcore.errors.NetError,
                       match=r"input size 21x76x76 makes pooling layer 'pool_d1c-2a' see "
                             r"17x32x32, which its windows do not tile.*valid sizes per axis: "
                             r"z: 18, 20, 22, 24; y: 68, 72, 80, 84; x: 68, 72, 80, 84"):
        net_of(tiny_3d((21, 76, 76), depth=2)).check_input_size()


def test_prepare_volume_writes_what_the_3d_train_nets_read(tmp_path):
    """prepare-volume: grey values scaled as everywhere (8-bit: v / 255), classes from an
    ISBI-style mask, and eq. 2's weights with distances in the voxels' element size."""
    import h5py
    from unetcore.data.synth import synth_volume
    from unetcore.data.weightmap import weight_map
    image, labels = synth_volume((6, 40, 40), relsize_z=3.0, seed=2)
    tifffile.imwrite(tmp_path / "v.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "l.tif", labels, photometric="minisblack")
    result = CliRunner().invoke(main, ["prepare-volume", str(tmp_path / "v.tif"),
                                       str(tmp_path / "l.tif"), "-o", str(tmp_path / "t.h5"),
                                       "--element-size", "0.09", "0.03", "0.03"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.txt").read_text() == "t.h5\n"
    with h5py.File(tmp_path / "t.h5") as f:
        np.testing.assert_allclose(f["data"][0, 0], image / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(f["labels"][0, 0], labels == 255)
        np.testing.assert_allclose(f["weights"][0, 0], weight_map(labels, element_size=(3, 1, 1)),
                                   rtol=1e-5)
        assert f["weights"][0, 0].max() > 5          # the border term, across z too
    tifffile.imwrite(tmp_path / "short.tif", labels[:4], photometric="minisblack")
    result = CliRunner().invoke(main, ["prepare-volume", str(tmp_path / "v.tif"),
                                       str(tmp_path / "short.tif"), "-o", str(tmp_path / "u.h5")])
    assert result.exit_code != 0
    assert "the label stack has shape (4, 40, 40)" in result.output


def test_a_volume_that_would_not_fit_in_memory_is_refused_in_one_line(monkeypatch):
    """In memory, a 3-d net segments its volume whole: a volume whose canvas and scores
    exceed the memory budget stops before anything is allocated, and says what does not."""
    monkeypatch.setenv("UNETCORE_MAX_MEMORY", "1")                # 1 MiB
    net = net_of(tiny_3d((5, 20, 20)))
    with pytest.raises(unetcore.errors.UnetcoreError,
                       match=r"segmenting the 20x100x100 image in memory \(its mirrored canvas "
                             r"and scores; -o OUT.zarr segments it chunk by chunk\) would take "
                             r"6 MiB, more than the 1 MiB allowed by UNETCORE_MAX_MEMORY"):
        segment(net, np.zeros((1, 20, 100, 100)))



@settings(max_examples=4, deadline=None)
@given(shape=st.tuples(st.integers(1, 11), st.integers(5, 30), st.integers(5, 30)),
       chunk=st.sampled_from([4, 8]), slices=st.sampled_from([1, 3]))
def test_a_3d_net_segments_a_volume_chunk_by_chunk_as_in_memory(tmp_path_factory, shape, chunk,
                                                                 slices):
    """-o OUT.zarr with a 3-d net: chunks of `slices` x `chunk` x `chunk` voxels (rounded to
    the tile steps), each with the net's context in z, y and x, mirrored only at the volume's
    border: the same probabilities as one in-memory segmentation of the whole volume."""
    pytest.importorskip("zarr")
    pytest.importorskip("dask.distributed")
    import zarr
    from unetcore import config
    tmp_path = tmp_path_factory.mktemp("chunks")
    model = tmp_path / "net.prototxt"
    model.write_text(tiny_3d((5, 20, 20)))
    net = Net(str(model), "TEST")
    randomize_params(net, np.random.default_rng(4))
    net.save(str(tmp_path / "w.caffemodel.h5"))
    values = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", values, photometric="minisblack")
    common = ["--model", str(model), "--weights", str(tmp_path / "w.caffemodel.h5")]
    with config.using_sizes(chunk_slices=slices):
        result = CliRunner().invoke(main, ["segment", str(tmp_path / "v.tif"), "-o",
                                           str(tmp_path / "l.zarr"), "--probabilities",
                                           str(tmp_path / "p.zarr"), "--chunk", str(chunk)]
                                    + common)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "v.tif"), "-o",
                                       str(tmp_path / "l.tif"), "--probabilities",
                                       str(tmp_path / "p.tif")] + common)
    assert result.exit_code == 0, result.output
    in_memory = tifffile.imread(tmp_path / "p.tif").reshape(shape[0], 2, *shape[1:])
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "p.zarr"))[...], in_memory,
                               atol=1e-5)
    labels = tifffile.imread(tmp_path / "l.tif").reshape(shape)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "l.zarr"))[...], labels)


def test_a_3d_net_reads_stacks_as_volumes_and_an_image_as_one_slice():
    from unetcore.errors import DataError
    from unetcore.inference.tiling import as_channel_volume
    assert as_channel_volume(np.zeros((4, 6, 7)), 1).shape == (1, 4, 6, 7)
    assert as_channel_volume(np.zeros((6, 7)), 1).shape == (1, 1, 6, 7)
    two = np.arange(4 * 2 * 6 * 7).reshape(4, 2, 6, 7)           # ImageJ's (Z, C, Y, X)
    np.testing.assert_array_equal(as_channel_volume(two, 2)[1, 3], two[3, 1])
    with pytest.raises(DataError, match=r"the 3-d net takes 2-channel volumes, but the image "
                                        r"has shape \(4, 6, 7\)"):
        as_channel_volume(np.zeros((4, 6, 7)), 2)
