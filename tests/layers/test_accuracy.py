"""Every engine's float32 accuracy on the U-Net's real layers: the forward, the weight gradient
and the data gradient of each Convolution and Deconvolution of the 2015 net and of the 3-d EM
net, computed in float32, against the float64 reference on the same inputs. The bound is 1e-4
of the largest value; the reference engine's own float32 error is below 1e-6, the Winograd
engine's below 2e-5 (docs/winograd.md has the table at 572 px, from bench/accuracy.py)."""

import numpy as np
import pytest

from cases import REPO
from unetcore.gradcheck import PRODUCTS, float32_errors
from unetcore.layer import ENGINES
from unetcore.net import Net

BOUND = 1e-4
MOST_PIXELS = 24          # each spatial axis of a bottom capped here: the test stays quick


def unet_layers():
    """(name, param, bottom shape) of every (De)Convolution of the 2015 net at 188 px and of
    the 3-d EM net, with the real channels and kernels, the sizes capped at MOST_PIXELS."""
    nets = [Net(REPO / "prototxt" / "unet-deploy.prototxt", "TEST"),
            Net(REPO / "prototxt" / "unet3d-em-deploy.prototxt", "TEST")]
    nets[0].set_inputs({"data": np.zeros((1, 1, 188, 188), np.float32)})
    layers = []
    for net in nets:
        for layer, bottom in zip(net.layers, net.bottom_vecs):
            if layer.type in ("Convolution", "Deconvolution"):
                n, c, *sizes = bottom[0].shape
                layers.append((f"{net.name} {layer.name}", layer.param,
                               (n, c, *(min(s, MOST_PIXELS) for s in sizes))))
    return layers


LAYERS = unet_layers()
CONVOLUTION_ENGINES = sorted({cls.engine for kind in ("Convolution", "Deconvolution")
                              for cls in ENGINES.get(kind, ())})


@pytest.mark.parametrize("engine", ["reference"] + CONVOLUTION_ENGINES)
def test_every_engine_is_within_1e_4_in_float32_on_the_unet_layers(engine):
    rng = np.random.default_rng(0)
    measured = {name: float32_errors(param, shape, engine, rng) for name, param, shape in LAYERS}
    measured = {name: errors for name, errors in measured.items() if errors is not None}
    assert measured, f"engine '{engine}' runs none of the U-Net's layers"
    too_large = [f"{name} {product}: {errors[product]:.1e}" for name, errors in measured.items()
                 for product in PRODUCTS if not errors[product] < BOUND]
    assert not too_large, "\n".join(too_large)
    if engine == "reference":
        assert max(e for errors in measured.values() for e in errors.values()) < 1e-6
    for errors in measured.values():           # float32, not float64 by mistake
        assert min(errors.values()) > 1e-9


def test_the_accuracy_check_fails_on_a_wrong_engine(monkeypatch):
    """An engine whose weight gradient is off by 1e-3 of its size is caught."""
    from unetcore.layers.convolution_flat import FlatConvolution
    original = FlatConvolution.backward

    def slightly_wrong(self, top, propagate_down, bottom):
        original(self, top, propagate_down, bottom)
        self.blobs[0].diff *= 1.001
    monkeypatch.setattr(FlatConvolution, "backward", slightly_wrong)
    name, param, shape = LAYERS[1]
    errors = float32_errors(param, shape, "flat", np.random.default_rng(0))
    assert errors["weight gradient"] > BOUND > max(errors["forward"], errors["data gradient"])
