"""The small U-Net learns real EM data: two 188 x 188 crops of the ISBI 2012 training slices
(tests/data, with the citation). Seeded, so the numbers are fixed for a version of the code;
the bounds leave room for other BLAS builds' rounding."""

import numpy as np

from cases import TEST_DATA
import unetcore
from unetcore.formats.prototxt import parse
from unetcore.models.unet import layers_text



def isbi_solver(iterations):
    net = ('name: "isbi-small" layer { name: "data" type: "TiffData" top: "data" top: "label" '
           f'top: "weights" tiff_data_param {{ image: "{TEST_DATA}/isbi-crops-volume.tif" '
           f'label: "{TEST_DATA}/isbi-crops-labels.tif" tile_size: 92 label_size: 52 w0: 10 '
           'sigma: 5 } create_deformation_param { deform_std: 5 grid_points: 3 '
           'random_mirror_flag { v: 1 v: 1 } random_rotate_from { v: 0 } '
           'random_rotate_to { v: 360 } } } '
           + layers_text(depth=2, channels=8, dropout_levels=0)
           + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" '
             'bottom: "weights" top: "loss" }')
    text = (f"net_param {{ {net} }} base_lr: 0.003 momentum: 0.9 max_iter: {iterations} "
            "random_seed: 0 average_loss: 20")
    return unetcore.get_solver(parse(text, "SolverParameter"))


def test_the_small_unet_learns_real_em_data():
    solver = isbi_solver(200)
    losses = []
    solver.callbacks.append(lambda s: losses.append(float(s.net.loss)))
    solver.step(200)
    first, last = np.mean(losses[:20]), np.mean(losses[-60:])
    # At the start the loss is about ln 2 (two classes, caffe_unet's weight-sum normalizer);
    # measured: 0.717 over the first 20 iterations, 0.41 over the last 60.
    assert first > 0.6, first
    assert last < 0.55, (first, last)


def test_the_demo_net_trained_on_isbi_segments_a_held_out_crop():
    """The README demo net after 3000 iterations on ISBI slices 1-20 (tests/data) segments a
    crop of slice 22, which it never saw: better than a global threshold by a wide margin.
    Measured at commit 0cce32e: 16.75% of pixels differ, IoU 0.623 / 0.768 (membrane / cell)."""
    import tifffile

    from docgen import real_data_prediction              # bin/docgen.py
    from unetcore.measures.isbi import differing_pixels, iou
    image, cells, probability = real_data_prediction()
    assert probability.shape == cells.shape == (188, 188)
    prediction = probability > 0.5
    assert differing_pixels(prediction, cells) < 0.18
    membrane, cell = iou(prediction.astype(int)[None], cells.astype(int)[None])
    assert membrane > 0.6 and cell > 0.75
    # a global threshold that calls exactly the true fraction of pixels cell: a generous floor
    thresholded = image > np.percentile(image, 100 * (1 - cells.mean()))
    assert differing_pixels(thresholded, cells) > 0.25
    assert tifffile.imread(TEST_DATA / "isbi-heldout-volume.tif").dtype == np.uint8
