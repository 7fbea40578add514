"""The OpenBLAS kernels to rerun the rounding-sensitive tests under: the two most capable that
this CPU can run (by its /proc/cpuinfo flags), other than the one OpenBLAS picks for it by
itself. (Prescott, the SSE3 kernel, gives the same results but takes 4.5 minutes.)"""
import ctypes
from pathlib import Path

import numpy as np

# kernel -> the CPU flags it needs, most capable first
KERNELS = {"SkylakeX": {"avx512f", "avx512bw", "avx512vl", "avx512dq"},
           "Haswell": {"avx2", "fma"}, "Sandybridge": {"avx"}, "Prescott": {"pni"}}      # pni: SSE3


def own_kernel():
    """The kernel NumPy's OpenBLAS runs here, or None where it cannot be asked."""
    for path in sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("*openblas*.so*")):
        library = ctypes.CDLL(str(path))
        for name in ("scipy_openblas_get_corename64_", "openblas_get_corename"):
            if hasattr(library, name):
                function = getattr(library, name)
                function.restype = ctypes.c_char_p
                return function().decode()
    return None


def cpu_flags():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


if __name__ == "__main__":
    flags, own = cpu_flags(), own_kernel()
    runnable = [kernel for kernel, needs in KERNELS.items()
                if needs <= flags and kernel.lower() != (own or "").lower()]
    print(" ".join(runnable[:2]))         # the two most capable: each takes a minute or two
