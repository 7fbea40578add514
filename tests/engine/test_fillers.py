import numpy as np
import pytest

from unetcore.errors import NetError
from unetcore.fillers import fill
from unetcore.formats.prototxt import parse


def filler(text):
    return parse(text, "FillerParameter")


def test_msra_std_uses_caffe_fan_in():
    rng = np.random.default_rng(0)
    w = fill(filler('type: "msra"'), (64, 32, 3, 3), rng, np.float64)
    assert w.std() == pytest.approx(np.sqrt(2 / (32 * 9)), rel=0.02)
    w = fill(filler('type: "msra" variance_norm: FAN_OUT'), (64, 32, 3, 3), rng, np.float64)
    assert w.std() == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.02)


def test_xavier_uniform_bounds():
    w = fill(filler('type: "xavier"'), (50, 20, 3, 3), np.random.default_rng(0), np.float64)
    limit = np.sqrt(3 / (20 * 9))
    assert w.max() <= limit and w.min() >= -limit and w.max() > 0.95 * limit


def test_constant_uniform_gaussian():
    rng = np.random.default_rng(0)
    assert (fill(filler('type: "constant" value: 0.2'), (3,), rng) == np.float32(0.2)).all()
    u = fill(filler('type: "uniform" min: -2 max: -1'), (1000,), rng)
    assert u.min() >= -2 and u.max() < -1
    g = fill(filler('type: "gaussian" mean: 3 std: 0.5'), (20000,), rng, np.float64)
    assert g.mean() == pytest.approx(3, abs=0.02) and g.std() == pytest.approx(0.5, rel=0.03)


def test_bilinear_kernel_for_2x_upsampling():
    w = fill(filler('type: "bilinear"'), (1, 1, 4, 4), None, np.float64)
    ramp = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(w[0, 0], np.outer(ramp, ramp))


def test_unknown_filler():
    with pytest.raises(NetError, match="unknown filler type 'msr'.*known: bilinear, constant"):
        fill(filler('type: "msr"'), (1,), np.random.default_rng(0))
