"""Checks for the exercises of docs/coding-exercises.md, by unetcore's gradient checker and
against unetcore's own layers. The tests run them on the answers
(tests/docs/test_docs_exercises.py); run them on yours:

    .venv/bin/python docs/exercises/harness.py EXERCISE [YOUR_FILE.py]

EXERCISE is conv_backward, maxpool_backward, upconv_adjoint or strided_dx. YOUR_FILE.py
defines the functions the exercise asks for (without it, the answer in this folder is
checked). The functions the exercise gives (its GIVEN) always come from the answer's file.
"""
import ast
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
for folder in (str(HERE), str(REPO)):   # the exercises import each other; unetcore from here
    if folder not in sys.path:
        sys.path.insert(0, folder)

from unetcore.blob import Blob                                      # noqa: E402
from unetcore.gradcheck import check_gradients, layer_from_text     # noqa: E402
from unetcore.layer import Layer                                    # noqa: E402
from unetcore.layers.convolution import direct_convolution_backward  # noqa: E402
from unetcore.ops.im2col import ConvGeometry                        # noqa: E402

EXERCISES = ("conv_backward", "maxpool_backward", "upconv_adjoint", "strided_dx")


def load(path):
    """The module of a Python file, loaded by its path."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def answer(name):
    """The answer's module of an exercise."""
    return load(HERE / f"{name}.py")


@dataclass
class Check:
    what: str
    passed: bool
    detail: str = ""

    def line(self):
        return f"{'ok' if self.passed else 'FAILED':<7} {self.what}" + \
            (f": {self.detail}" if self.detail else "")


