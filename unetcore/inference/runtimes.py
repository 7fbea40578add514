"""Runtimes for inference: which code runs a deploy net's forward passes while unetcore's own
overlap-tile (tiling), mirroring and averaging go on around them (issue 34).

    numpy         the Net itself: NumPy on the CPU, CuPy on a GPU
    onnxruntime   the same net exported to ONNX in memory and run by ONNX Runtime, on its CPU
                  provider, or on its CUDA provider for a net built for a GPU
                  (`pip install 'unetcore[export]'`; onnxruntime-gpu for CUDA)

    net = deploy_net(model, weights, tile, gpu)
    choose_tile(net, model, [im.shape for im in images])     # on the Net: it reshapes it
    probabilities = segment_images(with_runtime(net, "onnxruntime"), images)

Both compute the same numbers to float32 rounding (tests/inference/test_runtimes.py); the
figures of each are in docs/benchmarks.md.
"""
from collections import OrderedDict

import numpy as np

from unetcore.errors import UnetcoreError

RUNTIMES = ("numpy", "onnxruntime")


def with_runtime(net, runtime):
    """The net whose forward passes run in `runtime`: the Net itself for "numpy", an
    OnnxRuntimeNet around it for "onnxruntime"."""
    if runtime == "numpy":
        return net
    if runtime == "onnxruntime":
        return OnnxRuntimeNet(net)
    raise UnetcoreError(f"unknown runtime '{runtime}': the runtimes are {', '.join(RUNTIMES)}")


class OnnxRuntimeNet:
    """A deploy Net (weights loaded) whose forward runs in ONNX Runtime.

    It offers what overlap-tile reads of a Net (tiling.segment, segment_canvas,
    segmentation.segment_images, the Fiji backend's passes): the blobs, whose shapes give the
    tile geometry, the layers (their pooling strides), image_input, outputs, dtype, and
    forward(**{image_input: tiles}) -> {output: scores}. It reads the shapes from the Net at
    each call; choose_tile and square_input, which reshape a net, take the Net itself, before
    or after it is wrapped.

    The net is exported once, with the weights it holds now: its ONNX graph takes any batch
    and any input size the net takes (its crops follow the shapes at run time), so one
    session serves every tile and batch. `providers` are ONNX Runtime's (default: CUDA on the
    net's GPU where it was built for one, else the CPU); `threads` its threads within an
    operator (default: ONNX Runtime's, one per physical core). `spinning=False` makes its
    idle threads sleep at once, where by default they spin for a while after each run, on
    cores that whatever runs next then lacks (bench/segment.py takes turns with PyTorch).
    """

    def __init__(self, net, providers=None, threads=None, spinning=True):
        from unetcore.export.onnx import onnx_model
        ort = onnxruntime_module()
        providers = providers or default_providers(net)
        require_available(ort, providers)
        options = ort.SessionOptions()
        options.log_severity_level = 3                  # errors only: no notes on the console
        options.intra_op_num_threads = threads or 0     # 0: ONNX Runtime's default
        if not spinning:        # idle threads sleep (its default: they spin, and keep cores)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.net = net
        self.session = ort.InferenceSession(onnx_model(net).SerializeToString(), options,
                                            providers=providers)
        require_used(self.session, providers)
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.keeps_blobs = False

    @property
    def image_input(self):
        return self.net.image_input

    @property
    def outputs(self):
        return self.net.outputs

    @property
    def blobs(self):
        return self.net.blobs

    @property
    def layers(self):
        return self.net.layers

    @property
    def specs(self):
        return self.net.specs

    @property
    def top_vecs(self):
        return self.net.top_vecs

    @property
    def dtype(self):
        return self.net.dtype

    @property
    def release_activations(self):
        """True, as ONNX Runtime keeps no inner blobs. Set to False (as tiling's diagnosis of a
        score that is not finite does, to find the first layer at fault), the forward runs
        the Net, which then keeps every blob in top_vecs."""
        return not self.keeps_blobs

    @release_activations.setter
    def release_activations(self, on):
        self.net.release_activations = on
        self.keeps_blobs = not on

    def forward(self, **inputs):
        """{output name: scores} of the inputs ({blob name: array}), as Net.forward returns."""
        if self.keeps_blobs:
            return self.net.forward(**inputs)
        feeds = {name: np.ascontiguousarray(value, np.float32) for name, value in inputs.items()}
        return OrderedDict(zip(self.output_names, self.session.run(self.output_names, feeds)))


def onnxruntime_module():
    """ONNX Runtime, or the one-line error that says how to install it (with onnx, which the
    export needs)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise UnetcoreError("the onnxruntime runtime needs the onnx and onnxruntime packages: "
                            "pip install 'unetcore[export]'") from None
    return onnxruntime


def default_providers(net):
    """ONNX Runtime's CUDA provider on the net's GPU for a net built for one, else its CPU
    provider."""
    if net.gpu is None:
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", {"device_id": net.gpu}), "CPUExecutionProvider"]


def provider_name(provider):
    """The name of a provider given as a name or as (name, options)."""
    return provider if isinstance(provider, str) else provider[0]


def require_available(ort, providers):
    """Refuse, in one line, a provider that this ONNX Runtime was not built with."""
    available = ort.get_available_providers()
    for name in map(provider_name, providers):
        if name not in available:
            hint = "; pip install onnxruntime-gpu for CUDA" if name.startswith("CUDA") else ""
            raise UnetcoreError(f"ONNX Runtime has no {name} here (it has "
                                f"{', '.join(available)}){hint}")


def require_used(session, providers):
    """Refuse a session that fell back from the first provider asked for (a CUDA provider
    whose libraries did not load runs everything on the CPU)."""
    wanted = provider_name(providers[0])
    if session.get_providers()[0] != wanted:
        raise UnetcoreError(f"ONNX Runtime could not start its {wanted} (it runs on "
                            f"{', '.join(session.get_providers())}); check its installation")
