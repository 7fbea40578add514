"""The docs check gives the same verdict on every host: the generated blocks with the most
floating-point arithmetic, recomputed under another OpenBLAS kernel and one BLAS thread,
still agree with the pages, and the two blocks that once printed BLAS-dependent rounding
(Winograd's error table, the gradient checker's verdict) now print the very same text."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import docgen

REPO = Path(__file__).resolve().parents[2]
FLOAT_BLOCKS = ["worked-backprop", "worked-entries", "worked-ties", "worked-gradient-check",
                "winograd-errors", "matrix-calculus-example", "circuit-1d.svg"]
EXACT = ["winograd_errors", "worked_gradient_check"]


def other_kernel():
    """An OpenBLAS kernel this CPU runs other than its own (.ci/blas_kernels.py), or None."""
    path = REPO / ".ci" / "blas_kernels.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("blas_kernels", path)
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    own, flags = (kernels.own_kernel() or "").lower(), kernels.cpu_flags()
    runnable = [k for k, needs in kernels.KERNELS.items() if needs <= flags and k.lower() != own
                and k != "Prescott"]        # Prescott gives the same results, slowly
    return runnable[-1] if runnable else None


def under(kernel, *args):
    env = dict(os.environ, OPENBLAS_CORETYPE=kernel, OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def kernel():
    found = other_kernel()
    if found is None or "OPENBLAS_CORETYPE" in os.environ:
        pytest.skip("no other OpenBLAS kernel to run here")
    return found


def test_the_float_heavy_blocks_pass_the_check_under_another_kernel(kernel):
    result = under(kernel, "bin/docgen.py", "--check", "--only", ",".join(FLOAT_BLOCKS))
    assert result.returncode == 0 and "stale: nothing" in result.stdout, \
        f"OPENBLAS_CORETYPE={kernel}:\n{result.stdout}\n{result.stderr}"


def test_the_rounding_blocks_print_the_same_text_under_another_kernel(kernel):
    """No tolerance: these are computed in a fixed order (Winograd's table) or printed as a
    bound (the checker's error), so their text does not depend on the BLAS kernel."""
    code = ("import sys; sys.path.insert(0, 'bin'); import docgen; "
            + "; ".join(f"print(docgen.{name}(), end='\\x00')" for name in EXACT))
    result = under(kernel, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\x00")[:len(EXACT)] == [getattr(docgen, name)() for name in EXACT]


def test_no_block_is_allowed_a_rounding_factor():
    assert docgen.ROUNDING_BLOCKS == set()