class FunctionLayer(Layer):
    """A layer whose forward and backward are plain functions, so that unetcore's gradient
    checker can check them: forward(x, *params) -> y and backward(x, *params, dy) ->
    (dx, *dparams). The params are the layer's blobs: the checker checks their gradients
    too."""
    type = "Exercise"

    def __init__(self, forward, backward, params=()):
        super().__init__(SimpleNamespace(name="exercise", location=lambda: "exercise"),
                         dtype=np.float64)
        self.forward_function, self.backward_function = forward, backward
        for value in params:
            blob = Blob(np.shape(value), np.float64)
            blob.data[...] = value
            self.blobs.append(blob)

    def compute(self, bottom):
        return np.asarray(self.forward_function(bottom[0].data, *(b.data for b in self.blobs)))

    def reshape(self, bottom, top):
        top[0].reshape(self.compute(bottom).shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.compute(bottom)

    def backward(self, top, propagate_down, bottom):
        grads = self.backward_function(bottom[0].data, *(b.data for b in self.blobs),
                                       top[0].diff)
        grads = grads if isinstance(grads, tuple) else (grads,)
        if propagate_down[0]:
            bottom[0].diff[...] = grads[0]
        for blob, grad in zip(self.blobs, grads[1:]):
            blob.diff += grad


def gradient_check(what, forward, backward, x, params=()):
    """The gradient checker's verdict on forward/backward at x, as one Check."""
    try:
        results = check_gradients(FunctionLayer(forward, backward, params), x)
    except Exception as err:                 # a wrong shape, a missing return value...
        return Check(what, False, f"{type(err).__name__}: {err}")
    worst = max(r.max_scaled_error for r in results)
    return Check(what, all(r.passed for r in results), f"largest relative error {worst:.1e}")


def same(what, got, expected):
    """Whether `got` equals `expected` to 1e-10 (relative to its size), as one Check."""
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    if got.shape != expected.shape:
        return Check(what, False, f"shape {got.shape}, expected {expected.shape}")
    error = float(np.abs(got - expected).max(initial=0)) / max(1.0, float(np.abs(expected).max(initial=0)))
    return Check(what, error <= 1e-10, f"largest difference {error:.1e}")


def guarded(what, function):
    """function() -> [Check], or one failed Check naming the error it raised."""
    try:
        return function()
    except Exception as err:
        return [Check(what, False, f"{type(err).__name__}: {err}")]


def skeleton(name):
    """The exercise as the student gets it (docs/coding-exercises.md prints it): the answer file's
    imports, its GIVEN functions in full, and each EXERCISE function's signature and
    docstring with the body left to write."""
    path = HERE / f"{name}.py"
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    module = load(path)
    parts = [ast.get_source_segment(source, node) for node in tree.body
             if isinstance(node, (ast.Import, ast.ImportFrom))]
    parts = ["\n".join(parts)]
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        if node.name in module.GIVEN:
            parts.append(ast.get_source_segment(source, node))
        elif node.name in module.EXERCISE:
            docstring = node.body[0]
            head = "\n".join(lines[node.lineno - 1:docstring.end_lineno])
            parts.append(head + "\n    raise NotImplementedError   # your code here")
    return "\n\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- 1. conv_backward
CONV_CASES = [  # (N, C, H, W), (O, C, kh, kw), stride, pad
    ((2, 3, 5, 6), (2, 3, 3, 3), 1, 0),
    ((1, 2, 7, 6), (3, 2, 3, 2), 2, 1),
    ((2, 1, 8, 7), (2, 1, 2, 3), 3, 0)]


def check_conv_backward(mine, rng=None):
    rng = rng or np.random.default_rng(0)
    given = answer("conv_backward")
    checks = []
    for x_shape, w_shape, s, p in CONV_CASES:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        b = rng.standard_normal(w_shape[0])
        case = f"x {x_shape}, w {w_shape}, stride {s}, pad {p}"

        def compare(x=x, w=w, b=b, s=s, p=p, case=case):
            dy = rng.standard_normal(given.conv_forward(x, w, b, s, p).shape)
            dx, dw, db = mine.conv_backward(x, w, dy, s, p)
            geom = ConvGeometry(w.shape[2:], (s, s), (p, p), (1, 1))
            ref = direct_convolution_backward(x, w, dy, geom)
            return [same(f"{name} against layers.convolution.direct_convolution_backward, {case}",
                         got, want) for name, got, want in zip(("dx", "dw", "db"), (dx, dw, db), ref)]
        checks += guarded(case, compare)
        checks.append(gradient_check(
            f"gradient check of dx, dw, db, {case}",
            lambda x, w, b, s=s, p=p: given.conv_forward(x, w, b, s, p),
            lambda x, w, b, dy, s=s, p=p: mine.conv_backward(x, w, dy, s, p), x, (w, b)))
    return checks


# ---------------------------------------------------------------- 2. maxpool_backward
def pooling_reference(x, dy, size, stride):
    """unetcore's reference Pooling layer (engine CAFFE): dx for x and dy."""
    layer = layer_from_text(f'name: "pool" type: "Pooling" pooling_param {{ pool: MAX '
                            f'kernel_size: {size} stride: {stride} engine: CAFFE }}',
                            bottom_shapes=[x.shape])
    bottom, top = [Blob(x.shape, np.float64)], [Blob((), np.float64)]
    bottom[0].data[...] = x
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    return top[0].data.copy(), bottom[0].diff.copy()


POOL_CASES = [((2, 3, 6, 8), 2, 2), ((1, 2, 7, 9), 3, 2), ((1, 1, 5, 5), 3, 1)]


def check_maxpool_backward(mine, rng=None):
    rng = rng or np.random.default_rng(0)
    given = answer("maxpool_backward")
    checks = []
    for shape, size, s in POOL_CASES:
        case = f"x {shape}, window {size}, stride {s}"
        x = rng.standard_normal(shape)                  # distinct values: no ties, no kinks
        checks.append(gradient_check(
            f"gradient check, {case}", lambda x, size=size, s=s: given.max_pool_forward(x, size, s),
            lambda x, dy, size=size, s=s: mine.max_pool_backward(x, dy, size, s), x))

        def ties(shape=shape, size=size, s=s, case=case):
            x = rng.integers(0, 3, shape).astype(float)     # many ties: Caffe's rule decides
            dy = rng.standard_normal(given.max_pool_forward(x, size, s).shape)
            _, expected = pooling_reference(x, dy, size, s)
            return [same(f"dx with ties against unetcore's Pooling layer, {case}",
                         mine.max_pool_backward(x, dy, size, s), expected)]
        checks += guarded(case, ties)
    return checks


# ---------------------------------------------------------------- 3. upconv_adjoint
UPCONV_CASES = [((2, 3, 3, 4), (3, 2, 2, 2), 2), ((1, 2, 3, 3), (2, 3, 3, 3), 2),
                ((1, 2, 4, 3), (2, 1, 3, 3), 1)]


def deconvolution_reference(x, w, dy, stride):
    """unetcore's Deconvolution layer (no bias): y, dx and dw."""
    layer = layer_from_text(f'name: "up" type: "Deconvolution" convolution_param {{ '
                            f'num_output: {w.shape[1]} kernel_size: {w.shape[2]} '
                            f'stride: {stride} bias_term: false }}', bottom_shapes=[x.shape])
    bottom, top = [Blob(x.shape, np.float64)], [Blob((), np.float64)]
    bottom[0].data[...] = x
    layer.setup(bottom, top)
    layer.blobs[0].data[...] = w
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    y = top[0].data.copy()
    if dy is None:
        return y, None, None
    top[0].diff[...] = dy
    layer.blobs[0].diff[...] = 0
    layer.backward(top, [True], bottom)
    return y, bottom[0].diff.copy(), layer.blobs[0].diff.copy()


def check_upconv_adjoint(mine, rng=None):
    rng = rng or np.random.default_rng(0)
    conv = answer("conv_backward")
    checks = []
    for x_shape, w_shape, s in UPCONV_CASES:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        case = f"x {x_shape}, w {w_shape}, stride {s}"

        def compare(x=x, w=w, s=s, case=case):
            y = mine.upconv_forward(x, w, s)
            z = rng.standard_normal(np.shape(y))
            left = float((y * z).sum())
            right = float((x * conv.conv_forward(z, w, np.zeros(w.shape[0]), s)).sum())
            out = [Check(f"<upconv(x), z> = <x, conv(z)>, {case}",
                         abs(left - right) <= 1e-10 * max(1.0, abs(left)),
                         f"{left:.6g} and {right:.6g}")]
            ref_y, ref_dx, ref_dw = deconvolution_reference(x, w, z, s)
            dx, dw = mine.upconv_backward(x, w, z, s)
            out += [same(f"{name} against unetcore's Deconvolution layer, {case}", got, want)
                    for name, got, want in (("y", y, ref_y), ("dx", dx, ref_dx),
                                            ("dw", dw, ref_dw))]
            return out
        checks += guarded(case, compare)
        checks.append(gradient_check(
            f"gradient check of dx, dw, {case}",
            lambda x, w, s=s: mine.upconv_forward(x, w, s),
            lambda x, w, dy, s=s: mine.upconv_backward(x, w, dy, s), x, (w,)))
    return checks


# ---------------------------------------------------------------- 4. strided_dx
STRIDED_CASES = [((2, 2, 7, 7), (3, 2, 3, 3), 2), ((1, 3, 8, 9), (2, 3, 3, 3), 2),
                 ((1, 2, 9, 8), (2, 2, 2, 3), 3), ((1, 1, 6, 6), (1, 1, 3, 3), 1)]


def check_strided_dx(mine, rng=None):
    rng = rng or np.random.default_rng(0)
    conv = answer("conv_backward")
    checks = guarded("dilate", lambda: [same(
        "dilate([[1, 2], [3, 4]], 2) = [[1, 0, 2], [0, 0, 0], [3, 0, 4]]",
        mine.dilate(np.array([[[[1.0, 2], [3, 4]]]]), 2),
        [[[[1, 0, 2], [0, 0, 0], [3, 0, 4]]]])])
    for x_shape, w_shape, s in STRIDED_CASES:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        b = np.zeros(w_shape[0])
        case = f"x {x_shape}, w {w_shape}, stride {s}"

        def compare(x=x, w=w, s=s, case=case):
            dy = rng.standard_normal(conv.conv_forward(x, w, b, s).shape)
            geom = ConvGeometry(w.shape[2:], (s, s), (0, 0), (1, 1))
            expected = direct_convolution_backward(x, w, dy, geom)[0]
            return [same(f"dx against layers.convolution.direct_convolution_backward, {case}",
                         mine.strided_dx(dy, w, s, x.shape[2:]), expected)]
        checks += guarded(case, compare)
        checks.append(gradient_check(
            f"gradient check of dx, {case}",
            lambda x, w=w, b=b, s=s: conv.conv_forward(x, w, b, s),
            lambda x, dy, w=w, s=s: mine.strided_dx(dy, w, s, x.shape[2:]), x))
    return checks


CHECKS = {"conv_backward": check_conv_backward, "maxpool_backward": check_maxpool_backward,
          "upconv_adjoint": check_upconv_adjoint, "strided_dx": check_strided_dx}


def main(argv):
    if not argv or argv[0] not in CHECKS:
        print(__doc__)
        return 2
    mine = load(argv[1]) if len(argv) > 1 else answer(argv[0])
    checks = CHECKS[argv[0]](mine)
    for check in checks:
        print(check.line())
    failed = sum(not c.passed for c in checks)
    print(f"{len(checks) - failed} of {len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
