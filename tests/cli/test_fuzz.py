"""Attack the input paths: mutated prototxts, and broken TIFF and HDF5 files. Every failure
must be an UnetcoreError (one clear line at the command line), never another exception.
A few hundred cases run in CI; HYPOTHESIS_PROFILE=deep runs thousands."""
import re

import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings, strategies as st

import unetcore
from unetcore.data.stacks import normalize_grey, read_stack
from unetcore.errors import UnetcoreError
from unetcore.formats.prototxt import parse

NETS = ["prototxt/unet-small-deploy.prototxt", "prototxt/unet-small-train.prototxt"]
TEXTS = [open(path).read() for path in NETS]
TOKEN = re.compile(r'"[^"]*"|[\w.+-]+|[{}:]')
# replacements a careless or hostile user might type for a number or a name
VALUES = ["0", "-1", "1e9", "99999999999999999999", "0.5", "-0.5", "nan", "inf", '""', '"x"',
          "{", "}", ":", "TRAIN", "MAX", "Pooling", "true"]
# 8 times the profile's examples: 200 in CI, 2400 with HYPOTHESIS_PROFILE=deep
profile = settings(max_examples=8 * settings().max_examples, deadline=None,
                   suppress_health_check=list(HealthCheck))


def build(text):
    """Parse and build a net from `text` (shapes only, as `unetcore shapes` does)."""
    try:
        unetcore.Net(parse(text, "NetParameter"), unetcore.TEST)
    except UnetcoreError:
        pass


@profile
@given(st.sampled_from(range(len(TEXTS))), st.data())
def test_a_token_replaced_gives_a_net_or_a_clear_error(which, data):
    text = TEXTS[which]
    tokens = list(TOKEN.finditer(text))
    token = data.draw(st.sampled_from(tokens))
    value = data.draw(st.sampled_from(VALUES))
    build(text[:token.start()] + value + text[token.end():])


@profile
@given(st.sampled_from(range(len(TEXTS))), st.data())
def test_a_byte_changed_gives_a_net_or_a_clear_error(which, data):
    raw = bytearray(TEXTS[which].encode())
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] = data.draw(st.integers(0, 255))
    build(raw.decode("utf-8", "replace"))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["uint8", "uint16", "int16", "float32", "float64"]),
       st.lists(st.integers(0, 6), min_size=2, max_size=4), st.booleans(), st.data())
def test_tiffs_of_any_shape_and_type_read_or_fail_clearly(tmp_path_factory, dtype, shape, nan,
                                                          data):
    path = tmp_path_factory.mktemp("tiff") / "x.tif"
    array = np.zeros(shape, dtype)
    if nan and array.size and np.issubdtype(array.dtype, np.floating):
        array.flat[0] = np.nan
    try:
        tifffile.imwrite(path, array, photometric="minisblack")
    except Exception:
        pytest.skip("tifffile cannot write this array")
    raw = bytearray(path.read_bytes())
    if data.draw(st.booleans()) and raw:                  # truncate or corrupt the file
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
        path.write_bytes(bytes(raw))
    try:
        normalize_grey(read_stack(path), path=str(path))
    except UnetcoreError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["no data group", "empty layer", "wrong count", "wrong shape",
                        "string data", "truncated"]))
def test_weight_files_of_every_broken_kind_fail_clearly(tmp_path_factory, kind):
    net = unetcore.Net(NETS[0], seed=0)
    path = tmp_path_factory.mktemp("h5") / "w.caffemodel.h5"
    net.save(path)
    with h5py.File(path, "a") as f:
        if kind == "no data group":
            del f["data"]
        elif kind == "empty layer":
            for key in list(f["data/conv_d0a-b"]):
                del f["data/conv_d0a-b"][key]
        elif kind == "wrong count":
            f["data/conv_d0a-b/2"] = np.zeros(3)
        elif kind == "wrong shape":
            del f["data/conv_d0a-b/0"]
            f["data/conv_d0a-b/0"] = np.zeros((5, 5))
        elif kind == "string data":
            del f["data/conv_d0a-b/0"]
            f["data/conv_d0a-b/0"] = "not numbers"
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(UnetcoreError):
        net.copy_from(path, strict=True)
        if kind == "empty layer":
            raise UnetcoreError("copied")          # an empty group is skipped: not copied
