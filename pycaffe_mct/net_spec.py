"""Write nets in Python: ``n = NetSpec(); n.conv1 = L.Convolution(n.data, ...)``.

As in pycaffe, ``caffe.layers.<Type>(*bottoms, **kwargs)`` (the ``layers``
package answers any capitalised attribute with ``layer_function``) makes a layer of any
registered-or-not type; keyword arguments that are not LayerParameter fields
go into the layer's own ``<type>_param`` message, found from the schema (the
message type ``ConvolutionParameter`` belongs to type ``Convolution``).
Special keywords: ``ntop`` (number of tops), ``in_place`` (top = bottom).
"""
from collections import OrderedDict

from .proto import caffe_pb2


def _param_field_by_type():
    """Layer type -> name of its ``*_param`` field, read off LayerParameter."""
    table = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            type_name = field.message_type.name
            if type_name.endswith("Parameter"):
                table[type_name[:-len("Parameter")]] = field.name
    # Types whose parameter message is named differently from the type.
    table.update({"Deconvolution": "convolution_param", "SoftmaxWithLoss": "softmax_param",
                  "SigmoidCrossEntropyLoss": "loss_param", "EuclideanLoss": "loss_param",
                  "Input": "input_param"})
    return table


_PARAM_FIELD = _param_field_by_type()


def assign_proto(proto, name, value):
    """Set field ``name`` of ``proto`` from Python values (dicts for messages)."""
    target = getattr(proto, name)
    repeated = hasattr(target, "extend")
    if repeated and not isinstance(value, (list, tuple)):
        value = [value]
    if repeated:
        if value and isinstance(value[0], dict):
            for item in value:
                message = target.add()
                for key, sub in item.items():
                    assign_proto(message, key, sub)
        else:
            target.extend(value)
    elif isinstance(value, dict):
        for key, sub in value.items():
            assign_proto(target, key, sub)
    else:
        setattr(proto, name, value)


class Top:
    """One output of a layer function, usable as the bottom of another."""

    def __init__(self, fn, index):
        self.fn = fn
        self.index = index

    def to_proto(self):
        return to_proto(self)

    def _update(self, params):
        self.fn.params.update(params)


class Function:
    """A layer in the making: its type, bottoms, and parameter values."""

    def __init__(self, type_name, inputs, params):
        for index, bottom in enumerate(inputs):
            if not isinstance(bottom, Top):
                raise TypeError(f"{type_name} input {index} is not a Top "
                                f"(type is {type(bottom)})")
        self.type_name = type_name
        self.inputs = inputs
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        if self.in_place and len(inputs) != 1:
            raise ValueError(f"{type_name}: in_place needs exactly one bottom")
        self.tops = tuple(Top(self, i) for i in range(self.ntop))

    def _name(self, names, autonames):
        if self not in names:
            if self.ntop > 0:
                names[self] = _top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = f"{self.type_name}{autonames[self.type_name]}"
        return names[self]

    def to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottoms = []
        for top in self.inputs:
            top.fn.to_proto(layers, names, autonames)
            # An in-place producer's top carries its bottom's name.
            bottoms.append(layers[top.fn].top[top.index])
        layer = caffe_pb2.LayerParameter(type=self.type_name, name=self._name(names, autonames))
        layer.bottom.extend(bottoms)
        if self.in_place:
            layer.top.extend(bottoms)
        else:
            layer.top.extend(_top_name(top, names, autonames) for top in self.tops)
        for key, value in self.params.items():
            if key.endswith("param") or key in _LAYER_FIELDS:
                assign_proto(layer, key, value)
            else:
                field = _PARAM_FIELD.get(self.type_name)
                if field is None:
                    raise ValueError(f"{self.type_name}: no parameter message known for "
                                     f"keyword '{key}'")
                assign_proto(getattr(layer, field), key, value)
        layers[self] = layer


_LAYER_FIELDS = {f.name for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields}


def _top_name(top, names, autonames):
    if top not in names:
        autonames[top.fn.type_name] += 1
        names[top] = f"{top.fn.type_name}{autonames[top.fn.type_name]}"
    return names[top]


def _function_of(item):
    """The layer behind a Top, or the layer itself (what ``ntop=0`` returns)."""
    return item if isinstance(item, Function) else item.fn


class _Counter(dict):
    def __missing__(self, key):
        return 0


def to_proto(*tops):
    """A NetParameter holding the layers needed to compute ``tops``."""
    layers = OrderedDict()
    names, autonames = {}, _Counter()
    for top in tops:
        _function_of(top).to_proto(layers, names, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


class NetSpec:
    """Collects named tops; ``to_proto()`` names layers after their first top."""

    def __init__(self):
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(name) from None

    __setitem__ = __setattr__

    def __getitem__(self, name):
        return self.tops[name]

    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops)

    def vals(self):
        return list(self.tops.values())

    def update(self, name, params):
        """Add or change keyword parameters of the layer that produced top ``name``."""
        self.tops[name]._update(params)

    def to_proto(self):
        names = {top: name for name, top in self.tops.items()}
        autonames = _Counter()
        layers = OrderedDict()
        for top in self.tops.values():
            _function_of(top).to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


def layer_function(type_name):
    """The NetSpec constructor of layers of ``type_name`` (``caffe.layers.<Type>``)."""
    def make(*inputs, **params):
        fn = Function(type_name, inputs, params)
        if fn.ntop == 0:
            return fn
        return fn.tops[0] if fn.ntop == 1 else fn.tops
    make.__name__ = type_name
    return make


class _Params:
    """``params.Pooling.MAX``: enum values by the parameter message of a type."""

    def __getattr__(self, type_name):
        return getattr(caffe_pb2, type_name + "Parameter")


params = _Params()
