"""The coding exercises of docs/coding-exercises.md (docs/exercises/): each answer passes its checks
(unetcore's gradient checker, and unetcore's own layers), and the checks are able to fail:
the skeleton and answers with one deliberate mistake each are caught."""
import importlib.util
import re
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXERCISES = REPO / "docs" / "exercises"


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


harness = load(EXERCISES / "harness.py", "exercises_harness")   # puts docs/exercises on sys.path


def failed(checks):
    return [c.line() for c in checks if not c.passed]


@pytest.mark.parametrize("name", harness.EXERCISES)
def test_each_answer_passes_its_checks(name):
    checks = harness.CHECKS[name](harness.answer(name))
    assert checks and not failed(checks), "\n".join(failed(checks))
    assert any(c.what.startswith("gradient check") for c in checks)


@pytest.mark.parametrize("name", harness.EXERCISES)
def test_the_skeleton_on_the_page_fails_its_checks(name):
    """The skeleton (as docs/coding-exercises.md prints it) is not an answer: every check of the
    functions it leaves to write fails."""
    module = types.ModuleType(f"skeleton_{name}")
    exec(compile(harness.skeleton(name), f"skeleton {name}", "exec"), module.__dict__)
    checks = harness.CHECKS[name](module)
    assert checks and all(not c.passed and "NotImplementedError" in c.detail for c in checks)
    assert harness.skeleton(name) in (REPO / "docs" / "coding-exercises.md").read_text()


def mistaken(name, old, new):
    """The answer of exercise `name` with `old` replaced by `new` in its source: one mistake."""
    source = (EXERCISES / f"{name}.py").read_text()
    assert source.count(old) == 1, old
    module = types.ModuleType(f"mistaken_{name}")
    module.__file__ = str(EXERCISES / f"{name}.py")
    exec(compile(source.replace(old, new), f"mistaken {name}", "exec"), module.__dict__)
    return module


MISTAKES = [
    # a pixel read by two windows must sum their terms: = instead of += loses all but one
    ("conv_backward", "dxp[:, :, rows, cols] +=", "dxp[:, :, rows, cols] ="),
    # the weight gradient of the term w x is x dy, not w dy
    ("conv_backward", "dw += np.tensordot(g, xp[:, :, rows, cols], axes=([0], [0]))",
     "dw += np.tensordot(g, np.ones_like(xp[:, :, rows, cols]), axes=([0], [0]))"),
    # the bias is added to every pixel of every image: its gradient sums over all of them
    ("conv_backward", "db = dy.sum(axis=(0, 2, 3))", "db = dy.sum(axis=(2, 3))[0]"),
    # overlapping windows (stride < size): an input that wins two windows gets both dy
    ("maxpool_backward", "np.add.at(dx, (*planes, i * stride + p, j * stride + q), dy[:, :, i, j])",
     "dx[(*planes, i * stride + p, j * stride + q)] = dy[:, :, i, j]"),
    # at a tie Caffe routes the gradient to the first maximum, not to the last
    ("maxpool_backward", "first = window.reshape(n, c, -1).argmax(axis=2)",
     "first = window.shape[2] * window.shape[3] - 1 - "
     "window.reshape(n, c, -1)[:, :, ::-1].argmax(axis=2)"),
    # the adjoint's data gradient is the convolution with the same kernel, not the turned one
    ("upconv_adjoint", "dx = conv_forward(dy, w, np.zeros(w.shape[0]), stride)",
     "dx = conv_forward(dy, w[:, :, ::-1, ::-1], np.zeros(w.shape[0]), stride)"),
    # Caffe stores an up-convolution's weights input channel first: (C_in, C_out, k, k)
    ("upconv_adjoint", "np.tensordot(x[:, :, i, j], w, axes=([1], [0]))",
     "np.tensordot(x[:, :, i, j], w, axes=([1], [1]))"),
    # without the 180-degree turn, dx is a correlation where a convolution is needed
    ("strided_dx", "turned = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)",
     "turned = w.transpose(1, 0, 2, 3)"),
    # without the zeros between its entries, dy lands on the wrong pixels
    ("strided_dx", "d = np.pad(dilate(dy, stride),", "d = np.pad(dy,"),
]


@pytest.mark.parametrize("name, old, new", MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_deliberate_mistake_is_caught(name, old, new):
    checks = harness.CHECKS[name](mistaken(name, old, new))
    assert failed(checks), f"{name}: the checks missed {new!r}"


def test_a_tie_mistake_needs_the_tie_check():
    """Routing a tied window's gradient to its last maximum passes the gradient checker,
    which sees distinct values only; the comparison with unetcore's Pooling layer catches it."""
    old, new = MISTAKES[4][1:]
    checks = harness.CHECKS["maxpool_backward"](mistaken("maxpool_backward", old, new))
    assert all(c.passed for c in checks if c.what.startswith("gradient check"))
    assert all(not c.passed for c in checks if "ties" in c.what)


def test_the_harness_checks_a_students_file(tmp_path, capsys):
    """`python docs/exercises/harness.py EXERCISE FILE`, on a file with the answer and on
    one with a mistake."""
    good = tmp_path / "mine.py"
    good.write_text((EXERCISES / "conv_backward.py").read_text())
    assert harness.main(["conv_backward", str(good)]) == 0
    assert "12 of 12 checks passed" in capsys.readouterr().out
    bad = tmp_path / "wrong.py"
    bad.write_text((EXERCISES / "conv_backward.py").read_text().replace(
        "dxp[:, :, rows, cols] +=", "dxp[:, :, rows, cols] ="))
    assert harness.main(["conv_backward", str(bad)]) == 1
    assert re.search(r"FAILED +dx against", capsys.readouterr().out)
    assert harness.main([]) == 2
