"""A TEST-phase Net as an ONNX graph: one converter function per Caffe layer type.

``build_model`` walks the net's layers in order.  Each layer type has a
converter in ``CONVERTERS`` (registered like layers, by type string) that gets
a ``LayerNodes`` — the layer object with its parsed parameters and weights, its
bottom tensors and the blob shapes — adds ONNX nodes and initializers, and
returns the tensors holding its tops.  A type without a converter, or a
parameter ONNX cannot express, is a CaffeError naming the layer and the reason:
nothing is dropped silently.

Tensor names are the prototxt's blob names.  ONNX tensors are written once, so
a blob that in-place layers rewrite keeps its plain name for its last version
(its first for a net input, which the user feeds by name) and its other
versions are named ``blob@layer`` after the layer that wrote them.

Numerics follow Caffe, not ONNX's defaults: pooling keeps Caffe's ceil rounding
and its rule that the last window starts inside the padded image (explicit end
padding in floor mode, exact for both methods, and for AVE a constant
correcting the divisor where Caffe's window is cut at the padded edge);
BatchNorm divides its statistics by the stored scale factor; InnerProduct
flattens from its axis; Dropout is the identity.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import CaffeError
from ..layer import TEST
from ..layers.activation import log_base
from ..proto import caffe_pb2
from ..proto_io import write_atomically
from ..registry import TypeRegistry

CONVERTERS = TypeRegistry("ONNX converter")
register_converter = CONVERTERS.register

# Softmax over one axis, Split sizes as an input and Clip bounds as inputs start at 13.
MIN_OPSET = 13
# Protobuf's limit on one message, less room for the graph itself.
PROTOBUF_LIMIT = 2 ** 31 - 2 ** 24
_POOL = caffe_pb2.PoolingParameter
_LRN = caffe_pb2.LRNParameter
_ELTWISE = caffe_pb2.EltwiseParameter


def write_model(net, path, opset=17, dynamic_batch=False):
    """Build and atomically write the ONNX model of ``net``; returns it."""
    model = build_model(net, opset, dynamic_batch)
    weight_bytes = sum(len(tensor.raw_data) for tensor in model.graph.initializer)
    if weight_bytes > PROTOBUF_LIMIT:
        raise CaffeError(f"net '{net.name}' has {weight_bytes / 2 ** 30:.2f} GiB of weights, "
                         f"above the 2 GiB a single ONNX file (one protobuf message) can hold")
    write_atomically(path, model.SerializeToString())   # a failure names path and reason
    return model


def build_model(net, opset=17, dynamic_batch=False):
    """The ONNX ModelProto of a TEST-phase ``net`` (inputs and outputs as the net's).

    It is not run through onnx.checker here (that serialises the whole model
    once more); the tests check every converter and the nets of models/ with it.
    """
    if net.phase != TEST:
        raise CaffeError("ONNX export needs a TEST-phase net (caffe.TEST): in TRAIN, Dropout "
                         "is random and BatchNorm uses batch statistics")
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise CaffeError(f"opset {opset} is outside the {MIN_OPSET}..{newest} this exporter "
                         f"and the installed onnx support")
    graph = GraphBuilder(net, dynamic_batch)
    for index, layer in enumerate(net.layers):
        converter = CONVERTERS.get(layer.type)
        if converter is None:
            raise layer.error(f"cannot be exported to ONNX: no converter for this type "
                              f"(exportable types: {', '.join(CONVERTERS.names())})")
        nodes = LayerNodes(graph, index, layer)
        nodes.bind_tops(converter(nodes))
    return graph.finish(opset)


class GraphBuilder:
    """The ModelProto being built from ``net``: its nodes, initializers and tensor names.

    Initializers go straight into the model's graph (the weights are copied once
    there, not again by onnx.helper's graph and model constructors).
    """

    def __init__(self, net, dynamic_batch):
        self.net = net
        self.dynamic_batch = dynamic_batch
        self.model = onnx.ModelProto(producer_name="pycaffe_mct")
        self.nodes, self.inputs = [], []
        self.used_names = set(net.blobs)
        self.current = {}          # blob name -> the tensor holding its latest value
        self.plain_writer = self._plain_name_writers(net)

    @staticmethod
    def _plain_name_writers(net):
        """Blob name -> index of the layer whose top gets the blob's plain name."""
        writers = {}
        for facts in net.layer_facts:
            for name in facts.top_names:
                if name not in net.inputs or name not in writers:
                    writers[name] = facts.index
        return writers

    def unique(self, name):
        """``name``, or ``name_N`` if taken; reserved from then on."""
        candidate, number = name, 1
        while candidate in self.used_names:
            candidate, number = f"{name}_{number}", number + 1
        self.used_names.add(candidate)
        return candidate

    def top_tensor(self, blob_name, layer_index, layer_name):
        """The tensor name for ``blob_name`` written by layer ``layer_index``."""
        if self.plain_writer[blob_name] == layer_index:
            return blob_name
        return self.unique(f"{blob_name}@{layer_name}")

    def add_initializer(self, name, array, data_type):
        """A constant tensor of the graph, stored little-endian as ONNX's raw_data is."""
        array = np.asarray(array)
        self.model.graph.initializer.add(name=name, data_type=data_type, dims=array.shape,
                                         raw_data=array.astype(array.dtype.newbyteorder("<"),
                                                               copy=False).tobytes())

    def value_info(self, name, shape):
        """A float tensor's type, the batch axis symbolic with dynamic batch."""
        dims = list(shape)
        if self.dynamic_batch and dims:
            dims[0] = "batch"
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    def finish(self, opset):
        """The model, its graph completed with the nodes, inputs and outputs."""
        graph = self.model.graph
        graph.name = self.net.name or "net"
        graph.node.extend(self.nodes)
        graph.input.extend(self.inputs)
        graph.output.extend(self.value_info(self.current[name], self.net.blobs[name].shape)
                            for name in self.net.outputs)
        opset_id = self.model.opset_import.add(domain="", version=opset)
        # The oldest IR that carries this opset, so that older runtimes load the file too.
        self.model.ir_version = helper.find_min_ir_version_for([opset_id])
        return self.model


class LayerNodes:
    """What a converter sees of one layer, and how it adds to the graph.

    ``layer`` is the set-up layer (parsed parameters, weights in ``layer.blobs``),
    ``bottoms`` the tensors of its bottoms, ``bottom_shapes``/``top_shapes`` the
    blob shapes of the net.  Nodes and constants are named after the layer.
    """

    def __init__(self, graph, index, layer):
        facts = graph.net.layer_facts[index]
        self.graph, self.index, self.layer = graph, index, layer
        self.bottom_names = facts.bottom_names
        self.top_names = facts.top_names
        self.bottoms = [graph.current[name] for name in self.bottom_names]
        self.bottom_shapes = [blob.shape for blob in facts.bottoms]
        self.top_shapes = [blob.shape for blob in facts.tops]
        self.first_node = len(graph.nodes)

    def error(self, reason):
        return self.layer.error(f"cannot be exported to ONNX: {reason}")

    def constant(self, suffix, array):
        """A float32 initializer named after the layer; returns its name."""
        name = self.graph.unique(f"{self.layer.name}/{suffix}")
        self.graph.add_initializer(name, np.asarray(array, np.float32), TensorProto.FLOAT)
        return name

    def int_constant(self, suffix, values):
        """An int64 initializer (shapes, axes, sizes)."""
        name = self.graph.unique(f"{self.layer.name}/{suffix}")
        self.graph.add_initializer(name, np.asarray(values, np.int64), TensorProto.INT64)
        return name

    def node(self, op, inputs, outputs=1, **attributes):
        """Add one ONNX node; returns its output tensor name (a list if ``outputs`` > 1)."""
        names = [self.graph.unique(f"{self.layer.name}/{op}") for _ in range(outputs)]
        self.graph.nodes.append(helper.make_node(op, list(inputs), names, name=names[0],
                                                 **attributes))
        return names[0] if outputs == 1 else names

    def scaled(self, tensor, factor, suffix="scale"):
        """``tensor * factor`` (a number), or ``tensor`` itself when the factor is 1."""
        if factor == 1:
            return tensor
        return self.node("Mul", [tensor, self.constant(suffix, np.float32(factor))])

    def shifted(self, tensor, shift, suffix="shift"):
        """``tensor + shift`` (a number), or ``tensor`` itself when the shift is 0."""
        if shift == 0:
            return tensor
        return self.node("Add", [tensor, self.constant(suffix, np.float32(shift))])

    def reshaped(self, tensor, shape, keep_batch):
        """``tensor`` reshaped to ``shape``; with dynamic batch and ``keep_batch`` the
        first dimension is copied from the tensor (ONNX's 0) instead of fixed."""
        dims = list(shape)
        if keep_batch and self.graph.dynamic_batch:
            dims[0] = 0
        return self.node("Reshape", [tensor, self.int_constant("shape", dims)])

    def require_batch_kept(self, first_axis, what):
        """With dynamic batch, refuse an operation reaching into axis 0 (the batch)."""
        if self.graph.dynamic_batch and first_axis == 0:
            raise self.error(f"{what} axis 0, the batch axis, which --dynamic-batch makes "
                             f"symbolic; export with a fixed batch instead")

    def bind_tops(self, values):
        """Make the converter's result tensors the layer's tops, under their final names.

        A result made by this layer's nodes is renamed; an existing tensor (an
        identity such as Split or Dropout) is copied by an Identity node; a graph
        input already has its name.
        """
        own = {output for node in self.graph.nodes[self.first_node:] for output in node.output}
        for blob_name, value in zip(self.top_names, values):
            name = self.graph.top_tensor(blob_name, self.index, self.layer.name)
            if value in own:
                self._rename(value, name)
            elif value != name:
                self.graph.nodes.append(helper.make_node(
                    "Identity", [value], [name], name=self.graph.unique(f"{name}/Identity")))
            self.graph.current[blob_name] = name

    def _rename(self, old, new):
        for node in self.graph.nodes[self.first_node:]:
            for field in (node.input, node.output):
                for position, tensor in enumerate(field):
                    if tensor == old:
                        field[position] = new


def aligned(shape, start, rank):
    """``shape`` placed at axis ``start`` of a ``rank``-axis tensor, for numpy-style
    broadcasting: trailing axes of size 1 appended."""
    return tuple(shape) + (1,) * (rank - start - len(shape))


# ---- inputs and views ------------------------------------------------------

@register_converter("Input")
def input_layer(nodes):
    """Each top is a graph input of the prototxt's shape."""
    names = []
    for blob_name, shape in zip(nodes.top_names, nodes.top_shapes):
        nodes.graph.inputs.append(nodes.graph.value_info(blob_name, shape))
        names.append(blob_name)
    return names


@register_converter("Split")
def split(nodes):
    return [nodes.bottoms[0]] * len(nodes.top_names)


@register_converter("Dropout")
def dropout(nodes):
    """The identity: in TEST, Caffe's Dropout passes its input through unscaled."""
    if nodes.layer.phase != TEST:
        raise nodes.error("its own phase is TRAIN, where it drops inputs at random")
    return [nodes.bottoms[0]]


def view(nodes, start_axis):
    """Flatten and Reshape: a Reshape to the top shape computed by the layer."""
    nodes.require_batch_kept(start_axis, "reshapes")
    return [nodes.reshaped(nodes.bottoms[0], nodes.top_shapes[0], keep_batch=True)]


@register_converter("Flatten")
def flatten(nodes):
    return view(nodes, nodes.layer.param.flatten_param.axis % len(nodes.bottom_shapes[0]))


@register_converter("Reshape")
def reshape(nodes):
    p = nodes.layer.param.reshape_param
    rank = len(nodes.bottom_shapes[0])
    start = p.axis + rank + 1 if p.axis < 0 else p.axis
    copies_batch = start == 0 and p.shape.dim[:1] == [0]
    return view(nodes, 1 if copies_batch else start)


# ---- convolution, pooling, inner product -----------------------------------

def convolution_nodes(nodes, op):
    """Conv or ConvTranspose of every bottom with the layer's (shared) weights."""
    layer = nodes.layer
    params = [nodes.constant("weight", layer.blobs[0].data)]
    if layer.bias_term:
        params.append(nodes.constant("bias", layer.blobs[1].data))
    return [nodes.node(op, [bottom] + params, kernel_shape=list(layer.kernel),
                       pads=list(layer.pad) * 2, strides=list(layer.stride),
                       dilations=list(layer.dilation), group=layer.group)
            for bottom in nodes.bottoms]


@register_converter("Convolution")
def convolution(nodes):
    return convolution_nodes(nodes, "Conv")


@register_converter("Deconvolution")
def deconvolution(nodes):
    """Caffe's (in, out/group, kh, kw) weights are ONNX ConvTranspose's layout already."""
    return convolution_nodes(nodes, "ConvTranspose")


def caffe_window_lengths(size, kernel, pad, stride, pooled):
    """Per output position, Caffe's AVE divisor along one axis: the window cut at the
    end of the padded image (size + pad), padding counted."""
    starts = np.arange(pooled) * stride - pad
    return np.minimum(starts + kernel, size + pad) - starts


def end_padding(nodes, size, kernel, pad, stride, pooled):
    """The end padding that makes ONNX's floor rounding give Caffe's ``pooled`` windows."""
    end = max(0, (pooled - 1) * stride + kernel - size - pad)
    if end >= kernel:
        raise nodes.error(f"its last window starts outside the image (input {size}, kernel "
                          f"{kernel}, stride {stride}, pad {pad}: Caffe's ceil rounding "
                          f"without padding), which ONNX pooling cannot express")
    return end


@register_converter("Pooling")
def pooling(nodes):
    layer = nodes.layer
    if len(nodes.top_names) == 2:
        raise nodes.error("its second top (the MAX positions) has no ONNX counterpart")
    sizes, pooled = nodes.bottom_shapes[0][2:], nodes.top_shapes[0][2:]
    ends = [end_padding(nodes, sizes[a], layer.kernel[a], layer.pad[a], layer.stride[a],
                        pooled[a]) for a in range(2)]
    window = dict(kernel_shape=list(layer.kernel), strides=list(layer.stride),
                  pads=list(layer.pad) + ends)
    if layer.method == _POOL.MAX:
        return [nodes.node("MaxPool", nodes.bottoms, **window)]
    # Every ONNX window lies inside the padding, so it divides by kernel_h * kernel_w.
    average = nodes.node("AveragePool", nodes.bottoms, count_include_pad=1, **window)
    lengths = [caffe_window_lengths(sizes[a], layer.kernel[a], layer.pad[a], layer.stride[a],
                                    pooled[a]) for a in range(2)]
    divisor = np.outer(lengths[0], lengths[1])
    full = layer.kernel[0] * layer.kernel[1]
    if (divisor == full).all():
        return [average]
    correction = nodes.constant("divisor_correction", full / divisor)
    return [nodes.node("Mul", [average, correction])]


@register_converter("InnerProduct")
def inner_product(nodes):
    """Flatten from ``axis`` (a Reshape), then y = x W^T + b: Gemm on the stored weight for
    the usual axis 1, else MatMul by the (inputs, outputs) weight and an Add."""
    layer = nodes.layer
    nodes.require_batch_kept(layer.axis, "flattens from")
    x = nodes.bottoms[0]
    shape = nodes.bottom_shapes[0]
    if len(shape) != layer.axis + 1:
        x = nodes.reshaped(x, shape[:layer.axis] + (layer.inputs,), keep_batch=True)
    weight = layer.blobs[0].data
    bias = [nodes.constant("bias", layer.blobs[1].data)] if layer.bias_term else []
    if layer.axis == 1:
        return [nodes.node("Gemm", [x, nodes.constant("weight", weight)] + bias,
                           transB=int(not layer.transpose))]
    y = nodes.node("MatMul", [x, nodes.constant("weight", weight if layer.transpose
                                                 else weight.T)])
    return [nodes.node("Add", [y] + bias) if bias else y]


# ---- normalisation ---------------------------------------------------------

@register_converter("LRN")
def lrn(nodes):
    layer = nodes.layer
    if layer.region == _LRN.ACROSS_CHANNELS:
        # ONNX's LRN is Caffe's: x / (k + alpha/size * sum of squares)^beta, odd size.
        return [nodes.node("LRN", nodes.bottoms, size=layer.size, alpha=layer.alpha,
                           beta=layer.beta, bias=layer.k)]
    # WITHIN_CHANNEL: x * (1 + alpha * avgpool_size(x^2))^-beta, padded cells counted.
    x = nodes.bottoms[0]
    pad = (layer.size - 1) // 2
    squares = nodes.node("Mul", [x, x])
    average = nodes.node("AveragePool", [squares], kernel_shape=[layer.size] * 2,
                         pads=[pad] * 4, count_include_pad=1)
    base = nodes.shifted(nodes.scaled(average, layer.alpha, "alpha"), 1.0, "one")
    factor = nodes.node("Pow", [base, nodes.constant("minus_beta", np.float32(-layer.beta))])
    return [nodes.node("Mul", [x, factor])]


@register_converter("BatchNorm")
def batch_norm(nodes):
    """ONNX BatchNormalization with the stored statistics divided by Caffe's scale factor
    (the affine part is a separate Scale layer in Caffe, so scale 1 and bias 0 here)."""
    layer = nodes.layer
    if not layer.use_global_stats:
        raise nodes.error("use_global_stats is false, so it normalises by each batch's own "
                          "statistics; a deploy net uses the stored ones")
    if len(nodes.bottom_shapes[0]) < 2:
        raise nodes.error(f"ONNX BatchNormalization needs a channel axis, bottom shape "
                          f"{nodes.bottom_shapes[0]}")
    mean, var = layer.stored_statistics()
    ones, zeros = np.ones(layer.channels), np.zeros(layer.channels)
    return [nodes.node("BatchNormalization",
                       [nodes.bottoms[0], nodes.constant("gamma", ones),
                        nodes.constant("beta", zeros), nodes.constant("mean", mean),
                        nodes.constant("variance", var)], epsilon=layer.eps)]


def operand(nodes):
    """Scale's or Bias's operand as a tensor that broadcasts against bottom 0: bottom 1
    (reshaped when needed) or the learned blob 0, laid out from the layer's axis."""
    layer = nodes.layer
    if len(nodes.bottoms) == 1:
        return learned_operand(nodes, 0, "bias" if layer.type == "Bias" else "scale")
    target = aligned(nodes.bottom_shapes[1], layer.start, len(nodes.bottom_shapes[0]))
    if target == nodes.bottom_shapes[1]:
        return nodes.bottoms[1]
    return nodes.reshaped(nodes.bottoms[1], target, keep_batch=layer.start == 0)


def learned_operand(nodes, blob_index, suffix):
    """Learned blob ``blob_index`` of Scale/Bias as an initializer laid out from the axis."""
    layer = nodes.layer
    blob = layer.blobs[blob_index]
    nodes.require_batch_kept(layer.start if blob.num_axes else 1,
                             "learns one value per index of")
    shape = aligned(blob.shape, layer.start, len(nodes.bottom_shapes[0]))
    return nodes.constant(suffix, blob.data.reshape(shape))


@register_converter("Scale")
def scale(nodes):
    y = nodes.node("Mul", [nodes.bottoms[0], operand(nodes)])
    if nodes.layer.bias_index is not None:
        y = nodes.node("Add", [y, learned_operand(nodes, nodes.layer.bias_index, "bias")])
    return [y]


@register_converter("Bias")
def bias(nodes):
    return [nodes.node("Add", [nodes.bottoms[0], operand(nodes)])]


# ---- joining and cutting ---------------------------------------------------

@register_converter("Eltwise")
def eltwise(nodes):
    layer = nodes.layer
    if layer.operation == _ELTWISE.MAX:
        return [nodes.node("Max", nodes.bottoms)]
    if layer.operation == _ELTWISE.SUM:
        terms = [nodes.scaled(bottom, coeff, f"coeff{i}")
                 for i, (bottom, coeff) in enumerate(zip(nodes.bottoms, layer.coeffs))]
        return [nodes.node("Sum", terms)]
    product = nodes.bottoms[0]
    for bottom in nodes.bottoms[1:]:
        product = nodes.node("Mul", [product, bottom])
    return [product]


@register_converter("Concat")
def concat(nodes):
    nodes.require_batch_kept(nodes.layer.axis, "joins along")
    return [nodes.node("Concat", nodes.bottoms, axis=nodes.layer.axis)]


@register_converter("Slice")
def slice_layer(nodes):
    layer = nodes.layer
    nodes.require_batch_kept(layer.axis, "cuts along")
    sizes = nodes.int_constant("sizes", layer.sizes)
    outputs = nodes.node("Split", [nodes.bottoms[0], sizes], outputs=len(layer.sizes),
                         axis=layer.axis)
    return outputs if len(layer.sizes) > 1 else [outputs]


@register_converter("Crop")
def crop(nodes):
    """An ONNX Slice of bottom 0 at the layer's offsets; bottom 1 only gave the shape."""
    layer = nodes.layer
    nodes.require_batch_kept(layer.axis, "crops")
    axes = list(range(layer.axis, len(nodes.bottom_shapes[0])))
    starts = [layer.offsets[a] for a in axes]
    ends = [layer.offsets[a] + nodes.top_shapes[0][a] for a in axes]
    return [nodes.node("Slice", [nodes.bottoms[0], nodes.int_constant("starts", starts),
                                 nodes.int_constant("ends", ends),
                                 nodes.int_constant("axes", axes)])]


@register_converter("Softmax")
def softmax(nodes):
    """ONNX Softmax (opset 13 on) normalises over one axis, as Caffe's does."""
    return [nodes.node("Softmax", nodes.bottoms, axis=nodes.layer.axis)]


# ---- element-wise ----------------------------------------------------------

def unary(op, **attributes):
    """A converter for a neuron layer that is one ONNX node."""
    return lambda nodes: [nodes.node(op, nodes.bottoms, **attributes)]


ONE_NODE_NEURONS = {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs", "BNLL": "Softplus"}
for _caffe_type, _onnx_op in ONE_NODE_NEURONS.items():
    register_converter(_caffe_type)(unary(_onnx_op))


@register_converter("ReLU")
def relu(nodes):
    slope = nodes.layer.param.relu_param.negative_slope
    if slope == 0:
        return [nodes.node("Relu", nodes.bottoms)]
    return [nodes.node("LeakyRelu", nodes.bottoms, alpha=slope)]


@register_converter("PReLU")
def prelu(nodes):
    slopes = nodes.layer.blobs[0].data
    rank = len(nodes.bottom_shapes[0])
    shape = (1,) if nodes.layer.channel_shared else aligned(slopes.shape, 1, rank)
    return [nodes.node("PRelu", [nodes.bottoms[0],
                                 nodes.constant("slope", slopes.reshape(shape))])]


@register_converter("ELU")
def elu(nodes):
    return [nodes.node("Elu", nodes.bottoms, alpha=nodes.layer.param.elu_param.alpha)]


@register_converter("Power")
def power(nodes):
    """(shift + scale * x) ^ power, leaving out the steps that do nothing."""
    p = nodes.layer.param.power_param
    base = nodes.shifted(nodes.scaled(nodes.bottoms[0], p.scale), p.shift)
    if p.power == 1:
        return [base]
    return [nodes.node("Pow", [base, nodes.constant("power", np.float32(p.power))])]


@register_converter("Exp")
def exp(nodes):
    """base ^ (shift + scale * x) = e ^ (ln(base) * (shift + scale * x))."""
    p = nodes.layer.param.exp_param
    rate = log_base(p.base)
    exponent = nodes.shifted(nodes.scaled(nodes.bottoms[0], rate * p.scale), rate * p.shift)
    return [nodes.node("Exp", [exponent])]


@register_converter("Log")
def log(nodes):
    """log_base(shift + scale * x) = ln(shift + scale * x) / ln(base)."""
    p = nodes.layer.param.log_param
    argument = nodes.shifted(nodes.scaled(nodes.bottoms[0], p.scale), p.shift)
    return [nodes.scaled(nodes.node("Log", [argument]), 1.0 / log_base(p.base), "factor")]


@register_converter("Clip")
def clip(nodes):
    p = nodes.layer.param.clip_param
    if p.min > p.max:
        raise nodes.error(f"min {p.min} is larger than max {p.max}")
    return [nodes.node("Clip", [nodes.bottoms[0], nodes.constant("min", np.float32(p.min)),
                                nodes.constant("max", np.float32(p.max))])]


@register_converter("Swish")
def swish(nodes):
    """x * sigmoid(beta * x) (opset 17 has no Swish operator)."""
    x = nodes.bottoms[0]
    gate = nodes.node("Sigmoid", [nodes.scaled(x, nodes.layer.param.swish_param.beta, "beta")])
    return [nodes.node("Mul", [x, gate])]
