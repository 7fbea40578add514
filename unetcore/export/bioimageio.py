"""A BioImage Model Zoo package (bioimage.io, model spec 0.5) of a deploy net: the ONNX
weights with a softmax on the scores, the description (rdf.yaml), a test input and the output
the model itself computes for it, and a README. deepImageJ, napari, ilastik and QuPath read
such packages.

The description says what a user of the original must know to run the model right:
- input: one image, 8-bit grey values scaled to [0, 1] (what `unetcore segment` does with
  8-bit images), of any size 16k + 60 (for the 2015 depth): min and step of each space axis
  (y, x; and z first for a 3-d net, whose axes may differ);
- output: class probabilities, smaller than the input by the context the valid convolutions
  consume (92 px a side for the 2015 net), given as the output's size offset, as the spec asks
  for a halo that the model crops itself;
- citations: the U-Net paper, and the training data's where the user gives one.

rdf.yaml is written as JSON, which is YAML too: no YAML library is needed.
"""
import datetime
import json
from pathlib import Path

import numpy as np

from unetcore.export.onnx import ExportError, export_onnx
from unetcore.errors import WriteError, closest_name
from unetcore.files import atomic_file, sha256, write_text
from unetcore.sizes import valid_sizes, valid_sizes_per_axis
from unetcore.inference.tiling import softmax

UNET_PAPER = {"text": "Ronneberger O., Fischer P., Brox T. (2015). U-Net: Convolutional Networks "
                      "for Biomedical Image Segmentation. MICCAI 2015, LNCS 9351, 234-241.",
              "doi": "10.1007/978-3-319-24574-4_28"}


def size_rule(net):
    """(smallest valid input size, step between valid sizes) of each spatial axis of the
    net's image input: (y, x), or (z, y, x) for a 3-d net."""
    if len(net.blobs[net.image_input].shape) == 4:
        sizes = [valid_sizes(net, net.image_input, 1, 1024)] * 2
    else:
        sizes = valid_sizes_per_axis(net, net.image_input, [(1, 512)] * 3)
    return [s[0] for s in sizes], [s[1] - s[0] for s in sizes]


def space_axes(count):
    return ("z", "y", "x")[-count:]


def per_axis(values, unit=""):
    """'92 px' where every axis agrees, else 'z 20, y 92, x 92 px'."""
    if len(set(values)) == 1:
        return f"{values[0]}{unit}"
    return ", ".join(f"{axis} {v}" for axis, v in zip(space_axes(len(values)), values)) + unit


def write_package(net, folder, name, author, license="CC-BY-4.0", data_citation=None,
                  test_image=None):
    """Write the package into `folder` (created); return the rdf.yaml path.
    data_citation: (text, DOI or URL) of the training data. test_image: an 8-bit (H, W)
    image, or (D, H, W) volume, whose size the net takes (default: a random one of the
    smallest size)."""
    check_name(name)
    check_license(license)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(net, folder / "model.onnx", probabilities=True)
    smallest, step = size_rule(net)
    if test_image is None:
        test_image = np.random.default_rng(0).integers(0, 256, smallest, np.uint8)
    test_input = np.asarray(test_image, np.uint8)[None, None]
    scores = net.forward(**{net.image_input: test_input.astype(np.float32) / 255})
    test_output = softmax(scores[net.outputs[0]][0])[None].astype(np.float32)
    write_npy(folder / "test_input.npy", test_input)
    write_npy(folder / "test_output.npy", test_output)
    margin = [(i - o) // 2 for i, o in zip(test_input.shape[2:], test_output.shape[2:])]
    write_text(folder / "README.md", readme(name, smallest, step, margin))
    rdf = description(net, name, author, license, data_citation, folder, smallest, step, margin,
                      test_output.shape[1])
    path = folder / "rdf.yaml"
    write_text(path, json.dumps(rdf, indent=2) + "\n")
    return path


def write_npy(path, array):
    with atomic_file(path) as f:
        np.save(f, array)


def write_zip(net, path, *args, **kwargs):
    """The package as one .zip file (what deepImageJ and the zoo's upload take)."""
    import tempfile
    import zipfile
    with tempfile.TemporaryDirectory() as folder:
        try:
            write_package(net, folder, *args, **kwargs)
        except WriteError as err:               # the zip's files, in a temporary folder
            raise WriteError(path, err.reason) from None
        with atomic_file(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(Path(folder).iterdir()):
                archive.write(file, file.name)
    return Path(path)


def description(net, name, author, license, data_citation, folder, smallest, step, margin,
                classes):
    axes = space_axes(len(smallest))
    space = [{"type": "space", "id": axis, "size": {"min": low, "step": every}}
             for axis, low, every in zip(axes, smallest, step)]
    out_space = [{"type": "space", "id": axis,
                  "size": {"tensor_id": net.image_input, "axis_id": axis,
                           "offset": -2 * cut}}
                 for axis, cut in zip(axes, margin)]
    return {
        "type": "model", "format_version": "0.5.4", "name": name,
        "description": f"A U-Net (Ronneberger et al. 2015) trained with unetcore. Valid "
                       f"convolutions: the output is {per_axis(margin, ' px')} smaller than "
                       f"the input on each side; inputs {sizes_text(smallest, step)} px.",
        "authors": [{"name": author}], "license": license,
        "cite": [UNET_PAPER] + ([data_reference(*data_citation)] if data_citation else []),
        "documentation": "README.md",
        "tags": ["unet", "segmentation", "unetcore"],
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": [{
            "id": net.image_input, "axes": [{"type": "batch"},
                                  {"type": "channel", "channel_names": ["grey"]}] + space,
            "test_tensor": {"source": "test_input.npy", "sha256": sha256(folder / "test_input.npy")},
            "data": {"type": "uint8"},
            "preprocessing": [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                              {"id": "scale_linear", "kwargs": {"gain": 1 / 255, "offset": 0.0}}]}],
        "outputs": [{
            "id": "probabilities",
            "axes": [{"type": "batch"},
                     {"type": "channel", "channel_names": [f"class{c}" for c in range(classes)]}]
            + out_space,
            "test_tensor": {"source": "test_output.npy",
                            "sha256": sha256(folder / "test_output.npy")},
            "data": {"type": "float32", "range": [0.0, 1.0]}}],
        "weights": {"onnx": {"source": "model.onnx", "sha256": sha256(folder / "model.onnx"),
                             "opset_version": 17}},
    }


