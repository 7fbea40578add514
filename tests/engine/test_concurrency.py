"""Threads: two Nets in two threads are independent (each thread has its own workspaces and
engine setting), and one Net used by a second live thread is refused in one line."""
import threading

import numpy as np
import pytest

from cases import REPO
from unetcore import config
from unetcore.errors import NetError
from unetcore.gradcheck import randomize_params
from unetcore.layer import layer_class
from unetcore.net import Net
from unetcore.formats.prototxt import parse

SMALL = str(REPO / "prototxt" / "unet-small-deploy.prototxt")


def small_net(seed):
    net = Net(SMALL, "TEST")
    randomize_params(net, np.random.default_rng(seed))
    return net


def scores(net, image):
    return net.forward(data=image)[net.outputs[0]].copy()


def run_in_threads(jobs):
    """Run the callables at once, each in a thread, released together; their results (or
    the exception each raised)."""
    start, results = threading.Barrier(len(jobs)), [None] * len(jobs)

    def work(i, job):
        start.wait()
        try:
            results[i] = job()
        except Exception as err:            # handed back to the test to assert on
            results[i] = err
    threads = [threading.Thread(target=work, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_nets_in_two_threads_give_their_one_thread_results():
    """Each net forwards 5 different images, both at once: every score equals the one the
    same net gives alone (the im2col workspace was shared by the process before)."""
    rng = np.random.default_rng(0)
    nets = [small_net(1), small_net(2)]
    images = [[rng.random((1, 1, 92, 92), dtype=np.float32) for _ in range(5)] for _ in nets]
    alone = [[scores(net, image) for image in batch] for net, batch in zip(nets, images)]
    nets = [small_net(1), small_net(2)]                 # fresh nets, owned by no thread

    def job(net, batch):
        return lambda: [scores(net, image) for image in batch]
    together = run_in_threads([job(net, batch) for net, batch in zip(nets, images)])
    for got, expected in zip(together, alone):
        assert not isinstance(got, Exception), got
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)


def test_one_net_in_a_second_live_thread_is_refused_in_one_line():
    net = small_net(0)
    image = np.zeros((1, 1, 92, 92), np.float32)
    expected = scores(net, image)                       # the main thread owns it now
    (got,) = run_in_threads([lambda: scores(net, image)])
    assert isinstance(got, NetError)
    assert str(got) == (f"net '{net.name}' is in use by thread 'MainThread': a Net holds one "
                        "pass's blobs, so give each thread a Net of its own")
    np.testing.assert_array_equal(scores(net, image), expected)


def test_four_threads_on_one_net_one_runs_the_others_are_refused():
    net = small_net(0)
    image = np.random.default_rng(3).random((1, 1, 92, 92), dtype=np.float32)
    expected = scores(small_net(0), image)
    ran, done = threading.Event(), threading.Event()

    def holds_the_net():                                # runs, and keeps its thread alive
        result = scores(net, image)
        ran.set()
        done.wait(30)
        return result
    results = []
    first = threading.Thread(target=lambda: results.append(holds_the_net()))
    first.start()
    ran.wait(30)
    refused = run_in_threads([lambda: scores(net, image)] * 3)
    done.set()
    first.join()
    assert all(isinstance(r, NetError) for r in refused)
    np.testing.assert_array_equal(results[0], expected)


def test_a_net_passes_to_a_new_thread_once_its_owner_has_ended():
    net = small_net(0)
    image = np.zeros((1, 1, 92, 92), np.float32)
    (first,) = run_in_threads([lambda: scores(net, image)])
    (second,) = run_in_threads([lambda: scores(net, image)])
    np.testing.assert_array_equal(first, second)


def test_the_engine_setting_belongs_to_its_thread():
    """using_engine in one thread leaves the layers another thread builds on "auto"."""
    conv = parse('layer { name: "c" type: "Convolution" convolution_param { num_output: 64 '
                 'kernel_size: 3 } }').layer[0]
    shapes = [(1, 64, 40, 40)]
    inside, outside = threading.Event(), threading.Event()

    def chooses_reference():
        with config.using_engine("reference"):
            inside.set()
            outside.wait(30)
            return layer_class(conv, shapes).engine
    thread_result = []
    thread = threading.Thread(target=lambda: thread_result.append(chooses_reference()))
    thread.start()
    inside.wait(30)
    other = layer_class(conv, shapes).engine
    outside.set()
    thread.join()
    assert thread_result == ["reference"]
    assert other != "reference" and config.engine() == "auto"


def test_an_unknown_engine_is_refused_whatever_thread_asks():
    with config.using_engine("fft"), pytest.raises(NetError, match="unknown engine 'fft'"):
        layer_class(parse('layer { name: "c" type: "ReLU" }').layer[0])
