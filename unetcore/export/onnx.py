"""Export a deploy net to ONNX, with standard operators only (`pip install 'unetcore[export]'`).

Each layer maps to the operators that compute the same numbers:

    Input                 a graph input (batch, channels, height, width), height and width
                          dynamic; (batch, channels, depth, height, width) for a 3-d net
    Convolution           Conv                     Deconvolution   ConvTranspose
    Pooling MAX           MaxPool, ceil_mode 1     Pooling AVE     AveragePool (no padding only)
    ReLU                  Relu, or LeakyRelu       Softmax         Softmax
    Crop                  Slice, its ends from the Shape of the reference blob
    Concat                Concat; caffe_unet's centre crop of a larger bottom as Slice
    ValueTransformation   Add, then Mul (one value per channel)
    Dropout, Split        nothing: the tensor itself

Crops are computed from the shapes at run time, so the graph takes every input size the
net takes (16k + 60 for the 2015 U-Net). Any other layer is refused with its name and type.
"""
import numpy as np

from unetcore.backend import to_numpy
from unetcore.errors import UnetcoreError
from unetcore.files import atomic_file


class ExportError(UnetcoreError):
    """A net that cannot be written as ONNX."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'unetcore[export]'") \
            from None
    return onnx


class Graph:
    """The ONNX nodes and weights being built, and the ONNX tensor that holds each blob."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.initializers, self.inputs = [], [], []
        self.tensor = {}               # blob name -> ONNX tensor name
        self.count = 0

    def fresh(self, name):
        self.count += 1
        return f"{name}__{self.count}"

    def const(self, name, array):
        tensor = self.fresh(name)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), tensor))
        return tensor

    def node(self, op, inputs, name, **attrs):
        out = self.fresh(name)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def shape_of(self, tensor, axes):
        """The sizes of `axes` of a tensor at run time, as an int64 vector."""
        shape = self.node("Shape", [tensor], "shape")
        return self.node("Gather", [shape, self.const("axes", np.array(axes, np.int64))],
                         "sizes")


def export_onnx(net, path, opset=17, probabilities=False):
    """Write `net` (a deploy net, weights loaded) as an ONNX model at `path`. With
    `probabilities`, a softmax over the classes follows the output, named "probabilities"."""
    model = onnx_model(net, opset, probabilities)
    with atomic_file(path) as f:
        _onnx().save(model, f)
    return model


def onnx_model(net, opset=17, probabilities=False):
    """`net` (a deploy net, weights loaded) as a checked ONNX model in memory, the model that
    export_onnx writes (inference.runtimes runs it in ONNX Runtime without a file)."""
    onnx = _onnx()
    graph = Graph(onnx)
    for layer, spec in zip(net.layers, net.specs):
        convert = CONVERTERS.get(layer.type)
        if convert is None:
            raise ExportError(f"layer '{layer.name}' ({layer.type}) has no ONNX mapping; "
                              f"exportable types: {', '.join(sorted(CONVERTERS))}")
        convert(graph, layer, spec, net)
    outputs = []
    for blob in net.outputs:
        tensor, name = graph.tensor[blob], blob
        if probabilities:
            tensor = graph.node("Softmax", [tensor], "softmax", axis=1)
            name = "probabilities" if len(net.outputs) == 1 else f"{blob}_probabilities"
        graph.nodes.append(onnx.helper.make_node("Identity", [tensor], [name]))
        shape = net.blobs[blob].shape
        dims = ["batch", shape[1]] + [f"{name}_{axis}" for axis in spatial_names(shape)]
        outputs.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                          dims[:len(shape)]))
    model = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, net.name or "unet", graph.inputs, outputs,
                               graph.initializers),
        opset_imports=[onnx.helper.make_opsetid("", opset)], producer_name="unetcore")
    onnx.checker.check_model(model)
    return model


def spatial_names(shape):
    """The names of a blob's spatial axes: height, width, and depth before them in 3-d."""
    return ("depth", "height", "width")[-(len(shape) - 2):] if len(shape) > 2 else ()


def _input(graph, layer, spec, net):
    for name in spec.tops:
        shape = net.blobs[name].shape
        graph.inputs.append(graph.helper.make_tensor_value_info(
            name, graph.onnx.TensorProto.FLOAT, ["batch", shape[1], *spatial_names(shape)]))
        graph.tensor[name] = name


def _weights(graph, layer):
    return [graph.const(f"{layer.name}_{i}", to_numpy(b.data).astype(np.float32))
            for i, b in enumerate(layer.blobs)]


