"""Net: a graph of layers built from a NetParameter, run forward and backward (Caffe's Net).

Building follows Caffe step by step:
1. net-level ``input``/``input_shape``/``input_dim`` become an Input layer;
2. layers are kept or dropped by their include/exclude rules for the phase, level, stages;
3. a Split layer is inserted after every blob read by more than one layer, so that
   backward sums the gradients of its consumers (steps 1-3: unetcore/graph.py);
4. each layer is created (by the engine that unetcore.layer.layer_class picks for its
   bottoms), set up and reshaped; a top named like its bottom runs in place;
5. parameters are shared by ParamSpec name; which layers need backward is worked out from
   lr_mult, propagate_down, force_backward and whether a layer leads to a loss.

A V1 net (the 2015 release's `layers { ... }`) is upgraded first (unetcore.formats.upgrade);
centring its CROPs needs the net's shapes, which blob_shapes below works out by wiring the
upgraded net without drawing its weights.

The phase is pycaffe's TRAIN (0) or TEST (1), or its name, "TRAIN" or "TEST" in any case;
inside, a Net and its layers keep the name (net.phase == "TEST"), as the prototxt's include
rules spell it.

pycaffe's set_mode_cpu, set_mode_gpu and set_device choose where the Nets (and Solvers) built
afterwards run when they are given no `gpu`; a net keeps the device it was built on. In Caffe
the mode and the device are per thread (Caffe::Get() is thread-local); here they are context
variables, as unetcore.config keeps the engine: a choice holds in the thread (or asyncio
task) that made it, and every thread starts on the CPU, device 0.

A Net holds the data of one pass in its blobs, so it runs in one thread at a time: the first
thread that sets its inputs or runs it owns it while that thread lives, and any other thread
is refused with one line (two Nets, even of one prototxt, run in two threads independently).
"""
import threading
from collections import OrderedDict
from contextvars import ContextVar
from numbers import Integral
from pathlib import Path

import numpy as np

from unetcore import backend
from unetcore import layers  # noqa: F401  (fills the registry of layer types)
from unetcore.arena import MemoryPlan
from unetcore.blob import Blob
from unetcore.errors import BackendError, NetError
from unetcore.graph import filter_layers, input_layer, insert_splits
from unetcore.layer import check_layer_type, draws_deferred, layer_class
from unetcore.memory import require_blob_bytes, require_bytes
from unetcore.formats.prototxt import Message, parse_file
from unetcore.sizes import check_alignment
from unetcore.formats.weights import load_weights, save_binary_weights, save_weights
from unetcore.formats.upgrade import upgrade_v1_net

TRAIN, TEST = 0, 1                     # pycaffe's caffe.TRAIN and caffe.TEST
PHASE_NAMES = ("TRAIN", "TEST")        # indexed by TRAIN and TEST


def load_net_param(model):
    if isinstance(model, Message):
        return model
    return parse_file(str(model), "NetParameter")


def phase_name(phase):
    """"TRAIN" or "TEST" for pycaffe's TRAIN (0) or TEST (1) or for either name in any case;
    None for anything else."""
    if isinstance(phase, str) and phase.upper() in PHASE_NAMES:
        return phase.upper()
    if isinstance(phase, Integral) and not isinstance(phase, bool) and \
            phase in (TRAIN, TEST):
        return PHASE_NAMES[phase]
    return None


def phase_and_weights(phase, weights):
    """The phase's name and the weights of Net's arguments, given in either of pycaffe's
    orders, Net(model, phase, weights) or Net(model, weights, phase)."""
    if phase_name(phase) is None and phase_name(weights) is not None:
        phase, weights = weights, phase
    name = phase_name(phase)
    if name is None:
        raise NetError(f"phase must be unetcore.TRAIN (0) or unetcore.TEST (1), or the name "
                       f"'TRAIN' or 'TEST'; got {phase!r}")
    return name, weights


_gpu_mode = ContextVar("unetcore_gpu_mode", default=False)
_device = ContextVar("unetcore_device", default=0)


def set_mode_cpu():
    """Build the next nets and solvers of this thread on the CPU (the default)."""
    _gpu_mode.set(False)


def set_mode_gpu():
    """Build the next nets and solvers of this thread on the GPU that set_device chose
    (0 unless it was called). A net built with no usable GPU says why, in one line."""
    _gpu_mode.set(True)


def set_device(device):
    """Make GPU `device` (a CUDA device number) the GPU of set_mode_gpu in this thread."""
    if isinstance(device, bool) or not isinstance(device, Integral) or device < 0:
        raise BackendError(f"set_device takes a CUDA device number (0, 1, ...), not {device!r}")
    _device.set(int(device))


def chosen_gpu(gpu=None):
    """The GPU that a Net or Solver given `gpu` runs on: `gpu` when it is given; else, in GPU
    mode, the device of set_device; else None, the CPU."""
    if gpu is not None:
        return gpu
    return _device.get() if _gpu_mode.get() else None


