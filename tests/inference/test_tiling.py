"""Overlap-tile: the stitched result equals one pass over the whole mirrored image."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unetcore.errors import DataError, NetError
from unetcore.gradcheck import randomize_params
from unetcore.net import Net
from unetcore.inference.tiling import as_channel_images, mirror_pad, segment, tile_geometry

SMALL = "prototxt/unet-small-deploy.prototxt"          # depth 2: valid sizes 44, 48, 52, ...


def small_net(tile, seed=0):
    net = Net(SMALL, "TEST")
    randomize_params(net, np.random.default_rng(seed))
    net.set_inputs({"data": np.zeros((1, 1, tile, tile))})
    net.release_activations = True            # as unetcore segment runs it
    return net


def single_pass(net, image, model=SMALL):
    """The reference: the whole image, mirror-extended to a valid size, in one forward."""
    tile, out, margin, step = tile_geometry(net, "data", "score")
    h, w = image.shape[-2:]
    need = lambda n: tile + step * -(-max(n - out, 0) // step)      # noqa: E731
    size_h, size_w = need(h), need(w)
    padded = mirror_pad(image, margin, (size_h - h - margin, size_w - w - margin))
    whole = Net(model, "TEST", dtype=net.dtype)
    for name, blobs in net.params.items():
        for a, b in zip(whole.params[name], blobs):
            a.data[...] = b.data
    scores = whole.forward(data=padded[None])["score"][0]
    return scores[:, :h, :w]


@settings(max_examples=12, deadline=None)
@given(height=st.integers(1, 50), width=st.integers(1, 50), k=st.integers(0, 3),
       batch=st.integers(1, 3))
def test_stitched_tiles_equal_a_single_pass(height, width, k, batch):
    net = small_net(44 + 4 * k)                                     # 44, 48, 52, 56
    image = np.random.default_rng(height * 100 + width).random((1, height, width))
    stitched = segment(net, image.astype(np.float32), batch)
    assert stitched.shape == (2, height, width)
    np.testing.assert_allclose(stitched, single_pass(net, image.astype(np.float32)), atol=1e-5)


def test_stitched_tiles_equal_a_single_pass_at_the_2015_depth(tmp_path):
    """The same equality with the 2015 net's depth 4 and pooling grid 16 (thinned to 2
    channels): 252 px tiles, 68 px outputs stepping by 64, over a 150 x 137 image."""
    from unetcore.models.unet import deploy_text
    model = tmp_path / "deep.prototxt"
    model.write_text(deploy_text("deep", depth=4, channels=2, size=252))
    net = Net(str(model), "TEST", dtype=np.float64)        # float64: no rounding in the way
    randomize_params(net, np.random.default_rng(0))
    assert tile_geometry(net, "data", "score") == (252, 68, 92, 64)
    image = np.random.default_rng(1).random((1, 150, 137))
    np.testing.assert_allclose(segment(net, image, 2), single_pass(net, image, str(model)),
                               atol=1e-6)


def test_tile_geometry_of_the_2015_unet():
    net = Net("prototxt/unet-deploy.prototxt", "TEST")
    assert tile_geometry(net, "data", "score") == (572, 388, 92, 384)


def test_invalid_tile_size_lists_nearest_valid_sizes():
    with pytest.raises(NetError, match="nearest valid sizes: 44, 48, 52"):
        small_net(46)


def test_mirror_pad_reflects_about_the_border_pixel():
    row = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(mirror_pad(row, 2, (0, 2))[2], [3, 2, 1, 2, 3, 2, 1])


def test_channel_count_mismatch_is_refused():
    with pytest.raises(DataError, match="takes 3-channel images, but the image has shape"):
        as_channel_images(np.zeros((5, 7)), 3, "x.tif")


def test_rgb_image_for_a_grey_net_is_refused():
    with pytest.raises(DataError, match=r"looks like an RGB\(A\) image \(H, W, 3\)"):
        as_channel_images(np.zeros((64, 48, 3)), 1, "photo.tif")


def brute_force_tile(image_shapes, budget_bytes):
    """(macs, size) of every valid small-net tile from 44 to 400 that fits the budget."""
    from unetcore.sizes import valid_sizes
    from unetcore.inference.tiling import segmentation_macs, tile_bytes
    net = small_net(44)
    found = []
    for size in valid_sizes(net, "data", 1, 400):
        net.set_inputs({"data": np.zeros((1, 1, size, size))})
        if tile_geometry(net, "data", "score")[3] and tile_bytes(net, "data") <= budget_bytes:
            found.append((segmentation_macs(net, image_shapes), size))
    return found


@pytest.mark.parametrize("shapes,budget_mb", [
    ([(1, 300, 200)], 1024), ([(1, 300, 200)], 2), ([(1, 37, 41), (1, 90, 20)], 1024),
    ([(1, 1, 1)], 1024)])
def test_auto_tile_takes_the_fewest_multiply_adds_that_fit(shapes, budget_mb):
    """Against every valid tile up to 400 px: the least multiply-adds, overhang included,
    among the tiles whose blobs fit the budget; the net is left at that tile."""
    from unetcore.inference.tiling import auto_tile
    budget = budget_mb * 2 ** 20
    net = small_net(44)
    chosen = auto_tile(net, shapes, budget)
    assert net.blobs["data"].shape[-1] == chosen
    candidates = brute_force_tile(shapes, budget)
    assert (min(candidates)[1]) == chosen
    if budget_mb == 2:           # the budget binds: a larger tile would take fewer
        assert min(brute_force_tile(shapes, 2 ** 40))[1] > chosen


def test_auto_tile_segments_exactly_as_any_tile():
    from unetcore.inference.tiling import auto_tile
    image = np.random.default_rng(1).random((1, 150, 130)).astype(np.float32)
    net = small_net(44)
    by_44 = segment(net, image)
    assert auto_tile(net, [image.shape], 2 ** 30) > 44
    np.testing.assert_allclose(segment(net, image), by_44, atol=1e-5)
