"""Data: weight maps by hand, deformation, mirrored tiles, the data layers, bad input."""
import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from cases import make_layer, run_forward
from unetcore.blob import Blob
from unetcore.data import deformation as deform
from unetcore.data.stacks import to_classes
from unetcore.data.synth import synth_stack
from unetcore.data.weightmap import nearest_two_distances, weight_map
from unetcore.errors import DataError, NetError



def two_cells():
    """5 x 9: cell A in columns 0-2, a 3-px background gap, cell B in columns 6-8."""
    labels = np.zeros((5, 9), np.uint8)
    labels[:, :3] = 1
    labels[:, 6:] = 1
    return labels


def test_weight_map_of_two_cells_by_hand():
    w = weight_map(two_cells(), w0=10, sigma=5)
    # 30 cell pixels, 15 background: w_c = 1 for cells, 30/15 = 2 for background.
    assert np.allclose(w[:, :3], 1) and np.allclose(w[:, 6:], 1)
    # column 3: d1 = 1 (to A), d2 = 3 (to B); column 4: d1 = d2 = 2; column 5 mirrors 3.
    border = 10 * np.exp(-16 / 50)
    np.testing.assert_allclose(w[:, 3], 2 + border, rtol=1e-6)
    np.testing.assert_allclose(w[:, 4], 2 + border, rtol=1e-6)
    np.testing.assert_allclose(w[:, 5], 2 + border, rtol=1e-6)


def test_weight_map_distances_and_single_cell():
    d1, d2 = nearest_two_distances(np.array([[1, 0, 0, 0, 2, 0, 3]]))
    np.testing.assert_array_equal(d1[0], [0, 1, 2, 1, 0, 1, 0])
    np.testing.assert_array_equal(d2[0], [4, 3, 2, 3, 2, 1, 2])
    one = np.zeros((4, 4), np.uint8)
    one[1:3, 1:3] = 255                                   # ISBI mask, one cell: no border term
    w = weight_map(one)
    assert set(np.unique(w).tolist()) == {1.0, 3.0}


def test_weight_map_separates_instances_of_a_label_image():
    labels = np.zeros((5, 9), np.int32)
    labels[:, :3], labels[:, 6:] = 4, 7                   # instance ids, not a mask
    np.testing.assert_allclose(weight_map(labels), weight_map(two_cells()))


def test_zero_deformation_is_the_identity():
    image = np.random.default_rng(0).random((20, 20))
    field = deform.paper_displacements((20, 20), np.random.default_rng(1), std=0)
    coords = np.indices((20, 20), dtype=float) + field
    np.testing.assert_allclose(deform.sample(image, coords, 3), image, atol=1e-6)


def test_elastic_field_is_smooth_and_has_the_grid_std():
    rng = np.random.default_rng(2)
    fields = np.stack([deform.paper_displacements((64, 64), rng, 3, 10.0) for _ in range(200)])
    assert fields[:, :, 0, 0].std() == pytest.approx(10.0, rel=0.15)    # a grid point
    assert np.abs(np.diff(fields, axis=-1)).max() < 3.0                  # smooth


