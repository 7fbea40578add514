import numpy as np

from cases import blobs_of, make_layer
from unetcore.blob import Blob
from unetcore.gradcheck import check_layer


def test_checker_catches_a_wrong_backward():
    layer = make_layer('name: "r" type: "ReLU"')

    def wrong_backward(top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff * 1.01               # 1 % off
    layer.backward = wrong_backward
    results = check_layer(layer, blobs_of(np.random.default_rng(0).uniform(0.5, 1, (3, 4))),
                          [Blob((), np.float64)])
    assert not results[0].passed
    assert results[0].max_scaled_error > 1e-3
    assert "FAILED" in results[0].line()


def test_checker_samples_at_most_max_checks():
    layer = make_layer('name: "r" type: "ReLU"')
    results = check_layer(layer, blobs_of(np.ones((10, 10))), [Blob((), np.float64)], max_checks=7)
    assert results[0].checked == 7 and results[0].passed
