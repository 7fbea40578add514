"""The `unetcore` program: its console script, and `python -m unetcore` where the script is not
on PATH. It sets what the process needs before NumPy loads, then runs the command line."""
import os


def main():
    # OpenBLAS's worker threads spin between GEMMs, by default for about 0.1 s, on a core that
    # the single-threaded NumPy work between GEMMs (im2col copies, ReLU, pooling) needs too.
    # On a 2-core virtual machine that made the flat im2col copies 5x slower at times
    # (docs/benchmarks.md). 4 lets them sleep at once. OpenBLAS reads it when NumPy loads,
    # which is why this comes first; a value the user chose stays.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    from unetcore.cli import main as command_line
    return command_line(prog_name="unetcore")


if __name__ == "__main__":
    main()