def test_bspline_field_by_hand():
    """caffe_unet's cubic B-spline: weights (1, 4, 1, 0) / 6 at a control point, a partition
    of unity, so equal control values give a constant field."""
    np.testing.assert_allclose(deform.bspline_weights(0.0), [1 / 6, 4 / 6, 1 / 6, 0])
    np.testing.assert_allclose(deform.bspline_weights(0.5), [1 / 48, 23 / 48, 23 / 48, 1 / 48])
    a = deform._bspline_matrix(10, 4, np)
    assert a.shape == (10, 10 // 4 + 4)
    np.testing.assert_allclose(a.sum(axis=1), 1)
    np.testing.assert_allclose(a[5, 1:5], deform.bspline_weights(0.25))    # pixel 5: segment 1
    field = deform.bspline_displacements((10, 7), np.random.default_rng(0), (4, 3), (0, 0))
    np.testing.assert_array_equal(field, 0)


def test_deformation_keeps_labels_valid():
    labels = (np.random.default_rng(3).random((40, 40)) > 0.5).astype(np.uint8)
    points = np.indices((30, 30), dtype=float)
    points += deform.paper_displacements((30, 30), np.random.default_rng(4), 3, 10.0)
    coords = deform.affine_map(points, (30, 30), 40.0, [False, True], (20.0, 20.0))
    assert set(np.unique(deform.sample(labels, coords, 0)).tolist()) <= {0, 1}


def write_stacks(tmp_path, images, labels):
    tifffile.imwrite(tmp_path / "im.tif", images)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    return tmp_path / "im.tif", tmp_path / "lab.tif"


def tiff_layer(tmp_path, tile, label_size, extra="", seed=0):
    return make_layer(f'''name: "data" type: "TiffData" top: "data" top: "label" top: "weights"
        tiff_data_param {{ image: "{tmp_path}/im.tif" label: "{tmp_path}/lab.tif"
                          tile_size: {tile} label_size: {label_size} }} {extra}''',
                      dtype=np.float32, seed=seed)


def run_layer(layer, tops=3):
    top = [Blob((), layer.dtype) for _ in range(tops)]
    layer.check_blob_counts([], top)
    layer.setup([], top)
    layer.reshape([], top)
    layer.forward([], top)
    return [t.data for t in top]


def test_tiles_near_the_border_are_the_mirrored_image(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 13, 17)).astype(np.uint8)
    labels = (images > 128).astype(np.uint8)
    write_stacks(tmp_path, images, labels)
    layer = tiff_layer(tmp_path, 20, 8)
    data, label, _ = run_layer(layer)
    # Find the drawn tile by matching it against every position of the mirror-padded stack.
    padded = np.pad(images / 255.0, ((0, 0), (20, 20), (20, 20)), mode="reflect")
    found = [(k, y, x) for k in range(2) for y in range(padded.shape[1] - 19)
             for x in range(padded.shape[2] - 19)
             if np.allclose(padded[k, y:y + 20, x:x + 20], data[0, 0], atol=1e-5)]
    assert found
    k, y, x = found[0]
    padded_labels = np.pad(labels, ((0, 0), (20, 20), (20, 20)), mode="reflect")
    np.testing.assert_array_equal(padded_labels[k, y + 6:y + 14, x + 6:x + 14], label[0, 0])


@settings(max_examples=15, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), tile=st.integers(2, 48),
       seed=st.integers(0, 100))
def test_any_image_size_yields_full_tiles(tmp_path_factory, height, width, tile, seed):
    folder = tmp_path_factory.mktemp("stack")
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 256, (1, height, width)).astype(np.uint8)
    write_stacks(folder, images, (images > 100).astype(np.uint8))
    layer = tiff_layer(folder, tile, tile,
                       "create_deformation_param { deform_std: 10 random_rotate_from { v: 0 } "
                       "random_rotate_to { v: 360 } }", seed)
    data, label, weights = run_layer(layer)
    assert data.shape == (1, 1, tile, tile) and np.isfinite(data).all()
    assert set(np.unique(label).tolist()) <= {0, 1}
    assert weights.min() >= 1