def data_reference(text, doi_or_url):
    key = "url" if doi_or_url.startswith(("http://", "https://")) else "doi"
    return {"text": text, key: doi_or_url}


NAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+- ()")


def check_name(name):
    """The model spec allows letters, digits, spaces and _+-() in a name."""
    bad = sorted(set(name) - NAME_CHARACTERS)
    if bad or not name.strip():
        raise ExportError(f"the model name {name!r} may hold only letters, digits, spaces and "
                          f"_+-(); not {' '.join(repr(c) for c in bad) or 'an empty name'}")


def check_license(license):
    """Refuse a license that bioimage.io's validator would reject: one not in the SPDX list
    that bioimageio.spec ships (unchecked where that package is not installed)."""
    known = spdx_licenses()
    if known is None or license in known:
        return
    close = closest_name(license, known)
    hint = f"; did you mean '{close}'?" if close else ""
    raise ExportError(f"the license '{license}' is not an SPDX license identifier "
                      f"(https://spdx.org/licenses){hint}")


def spdx_licenses():
    """The SPDX license identifiers bioimageio.spec validates, or None without it."""
    from importlib import resources
    try:
        listing = resources.files("bioimageio.spec") / "static" / "spdx_licenses.json"
        return {entry["licenseId"] for entry in json.loads(listing.read_text())["licenses"]}
    except (ModuleNotFoundError, FileNotFoundError):
        return None


def sizes_text(smallest, step):
    """'60 + 16k' where every axis agrees, else 'z 18 + 2k, y 44 + 4k, x 44 + 4k'."""
    if len(set(smallest)) == 1 and len(set(step)) == 1:
        return f"{smallest[0]} + {step[0]}k"
    return ", ".join(f"{axis} {low} + {every}k" for axis, low, every
                     in zip(space_axes(len(smallest)), smallest, step))


def readme(name, smallest, step, margin):
    kind = "image" if len(smallest) == 2 else "volume"
    return (f"# {name}\n\nA U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) trained with "
            "unetcore and exported with `unetcore export --bioimageio`.\n\n"
            f"- Input: one grey {kind}, 8 bits, of size {sizes_text(smallest, step)} pixels per "
            "axis; grey values are scaled to [0, 1].\n"
            f"- Output: the class probabilities, {per_axis(margin, ' px')} smaller on each "
            "side (valid convolutions). Segment a larger image tile by tile with mirrored borders "
            "(overlap-tile), as `unetcore segment` does.\n\n"
            "## Validation\n\nThe package's test input is an 8-bit image of the smallest "
            "size the net takes, and its test output the probabilities unetcore computed for "
            "it; unetcore's tests check that ONNX Runtime reproduces them.\n")
