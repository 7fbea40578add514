"""Winograd's minimal filtering: the transforms are exact (checked in fractions), F(2, 3) is
Lavin & Gray's, and the 2-d kron form computes the 2-d correlation."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from unetcore.layers.convolution import direct_convolution
from unetcore.ops.im2col import ConvGeometry
from unetcore.ops.winograd import as_array, exact_inverse, tile_count, winograd_1d, winograd_2d


def winograd_output(f, d, g):
    """y = A^T [(G g) * (B^T d)] in exact arithmetic."""
    gg = [sum(row[k] * g[k] for k in range(len(g))) for row in f.g]
    bd = [sum(row[k] * d[k] for k in range(len(d))) for row in f.bt]
    return [sum(row[t] * gg[t] * bd[t] for t in range(f.alpha)) for row in f.at]


@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (6, 3), (3, 2), (4, 2), (2, 1), (1, 3)])
def test_every_input_filter_pair_gives_exactly_the_correlation(m, r):
    """y is bilinear in d and g, so the unit vectors check it completely: with d = e_a and
    g = e_k, y_i = 1 where a = i + k and 0 elsewhere. Exactly, in fractions."""
    f = winograd_1d(m, r)
    assert (len(f.at), len(f.at[0]), len(f.g), len(f.g[0]), len(f.bt)) == (m, f.alpha, f.alpha, r, f.alpha)
    for a in range(f.alpha):
        for k in range(r):
            d = [Fraction(int(i == a)) for i in range(f.alpha)]
            g = [Fraction(int(i == k)) for i in range(r)]
            assert winograd_output(f, d, g) == [Fraction(int(a == i + k)) for i in range(m)]


def test_f23_is_lavin_and_grays():
    """Lavin & Gray (2016), eq. 7, up to the sign of the point at infinity, which flips the
    last row of B^T and the last column of A^T together."""
    f = winograd_1d(2, 3)
    np.testing.assert_array_equal(as_array(f.g), [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    np.testing.assert_array_equal(as_array(f.bt), [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
                                                   [0, -1, 0, 1]])
    np.testing.assert_array_equal(as_array(f.at), [[1, 1, 1, 0], [0, 1, -1, 1]])


def test_b_transpose_rows_are_integers():
    for m, r in ((2, 3), (4, 3), (6, 3)):
        assert all(v.denominator == 1 for row in winograd_1d(m, r).bt for v in row)


def test_exact_inverse():
    matrix = [[Fraction(2), Fraction(1)], [Fraction(1), Fraction(1)]]
    assert exact_inverse(matrix) == [[1, -1], [-1, 2]]
    swapped = [[Fraction(0), Fraction(1)], [Fraction(1), Fraction(0)]]    # needs a pivot swap
    assert exact_inverse(swapped) == swapped


def test_too_many_points_is_refused():
    with pytest.raises(ValueError, match=r"F\(12, 3\) needs 13 points; 9 were given"):
        winograd_1d(12, 3)


@given(st.sampled_from([2, 3, 4, 6]), st.integers(1, 3), st.integers(1, 3), st.data())
def test_the_kron_form_is_the_2d_correlation(m, kh, kw, data):
    """Y = (A^T kron A^T) [(G kron G) g * (B^T kron B^T) d] on row-major flattened tiles."""
    f = winograd_2d(m, (kh, kw))
    alpha_h, alpha_w = f.alphas
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    d, g = rng.standard_normal((alpha_h, alpha_w)), rng.standard_normal((kh, kw))
    y = f.output_transform @ ((f.filter_transform @ g.ravel()) * (f.input_transform @ d.ravel()))
    geom = ConvGeometry((kh, kw), (1, 1), (0, 0), (1, 1))
    direct = direct_convolution(d[None, None], g[None, None], None, geom)[0, 0]
    np.testing.assert_allclose(y.reshape(m, m), direct, atol=1e-10)


def test_tile_count_covers_the_output():
    assert [tile_count(n, 4) for n in (1, 4, 5, 8, 568)] == [1, 1, 2, 2, 142]