def test_tiff_layer_is_deterministic_for_a_seed(tmp_path):
    images, labels = synth_stack(2, 48, seed=4)
    write_stacks(tmp_path, images, labels)
    extra = ("create_deformation_param { deform_std: 10 random_mirror_flag { v: 1 v: 1 } "
             "random_rotate_from { v: 0 } random_rotate_to { v: 90 } }")
    first = run_layer(tiff_layer(tmp_path, 36, 20, extra, seed=5))
    second = run_layer(tiff_layer(tmp_path, 36, 20, extra, seed=5))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_tiff_layer_bad_input(tmp_path):
    images, labels = synth_stack(2, 32, seed=0)
    with pytest.raises(DataError, match="im.tif: no such image file"):
        run_layer(tiff_layer(tmp_path, 20, 20))
    write_stacks(tmp_path, images, labels[:1])
    with pytest.raises(DataError, match=r"lab.tif: the label stack has shape \(1, 32, 32\).*"
                                        r"\(2, 32, 32\)"):
        run_layer(tiff_layer(tmp_path, 20, 20))
    write_stacks(tmp_path, images, (labels > 0) * 3)
    with pytest.raises(DataError, match=r"label values \[3\] are outside the classes 0..1"):
        run_layer(tiff_layer(tmp_path, 20, 20))
    (tmp_path / "im.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataError, match="im.tif: not a readable TIFF image stack"):
        run_layer(tiff_layer(tmp_path, 20, 20))


def test_isbi_masks_map_to_classes():
    np.testing.assert_array_equal(to_classes(np.array([0, 255, 255]), 2), [0, 1, 1])
    np.testing.assert_array_equal(to_classes(np.array([0, 2, 1]), 3), [0, 2, 1])


def test_synth_is_deterministic_and_labelled():
    a, la = synth_stack(2, 64, seed=9)
    b, lb = synth_stack(2, 64, seed=9)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert set(np.unique(la).tolist()) == {0, 255}
    assert 0.05 < (la == 0).mean() < 0.4                   # membranes are a minority
    assert a[la == 0].mean() + 50 < a[la == 255].mean()     # and dark


def hdf5_layer(source, batch=2, shuffle=False):
    return make_layer(f'''name: "h5" type: "HDF5Data" top: "data" top: "label"
        hdf5_data_param {{ source: "{source}" batch_size: {batch} shuffle: {str(shuffle).lower()} }}''')


def test_hdf5_data_reads_rows_in_order_across_files(tmp_path):
    for k in range(2):
        with h5py.File(tmp_path / f"{k}.h5", "w") as f:
            f["data"] = np.arange(3 * 4, dtype=float).reshape(3, 1, 2, 2) + 100 * k
            f["label"] = np.arange(3, dtype=float).reshape(3, 1) + 10 * k
    (tmp_path / "list.txt").write_text("0.h5\n1.h5\n")
    layer = hdf5_layer(tmp_path / "list.txt")
    top = [Blob(()), Blob(())]
    layer.setup([], top)
    layer.reshape([], top)
    labels = []
    for _ in range(4):
        layer.forward([], top)
        labels.extend(top[1].data[:, 0].tolist())
    assert labels == [0, 1, 2, 10, 11, 12, 0, 1]
    assert top[0].data.shape == (2, 1, 2, 2)


def test_hdf5_data_bad_input(tmp_path):
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="names no HDF5 files"):
        hdf5_layer(tmp_path / "empty.txt").setup([], [Blob(()), Blob(())])
    with pytest.raises(DataError, match="missing.txt does not exist"):
        hdf5_layer(tmp_path / "missing.txt").setup([], [Blob(()), Blob(())])
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["data"] = np.zeros((2, 1))
    (tmp_path / "list.txt").write_text("a.h5\n")
    with pytest.raises(DataError, match="has no dataset 'label'"):
        hdf5_layer(tmp_path / "list.txt").setup([], [Blob(()), Blob(())])


def test_create_and_apply_deformation_layers():
    create = make_layer('''name: "def" type: "CreateDeformation" bottom: "data" top: "def"
        create_deformation_param { ny: 6 nx: 6 deform_std: 0 }''')
    apply = make_layer('''name: "ad" type: "ApplyDeformation" bottom: "data" bottom: "def"
        top: "out" apply_deformation_param { interpolation: "nearest" }''')
    image = Blob((1, 1, 6, 6))
    image.data[...] = np.arange(36.0).reshape(1, 1, 6, 6)
    field, out = Blob(()), Blob(())
    for layer, bottom, top in ((create, [image], [field]), (apply, [image, field], [out])):
        layer.setup(bottom, top)
        layer.reshape(bottom, top)
        layer.forward(bottom, top)
    assert field.shape == (1, 6, 6, 2)
    np.testing.assert_array_equal(out.data, image.data)   # no deformation: the identity
    bad = make_layer('''name: "ad" type: "ApplyDeformation" bottom: "data" bottom: "def"
        top: "out" apply_deformation_param { interpolation: "bicubic" }''')
    with pytest.raises(NetError, match="interpolation 'bicubic' is not one of nearest, linear"):
        bad.setup([image, field], [out])


