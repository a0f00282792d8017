"""Net: a directed acyclic graph of layers, built from a NetParameter.

Construction is a pipeline: read the prototxt, ``net_passes.upgrade``,
``filter_by_state``, ``insert_splits``, then ``_wire`` creates each layer,
connects its blobs (a top named like its bottom shares the bottom's Blob: an
in-place layer), registers its parameters (sharing by ``ParamSpec.name``) and
works out which layers need a backward pass.  What it learns is kept once, per
layer, in ``layer_facts`` (and per learnable parameter in ``learnables``, see
``net_facts``).  The pycaffe API (``blobs``, ``params``, ``forward(**inputs)``,
...) lives on this same class.
"""
import functools
import itertools
import os
from collections import OrderedDict

import numpy as np

from . import diff_sharing, fusion, hdf5, net_passes
from .blob import Blob, has_legacy_shape, legacy_shape_equals, proto_array, proto_shape
from .cg import ops
from .errors import CaffeError, ModelFileError, NetError, in_file, layer_error
from .layer import TRAIN, create_layer
from .net_facts import LayerFacts, LayerParam, LearnableParam
from .proto import caffe_pb2
from .proto_io import read_binary_proto, read_prototxt, write_binary_proto


def _make_state(phase, level, stages, file_state):
    """The file's NetState with the caller's phase, level and extra stages (as Caffe's Net)."""
    if phase not in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        raise CaffeError(f"phase must be caffe.TRAIN or caffe.TEST, got {phase!r}")
    state = caffe_pb2.NetState()
    state.CopyFrom(file_state)
    state.phase = phase
    if level is not None:
        state.level = level
    state.stage.extend(stages or [])
    return state


def load_net_param(network):
    """A NetParameter from a prototxt path or an existing message (copied)."""
    if isinstance(network, caffe_pb2.NetParameter):
        net_param = caffe_pb2.NetParameter()
        net_param.CopyFrom(network)
        return net_param, network.name or "net"
    path = os.fspath(network)
    return read_prototxt(path, caffe_pb2.NetParameter()), path


