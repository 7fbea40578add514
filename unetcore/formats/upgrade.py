"""Caffe's upgrade of V1 nets (upgrade_proto.cpp, UpgradeV1Net), with the 2015 release's CROP.

The 2015 U-Net release writes its nets in V1 syntax, `layers { type: CONVOLUTION ... }`.
Upgrading a V1 layer to a V2 `layer`:
- the enum type becomes its V2 name (CONVOLUTION -> "Convolution", SOFTMAX_LOSS ->
  "SoftmaxWithLoss");
- blobs_lr, weight_decay, param and blob_share_mode become one `param { lr_mult decay_mult
  name share_mode }` per blob;
- name, bottom, top, include, exclude, loss_weight, blobs and every *_param carry over as
  they are (V1 and V2 share those messages);
- the release's CROP, whose two bottoms are the blob to crop and a blob of the size to crop
  to, becomes a Crop layer (axis 2) whose offsets centre the crop: (H_a - H_b) / 2 on each
  axis, worked out from the net's shapes.
The net-level input and input_dim stay as they are; Net turns them into an Input layer, as
Caffe's UpgradeNetInput does.

The shapes come from a function `blob_shapes(net_param, phase) -> {blob name: shape}` that
the caller gives (unetcore.net.blob_shapes): working them out means building the net, and
this package sits below the net (unetcore.net imports it), so it never imports the net itself.
"""
from unetcore.errors import NetError, UnetcoreError
from unetcore.logs import log
from unetcore.formats.prototxt import Message
from unetcore.formats.schema import V1_LAYER_PARAMS, V1_OPEN_PARAMS, V1_TYPES


def upgrade_v1_net(v1, blob_shapes):
    """The V2 NetParameter of a V1 one, logged as Caffe logs it. `blob_shapes(net_param,
    phase)` gives the shapes that centre the CROPs."""
    where = v1.source_file or "the net"
    log(f"Attempting to upgrade input file specified using deprecated V1LayerParameter: {where}")
    if v1.layer:
        raise NetError(f"{v1.location()}: mixes V1 'layers' and V2 'layer' entries; give one "
                       "kind (Caffe refuses such files too)")
    net = Message("NetParameter", v1._where)
    for name, value in v1.fields():
        if name != "layers":
            for item in value if isinstance(value, list) else [value]:
                net.set(name, item)
    for old in v1.layers:
        net.set("layer", upgrade_v1_layer(old))
    crops = [layer for layer, old in zip(net.layer, v1.layers) if old.type == "CROP"]
    if crops:
        centre_crops(net, crops, blob_shapes)
    log("Successfully upgraded file specified using deprecated V1LayerParameter")
    return net


def upgrade_v1_layer(old):
    """One V2 LayerParameter from a V1LayerParameter."""
    if old.has("layer"):
        raise NetError(f"{old.location()}: a V0 layer (layers {{ layer {{ ... }} }}, Caffe before "
                       "2014) is not supported; upgrade it with Caffe's upgrade_net_proto_text")
    layer = Message("LayerParameter", old._where)
    layer.set("name", old.name).set("type", V1_TYPES[old.type])
    for field in ("bottom", "top", "include", "exclude", "loss_weight", "blobs"):
        for value in getattr(old, field):
            layer.set(field, value)
    for spec in param_specs(old):
        layer.set("param", spec)
    for field in V1_LAYER_PARAMS + V1_OPEN_PARAMS:
        if old.has(field):
            layer.set(field, getattr(old, field))
    if old.type == "CROP":
        layer.set("crop_param", Message("CropParameter").set("axis", 2))
    return layer


def param_specs(old):
    """The ParamSpecs of a V1 layer's per-blob lists, one per blob that any list names."""
    lists = (("name", old.param), ("share_mode", old.blob_share_mode),
             ("lr_mult", old.blobs_lr), ("decay_mult", old.weight_decay))
    specs = []
    for i in range(max(len(values) for _, values in lists)):
        spec = Message("ParamSpec")
        for field, values in lists:
            if i < len(values):
                spec.set(field, values[i])
        specs.append(spec)
    return specs


def centre_crops(net_param, crops, blob_shapes):
    """Give each upgraded CROP the offsets that centre its first bottom on its second."""
    shapes = shapes_in_both_phases(net_param, crops[0], blob_shapes)
    for layer in crops:
        a, b = (shapes.get(name) for name in layer.bottom[:2])
        if a is None or b is None or len(a) != len(b):
            raise NetError(f"layer '{layer.name}' ({layer.location()}): CROP needs two bottoms of "
                           "the same rank, the blob to crop and the one whose size it takes")
        differences = [x - y for x, y in zip(a[2:], b[2:])]
        if any(d < 0 or d % 2 for d in differences):
            raise NetError(f"layer '{layer.name}' ({layer.location()}): cannot centre a "
                           f"{tuple(b[2:])} crop in {tuple(a[2:])}: the sizes must differ by an "
                           "even, non-negative number of pixels")
        for d in differences:
            layer.crop_param.set("offset", d // 2)


def shapes_in_both_phases(net_param, first_crop, blob_shapes):
    """{blob name: shape} of the upgraded net in each phase (a crop may be in either; where
    the phases disagree, TRAIN's shapes win)."""
    shapes = {}
    for phase in ("TEST", "TRAIN"):
        try:
            shapes.update(blob_shapes(net_param, phase))
        except UnetcoreError as err:
            raise NetError(f"layer '{first_crop.name}' ({first_crop.location()}): CROP centres "
                           "its first bottom on its second, so the upgrade needs the net's "
                           f"shapes, and building the net for them failed: {err}") from None
    return shapes