def test_rgb_images_and_nan_grey_values_are_refused(tmp_path):
    from unetcore.data.stacks import normalize_grey, read_stack
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(DataError, match=r"rgb.tif: shape \(32, 40, 3\) looks like one RGB"):
        read_stack(tmp_path / "rgb.tif")
    grey = np.ones((2, 8, 8), np.float32)
    grey[1, 3, 3] = np.nan
    with pytest.raises(DataError, match="x.tif: holds 1 NaN or infinite grey values"):
        normalize_grey(grey, path="x.tif")


def test_tiff_layer_refuses_slopes_no_curve_can_keep(tmp_path):
    images, labels = synth_stack(1, 32, seed=0)
    write_stacks(tmp_path, images, labels)
    layer = tiff_layer(tmp_path, 20, 20, "value_augmentation_param { slope_min: 2 slope_max: 3 }")
    with pytest.raises(NetError, match="100% of the drawn curves cannot keep the slopes "
                                       "within 2.0..3.0"):
        run_layer(layer)


def test_grey_value_augmentation_is_a_linear_ramp(tmp_path):
    images = np.full((1, 16, 16), 255, np.uint8)
    images[0, :, :8] = 0
    write_stacks(tmp_path, images, (images > 0).astype(np.uint8))
    ramp = ("value_augmentation_param { black_from: 0.2 black_to: 0.2 white_from: 0.6 "
            "white_to: 0.6 slope_min: 0.4 slope_max: 0.4 n_control_point_insertions: 0 }")
    data, _, _ = run_layer(tiff_layer(tmp_path, 8, 8, ramp))
    # caffe_unet's smoothing bends the LUT's ends by 0.0053 (its extrapolation is one-sided)
    assert np.all(np.isclose(data, 0.2, atol=0.006) | np.isclose(data, 0.6, atol=0.006))


def deformation_map_of(text, bottom=None, seed=0):
    layer = make_layer('name: "def" type: "CreateDeformation" create_deformation_param { '
                       + text + ' }', seed=seed)
    bottoms = [] if bottom is None else [bottom]
    top = [Blob(())]
    layer.setup(bottoms, top)
    layer.reshape(bottoms, top)
    layer.forward(bottoms, top)
    return top[0].data


def test_create_deformation_rotates_about_the_centre_as_caffe_unet():
    """90 degrees: y' = cos y - sin x = -x, x' = sin y + cos x = y, about n / 2 = (2, 2)."""
    field = deformation_map_of("ny: 4 nx: 4 random_rotate_from { v: 90 } random_rotate_to { v: 90 }")
    y, x = np.indices((4, 4))
    np.testing.assert_allclose(field[0, ..., 0], 2 - (x - 2), atol=1e-12)
    np.testing.assert_allclose(field[0, ..., 1], 2 + (y - 2), atol=1e-12)


def test_create_deformation_offsets_and_mirror_flags():
    field = deformation_map_of("ny: 3 nx: 4 random_offset_from { v: 1.5 v: -2 } "
                               "random_offset_to { v: 1.5 v: -2 }")
    y, x = np.indices((3, 4))
    np.testing.assert_allclose(field[0], np.stack([y + 1.5, x - 2], axis=-1))
    flips = {tuple(deformation_map_of("ny: 2 nx: 2 random_mirror_flag { v: 0 v: 1 }", seed=k)
                   [0, 0, 0]) for k in range(20)}
    assert flips == {(0.0, 0.0), (0.0, 2.0)}      # x mirrored about n / 2 = 1, or not; y kept


def test_create_deformation_draws_the_centre_from_a_pdf_or_labels():
    """A single drawable pixel (1, 3) of a 5 x 6 bottom: the tile centre lands there, plus
    caffe_unet's half pixel (its centres are n / 2 and (n - 1) / 2)."""
    pdf = Blob((1, 1, 5, 6))
    pdf.data[0, 0, 1, 3] = 1.0
    expected = (0 - 2 + 2.5 + (1 - 2), 0 - 2 + 3 + (3 - 2.5))     # output pixel (0, 0)
    field = deformation_map_of("ny: 4 nx: 4 random_offset_range_from_pdf: true", pdf)
    np.testing.assert_allclose(field[0, 0, 0], expected)
    labels = Blob((1, 1, 5, 6))
    labels.data[...] = 7
    labels.data[0, 0, 1, 3] = 1
    field = deformation_map_of("ny: 4 nx: 4 random_offset_range_from_ignore_label: 7", labels)
    np.testing.assert_allclose(field[0, 0, 0], expected)
    with pytest.raises(NetError, match="has no pixel to draw"):
        deformation_map_of("ny: 4 nx: 4 random_offset_range_from_pdf: true", Blob((1, 1, 5, 6)))