def _convolution(graph, layer, spec, net):
    g = layer.geom
    op = "ConvTranspose" if layer.type == "Deconvolution" else "Conv"
    graph.tensor[spec.tops[0]] = graph.node(
        op, [graph.tensor[spec.bottoms[0]]] + _weights(graph, layer), layer.name,
        kernel_shape=list(g.kernel), strides=list(g.stride), pads=list(g.pad) * 2,
        dilations=list(g.dilation), group=layer.group)


def _pooling(graph, layer, spec, net):
    if layer.global_pooling:
        op = "GlobalMaxPool" if layer.method == "MAX" else "GlobalAveragePool"
        graph.tensor[spec.tops[0]] = graph.node(op, [graph.tensor[spec.bottoms[0]]], layer.name)
        return
    if layer.method == "AVE" and any(layer.pad):
        raise ExportError(f"layer '{layer.name}' (Pooling): AVE pooling with padding divides "
                          "by a window that ONNX's AveragePool does not reproduce at every size")
    op = "MaxPool" if layer.method == "MAX" else "AveragePool"
    graph.tensor[spec.tops[0]] = graph.node(
        op, [graph.tensor[spec.bottoms[0]]], layer.name, kernel_shape=list(layer.kernel),
        strides=list(layer.stride), pads=list(layer.pad) * 2, ceil_mode=int(layer.ceil_mode))


def _relu(graph, layer, spec, net):
    slope = layer.param.relu_param.negative_slope
    x = graph.tensor[spec.bottoms[0]]
    graph.tensor[spec.tops[0]] = graph.node("LeakyRelu", [x], layer.name, alpha=slope) \
        if slope else graph.node("Relu", [x], layer.name)


def _softmax(graph, layer, spec, net):
    graph.tensor[spec.tops[0]] = graph.node("Softmax", [graph.tensor[spec.bottoms[0]]],
                                            layer.name, axis=layer.param.softmax_param.axis)


def _same(graph, layer, spec, net):
    for top in spec.tops:
        graph.tensor[top] = graph.tensor[spec.bottoms[0]]


def _crop(graph, layer, spec, net):
    """y = x[..., o:o + size of the reference blob] on the cropped axes (Caffe's offsets)."""
    axis = layer.param.crop_param.axis % len(layer.window)
    axes = list(range(axis, len(layer.window)))
    offsets = np.array([layer.window[i].start for i in axes], np.int64)
    ends = graph.node("Add", [graph.shape_of(graph.tensor[spec.bottoms[1]], axes),
                              graph.const("offsets", offsets)], "ends")
    graph.tensor[spec.tops[0]] = graph.node(
        "Slice", [graph.tensor[spec.bottoms[0]], graph.const("starts", offsets), ends,
                  graph.const("axes", np.array(axes, np.int64))], layer.name)


def _centre_crop(graph, tensor, reference, axes):
    """tensor cut to reference's size on `axes`, centred: start = (size - wanted) / 2."""
    size, wanted = graph.shape_of(tensor, axes), graph.shape_of(reference, axes)
    start = graph.node("Div", [graph.node("Sub", [size, wanted], "excess"),
                               graph.const("two", np.array([2], np.int64))], "starts")
    end = graph.node("Add", [start, wanted], "ends")
    return graph.node("Slice", [tensor, start, end,
                                graph.const("axes", np.array(axes, np.int64))], "centre_crop")


def _concat(graph, layer, spec, net):
    first = graph.tensor[spec.bottoms[0]]
    inputs = [first]
    for name, window in zip(spec.bottoms[1:], layer.windows[1:]):
        size = net.blobs[name].shape                # a window shorter than its axis crops it
        cropped = [i for i, w in enumerate(window) if w.stop - w.start < size[i]]
        inputs.append(_centre_crop(graph, graph.tensor[name], first, cropped) if cropped
                      else graph.tensor[name])
    graph.tensor[spec.tops[0]] = graph.node("Concat", inputs, layer.name, axis=layer.axis)


def _value_transformation(graph, layer, spec, net):
    shifted = graph.node("Add", [graph.tensor[spec.bottoms[0]],
                                 graph.const("offset", to_numpy(layer.offset).astype(np.float32))],
                         "offset")
    graph.tensor[spec.tops[0]] = graph.node(
        "Mul", [shifted, graph.const("scale", to_numpy(layer.scale).astype(np.float32))], layer.name)


CONVERTERS = {"Input": _input, "Convolution": _convolution, "Deconvolution": _convolution,
              "Pooling": _pooling, "ReLU": _relu, "Softmax": _softmax, "Dropout": _same,
              "Split": _same, "Crop": _crop, "Concat": _concat,
              "ValueTransformation": _value_transformation}