class Net:
    """A Caffe net, with the pycaffe API.

    ``Net(prototxt, phase)``, ``Net(prototxt, weights, phase)``,
    ``Net(prototxt, phase, weights=..., level=..., stages=[...])``, or
    ``Net(net_param, state=NetState)`` as solvers do.
    """

    def __init__(self, network, *args, weights=None, phase=None, level=None, stages=None,
                 state=None):
        if len(args) == 1:
            phase = args[0]
        elif len(args) == 2:
            weights, phase = args
        elif args:
            raise TypeError("Net(network, phase) or Net(network, weights, phase)")
        net_param, source = load_net_param(network)
        if state is None:
            state = _make_state(TRAIN if phase is None else phase, level, stages,
                                net_param.state)
        self.source = source
        self.name = net_param.name
        self.state = state
        self._backward_hooks = []
        try:
            param = net_passes.upgrade(net_param, source)
            param = net_passes.filter_by_state(param, state)
            self.param = net_passes.insert_splits(param)
            self._wire(self.param)
        except CaffeError as exc:
            raise in_file(exc, source) from None
        if weights is not None:
            self.copy_from(weights)

    @property
    def phase(self):
        return self.state.phase

    # ---- wiring -----------------------------------------------------------
    def _wire(self, param):
        self.layers = []
        self.layer_facts = []            # one LayerFacts per layer
        self.learnables = []             # one LearnableParam per owner blob: solver order
        self.blobs = OrderedDict()
        self._inputs = []
        self._index_of_layer = {}
        self._blob_need_backward = {}
        self._available = set()          # produced and not yet read: Caffe's net outputs
        self._learnable_by_param_name = {}
        for layer_param in param.layer:
            if not layer_param.HasField("phase"):
                layer_param.phase = self.state.phase
            self._add_layer(layer_param)
        self._analyse_backward(param.force_backward)
        diff_sharing.share_copied_diffs(self.layer_facts)
        self._chains = fusion.chains(self.layer_facts)
        self._chain_ends = {chain.last: chain for chain in self._chains.values()
                            if all(facts.need_backward and facts.bottom_need_backward[0]
                                   for facts in self.layer_facts[chain.first:chain.last + 1])}
        self.blob_loss_weights = OrderedDict((n, 0.0) for n in self.blobs)
        for facts in self.layer_facts:
            for name, weight in zip(facts.top_names, facts.layer.loss_weights):
                self.blob_loss_weights[name] = weight
        # Caffe keeps the unread blobs in a std::set, so outputs come sorted by name.
        self._outputs = sorted(self._available)

    def _add_layer(self, layer_param):
        layer = create_layer(layer_param)
        name = layer_param.name
        if name in self._index_of_layer:
            raise NetError(f"two layers are named '{name}'")
        propagate = list(layer_param.propagate_down)
        if propagate and len(propagate) != len(layer_param.bottom):
            raise layer.error(f"propagate_down has {len(propagate)} entries for "
                              f"{len(layer_param.bottom)} bottoms")
        bottoms, need = [], []
        needs_backward = False
        for j, blob_name in enumerate(layer_param.bottom):
            if blob_name not in self._available:
                raise layer.error(f"bottom blob '{blob_name}' (bottom {j}) is produced by no "
                                  f"earlier layer")
            self._available.discard(blob_name)
            bottoms.append(self.blobs[blob_name])
            # As in Caffe, an explicit propagate_down replaces the blob's own need.
            blob_needs = self._blob_need_backward[blob_name]
            need.append(bool(propagate[j]) if propagate else blob_needs)
            needs_backward |= blob_needs
        tops = [self._add_top(layer_param, j, blob_name)
                for j, blob_name in enumerate(layer_param.top)]
        if layer.auto_top_blobs:
            while len(tops) < layer.needed_top_count():
                tops.append(Blob())          # anonymous: not reachable by name
        self._setup_layer(layer, bottoms, tops)
        facts = LayerFacts(len(self.layers), layer, list(layer_param.bottom),
                           list(layer_param.top), bottoms, tops, need)
        self._index_of_layer[name] = facts.index
        self.layers.append(layer)
        self.layer_facts.append(facts)
        self._add_params(facts)
        facts.need_backward = needs_backward or any(layer.param_propagate_down)
        if facts.need_backward:
            for blob_name in layer_param.top:
                self._blob_need_backward[blob_name] = True

    def _add_top(self, layer_param, index, blob_name):
        """The Blob for top ``index``: the bottom's own for in-place, else a new one."""
        in_place = index < len(layer_param.bottom) and layer_param.bottom[index] == blob_name
        self._available.add(blob_name)
        if in_place:
            return self.blobs[blob_name]
        if blob_name in self.blobs:
            raise layer_error(layer_param, f"top blob '{blob_name}' is produced by more "
                                           f"than one layer")
        blob = Blob()
        self.blobs[blob_name] = blob
        self._blob_need_backward[blob_name] = False
        if layer_param.type == "Input":
            self._inputs.append(blob_name)
        return blob

    @staticmethod
    def _setup_layer(layer, bottoms, tops):
        try:
            layer.setup(bottoms, tops)
        except CaffeError as exc:
            raise exc if str(exc).startswith("layer '") else layer.error(str(exc)) from None
        except Exception as exc:  # a bug or an unforeseen shape: still name the layer
            if layer.passes_errors_through:
                raise
            shapes = ", ".join(str(b.shape) for b in bottoms) or "none"
            raise layer.error(f"setup failed for bottom shapes {shapes}: "
                              f"{type(exc).__name__}: {exc}") from exc

    def _add_params(self, facts):
        layer = facts.layer
        specs = layer.param.param
        if len(specs) > len(layer.blobs):
            raise layer.error(f"has {len(specs)} param specs but only "
                              f"{len(layer.blobs)} parameter blobs")
        for param_index, blob in enumerate(layer.blobs):
            spec = specs[param_index] if param_index < len(specs) else None
            name = spec.name if spec is not None else ""
            learnable = self._learnable_by_param_name.get(name) if name else None
            if learnable is None:
                learnable = LearnableParam(blob, facts.index, param_index)
                self.learnables.append(learnable)
                if name:
                    self._learnable_by_param_name[name] = learnable
            else:
                self._share_param(layer, param_index, spec, learnable)
            learnable.adopt_multipliers(spec, layer)
            facts.params.append(LayerParam(blob, name or str(param_index), learnable))
            lr = spec.lr_mult if spec is not None else 1.0
            layer.param_propagate_down[param_index] = lr != 0

    def _share_param(self, layer, param_index, spec, owner):
        """Make ``layer``'s blob ``param_index`` share the storage of learnable ``owner``."""
        owner_blob = owner.blob
        blob = layer.blobs[param_index]
        permissive = spec.share_mode == caffe_pb2.ParamSpec.PERMISSIVE
        same = (blob.count == owner_blob.count) if permissive else (blob.shape == owner_blob.shape)
        if not same:
            raise layer.error(f"cannot share param '{spec.name}' (index {param_index}, shape "
                              f"{blob.shape}) with layer '{self.layers[owner.layer_index].name}' "
                              f"whose blob has shape {owner_blob.shape}")
        blob.share_data(owner_blob)
        blob.share_diff(owner_blob)

    def _analyse_backward(self, force_backward):
        """Caffe's need-backward analysis: only what feeds a loss, never into data."""
        under_loss, skip = set(), set()
        for facts in reversed(self.layer_facts):
            tops = facts.top_names
            contributes = any(facts.layer.loss_weights[j] for j in range(len(tops))) or \
                any(t in under_loss for t in tops)
            skip_down = all(t in skip for t in tops) if tops else True
            if facts.need_backward and skip_down:
                facts.need_backward = False
                facts.bottom_need_backward = [False] * len(facts.bottom_need_backward)
            if not contributes:
                facts.need_backward = False
            for j, name in enumerate(facts.bottom_names):
                if contributes:
                    under_loss.add(name)
                else:
                    facts.bottom_need_backward[j] = False
                if not facts.bottom_need_backward[j]:
                    skip.add(name)
        if force_backward:
            for facts in self.layer_facts:
                facts.need_backward = True
                facts.bottom_need_backward = [
                    need or facts.layer.allow_force_backward(j)
                    for j, need in enumerate(facts.bottom_need_backward)]
                facts.layer.param_propagate_down = [True] * len(facts.layer.blobs)

    # ---- running ----------------------------------------------------------
    def _layer_index(self, name, default):
        if name is None:
            return default
        if name not in self._index_of_layer:
            raise CaffeError(f"net has no layer named '{name}'")
        return self._index_of_layer[name]

    def forward_from_to(self, start=0, end=None):
        """Run layers ``start..end`` (inclusive) and return the summed loss."""
        end = len(self.layers) - 1 if end is None else end
        loss = 0.0
        i = start - 1
        while i < end:
            i += 1
            chain = self._chains.get(i)
            if chain is not None and chain.last <= end:      # see fusion.py
                chain.forward()
                i = chain.last
                continue
            loss += self.layer_facts[i].forward()
        return loss

    def backward_from_to(self, start=None, end=0):
        """Back-propagate through layers ``start`` down to ``end`` (inclusive)."""
        start = len(self.layers) - 1 if start is None else start
        i = start + 1
        while i > end:
            i -= 1
            chain = self._chain_ends.get(i)
            if chain is not None and chain.first >= end:     # see fusion.py
                chain.backward()
                for j in range(i, chain.first - 1, -1):
                    for hook in self._backward_hooks:
                        hook(j)
                i = chain.first
                continue
            self.layer_facts[i].backward()
            for hook in self._backward_hooks:
                hook(i)

    def add_backward_hook(self, hook):
        """Call ``hook(layer_index)`` right after each layer's turn in backward.

        Called for every layer from ``start`` down to ``end``, needed or skipped, so
        a data-parallel run can send a layer's finished gradients while the
        layers below it are still back-propagating.
        """
        self._backward_hooks.append(hook)

    def forward_prefilled(self):
        """Forward through the whole net; returns the loss (Caffe's Net::Forward)."""
        return self.forward_from_to(0, len(self.layers) - 1)

    def forward_backward(self):
        loss = self.forward_prefilled()
        self.backward_from_to()
        return loss

    def restore_iteration(self, iteration, iter_size=1):
        """Put every layer on the data of training iteration ``iteration`` (see
        ``Layer.restore_iteration``)."""
        for layer in self.layers:
            layer.restore_iteration(iteration, iter_size)

    def clear_param_diffs(self):
        for learnable in self.learnables:
            ops.fill(learnable.blob.diff, 0.0)

    def reshape(self):
        for facts in self.layer_facts:
            facts.layer.reshape(facts.bottoms, facts.tops)

    # ---- pycaffe API ------------------------------------------------------
    @property
    def inputs(self):
        return list(self._inputs)

    @property
    def outputs(self):
        return list(self._outputs)

    @property
    def layer_dict(self):
        return OrderedDict((layer.name, layer) for layer in self.layers)

    @property
    def _layer_names(self):
        return [layer.name for layer in self.layers]

    @property
    def _blob_names(self):
        return list(self.blobs)

    @property
    def learnable_params(self):
        """The blobs a solver updates, in its order (Caffe's Net::learnable_params)."""
        return [learnable.blob for learnable in self.learnables]

    @functools.cached_property
    def bottom_names(self):
        """{layer name: its bottom blob names}, as pycaffe's (built once, on first use)."""
        return OrderedDict((f.layer.name, list(f.bottom_names)) for f in self.layer_facts)

    @functools.cached_property
    def top_names(self):
        """{layer name: its top blob names}, as pycaffe's (built once, on first use)."""
        return OrderedDict((f.layer.name, list(f.top_names)) for f in self.layer_facts)

    @property
    def params(self):
        return OrderedDict((layer.name, layer.blobs) for layer in self.layers if layer.blobs)

    def set_input_arrays(self, data, labels):
        """pycaffe's: hand ``data`` and ``labels`` to the first layer, a MemoryData layer."""
        first = self.layers[0] if self.layers else None
        if not hasattr(first, "set_input_arrays"):
            raise CaffeError("set_input_arrays may only be called if the first layer is a "
                             "MemoryDataLayer")
        first.set_input_arrays(data, labels)

    def _set_inputs(self, arrays, diff=False):
        for name, array in arrays.items():
            if name not in self.blobs:
                raise CaffeError(f"net has no blob named '{name}'")
            blob = self.blobs[name]
            array = np.asarray(array, dtype=np.float32)
            if not diff and array.shape != blob.shape:
                blob.reshape(array.shape)
            target = blob.diff if diff else blob.data
            if target.shape != array.shape:
                raise CaffeError(f"blob '{name}' has shape {blob.shape}, "
                                 f"given an array of shape {array.shape}")
            target[...] = array

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """pycaffe's forward: set inputs, run, return {output name: data}."""
        unknown = set(kwargs) - set(self._inputs)
        if unknown:
            raise CaffeError(f"{', '.join(sorted(unknown))} not among the net inputs "
                             f"{self._inputs}")
        self._set_inputs(kwargs)
        start_index = self._layer_index(start, 0)
        end_index = self._layer_index(end, len(self.layers) - 1)
        self.forward_from_to(start_index, end_index)
        names = self.layer_facts[end_index].top_names if end is not None else self._outputs
        return {name: self.blobs[name].data for name in list(names) + list(blobs or [])}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """pycaffe's backward: set output diffs, run, return {input name: diff}."""
        unknown = set(kwargs) - set(self._outputs)
        if unknown:
            raise CaffeError(f"{', '.join(sorted(unknown))} not among the net outputs "
                             f"{self._outputs}")
        self._set_inputs(kwargs, diff=True)
        start_index = self._layer_index(start, len(self.layers) - 1)
        end_index = self._layer_index(end, 0)
        self.backward_from_to(start_index, end_index)
        names = self.layer_facts[end_index].bottom_names if end is not None else self._inputs
        return {name: self.blobs[name].diff for name in list(names) + list(diffs or [])}

    def _batches(self, arrays):
        """Net-sized batches of ``arrays`` (name -> array), the last one padded with zeros
        (pycaffe's Net._batch); the batch size is that of the net's first blob."""
        arrays = {name: np.asarray(value) for name, value in arrays.items()}
        total = len(next(iter(arrays.values())))
        batch = next(iter(self.blobs.values())).shape[0]
        for begin in range(0, total, batch):
            chunk = {}
            for name, array in arrays.items():
                part = array[begin:begin + batch]
                padding = np.zeros((batch - len(part),) + part.shape[1:], part.dtype)
                chunk[name] = np.concatenate([part, padding])
            yield chunk

    def forward_all(self, blobs=None, **kwargs):
        """Run forward over inputs of any length in net-sized batches (pycaffe's forward_all).

        As in pycaffe the last batch is padded, and the padding cut from the outputs, so
        the net keeps its shape.
        """
        if not kwargs:
            return {key: value.copy() for key, value in self.forward(blobs=blobs).items()}
        collected = {}
        for chunk in self._batches(kwargs):
            _collect(collected, self.forward(blobs=blobs, **chunk))
        return _concatenate(collected, len(next(iter(kwargs.values()))))

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        """Forward then backward in net-sized batches; returns (outputs, diffs) as pycaffe.

        ``kwargs`` holds input arrays (for forward) and output diffs (for backward).
        """
        inputs = {name: kwargs[name] for name in self._inputs if name in kwargs}
        top_diffs = {name: kwargs[name] for name in self._outputs if name in kwargs}
        forward_batches = self._batches(inputs) if inputs else iter([{}])
        backward_batches = self._batches(top_diffs) if top_diffs else iter([{}])
        outs, grads = {}, {}
        for forward_batch, backward_batch in itertools.zip_longest(
                forward_batches, backward_batches, fillvalue={}):
            _collect(outs, self.forward(blobs=blobs, **forward_batch))
            _collect(grads, self.backward(diffs=diffs, **backward_batch))
        total = len(next(iter(kwargs.values()))) if kwargs else None
        return _concatenate(outs, total), _concatenate(grads, total)

    # ---- weights ----------------------------------------------------------
    def to_proto(self, write_diff=False):
        """A NetParameter of this net's layers and their blobs (Caffe's Net::ToProto)."""
        proto = caffe_pb2.NetParameter(name=self.name)
        for layer in self.layers:
            layer_proto = proto.layer.add()
            layer_proto.CopyFrom(layer.param)
            del layer_proto.blobs[:]
            for blob in layer.blobs:
                blob.to_proto(layer_proto.blobs.add(), write_diff)
        return proto

    def save(self, filename):
        """Write the weights as a binary .caffemodel, atomically."""
        write_binary_proto(filename, self.to_proto())

    def save_hdf5(self, filename, write_diff=False):
        """Write the weights in Caffe's HDF5 layout (needs the ``[hdf5]`` extra)."""
        hdf5.save_net(self, filename, write_diff)

    def load_hdf5(self, filename):
        """Load weights from a Caffe HDF5 file (needs the ``[hdf5]`` extra)."""
        hdf5.load_net(self, filename)

    def to_onnx(self, path, opset=17, dynamic_batch=False):
        """Write this TEST-phase net and its weights as an ONNX model (the ``[onnx]`` extra);
        ``dynamic_batch`` makes the batch axis symbolic.  Returns the ModelProto."""
        from .export import export_onnx
        return export_onnx(self, path, opset=opset, dynamic_batch=dynamic_batch)

    def copy_from(self, weights):
        """Load weights from a .caffemodel path, an HDF5 weights file (told apart by its
        signature, as Caffe does) or a NetParameter, matching layers by name."""
        if isinstance(weights, caffe_pb2.NetParameter):
            source, where = weights, "weights"
        elif hdf5.is_hdf5_file(weights):
            self.load_hdf5(weights)
            return
        else:
            where = os.fspath(weights)
            source = read_binary_proto(where, caffe_pb2.NetParameter())
            if not (source.layer or source.layers):
                raise ModelFileError(f"{where}: not a NetParameter (.caffemodel) file: "
                                     f"it holds no layers")
        source = net_passes.upgrade(source, where)
        layers = self.layer_dict
        for source_layer in source.layer:
            target = layers.get(source_layer.name)
            if target is None or not source_layer.blobs:
                continue
            if len(source_layer.blobs) != len(target.blobs):
                raise ModelFileError(
                    f"{where}: layer '{source_layer.name}' has {len(source_layer.blobs)} "
                    f"blobs in the file but {len(target.blobs)} in the net")
            for index, (proto, blob) in enumerate(zip(source_layer.blobs, target.blobs)):
                self._copy_blob(where, source_layer.name, index, proto, blob)

    @staticmethod
    def _copy_blob(where, layer_name, index, proto, blob):
        shape = proto_shape(proto)
        if has_legacy_shape(proto):
            fits = legacy_shape_equals(blob.shape, proto)
        else:
            fits = shape == blob.shape
        if not fits:
            raise ModelFileError(
                f"{where}: cannot copy param {index} of layer '{layer_name}': the file has "
                f"shape {shape}, the net expects {blob.shape}; to learn this layer from "
                f"scratch instead, rename it")
        try:
            blob.data[...] = proto_array(proto).reshape(blob.shape)
        except CaffeError as exc:
            raise ModelFileError(f"{where}: layer '{layer_name}' param {index}: {exc}") from None

    def share_with(self, other):
        """Share the weights of same-named layers of ``other`` (ShareTrainedLayersWith)."""
        layers = self.layer_dict
        for source in other.layers:
            target = layers.get(source.name)
            if target is None:
                continue
            if len(target.blobs) != len(source.blobs):
                raise NetError(f"layer '{source.name}': cannot share {len(source.blobs)} "
                               f"blobs with {len(target.blobs)}")
            for index, (mine, theirs) in enumerate(zip(target.blobs, source.blobs)):
                if mine.shape != theirs.shape:
                    raise NetError(f"layer '{source.name}' blob {index}: cannot share shape "
                                   f"{theirs.shape} with {mine.shape}")
                mine.share_data(theirs)


def _collect(collected, batch_values):
    """Append copies of one batch's arrays to ``collected`` (name -> list of arrays)."""
    for name, value in batch_values.items():
        collected.setdefault(name, []).append(value.copy())


def _concatenate(collected, total):
    """Join the batches and cut the padding after ``total`` items (None keeps all)."""
    return {name: np.concatenate(parts)[:total] for name, parts in collected.items()}