def test_create_deformation_bspline_field_has_the_spline_std():
    """Each displacement is a weighted sum of N(0, m^2) control values: its std is
    m * sqrt(sum of the squared weights), 0.48 m at a control point."""
    fields = np.stack([deformation_map_of(
        "ny: 8 nx: 8 random_elastic_grid_spacing { v: 4 v: 4 } "
        "random_elastic_deform_magnitude { v: 10 v: 20 }", seed=k) for k in range(400)])
    weight = np.sqrt(np.sum(np.square(deform.bspline_weights(0.0))))      # 0.6939 per axis
    for component, magnitude in ((0, 10), (1, 20)):                   # at output pixel (0, 0)
        assert fields[:, 0, 0, 0, component].std() == pytest.approx(magnitude * weight ** 2,
                                                                     rel=0.12)


def test_create_deformation_bad_vectors():
    with pytest.raises(NetError, match="random_elastic_grid_spacing needs 2 value"):
        deformation_map_of("ny: 4 nx: 4 random_elastic_grid_spacing { v: 4 }")
    with pytest.raises(NetError, match=r"ncomponents must be 3 \(z, y, x\) with nz > 0, got 2"):
        deformation_map_of("nz: 3 ny: 4 nx: 4 ncomponents: 2")
    with pytest.raises(NetError, match="random_rotate_from needs 3 value\\(s\\) in 3-d, got 1"):
        deformation_map_of("nz: 3 ny: 4 nx: 4 ncomponents: 3 random_rotate_from { v: 0 }")
    with pytest.raises(NetError, match="needs a bottom to draw from"):
        deformation_map_of("ny: 4 nx: 4 random_offset_range_from_in_blob_shape: true")


def test_3d_deformation_without_fields_is_the_identity_and_angle_0_turns_the_yx_plane():
    """caffe_unet's 3-d CreateDeformation: (z, y, x) per voxel. The first angle turns each
    slice as the 2-d layer does; z stays."""
    field = deformation_map_of("nz: 2 ny: 4 nx: 4 ncomponents: 3")
    assert field.shape == (1, 2, 4, 4, 3)
    np.testing.assert_allclose(np.moveaxis(field[0], -1, 0), np.indices((2, 4, 4)), atol=1e-12)
    field = deformation_map_of("nz: 2 ny: 4 nx: 4 ncomponents: 3 "
                               "random_rotate_from { v: 90 v: 0 v: 0 } "
                               "random_rotate_to { v: 90 v: 0 v: 0 }")
    z, y, x = np.indices((2, 4, 4))
    np.testing.assert_allclose(field[0, ..., 0], z, atol=1e-12)
    np.testing.assert_allclose(field[0, ..., 1], 2 - (x - 2), atol=1e-12)
    np.testing.assert_allclose(field[0, ..., 2], 2 + (y - 2), atol=1e-12)


def test_3d_rotation_out_of_plane_works_in_physical_units():
    """angle 1 turns the (z, x) plane in cubic-voxel space: with voxel_relsize_z 2 (z spacing
    twice the xy spacing) and 90 degrees, a step of 1 in x reads 1/2 slice away in z, and a
    slice step reads 2 px away in x: z' = -x / 2, x' = 2 z (about the centre)."""
    field = deformation_map_of("nz: 4 ny: 1 nx: 4 ncomponents: 3 voxel_relsize_z: 2 "
                               "random_rotate_from { v: 0 v: 90 v: 0 } "
                               "random_rotate_to { v: 0 v: 90 v: 0 }")
    z, _, x = np.indices((4, 1, 4))
    np.testing.assert_allclose(field[0, ..., 0], 2 - (x - 2) / 2, atol=1e-12)
    np.testing.assert_allclose(field[0, ..., 2], 2 + 2 * (z - 2), atol=1e-12)


