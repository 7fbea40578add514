"""The BLAS thread tuner (unetcore.threads): its decisions on a made-up clock, and the
binding to NumPy's OpenBLAS."""
import pytest

from unetcore.threads import ThreadTuner, numpy_openblas


class FakeBLAS:
    threads = 2


def run(tuner, seconds_by_threads, steps):
    """Steps whose duration depends on the thread count in use; the counts used, per step."""
    now, used = [0.0], []

    def clock():
        return now[0]
    tuner.clock = clock
    for _ in range(steps):
        tuner.before_step()
        used.append(tuner.blas.threads)
        now[0] += seconds_by_threads[tuner.blas.threads]
        tuner.after_step()
    return used


def test_the_tuner_gives_way_under_contention_and_comes_back():
    tuner = ThreadTuner(FakeBLAS(), period=5)
    busy = {2: 0.40, 1: 0.25}                  # as measured with a CPU-bound process beside
    used = run(tuner, busy, 12)                # a trial every 5 steps
    assert used == [2, 2, 2, 2, 1, 1, 1, 1, 1, 2, 1, 1] and tuner.count == 1
    quiet = {2: 0.20, 1: 0.30}
    used = run(tuner, quiet, 12)               # the next trial tries 2 threads again
    assert used[-1] == 2 and tuner.count == 2


def test_the_tuner_keeps_the_count_when_the_trial_is_not_clearly_faster():
    tuner = ThreadTuner(FakeBLAS(), period=5)
    used = run(tuner, {2: 0.20, 1: 0.19}, 20)  # within the 15% margin
    assert tuner.count == 2 and used.count(1) == 4   # one trial step every 5


def test_numpy_openblas_threads_can_be_set_and_read():
    blas = numpy_openblas()
    if blas is None:
        pytest.skip("NumPy does not use a bundled OpenBLAS here")
    before = blas.threads
    try:
        blas.threads = 1
        assert blas.threads == 1
    finally:
        blas.threads = before
