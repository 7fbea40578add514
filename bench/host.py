"""The host a benchmark ran on, in one line: CPU model, cores, the vector extensions that
matter to a GEMM (AVX2, AVX-512, AMX), the same-run SGEMM rate and the commit. A ratio
measured on one host is not true for another (issue 23); every benchmark prints this line
beside its figures."""
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# /proc/cpuinfo flag -> the name people know
EXTENSIONS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_bf16": "AVX-512 BF16",
              "amx_tile": "AMX"}


def cpu_flags():
    """(model name, set of flags) from /proc/cpuinfo; the platform's name and no flags
    elsewhere."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return platform.processor() or platform.machine(), set()
    model, flags = platform.machine(), set()
    for line in info.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    return model, flags


def sgemm_rate(n=2048, repeats=5):
    """GFLOP/s of an n x n float32 matrix product, the median of `repeats` after a warm-up."""
    a, b = np.ones((n, n), np.float32), np.ones((n, n), np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def commit():
    result = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def describe(sgemm=None):
    """'<model>, <n> cores, <extensions>, SGEMM <rate> GFLOP/s, commit <sha>'."""
    model, flags = cpu_flags()
    extensions = [name for flag, name in EXTENSIONS.items() if flag in flags] or ["none known"]
    rate = f", SGEMM 2048^3 {sgemm:.0f} GFLOP/s" if sgemm else ""
    return (f"{model}, {os.cpu_count()} cores, {' '.join(extensions)}{rate}, "
            f"commit {commit()}")


def thread_env(threads):
    """The environment of a benchmark's child process: `threads` BLAS and OpenMP threads,
    for NumPy's BLAS and PyTorch alike."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                MKL_NUM_THREADS=str(threads))