def test_3d_elastic_field_and_apply_deformation_move_a_volume_and_its_labels_together():
    """A B-spline field in z, y and x; ApplyDeformation samples a (1, 2, D, H, W) blob with
    it, and an identity field gives the blob back, its centre for a smaller output."""
    field = deformation_map_of("nz: 6 ny: 8 nx: 8 ncomponents: 3 "
                               "random_elastic_grid_spacing { v: 3 v: 4 v: 4 } "
                               "random_elastic_deform_magnitude { v: 1 v: 2 v: 2 }")
    moved = np.moveaxis(field[0], -1, 0) - np.indices((6, 8, 8))
    assert np.all(np.abs(moved).reshape(3, -1).std(axis=1) > 0.05)
    volume = np.random.default_rng(3).random((1, 2, 6, 8, 8))
    identity = np.moveaxis(np.indices((6, 8, 8), dtype=float), 0, -1)[None]
    for order, interpolation in ((1, "linear"), (0, "nearest")):
        layer = make_layer('name: "a" type: "ApplyDeformation" apply_deformation_param { '
                           f'interpolation: "{interpolation}" extrapolation: "mirror" }}')
        np.testing.assert_allclose(run_forward(layer, volume, identity)[0], volume, atol=1e-12)
    crop = make_layer('name: "a" type: "ApplyDeformation" apply_deformation_param { '
                      'interpolation: "nearest" }')
    out = run_forward(crop, volume, identity, np.zeros((1, 1, 2, 4, 6)))[0]
    np.testing.assert_array_equal(out, volume[:, :, 2:4, 2:6, 1:7])
    with pytest.raises(NetError, match=r"must be a \(N, nz, ny, nx, 3\) map"):
        run_forward(crop, volume, identity[..., :2])


def test_value_augmentation_layer_draws_smooth_increasing_curves():
    layer = make_layer('name: "va" type: "ValueAugmentation" value_augmentation_param { '
                       'black_from: 0 black_to: 0.1 white_from: 0.9 white_to: 1 }')
    x = np.tile(np.linspace(0, 1, 50), (2, 3, 1, 1))
    y = run_forward(layer, x)[0]
    assert np.all(np.diff(y, axis=-1) > 0)                      # increasing
    slopes = np.diff(y, axis=-1) * 49
    assert slopes[..., 5:-5].min() > 0.5 and slopes[..., 5:-5].max() < 1.7
    assert len({tuple(c.ravel().round(6)) for c in y.reshape(6, -1)}) == 6   # one per channel


def test_value_augmentation_curves_by_hand():
    from types import SimpleNamespace

    from unetcore.data import value_augmentation as values
    # fixed ends and slope 1: every inserted point is forced onto the line
    p = SimpleNamespace(black_from=0.0, black_to=0.0, white_from=1.0, white_to=1.0,
                        slope_min=1.0, slope_max=1.0, n_control_point_insertions=2)
    np.testing.assert_allclose(values.control_points(np.random.default_rng(0), p),
                               [0, 0.25, 0.5, 0.75, 1])
    # slopes that no curve from 0 to 1 can keep: the draw fails
    assert values.control_points(np.random.default_rng(0),
                                 SimpleNamespace(**{**vars(p), "slope_min": 2.0,
                                                    "slope_max": 3.0})) is None
    # the LUT of a straight line: the Gaussian's window is cut at the extrapolated ends, so the
    # curve bends towards the middle, by 0.0053 at the ends, antisymmetrically about 0.5 (as
    # caffe_unet's matrices do)
    lut = values.lut_matrix(2, 256) @ np.array([0.2, 0.6])
    bend = lut - (0.2 + 0.4 * np.arange(256) / 255)
    assert bend[0] == pytest.approx(0.0053, abs=1e-4)
    assert np.abs(bend).max() == pytest.approx(bend[0])
    np.testing.assert_allclose(bend, -bend[::-1], atol=1e-12)
    # reading a LUT: linear between entries, clamped at the ends
    np.testing.assert_allclose(values.apply_lut(np.array([0.0, 1.0, 4.0]),
                                                np.array([-1, 0, 0.25, 0.5, 0.75, 1, 2])),
                               [0, 0, 0.5, 1, 2.5, 4, 4])
