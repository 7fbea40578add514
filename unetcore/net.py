"""Net: a graph of layers built from a NetParameter, run forward and backward (Caffe's Net).

Building follows Caffe step by step:
1. net-level ``input``/``input_shape``/``input_dim`` become an Input layer;
2. layers are kept or dropped by their include/exclude rules for the phase, level, stages;
3. a Split layer is inserted after every blob read by more than one layer, so that
   backward sums the gradients of its consumers;
4. each layer is created, set up and reshaped; a top named like its bottom runs in place;
5. parameters are shared by ParamSpec name; which layers need backward is worked out from
   lr_mult, propagate_down, force_backward and whether a layer leads to a loss.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import backend
from .blob import Blob
from .errors import NetError
from .layer import layer_class
from .prototxt import Message, parse_file

TRAIN, TEST = "TRAIN", "TEST"


@dataclass
class LayerSpec:
    """A layer's parameters with the blob names the net wires it to (after split insertion)."""
    param: Message
    bottoms: list
    tops: list
    loss_weights: list = field(default_factory=list)


def load_net_param(model):
    if isinstance(model, Message):
        return model
    return parse_file(str(model), "NetParameter")


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


class Net:
    """A network: ``Net(prototxt, phase=TEST, weights=None)``, pycaffe style.

    ``Net(prototxt, weights, phase)`` (pycaffe's other order) is accepted too.
    """

    def __init__(self, model, phase=TEST, weights=None, *, level=0, stages=(),
                 dtype=np.float32, gpu=None, seed=None):
        if phase not in (TRAIN, TEST) and weights in (TRAIN, TEST):
            phase, weights = weights, phase            # pycaffe's Net(model, weights, phase)
        if phase not in (TRAIN, TEST):
            raise NetError(f"phase must be unetcore.TRAIN or unetcore.TEST, not {phase!r}")
        self.param = load_net_param(model)
        self.name = self.param.name
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.gpu = gpu
        self.xp = backend.xp_for(gpu)
        self.rng = np.random.default_rng(seed)
        if self.param.layers:                 # Caffe's V1 format, as the 2015 release
            from .upgrade import upgrade_v1_net
            self.param = upgrade_v1_net(self.param)
        layer_params = list(self.param.layer)
        first = input_layer(self.param)
        if first is not None:
            layer_params.insert(0, first)
        layer_params = filter_layers(layer_params, phase, level, stages)
        self._diff_arena = self._data_arena = None
        self._build(insert_splits(layer_params, phase))
        self.check_memory()
        self.check_input_size()
        if weights is not None:
            self.copy_from(weights)

    # ------------------------------------------------------------------ building
    def _build(self, specs):
        self.blobs = OrderedDict()
        self.layers, self.specs = [], specs
        self.bottom_vecs, self.top_vecs = [], []
        self.learnable_params, self.lr_mults, self.decay_mults = [], [], []
        self.param_owners = {}
        self.inputs = []
        for spec in specs:
            self._add_layer(spec)
        available = set()                   # Caffe: a blob is an output if no later layer reads it
        for spec in specs:
            available.difference_update(spec.bottoms)
            available.update(spec.tops)
        self.outputs = [name for name in self.blobs if name in available]
        self._plan_backward()

    def _add_layer(self, spec):
        lp = spec.param
        bottoms = [self.blobs[name] for name in spec.bottoms]
        cls = layer_class(lp, [b.shape for b in bottoms], self.xp)
        layer = cls(lp, self.phase, self.dtype, self.xp,
                    np.random.default_rng(self.rng.integers(2 ** 63)))
        tops = []
        for j, name in enumerate(spec.tops):
            if j < len(spec.bottoms) and spec.bottoms[j] == name:
                tops.append(self.blobs[name])                  # in place
                continue
            if name in self.blobs:
                raise NetError(f"layer '{lp.name}' ({lp.location()}) produces top '{name}', which "
                               "an earlier layer already produces; give it another name (only an "
                               "in-place layer, with top equal to its bottom, may reuse a name)")
            self.blobs[name] = Blob((), self.dtype, self.xp)
            tops.append(self.blobs[name])
        layer.net_blobs = self.blobs
        layer.check_blob_counts(bottoms, tops)
        layer.setup(bottoms, tops)
        if layer.blobs and any(l.name == lp.name and l.blobs for l in self.layers):
            raise NetError(f"layer '{lp.name}' ({lp.location()}): another layer with parameters has "
                           "this name; weights are saved and loaded by layer name, so one "
                           "layer's would be lost. Give each layer its own name")
        layer.reshape(bottoms, tops)
        spec.loss_weights = self._loss_weights(layer, spec)
        self._add_params(layer, len(self.layers))
        if layer.type == "Input":
            self.inputs.extend(spec.tops)
        self.layers.append(layer)
        self.bottom_vecs.append(bottoms)
        self.top_vecs.append(tops)

    def _loss_weights(self, layer, spec):
        weights = list(spec.param.loss_weight)
        if not weights and layer.is_loss:
            weights = [1.0] + [0.0] * (len(spec.tops) - 1)
        if weights and len(weights) != len(spec.tops):
            raise layer.error(f"gives {len(weights)} loss_weight values for {len(spec.tops)} tops")
        return weights or [0.0] * len(spec.tops)

    def _add_params(self, layer, layer_index):
        specs = layer.param.param
        if len(specs) > len(layer.blobs):
            raise layer.error(f"has {len(specs)} param {{ }} entries but only "
                              f"{len(layer.blobs)} parameter blob(s)")
        layer.param_propagate_down = []
        for i, blob in enumerate(layer.blobs):
            spec = specs[i] if i < len(specs) else Message("ParamSpec")
            owner = self.param_owners.get(spec.name) if spec.name else None
            if owner is not None:
                layer.blobs[i] = self._shared_blob(layer, i, blob, spec, owner)
                index = self.learnable_params.index(layer.blobs[i])
                layer.param_propagate_down.append(self.lr_mults[index] != 0)
                continue
            if spec.name:
                self.param_owners[spec.name] = (layer_index, i, layer.name)
            self.learnable_params.append(blob)
            self.lr_mults.append(spec.lr_mult)
            self.decay_mults.append(spec.decay_mult)
            layer.param_propagate_down.append(spec.lr_mult != 0)

    def _shared_blob(self, layer, i, blob, spec, owner):
        owner_layer, owner_index, owner_name = owner
        shared = self.layers[owner_layer].blobs[owner_index]
        same = shared.shape == blob.shape if spec.share_mode == "STRICT" else \
            shared.count == blob.count
        if not same:
            raise layer.error(f"shares parameter '{spec.name}' with layer '{owner_name}' but its "
                              f"blob {i} has shape {blob.shape}, the owner's {shared.shape}")
        return shared

    def _plan_backward(self):
        """Which layers run backward, and to which bottoms (Caffe's Net::Init)."""
        need_blob = {}
        self.layer_need_backward, self.bottom_need_backward = [], []
        for layer, spec in zip(self.layers, self.specs):
            down = list(layer.param.propagate_down)
            if down and len(down) != len(spec.bottoms):
                raise layer.error(f"gives {len(down)} propagate_down values for "
                                  f"{len(spec.bottoms)} bottoms")
            bottom_need = [need_blob.get(name, False) and (down[j] if down else True)
                           for j, name in enumerate(spec.bottoms)]
            need = any(bottom_need) or any(layer.param_propagate_down)
            for name in spec.tops:
                need_blob[name] = need
            self.layer_need_backward.append(need)
            self.bottom_need_backward.append(bottom_need)
        under_loss = set()
        for i in reversed(range(len(self.layers))):
            spec = self.specs[i]
            if any(spec.loss_weights) or any(name in under_loss for name in spec.tops):
                under_loss.update(spec.bottoms)
            else:
                self.layer_need_backward[i] = False
                self.bottom_need_backward[i] = [False] * len(spec.bottoms)
        if self.param.force_backward:
            for i, layer in enumerate(self.layers):
                down = list(layer.param.propagate_down)
                for j in range(len(self.specs[i].bottoms)):
                    if layer.allow_force_backward(j) and (down[j] if down else True):
                        self.bottom_need_backward[i][j] = True
                        self.layer_need_backward[i] = True

    # ------------------------------------------------------------------ running
    @property
    def params(self):
        """Ordered layer name -> list of parameter Blobs (layers that have any)."""
        return OrderedDict((l.name, l.blobs) for l in self.layers if l.blobs)

    @property
    def layer_names(self):
        return [l.name for l in self.layers]

    @property
    def top_names(self):
        return OrderedDict((s.param.name, list(s.tops)) for s in self.specs)

    @property
    def bottom_names(self):
        return OrderedDict((s.param.name, list(s.bottoms)) for s in self.specs)

    def layer(self, name):
        for l in self.layers:
            if l.name == name:
                return l
        raise NetError(f"the net has no layer '{name}'")

    @property
    def image_input(self):
        """The first 4-d input blob (the image), or None."""
        return next((n for n in self.inputs if len(self.blobs[n].shape) == 4), None)

    def check_input_size(self):
        """In a net that upsamples (a U-Net), refuse an input size that misaligns a pool."""
        if self.image_input and any(l.type == "Deconvolution" for l in self.layers):
            from .sizes import check_alignment
            check_alignment(self, self.image_input)

    def set_input(self, name, value):
        """Copy `value` into input blob `name`, reshaping the net if its shape changed."""
        self.set_inputs({name: value})

    def set_inputs(self, inputs):
        """Copy {name: array} into the input blobs; reshape the net once if a shape changed."""
        values, changed = {}, False
        for name, value in inputs.items():
            if name not in self.inputs:
                raise NetError(f"'{name}' is not an input of the net; its inputs are: "
                               f"{', '.join(self.inputs) or 'none'}")
            blob = self.blobs[name]
            values[name] = value = self.xp.asarray(value, dtype=self.dtype)
            if value.shape != blob.shape:
                if len(value.shape) != len(blob.shape):
                    raise NetError(f"input '{name}' takes a {len(blob.shape)}-d array "
                                   f"(like {blob.shape}), got shape {value.shape}")
                blob.reshape(value.shape)
                changed = True
        if changed:
            self.reshape()
            self.check_input_size()
        for name, value in values.items():
            self.blobs[name].data[...] = value

    def reshape(self):
        """Propagate the input shapes through every layer; refuse shapes whose blobs (and, in
        training, their gradients) would not fit in memory (unetcore.memory)."""
        for layer, bottom, top in zip(self.layers, self.bottom_vecs, self.top_vecs):
            layer.reshape(bottom, top)
        self.check_memory()

    def check_memory(self):
        from .memory import require_bytes
        copies = 2 if self.phase == TRAIN else 1           # data, and diffs for backward
        size = " x ".join(map(str, self.blobs[self.image_input].shape[2:])) \
            if self.image_input else ""
        require_bytes(copies * sum(b.count for b in self.blobs.values()) * self.dtype.itemsize,
                      f"the blobs of net '{self.name}'" + (f" at {size}" if size else ""))

    def forward(self, **inputs):
        """Run forward; return {output blob name: data} (pycaffe's net.forward)."""
        self.set_inputs(inputs)
        self.forward_layers()
        return OrderedDict((name, self.blobs[name].data) for name in self.outputs)

    def forward_layers(self, start=0, end=None):
        """Forward through layers [start, end); return the weighted loss."""
        loss = 0.0
        for i in range(start, len(self.layers) if end is None else end):
            layer, bottom, top = self.layers[i], self.bottom_vecs[i], self.top_vecs[i]
            layer.reshape(bottom, top)
            layer.forward(bottom, top)
            for blob, weight in zip(top, self.specs[i].loss_weights):
                if weight:
                    loss += weight * float(blob.data.sum())
            if self.release_activations:
                for blob in self._last_reads[i]:
                    blob.release_data()
        if self.release_activations:
            self._data_arena.end_pass()
        self.loss = loss
        return loss

    def backward(self):
        """Backpropagate from the losses; parameter diffs accumulate (clear_param_diffs resets)."""
        if self.release_activations:
            raise NetError(f"net '{self.name}' frees its activations during forward "
                           "(release_activations); set it to False to run backward")
        for top, spec in zip(self.top_vecs, self.specs):
            for blob, weight in zip(top, spec.loss_weights):
                if weight:
                    blob.diff[...] = weight
        for i in reversed(range(len(self.layers))):
            if self.layer_need_backward[i]:
                self.layers[i].backward(self.top_vecs[i], self.bottom_need_backward[i],
                                        self.bottom_vecs[i])
            if self.release_diffs:
                self._release_top_diffs(i)
        if self.release_diffs:
            self._diff_arena.end_pass()
        return OrderedDict((name, self.blobs[name].diff) for name in self.inputs
                           if self.blobs[name].has_diff)

    @property
    def release_diffs(self):
        """Whether backward frees each intermediate gradient once it is consumed.

        The solver turns this on: it cuts training memory by about the size of the
        activations, and a planned arena serves the gradients (unetcore.arena). Off by
        default so that, as in pycaffe, net.blobs[name].diff can be read after backward()."""
        return self._diff_arena is not None

    @release_diffs.setter
    def release_diffs(self, on):
        from .arena import Arena
        self._diff_arena = Arena(self.xp, self.dtype) if on else None
        for blob in self.blobs.values():
            blob.release_diff()
            blob.diff_arena = self._diff_arena

    @property
    def release_activations(self):
        """Whether forward frees each activation after its last reader (forward-only use:
        segmentation). Inputs and outputs are kept; backward is then refused."""
        return self._data_arena is not None

    @release_activations.setter
    def release_activations(self, on):
        from .arena import Arena
        self._data_arena = Arena(self.xp, self.dtype) if on else None
        self._last_reads = self._plan_activation_release() if on else None
        for blob in {id(b): b for step in self._last_reads or [] for b in step}.values():
            blob.release_data()
            blob.data_arena = self._data_arena
        if not on:
            for blob in self.blobs.values():
                blob.data_arena = None

    def _plan_activation_release(self):
        """For each layer, the activations it is the last to read (Split tops and in-place
        layers share their bottom's array, so the array's owner is what is planned)."""
        def owner(blob):
            while blob._source is not None:
                blob = blob._source
            return blob
        keep = {id(owner(self.blobs[name])) for name in self.outputs + self.inputs}
        keep |= {id(owner(t)) for spec, top in zip(self.specs, self.top_vecs)
                 if not spec.bottoms for t in top}
        last = {}
        for i, bottom in enumerate(self.bottom_vecs):
            for blob in map(owner, bottom):
                last[id(blob)] = (i, blob)
        plan = [[] for _ in self.layers]
        for key, (i, blob) in last.items():
            if key not in keep:
                plan[i].append(blob)
        return plan

    def _release_top_diffs(self, i):
        """After layer i's backward nobody reads its tops' gradients again (in-place tops are
        its bottoms too, and their gradient is still needed below)."""
        for name, blob in zip(self.specs[i].tops, self.top_vecs[i]):
            if name not in self.specs[i].bottoms:
                blob.release_diff()

    def clear_param_diffs(self):
        for blob in self.learnable_params:
            blob.diff[...] = 0

    # ------------------------------------------------------------------ weights
    def copy_from(self, path, strict=False):
        """Load weights, from Caffe's HDF5 layout or a binary .caffemodel; the names of the
        layers copied. Layers missing from the file keep theirs; layers of the file that the
        net lacks are skipped (an error with `strict`)."""
        from .snapshot import load_weights
        return load_weights(self, path, strict)

    def save(self, path):
        """Write the weights in Caffe's HDF5 layout (/data/<layer>/0, 1, ...), atomically."""
        from .snapshot import save_weights
        save_weights(self, Path(path))
