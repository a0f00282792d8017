"""Draw a NetParameter as a Graphviz graph (pycaffe's ``caffe.draw``).

Layers are boxes (in-place layers green, others coloured by type), blobs are
octagons, edges run bottom -> layer -> top as in Caffe's pictures.  The graph
is built with pydot (the ``[draw]`` extra); turning it into an
image needs Graphviz's ``dot`` program, except for the ``.raw`` extension, which
writes the dot source itself.
"""
import shutil

from .errors import CaffeError, install_command
from .proto import caffe_pb2
from .proto_io import write_atomically

SPATIAL_LAYERS = ("Convolution", "Deconvolution", "Pooling")
LEARNING_LAYERS = ("Convolution", "Deconvolution", "InnerProduct")
LAYER_COLOURS = {"Convolution": "#FF5050", "Deconvolution": "#FF5050", "Pooling": "#FF9900",
                 "InnerProduct": "#CC33FF"}
DEFAULT_LAYER_COLOUR = "#6495ED"
IN_PLACE_COLOUR = "#90EE90"
BLOB_STYLE = {"shape": "octagon", "fillcolor": "#E0E0E0", "style": "filled"}
RAW_EXTENSION = "raw"   # Caffe's name for "the dot source, not an image"


def _pydot():
    try:
        import pydot
    except ImportError:
        raise CaffeError(f"drawing nets needs pydot: {install_command('draw')} "
                         "(and Graphviz for images)") from None
    return pydot


def _in_phase(layer, phase):
    """Whether ``layer`` is drawn for ``phase`` (None draws every layer), judged by the
    phases of its include/exclude rules as Caffe's draw_net does."""
    if phase is None:
        return True
    if layer.include and layer.exclude:
        raise CaffeError(f"layer '{layer.name}' has both include and exclude rules")
    if layer.include:
        return any(rule.phase == phase for rule in layer.include)
    return not any(rule.phase == phase for rule in layer.exclude)


def get_edge_label(layer):
    """What an edge out of ``layer`` says: the batch size of Data, the outputs of
    Convolution/Deconvolution/InnerProduct, nothing otherwise."""
    if layer.type == "Data":
        return f"Batch {layer.data_param.batch_size}"
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return '""'


def get_layer_lr_mult(layer):
    """(weight, bias) learning-rate multipliers of a learning layer (1.0 when unset)."""
    if layer.type not in LEARNING_LAYERS:
        raise CaffeError(f"{layer.type} layers do not have a learning rate multiplier")
    if len(layer.param) > 2:
        raise CaffeError(f"layer '{layer.name}' has {len(layer.param)} param specs; "
                         f"expected at most 2")
    mults = [spec.lr_mult for spec in layer.param] + [1.0, 1.0]
    return mults[0], mults[1]


def _spatial_description(layer):
    """(kernel size, stride, pad) of the first spatial axis."""
    if layer.type == "Pooling":
        pool = layer.pooling_param
        return pool.kernel_size, pool.stride, pool.pad
    conv = layer.convolution_param
    return (conv.kernel_size[0] if conv.kernel_size else 1,
            conv.stride[0] if conv.stride else 1,
            conv.pad[0] if conv.pad else 0)


def get_layer_label(layer, rankdir, display_lrm=False):
    """The node label: name, (type), spatial parameters, learning rates if asked."""
    # A vertical graph has room across, a horizontal one room down.
    separator = " " if rankdir in ("TB", "BT") else r"\n"
    if layer.type == "Pooling":
        method = caffe_pb2.PoolingParameter.PoolMethod.Name(layer.pooling_param.pool)
        parts = [layer.name, f"({layer.type} {method})"]
    else:
        parts = [layer.name, f"({layer.type})"]
    if layer.type in SPATIAL_LAYERS:
        kernel, stride, pad = _spatial_description(layer)
        parts.append(separator.join([f"kernel size: {kernel}", f"stride: {stride}",
                                     f"pad: {pad}"]))
    if display_lrm and layer.type in LEARNING_LAYERS:
        weight_mult, bias_mult = get_layer_lr_mult(layer)
        if weight_mult or bias_mult:
            parts.append(f"lr mult: {weight_mult:.1f}, {bias_mult:.1f}")
    # Quoted, or Graphviz would read the colons as port names.
    return '"' + separator.join(parts) + '"'


def choose_color_by_layertype(layertype):
    return LAYER_COLOURS.get(layertype, DEFAULT_LAYER_COLOUR)


def _layer_style(layer):
    in_place = len(layer.bottom) == 1 and list(layer.bottom) == list(layer.top)
    colour = IN_PLACE_COLOUR if in_place else choose_color_by_layertype(layer.type)
    return {"shape": "record", "fillcolor": colour, "style": "filled"}


def get_pydot_graph(caffe_net, rankdir, label_edges=True, phase=None, display_lrm=False):
    """A pydot graph of ``caffe_net`` (a NetParameter), layers of ``phase`` only if given."""
    pydot = _pydot()
    graph = pydot.Dot(caffe_net.name or "Net", graph_type="digraph", rankdir=rankdir)
    nodes, edges = {}, []
    for layer in caffe_net.layer:
        if not _in_phase(layer, phase):
            continue
        layer_key = f"{layer.name}_{layer.type}"
        nodes[layer_key] = pydot.Node(get_layer_label(layer, rankdir, display_lrm),
                                      **_layer_style(layer))
        for bottom in layer.bottom:
            nodes.setdefault(bottom + "_blob", pydot.Node(bottom, **BLOB_STYLE))
            edges.append((bottom + "_blob", layer_key, '""'))
        label = get_edge_label(layer) if label_edges else '""'
        for top in layer.top:
            nodes.setdefault(top + "_blob", pydot.Node(top, **BLOB_STYLE))
            edges.append((layer_key, top + "_blob", label))
    for node in nodes.values():
        graph.add_node(node)
    for source, target, label in edges:
        graph.add_edge(pydot.Edge(nodes[source], nodes[target], label=label))
    return graph


def draw_net(caffe_net, rankdir, ext="png", phase=None, display_lrm=False):
    """The drawing of ``caffe_net`` as bytes in format ``ext`` ('png', 'svg', 'pdf', ...;
    'raw' gives the dot source and needs no Graphviz)."""
    graph = get_pydot_graph(caffe_net, rankdir, phase=phase, display_lrm=display_lrm)
    if ext == RAW_EXTENSION:
        return graph.to_string().encode("utf-8")
    if shutil.which("dot") is None:
        raise CaffeError(f"drawing a .{ext} image needs Graphviz's 'dot' program, not found on "
                         f"PATH: install Graphviz (apt-get install graphviz, brew install "
                         f"graphviz or conda install graphviz), or draw to a .raw file for the "
                         f"dot source")
    return graph.create(format=ext)


def draw_net_to_file(caffe_net, filename, rankdir="LR", phase=None, display_lrm=False):
    """Draw ``caffe_net`` into ``filename``, in the format its extension names."""
    ext = filename[filename.rfind(".") + 1:]
    write_atomically(filename, draw_net(caffe_net, rankdir, ext, phase, display_lrm))
