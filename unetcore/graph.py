"""Building a net's graph, Caffe's steps before any layer is made (net.cpp, insert_splits.cpp):
the net-level input fields become an Input layer, the include/exclude rules keep or drop
layers for a phase, level and stages, and a Split layer goes after every blob that several
layers read, so that backward sums their gradients."""
from dataclasses import dataclass, field

from unetcore.errors import NetError
from unetcore.formats.prototxt import Message


@dataclass
class LayerSpec:
    """A layer's parameters with the blob names the net wires it to (after split insertion)."""
    param: Message
    bottoms: list
    tops: list
    loss_weights: list = field(default_factory=list)


def _rule_met(rule, phase, level, stages):
    """Caffe's StateMeetsRule."""
    if rule.has("phase") and rule.phase != phase:
        return False
    if rule.has("min_level") and level < rule.min_level:
        return False
    if rule.has("max_level") and level > rule.max_level:
        return False
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def filter_layers(layer_params, phase, level=0, stages=()):
    """The layers whose include/exclude rules admit this phase, level and stages."""
    kept = []
    for lp in layer_params:
        if lp.include and lp.exclude:
            raise NetError(f"layer '{lp.name}' ({lp.location()}) has both include and exclude "
                           "rules; use one of them")
        if lp.include:
            keep = any(_rule_met(r, phase, level, stages) for r in lp.include)
        else:
            keep = not any(_rule_met(r, phase, level, stages) for r in lp.exclude)
        if keep:
            kept.append(lp)
    return kept


def input_layer(net_param):
    """The Input layer that Caffe makes of the net-level input fields, or None."""
    names = list(net_param.input)
    if not names:
        return None
    shapes = [list(s.dim) for s in net_param.input_shape]
    if not shapes and net_param.input_dim:
        dims = list(net_param.input_dim)
        if len(dims) != 4 * len(names):
            raise NetError(f"the net has {len(names)} input(s) and {len(dims)} input_dim "
                           "values; give 4 (N, C, H, W) per input")
        shapes = [dims[4 * i:4 * i + 4] for i in range(len(names))]
    if len(shapes) != len(names):
        raise NetError(f"the net has {len(names)} input(s) but {len(shapes)} input shape(s); "
                       "give one input_shape (or 4 input_dim) per input")
    lp = Message("LayerParameter", net_param._where).set("name", "input").set("type", "Input")
    param = Message("InputParameter")
    for name, dims in zip(names, shapes):
        lp.set("top", name)
        shape = Message("BlobShape")
        for d in dims:
            shape.set("dim", d)
        param.set("shape", shape)
    return lp.set("input_param", param)


def insert_splits(layer_params, phase):
    """LayerSpecs with a Split layer after every blob that several layers read (Caffe's InsertSplits)."""
    last_producer, source, consumers = {}, {}, {}
    for i, lp in enumerate(layer_params):
        for j, name in enumerate(lp.bottom):
            if name not in last_producer:
                known = ", ".join(sorted(last_producer)) or "none"
                raise NetError(f"layer '{lp.name}' ({lp.location()}) takes bottom '{name}', which "
                               f"no layer before it produces in phase {phase}; known blobs: {known}")
            src = last_producer[name]
            source[(i, j)] = src
            consumers[src] = consumers.get(src, 0) + 1
        for j, name in enumerate(lp.top):
            last_producer[name] = (i, j)
    specs, next_split = [], {}
    for i, lp in enumerate(layer_params):
        bottoms = []
        for j, name in enumerate(lp.bottom):
            src = source[(i, j)]
            if consumers[src] > 1:
                k = next_split.get(src, 0)
                next_split[src] = k + 1
                name = _split_blob_name(layer_params[src[0]].name, name, src[1], k)
            bottoms.append(name)
        specs.append(LayerSpec(lp, bottoms, list(lp.top)))
        for j, name in enumerate(lp.top):
            n = consumers.get((i, j), 0)
            if n > 1:
                split = Message("LayerParameter", lp._where)
                split.set("name", f"{name}_{lp.name}_{j}_split").set("type", "Split")
                specs.append(LayerSpec(split, [name], [_split_blob_name(lp.name, name, j, k)
                                                       for k in range(n)]))
    return specs


def _split_blob_name(layer_name, blob_name, top_index, split_index):
    return f"{blob_name}_{layer_name}_{top_index}_split_{split_index}"
