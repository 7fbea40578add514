"""The command line: every user error is one line on stderr and exit status 1."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

import unetcore
from cases import REPO
from unetcore.cli import main
from unetcore.gradcheck import randomize_params

PROTOTXT = REPO / "prototxt"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_shapes_walks_the_unet():
    result = run("shapes", PROTOTXT / "unet-deploy.prototxt", "--size", 572)
    assert result.exit_code == 0
    assert "conv_u0d-score          Convolution       score         1x2x388x388" in result.output
    assert "31,030,658 learnable parameters" in result.output


def test_shapes_refuses_a_misaligned_size():
    result = run("shapes", PROTOTXT / "unet-deploy.prototxt", "--size", 573)
    assert result.exit_code == 1
    assert result.output.startswith("unetcore: error: input size 573x573 makes pooling layer 'pool_d0c-1a'")
    assert "nearest valid sizes: 556, 572, 588, 604" in result.output


def test_malformed_prototxt_is_one_located_line(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer {\n  name: "a"\n  type: "ReLU"\n  botom: "x"\n}\n')
    result = run("shapes", bad)
    assert result.exit_code == 1
    assert result.output == (f"unetcore: error: {bad}:4:3: unknown field 'botom' in "
                             "LayerParameter; did you mean 'bottom'?\n")
    assert "Traceback" not in result.output


def test_gradcheck_command_passes_on_the_small_unet():
    result = run("gradcheck", PROTOTXT / "unet-small-train.prototxt", "--max-checks", 5)
    assert result.exit_code == 0, result.output
    assert "27 passed, 0 failed" in result.output


@pytest.mark.parametrize("engine", ["reference", "correlation"])
def test_gradcheck_command_runs_the_engine_asked_for(engine, monkeypatch):
    from unetcore.layers.convolution_correlation import CorrelationConvolution

    def wrong(self, dy, w, dx):                  # only the correlation engine is broken
        dx[...] = 0
    monkeypatch.setattr(CorrelationConvolution, "backward_gemm", wrong)
    result = run("gradcheck", PROTOTXT / "unet-small-train.prototxt", "--max-checks", 5,
                 "--engine", engine)
    assert result.exit_code == (0 if engine == "reference" else 1), result.output
    assert ("FAILED" in result.output) == (engine == "correlation")


def test_time_names_the_engine_of_each_layer():
    result = run("time", PROTOTXT / "unet-small-train.prototxt", "--iterations", 1)
    assert result.exit_code == 0, result.output
    lines = {line.split("\t")[0].strip(): line for line in result.output.splitlines()}
    assert lines["conv_u0d-score"].endswith("[pointwise]")
    assert lines["pool_d0c-1a"].endswith("[tiled]")
    assert "[" not in lines["conv_d0a-b"]
    result = run("time", PROTOTXT / "unet-small-train.prototxt", "--iterations", 1,
                 "--engine", "reference")
    assert "[" not in result.output


def test_time_runs_every_layer_of_a_deploy_net_backward():
    """A deploy net has no loss, so no pool of it keeps an argmax for a backward in use; `time`
    runs every layer's backward anyway, as `caffe time` does."""
    result = run("time", PROTOTXT / "unet-small-deploy.prototxt", "--iterations", 1)
    assert result.exit_code == 0, result.output
    assert "pool_d1c-2a" in result.output


def test_an_unknown_engine_is_refused():
    result = run("time", PROTOTXT / "unet-small-train.prototxt", "--engine", "fft")
    assert result.exit_code == 2
    assert "Invalid value for '--engine'" in result.output


def test_gradcheck_command_exits_nonzero_on_failure(tmp_path, monkeypatch):
    from unetcore.layers.relu import ReLULayer

    def wrong(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 2 * top[0].diff
    monkeypatch.setattr(ReLULayer, "backward", wrong)
    result = run("gradcheck", PROTOTXT / "unet-small-train.prototxt", "--max-checks", 5)
    assert result.exit_code == 1
    assert "FAILED" in result.output


def test_openblas_threads_sleep_between_gemms_unless_the_user_chose():
    """The unetcore command sets OpenBLAS's thread timeout to 4 before NumPy loads, so its idle
    threads sleep instead of spinning; a user's value stays."""
    code = ("import os, sys\nfrom unetcore.__main__ import main\n"
            "assert 'numpy' not in sys.modules\nsys.argv = ['unetcore', '--version']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(os.environ['OPENBLAS_THREAD_TIMEOUT'])")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}

    def timeout_seen(env):
        return subprocess.run([sys.executable, "-c", code], env=env, text=True,
                              capture_output=True, check=True).stdout.splitlines()[-1]
    assert timeout_seen(env) == "4"
    assert timeout_seen(dict(env, OPENBLAS_THREAD_TIMEOUT="20")) == "20"


def test_segment_and_test_run_on_onnx_runtime_with_the_numpy_paths_numbers(tmp_path,
                                                                            monkeypatch):
    """--runtime onnxruntime: the same probabilities as the NumPy engines, to 1e-5, into a
    TIFF and chunk by chunk into a zarr array, and the same ISBI measures from `test`."""
    pytest.importorskip("onnxruntime")
    from unetcore.inference.runtimes import OnnxRuntimeNet
    sessions = []
    run_session = OnnxRuntimeNet.forward
    monkeypatch.setattr(OnnxRuntimeNet, "forward",
                        lambda self, **inputs: sessions.append(1) or run_session(self, **inputs))
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("dask.distributed")
    deploy = str(PROTOTXT / "unet-small-deploy.prototxt")
    net = unetcore.Net(deploy, unetcore.TEST)
    randomize_params(net, np.random.default_rng(3))
    net.save(str(tmp_path / "w.caffemodel.h5"))
    rng = np.random.default_rng(4)
    tifffile.imwrite(tmp_path / "in.tif", rng.integers(0, 256, (2, 50, 61), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "labels.tif",
                     (rng.random((2, 50, 61)) > 0.5).astype(np.uint8) * 255)
    common = ["--model", deploy, "--weights", str(tmp_path / "w.caffemodel.h5"), "--tile", "60"]
    probabilities = {}
    for runtime in ("numpy", "onnxruntime"):
        for kind in ("tif", "zarr"):
            out = tmp_path / f"{runtime}.{kind}"
            p = tmp_path / f"p-{runtime}.{kind}"
            result = run("segment", tmp_path / "in.tif", "-o", out, "--probabilities", p,
                         "--runtime", runtime, *common)
            assert result.exit_code == 0, result.output
            probabilities[runtime, kind] = tifffile.imread(p) if kind == "tif" \
                else zarr.open_array(str(p))[:]
    assert len(sessions) >= 4                # ONNX Runtime ran the forwards it was asked to
    for kind in ("tif", "zarr"):
        np.testing.assert_allclose(probabilities["onnxruntime", kind],
                                   probabilities["numpy", kind], atol=1e-5)
    scores = [json.loads(run("test", tmp_path / "in.tif", tmp_path / "labels.tif", "--json",
                             "--runtime", runtime, *common).output.splitlines()[-1])
              for runtime in ("numpy", "onnxruntime")]
    assert scores[0].keys() == scores[1].keys()
    for key in scores[0]:
        assert scores[1][key] == pytest.approx(scores[0][key], abs=1e-4)
