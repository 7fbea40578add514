"""Winograd's minimal filtering F(m, r): the transform matrices, made from their points.

F(m, r) computes m outputs of a correlation with an r-tap filter,

    y[i] = sum_k d[i + k] g[k],    i = 0 .. m-1,  from  alpha = m + r - 1  inputs d,

with alpha multiplications instead of m * r (Winograd 1980; Lavin & Gray 2016, eq. 5):

    y = A^T [ (G g) * (B^T d) ]                                   (* elementwise)

Where the matrices come from (Toom-Cook). The linear convolution s = g conv h of an r-tap g and
an m-tap h is the polynomial product s(x) = g(x) h(x), of degree alpha - 1. Evaluate both
factors at alpha - 1 points a_j and take the leading coefficient (the "point at infinity"):

    G[j, k] = a_j^k         (alpha x r)       A[j, i] = a_j^i      (alpha x m)
    s = V^-1 [ (G g) * (A h) ],   V[j, k] = a_j^k  (alpha x alpha): interpolation

(the infinity row of G, A and V is zero but for a 1 in its last column). The correlation is
the transpose of the convolution in h: y = (ds/dh)^T d = A^T [ (G g) * (V^-T d) ], so
B = V^-1. Row j of B^T may be scaled by any c_j if row j of G is divided by it; the scales
that make B^T's rows integers keep the float32 rounding small.

In two dimensions the same holds along each axis: Y = A^T [ (G g G^T) * (B^T d B) ] A
(Lavin & Gray, eq. 8). On a row-major flattened tile, X d Z is (X kron Z^T) d, so each 2-d
transform is one matrix: input_transform (B^T kron B^T), filter_transform (G kron G) and
output_transform (A^T kron A^T). Rectangular kernels take a different F along each axis.

Everything here is computed exactly, in fractions, from the points alone
(docs/winograd.md prints them).
"""
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import lcm

import numpy as np

# The finite interpolation points, in the order they are taken: small, and symmetric about 0.
# Lavin & Gray take 0, 1, -1, 2, -2 for F(4, 3); the halves' float32 errors are within a
# factor of 1.5 of theirs (docs/winograd.md measures both).
POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(-1, 2),
          Fraction(2), Fraction(-2), Fraction(1, 4), Fraction(-1, 4))


@dataclass(frozen=True)
class Winograd1d:
    """The exact matrices of F(m, r): at (m x alpha), g (alpha x r), bt (alpha x alpha),
    lists of rows of Fractions."""
    m: int
    r: int
    at: tuple
    g: tuple
    bt: tuple

    @property
    def alpha(self):
        return self.m + self.r - 1


def powers_matrix(points, columns):
    """Rows (a^0, a^1, ... a^(columns-1)) for each finite point, then the infinity row."""
    rows = [[a ** k for k in range(columns)] for a in points]
    return rows + [[Fraction(0)] * (columns - 1) + [Fraction(1)]]


def exact_inverse(matrix):
    """The inverse of a square matrix of Fractions, by Gauss-Jordan elimination."""
    n = len(matrix)
    rows = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        scale = rows[col][col]
        rows[col] = [v / scale for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [v - factor * p for v, p in zip(rows[r], rows[col])]
    return [row[n:] for row in rows]


def integer_scale(row):
    """The c > 0 that makes c * row integers with no common factor."""
    denominators = lcm(*(v.denominator for v in row))
    numerators = [abs(v.numerator * (denominators // v.denominator)) for v in row if v != 0]
    return Fraction(denominators, np.gcd.reduce(numerators))


@lru_cache(maxsize=None)
def winograd_1d(m, r, points=POINTS):
    """F(m, r) from the first m + r - 2 of `points` and infinity."""
    alpha = m + r - 1
    if alpha - 1 > len(points):
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} points; {len(points)} were given")
    points = points[:alpha - 1]
    a = powers_matrix(points, m)                        # alpha x m
    g = powers_matrix(points, r)                        # alpha x r
    b = exact_inverse(powers_matrix(points, alpha))     # B = V^-1
    bt = [list(col) for col in zip(*b)]
    for j, row in enumerate(bt):                        # scale B^T's rows to integers,
        c = integer_scale(row)                          # G's rows by the inverse
        bt[j] = [v * c for v in row]
        g[j] = [v / c for v in g[j]]
    at = [list(col) for col in zip(*a)]
    return Winograd1d(m, r, tuple(map(tuple, at)), tuple(map(tuple, g)), tuple(map(tuple, bt)))


def as_array(rows, dtype=np.float64):
    return np.array([[float(v) for v in row] for row in rows], dtype=dtype)


@dataclass(frozen=True)
class Winograd2d:
    """F(m x m, kh x kw) as three matrices on row-major flattened tiles:
    input_transform (T x T), filter_transform (T x kh*kw), output_transform (m*m x T),
    with T = alpha_h * alpha_w the number of elements of a transformed tile."""
    m: int
    kernel: tuple
    input_transform: np.ndarray
    filter_transform: np.ndarray
    output_transform: np.ndarray

    @property
    def alphas(self):
        return tuple(self.m + k - 1 for k in self.kernel)


@lru_cache(maxsize=None)
def winograd_2d(m, kernel, dtype=np.float64, xp=np, points=POINTS):
    """F(m x m, kh x kw): the kron products of F(m, kh) and F(m, kw), as `dtype` arrays of
    the array module `xp`."""
    along_h, along_w = winograd_1d(m, kernel[0], points), winograd_1d(m, kernel[1], points)

    def kron(rows_h, rows_w):
        return xp.asarray(np.kron(as_array(rows_h), as_array(rows_w)), dtype=dtype)

    return Winograd2d(m, tuple(kernel), kron(along_h.bt, along_w.bt),
                      kron(along_h.g, along_w.g), kron(along_h.at, along_w.at))


def tile_count(out_size, m):
    """Tiles of m outputs along an axis of `out_size` outputs (the last one may hang over)."""
    return -(-out_size // m)