class Net:
    """A network: ``Net(prototxt, phase=TEST, weights=None)``, pycaffe style.

    ``Net(prototxt, weights, phase)`` (pycaffe's other order) is accepted too. The phase is
    unetcore.TRAIN or unetcore.TEST (0 and 1, as pycaffe's), or "TRAIN" or "TEST". `gpu` is
    a CUDA device number; left out (None), the net runs where unetcore.set_mode_cpu,
    set_mode_gpu and set_device chose in this thread: the CPU unless they were called.
    """

    def __init__(self, model, phase=TEST, weights=None, *, level=0, stages=(),
                 dtype=np.float32, gpu=None, seed=None):
        phase, weights = phase_and_weights(phase, weights)
        parameters = self._wire(load_net_param(model), phase, level, stages, dtype,
                                chosen_gpu(gpu), seed)
        self.memory = MemoryPlan(self)
        self.check_memory()
        require_bytes(sum(blob.count for blob, _ in parameters) * self.dtype.itemsize,
                      f"the parameter blobs of net '{self.name}'")
        self.check_input_size()
        for _, draw in parameters:
            draw()
        self._owner, self._owner_lock = None, threading.Lock()
        if weights is not None:
            self.copy_from(weights)

    def claim_thread(self):
        """Make the calling thread this net's owner, or refuse if another live thread owns it.
        Every entry that writes the blobs (inputs, forward, backward) calls this first."""
        me = threading.current_thread()
        with self._owner_lock:
            owner = self._owner
            if owner is not None and owner is not me and owner.is_alive():
                raise NetError(f"net '{self.name}' is in use by thread '{owner.name}': a Net "
                               "holds one pass's blobs, so give each thread a Net of its own")
            self._owner = me

    # ------------------------------------------------------------------ building
    def _wire(self, param, phase, level, stages, dtype, gpu, seed):
        """Steps 1-5 of the module docstring: the layers made, set up and reshaped, their
        parameter blobs shaped but not drawn; returns the (blob, draw) pairs."""
        if param.layers:                      # Caffe's V1 format, as the 2015 release
            param = upgrade_v1_net(param, blob_shapes)
        self.param = param
        self.name = param.name
        self.phase = phase
        self.dtype = np.dtype(dtype)
        self.gpu = gpu
        self.xp = backend.xp_for(gpu)
        self.rng = np.random.default_rng(seed)
        layer_params = list(param.layer)
        first = input_layer(param)
        if first is not None:
            layer_params.insert(0, first)
        if not layer_params:
            raise NetError(f"{param.location().split(':')[0]}: the net has no layers; a "
                           "net prototxt lists them as layer { name: ... type: ... }")
        layer_params = filter_layers(layer_params, phase, level, stages)
        for lp in layer_params:
            check_layer_type(lp)
        # Hooks of the loops (Caffe's Net callbacks): after_* get the layer's index.
        self.after_forward, self.end_forward, self.after_backward, self.end_backward = \
            [], [], [], []
        with draws_deferred() as parameters:
            self._build(insert_splits(layer_params, phase))
        return parameters

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
        self._fuse_rectifiers()

    def _fuse_rectifiers(self):
        """{i: i + 1} for every layer i that can rectify its own top (a convolution:
        `rectify_top`) followed by a plain ReLU in place on that top. In a forward that runs
        both, layer i writes max(y, 0) in the pass that writes y, and the ReLU's forward is
        skipped: the same numbers, one pass over the blob fewer. The ReLU's backward is
        unchanged (it reads the sign from y). Empty it to run every layer as written (a hook
        in after_forward then sees a convolution's top before its ReLU)."""
        self.fused_rectifiers = {}
        for i, (layer, after) in enumerate(zip(self.layers, self.layers[1:])):
            top, relu_bottom = self.top_vecs[i], self.bottom_vecs[i + 1]
            if (hasattr(layer, "rectify_top") and after.type == "ReLU" and after.slope == 0
                    and len(top) == 1 and relu_bottom[0] is top[0]
                    and self.top_vecs[i + 1][0] is top[0]):
                self.fused_rectifiers[i] = i + 1

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
        for layer, need in zip(self.layers, self.layer_need_backward):
            layer.backward_wanted = need

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
        return self.layers[self.layer_index(name)]

    @property
    def image_input(self):
        """The first input blob of an image (N, C, H, W) or a volume (N, C, D, H, W), or None."""
        return next((n for n in self.inputs if len(self.blobs[n].shape) in (4, 5)), None)

    def check_input_size(self):
        """In a net that upsamples (a U-Net), refuse an input size that misaligns a pool."""
        if self.image_input and any(l.type == "Deconvolution" for l in self.layers):
            check_alignment(self, self.image_input)

    def set_input(self, name, value):
        """Copy `value` into input blob `name`, reshaping the net if its shape changed."""
        self.set_inputs({name: value})

    def set_inputs(self, inputs):
        """Copy {name: array} into the input blobs; reshape the net once if a shape changed."""
        self.claim_thread()
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
        copies = 2 if self.phase == "TRAIN" else 1         # data, and diffs for backward
        size = " x ".join(map(str, self.blobs[self.image_input].shape[2:])) \
            if self.image_input else ""
        require_blob_bytes(copies * sum(b.count for b in self.blobs.values()) * self.dtype.itemsize,
                      f"the blobs of net '{self.name}'" + (f" at {size}" if size else ""))

    def forward(self, blobs=None, start=None, end=None, **inputs):
        """Run forward from layer `start` to layer `end` (names; both included; default: the
        whole net) and return {blob name: data} of the net's outputs, or of the tops of
        `end`, then of the blobs named in `blobs` (pycaffe's net.forward)."""
        extra = self.blob_names(blobs, "return")
        freed = [name for name in extra if name not in self.outputs]
        if self.release_activations and freed:
            raise NetError(f"net '{self.name}' frees its inner blobs during forward "
                           f"(release_activations), so it cannot return {', '.join(freed)}; "
                           "set it to False first")
        self.set_inputs(inputs)
        first = self.layer_index(start) if start is not None else 0
        last = self.layer_index(end) if end is not None else len(self.layers) - 1
        self.forward_layers(first, last + 1)
        names = self.specs[last].tops if end is not None else self.outputs
        return OrderedDict((name, self.blobs[name].data)
                           for name in dict.fromkeys([*names, *extra]))

    def blob_names(self, names, purpose):
        """`names` (None: none) as a list, once each is known to be a blob of the net."""
        names = list(names or [])
        for name in names:
            if name not in self.blobs:
                raise NetError(f"the net has no blob '{name}' to {purpose}; its blobs: "
                               f"{', '.join(self.blobs)}")
        return names

    def layer_index(self, name):
        if name not in self.layer_names:
            raise NetError(f"the net has no layer '{name}'; its layers: "
                           f"{', '.join(self.layer_names)}")
        return self.layer_names.index(name)

    def forward_layers(self, start=0, end=None):
        """Forward through layers [start, end); return the weighted loss."""
        self.claim_thread()
        loss = 0.0
        end = len(self.layers) if end is None else end
        for i in range(start, end):
            layer, bottom, top = self.layers[i], self.bottom_vecs[i], self.top_vecs[i]
            layer.reshape(bottom, top)
            if i in self.fused_rectifiers:
                layer.rectify_top = self.fused_rectifiers[i] < end
            if not (i - 1 in self.fused_rectifiers and i - 1 >= start):
                if layer.overwrites_tops:
                    for blob in top:
                        blob.data_to_overwrite()
                layer.forward(bottom, top)      # (a fused ReLU's layer already rectified)
            for blob, weight in zip(top, self.specs[i].loss_weights):
                if weight:
                    loss += weight * float(blob.data.sum())
            for hook in self.after_forward:
                hook(i)
        for hook in self.end_forward:
            hook()
        self.loss = loss
        return loss

    def backward(self, diffs=None, start=None, end=None, **top_diffs):
        """Backpropagate from layer `start` down to layer `end` (names; both included;
        default: the whole net), from the losses, or from the gradients given as
        {blob name: diff} (pycaffe's net.backward). Parameter diffs accumulate
        (clear_param_diffs resets them). Returns {input name: diff}, or with `end`
        {bottom name of end: diff}, then the diffs of the blobs named in `diffs`."""
        self.claim_thread()
        if self.release_activations:
            raise NetError(f"net '{self.name}' frees its activations during forward "
                           "(release_activations); set it to False to run backward")
        extra = self.blob_names(diffs, "return the diff of")
        for top, spec in zip(self.top_vecs, self.specs):
            for blob, weight in zip(top, spec.loss_weights):
                if weight:
                    blob.diff[...] = weight
        for name, diff in top_diffs.items():
            if name not in self.blobs:
                raise NetError(f"the net has no blob '{name}' to take a gradient")
            self.blobs[name].diff[...] = self.xp.asarray(diff, dtype=self.dtype)
        first = self.layer_index(start) if start is not None else len(self.layers) - 1
        last = self.layer_index(end) if end is not None else 0
        for i in range(first, last - 1, -1):
            if self.layer_need_backward[i]:
                self.layers[i].backward(self.top_vecs[i], self.bottom_need_backward[i],
                                        self.bottom_vecs[i])
            for hook in self.after_backward:
                hook(i)
        for hook in self.end_backward:
            hook()
        names = self.specs[last].bottoms if end is not None else self.inputs
        names = [name for name in names if self.blobs[name].has_diff]
        return OrderedDict((name, self.blobs[name].diff)
                           for name in dict.fromkeys([*names, *extra]))

    @property
    def release_diffs(self):
        """Whether backward frees each intermediate gradient once it is consumed.

        The solver turns this on: it cuts training memory by about the size of the
        activations, and a planned arena serves the gradients (unetcore.arena). Off by
        default so that, as in pycaffe, net.blobs[name].diff can be read after backward()."""
        return self.memory.diff_arena is not None

    @release_diffs.setter
    def release_diffs(self, on):
        self.memory.release_diffs(on)

    @property
    def release_activations(self):
        """Whether forward frees each activation after its last reader (forward-only use:
        segmentation). Inputs and outputs are kept; backward is then refused."""
        return self.memory.data_arena is not None

    @release_activations.setter
    def release_activations(self, on):
        self.memory.release_activations(on)

    def clear_param_diffs(self):
        for blob in self.learnable_params:
            blob.diff[...] = 0

    # ------------------------------------------------------------------ weights
    def copy_from(self, path, strict=False, resize_channels=False):
        """Load weights, from Caffe's HDF5 layout or a binary .caffemodel; the names of the
        layers copied. Layers missing from the file keep theirs; layers of the file that the
        net lacks are skipped (an error with `strict`). With `resize_channels`, a
        (De)Convolution whose channel counts differ takes the channels both have
        (caffe_unet's copy, see snapshot.load_weights)."""
        return load_weights(self, path, strict, resize_channels)

    def save(self, path):
        """pycaffe's save: the weights as a binary .caffemodel, as Caffe writes them; a name
        ending in .h5 or .hdf5 gets Caffe's HDF5 layout instead (save_hdf5), so that a file's
        name always says its format. Written atomically."""
        path = Path(path)
        if path.suffix.lower() in (".h5", ".hdf5"):
            save_weights(self, path)
        else:
            save_binary_weights(self, path)

    def save_hdf5(self, path):
        """pycaffe's save_hdf5: the weights in Caffe's HDF5 layout (/data/<layer>/0, 1, ...),
        atomically, whatever the name."""
        save_weights(self, Path(path))

    def load_hdf5(self, path):
        """pycaffe's load_hdf5: copy the weights of a .caffemodel.h5, as copy_from does."""
        return self.copy_from(path)

    def share_with(self, other):
        """Make this net's parameters those of net `other`, layer by layer name (pycaffe's
        share_with, Caffe's ShareTrainedLayersWith): each blob's data becomes the very array
        of `other`'s, so what `other` learns this net computes with; the diffs stay apart.
        Layers that `other` lacks keep their own parameters."""
        if (other.dtype, other.gpu) != (self.dtype, self.gpu):
            raise NetError(f"net '{self.name}' ({self.placement}) cannot share the parameters "
                           f"of net '{other.name}' ({other.placement}): build both with one "
                           "dtype on one device")
        for blob, source in self._parameter_pairs(other):
            blob.share_data(source)

    @property
    def placement(self):
        """The net's dtype and device, in words: "float32 on the CPU", "float32 on GPU 1"."""
        return f"{self.dtype} on " + ("the CPU" if self.gpu is None else f"GPU {self.gpu}")

    def _parameter_pairs(self, other):
        """(this net's blob, `other`'s blob of the same layer name and index), every pair's
        shapes checked before any is shared."""
        theirs = {layer.name: layer for layer in other.layers if layer.blobs}
        pairs = []
        for layer in self.layers:
            source = theirs.get(layer.name)
            if source is None or not layer.blobs:
                continue
            if len(source.blobs) != len(layer.blobs):
                raise NetError(f"cannot share the parameters of layer '{layer.name}': it has "
                               f"{len(layer.blobs)} parameter blob(s) in this net, "
                               f"{len(source.blobs)} in net '{other.name}'")
            for i, (blob, shared) in enumerate(zip(layer.blobs, source.blobs)):
                if blob.shape != shared.shape:
                    raise NetError(f"cannot share the parameters of layer '{layer.name}': its "
                                   f"blob {i} has shape {blob.shape} in this net, {shared.shape} "
                                   f"in net '{other.name}'")
                pairs.append((blob, shared))
        return pairs


def blob_shapes(net_param, phase):
    """{blob name: shape} of `net_param` in `phase`: its layers made, set up and reshaped on
    the CPU, but no weight drawn and no memory planned (milliseconds, where drawing a
    U-Net's weights takes most of a second). Centring a V1 net's CROPs needs them."""
    net = Net.__new__(Net)                   # wired only, never run
    net._wire(net_param, phase_name(phase), level=0, stages=(), dtype=np.float32, gpu=None,
              seed=None)
    return {name: blob.shape for name, blob in net.blobs.items()}

