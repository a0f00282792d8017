"""Pure NetParameter -> NetParameter passes that run before a Net is wired.

Each pass takes a NetParameter and returns a new one, so each can be tested on
a prototxt string: ``upgrade`` (legacy V1 ``layers`` and net-level inputs),
``filter_by_state`` (include/exclude rules against phase, level and stages) and
``insert_splits`` (a top read by several layers gets a Split layer, so that
each reader back-propagates into its own diff and the Split sums them).
"""
from .errors import NetError
from .proto import caffe_pb2, field_label

# V1LayerParameter.LayerType enum name -> today's type string.
_V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "DATA": "Data",
    "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold", "NONE": "",
}

# V1 data layers kept their transformation fields in their own parameter message.
_V1_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")
_V1_DATA_PARAMS = ("data_param", "image_data_param", "window_data_param")

# Fields V1LayerParameter shares by name with LayerParameter, copied as they are.
_V1_SHARED_SCALARS = ("name", "bottom", "top", "include", "exclude", "blobs", "loss_weight")


def _upgrade_v1_layer(v1):
    layer = caffe_pb2.LayerParameter()
    for field, value in v1.ListFields():
        name = field.name
        if name in _V1_SHARED_SCALARS or name.endswith("_param"):
            target = getattr(layer, name)
            if field_label(field) == "repeated":
                target.extend(value)
            elif field.message_type is not None:
                target.CopyFrom(value)
            else:
                setattr(layer, name, value)
    if v1.HasField("type"):
        enum_name = caffe_pb2.V1LayerParameter.LayerType.Name(v1.type)
        layer.type = _V1_TYPES.get(enum_name, enum_name)
    _move_transform_fields(layer)
    per_param = max(len(v1.param), len(v1.blobs_lr), len(v1.weight_decay),
                    len(v1.blob_share_mode))
    for i in range(per_param):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
    return layer


def _move_transform_fields(layer):
    """Caffe's UpgradeNetDataTransformation: scale/mean_file/crop_size/mirror -> transform_param."""
    for param_name in _V1_DATA_PARAMS:
        if not layer.HasField(param_name):
            continue
        data_param = getattr(layer, param_name)
        for field in _V1_TRANSFORM_FIELDS:
            if data_param.HasField(field):
                setattr(layer.transform_param, field, getattr(data_param, field))
                data_param.ClearField(field)


def upgrade(net_param, source="net"):
    """Bring a V1 net (``layers``) and net-level inputs up to today's format."""
    net = caffe_pb2.NetParameter()
    net.CopyFrom(net_param)
    if net.layers and net.layer:
        raise NetError(f"{source}: uses both 'layer' and the legacy 'layers' field")
    if net.layers:
        if any(v1.HasField("layer") for v1 in net.layers):
            raise NetError(f"{source}: a V0 net; upgrade it with Caffe's "
                           f"upgrade_net_proto_text first")
        upgraded = [_upgrade_v1_layer(v1) for v1 in net.layers]
        del net.layers[:]
        net.layer.extend(upgraded)
    _upgrade_inputs(net, source)
    for layer in net.layer:
        # Old BatchNorm definitions declared three learnable params; Caffe freezes them.
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0
    return net


def _upgrade_inputs(net, source):
    """Turn ``input`` / ``input_shape`` / ``input_dim`` into a leading Input layer."""
    if net.input_shape or net.input_dim:
        if net.input_dim and len(net.input_dim) != 4 * len(net.input):
            raise NetError(f"{source}: {len(net.input)} inputs need "
                           f"{4 * len(net.input)} input_dim values, got {len(net.input_dim)}")
        if net.input_shape and len(net.input_shape) != len(net.input):
            raise NetError(f"{source}: {len(net.input)} inputs but "
                           f"{len(net.input_shape)} input_shape entries")
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        for i, top in enumerate(net.input):
            layer.top.append(top)
            shape = layer.input_param.shape.add()
            if net.input_shape:
                shape.CopyFrom(net.input_shape[i])
            else:
                shape.dim.extend(net.input_dim[4 * i:4 * i + 4])
        layers = [layer] + list(net.layer)
        del net.layer[:]
        net.layer.extend(layers)
    del net.input[:]
    del net.input_shape[:]
    del net.input_dim[:]


def state_meets_rule(state, rule):
    """Caffe's StateMeetsRule: phase, level range, all stages, no not_stages."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if not set(rule.stage) <= stages:
        return False
    return not (set(rule.not_stage) & stages)


def filter_by_state(net_param, state):
    """Keep the layers whose include/exclude rules admit ``state``."""
    net = caffe_pb2.NetParameter()
    net.CopyFrom(net_param)
    kept = []
    for layer in net.layer:
        if layer.include and layer.exclude:
            raise NetError(f"layer '{layer.name}' has both include and exclude rules")
        if layer.include:
            admitted = any(state_meets_rule(state, rule) for rule in layer.include)
        else:
            admitted = not any(state_meets_rule(state, rule) for rule in layer.exclude)
        if admitted:
            kept.append(layer)
    del net.layer[:]
    net.layer.extend(kept)
    return net


def split_blob_name(layer_name, blob_name, top_index, split_index):
    return f"{blob_name}_{layer_name}_{top_index}_split_{split_index}"


def insert_splits(net_param):
    """Give every top read more than once (a loss weight counts as a read) a Split."""
    producer = {}             # blob name -> (layer index, top index) of its latest writer
    source_of = {}            # (layer, bottom index) -> producing (layer, top)
    readers = {}              # (layer, top) -> number of reads
    loss_weight = {}
    for i, layer in enumerate(net_param.layer):
        for j, blob in enumerate(layer.bottom):
            if blob not in producer:
                raise NetError(f"layer '{layer.name}' (type {layer.type}): bottom blob "
                               f"'{blob}' (bottom {j}) is produced by no earlier layer")
            source_of[(i, j)] = producer[blob]
            readers[producer[blob]] = readers.get(producer[blob], 0) + 1
        for j, blob in enumerate(layer.top):
            producer[blob] = (i, j)
        for j, weight in enumerate(layer.loss_weight[:len(layer.top)]):
            key = producer[layer.top[j]]
            loss_weight[key] = weight
            if weight:
                readers[key] = readers.get(key, 0) + 1

    net = caffe_pb2.NetParameter()
    net.CopyFrom(net_param)
    del net.layer[:]
    next_split = {}
    for i, original in enumerate(net_param.layer):
        layer = net.layer.add()
        layer.CopyFrom(original)
        for j, blob in enumerate(layer.bottom):
            key = source_of[(i, j)]
            if readers.get(key, 0) > 1:
                index = next_split.get(key, 0)
                next_split[key] = index + 1
                layer.bottom[j] = split_blob_name(net_param.layer[key[0]].name, blob,
                                                  key[1], index)
        for j, blob in enumerate(layer.top):
            count = readers.get((i, j), 0)
            if count <= 1:
                continue
            weight = loss_weight.get((i, j), 0.0)
            split = net.layer.add(name=f"{blob}_{layer.name}_{j}_split", type="Split")
            split.bottom.append(blob)
            split.top.extend(split_blob_name(layer.name, blob, j, k) for k in range(count))
            if weight:
                # The loss stays on the split's first top; the layer itself drops it.
                split.loss_weight.extend([weight] + [0.0] * (count - 1))
                del layer.loss_weight[:]
                next_split[(i, j)] = next_split.get((i, j), 0) + 1
    return net
