"""Write train_val.prototxt and deploy.prototxt of the classic nets with NetSpec.

    python tools/make_prototxt.py            # (re)writes models/<net>/*.prototxt

The layer structure follows the published Caffe definitions (BVLC CaffeNet,
AlexNet, GoogLeNet; VGG-16 from the Oxford VGG model zoo entry; ResNet-50 as
Kaiming He's Caffe release: bottleneck blocks, convolutions without bias, each
followed by BatchNorm + Scale in place).  Every builder takes ``width`` (divide
all layer widths by it) and ``size`` (input side) so tests can build narrow,
small variants of exactly the same structure.
"""
import sys
from pathlib import Path

from google.protobuf import text_format

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pycaffe_mct import layers as L  # noqa: E402
from pycaffe_mct.net_spec import NetSpec  # noqa: E402
from pycaffe_mct.proto import caffe_pb2  # noqa: E402
from pycaffe_mct.proto_io import write_atomically  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
LEARNED = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
NOT_LEARNED = [dict(lr_mult=0, decay_mult=0)] * 3


def narrow(channels, width):
    return max(1, channels // width)


def conv(bottom, num_output, kernel, stride=1, pad=0, group=1, std=None, bias=0.0,
         bias_term=True):
    weight = dict(type="gaussian", std=std) if std else dict(type="xavier")
    params = dict(num_output=num_output, kernel_size=kernel, stride=stride, pad=pad,
                  weight_filler=weight, bias_term=bias_term)
    if group > 1:
        params["group"] = group
    if bias_term:
        params["bias_filler"] = dict(type="constant", value=bias)
    return L.Convolution(bottom, param=LEARNED[:2 if bias_term else 1], **params)


def conv_relu(bottom, *args, **kwargs):
    top = conv(bottom, *args, **kwargs)
    return top, L.ReLU(top, in_place=True)


def fc(bottom, num_output, std=0.005, bias=0.1):
    return L.InnerProduct(bottom, param=LEARNED, num_output=num_output,
                          weight_filler=dict(type="gaussian", std=std),
                          bias_filler=dict(type="constant", value=bias))


def max_pool(bottom, kernel, stride, pad=0):
    return L.Pooling(bottom, pool=caffe_pb2.PoolingParameter.MAX, kernel_size=kernel,
                     stride=stride, pad=pad)


def ave_pool(bottom, kernel, stride, pad=0):
    return L.Pooling(bottom, pool=caffe_pb2.PoolingParameter.AVE, kernel_size=kernel,
                     stride=stride, pad=pad)


def lrn(bottom, size=5, alpha=1e-4, beta=0.75, within=False):
    region = dict(norm_region=caffe_pb2.LRNParameter.WITHIN_CHANNEL) if within else {}
    return L.LRN(bottom, local_size=size, alpha=alpha, beta=beta, **region)


def dropout(bottom, ratio):
    return L.Dropout(bottom, dropout_ratio=ratio, in_place=True)


# ---- the nets: each fills NetSpec ``n`` from n.data and returns its score top ----------
def cifar10_quick(n, width=1, size=32):
    n.conv1 = conv(n.data, narrow(32, width), 5, pad=2, std=0.0001)
    n.pool1 = max_pool(n.conv1, 3, 2)
    n.relu1 = L.ReLU(n.pool1, in_place=True)
    n.conv2, n.relu2 = conv_relu(n.pool1, narrow(32, width), 5, pad=2, std=0.01)
    n.pool2 = ave_pool(n.conv2, 3, 2)
    n.conv3, n.relu3 = conv_relu(n.pool2, narrow(64, width), 5, pad=2, std=0.01)
    n.pool3 = ave_pool(n.conv3, 3, 2)
    n.ip1 = fc(n.pool3, narrow(64, width), std=0.1, bias=0)
    n.ip2 = fc(n.ip1, 10, std=0.1, bias=0)
    return "ip2"


def cifar10_full(n, width=1, size=32):
    n.conv1 = conv(n.data, narrow(32, width), 5, pad=2, std=0.0001)
    n.pool1 = max_pool(n.conv1, 3, 2)
    n.relu1 = L.ReLU(n.pool1, in_place=True)
    n.norm1 = lrn(n.pool1, 3, 5e-5, 0.75, within=True)
    n.conv2, n.relu2 = conv_relu(n.norm1, narrow(32, width), 5, pad=2, std=0.01)
    n.pool2 = ave_pool(n.conv2, 3, 2)
    n.norm2 = lrn(n.pool2, 3, 5e-5, 0.75, within=True)
    n.conv3, n.relu3 = conv_relu(n.norm2, narrow(64, width), 5, pad=2, std=0.01)
    n.pool3 = ave_pool(n.conv3, 3, 2)
    n.ip1 = L.InnerProduct(n.pool3, num_output=10,
                           param=[dict(lr_mult=1, decay_mult=250), dict(lr_mult=2, decay_mult=0)],
                           weight_filler=dict(type="gaussian", std=0.01),
                           bias_filler=dict(type="constant"))
    return "ip1"


def _caffenet_like(n, width, norm_first, bias):
    """CaffeNet pools before normalising, AlexNet normalises first; their biases differ."""
    def conv_block(index, bottom, channels, kernel, **kwargs):
        name = f"conv{index}"
        n[name], n[f"relu{index}"] = conv_relu(bottom, narrow(channels, width), kernel,
                                               std=0.01, **kwargs)
        return n[name]

    def pool_and_norm(index, bottom):
        first, second = (("norm", "pool") if norm_first else ("pool", "norm"))
        make = {"norm": lrn, "pool": lambda top: max_pool(top, 3, 2)}
        n[f"{first}{index}"] = make[first](bottom)
        n[f"{second}{index}"] = make[second](n[f"{first}{index}"])
        return n[f"{second}{index}"]

    top = pool_and_norm(1, conv_block(1, n.data, 96, 11, stride=4, bias=0))
    top = pool_and_norm(2, conv_block(2, top, 256, 5, pad=2, group=2, bias=bias))
    top = conv_block(3, top, 384, 3, pad=1, bias=0)
    top = conv_block(4, top, 384, 3, pad=1, group=2, bias=bias)
    top = conv_block(5, top, 256, 3, pad=1, group=2, bias=bias)
    n.pool5 = max_pool(top, 3, 2)
    n.fc6 = fc(n.pool5, narrow(4096, width), bias=bias)
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.drop6 = dropout(n.fc6, 0.5)
    n.fc7 = fc(n.fc6, narrow(4096, width), bias=bias)
    n.relu7 = L.ReLU(n.fc7, in_place=True)
    n.drop7 = dropout(n.fc7, 0.5)
    n.fc8 = fc(n.fc7, 1000, std=0.01, bias=0)
    return "fc8"


def caffenet(n, width=1, size=227):
    return _caffenet_like(n, width, norm_first=False, bias=1.0)


def alexnet(n, width=1, size=227):
    return _caffenet_like(n, width, norm_first=True, bias=0.1)


def vgg16(n, width=1, size=224):
    top = n.data
    for stage, (channels, repeats) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3),
                                                 (512, 3)], 1):
        for index in range(1, repeats + 1):
            name = f"conv{stage}_{index}"
            n[name], n[f"relu{stage}_{index}"] = conv_relu(top, narrow(channels, width), 3,
                                                           pad=1)
            top = n[name]
        n[f"pool{stage}"] = max_pool(top, 2, 2)
        top = n[f"pool{stage}"]
    n.fc6 = fc(top, narrow(4096, width))
    n.relu6 = L.ReLU(n.fc6, in_place=True)
    n.drop6 = dropout(n.fc6, 0.5)
    n.fc7 = fc(n.fc6, narrow(4096, width))
    n.relu7 = L.ReLU(n.fc7, in_place=True)
    n.drop7 = dropout(n.fc7, 0.5)
    n.fc8 = fc(n.fc7, 1000, std=0.005, bias=0)
    return "fc8"


# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) per inception module.
INCEPTION = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
             "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
             "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
             "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128),
             "5b": (384, 192, 384, 48, 128, 128)}


def _inception(n, name, bottom, width):
    widths = [narrow(c, width) for c in INCEPTION[name]]
    prefix = f"inception_{name}/"

    def unit(suffix, source, channels, kernel, pad=0):
        n[prefix + suffix], n[prefix + "relu_" + suffix] = conv_relu(
            source, channels, kernel, pad=pad, bias=0.2)
        return n[prefix + suffix]

    branches = [unit("1x1", bottom, widths[0], 1)]
    branches.append(unit("3x3", unit("3x3_reduce", bottom, widths[1], 1), widths[2], 3, pad=1))
    branches.append(unit("5x5", unit("5x5_reduce", bottom, widths[3], 1), widths[4], 5, pad=2))
    n[prefix + "pool"] = max_pool(bottom, 3, 1, pad=1)
    branches.append(unit("pool_proj", n[prefix + "pool"], widths[5], 1))
    n[prefix + "output"] = L.Concat(*branches)
    return n[prefix + "output"]


def _auxiliary_head(n, index, bottom, width):
    """GoogLeNet's training-time classifiers after inception 4a and 4d (loss weight 0.3)."""
    prefix = f"loss{index}/"
    n[prefix + "ave_pool"] = ave_pool(bottom, 5, 3)
    n[prefix + "conv"], n[prefix + "relu_conv"] = conv_relu(n[prefix + "ave_pool"],
                                                            narrow(128, width), 1, bias=0.2)
    n[prefix + "fc"] = L.InnerProduct(n[prefix + "conv"], param=LEARNED,
                                      num_output=narrow(1024, width),
                                      weight_filler=dict(type="xavier"),
                                      bias_filler=dict(type="constant", value=0.2))
    n[prefix + "relu_fc"] = L.ReLU(n[prefix + "fc"], in_place=True)
    n[prefix + "drop_fc"] = dropout(n[prefix + "fc"], 0.7)
    n[prefix + "classifier"] = L.InnerProduct(n[prefix + "fc"], param=LEARNED, num_output=1000,
                                              weight_filler=dict(type="xavier"),
                                              bias_filler=dict(type="constant", value=0))
    return prefix + "classifier"


def googlenet(n, width=1, size=224, auxiliary=False):
    n["conv1/7x7_s2"], n["conv1/relu_7x7"] = conv_relu(n.data, narrow(64, width), 7, stride=2,
                                                       pad=3, bias=0.2)
    n["pool1/3x3_s2"] = max_pool(n["conv1/7x7_s2"], 3, 2)
    n["pool1/norm1"] = lrn(n["pool1/3x3_s2"])
    n["conv2/3x3_reduce"], n["conv2/relu_3x3_reduce"] = conv_relu(
        n["pool1/norm1"], narrow(64, width), 1, bias=0.2)
    n["conv2/3x3"], n["conv2/relu_3x3"] = conv_relu(n["conv2/3x3_reduce"], narrow(192, width),
                                                    3, pad=1, bias=0.2)
    n["conv2/norm2"] = lrn(n["conv2/3x3"])
    n["pool2/3x3_s2"] = max_pool(n["conv2/norm2"], 3, 2)
    top = n["pool2/3x3_s2"]
    for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        top = _inception(n, name, top, width)
        if auxiliary and name in ("4a", "4d"):
            _auxiliary_head(n, 1 if name == "4a" else 2, top, width)
        if name in ("3b", "4e"):
            pool = "pool3/3x3_s2" if name == "3b" else "pool4/3x3_s2"
            n[pool] = max_pool(top, 3, 2)
            top = n[pool]
    n["pool5/7x7_s1"] = ave_pool(top, 7, 1)
    n["pool5/drop_7x7_s1"] = dropout(n["pool5/7x7_s1"], 0.4)
    n["loss3/classifier"] = L.InnerProduct(n["pool5/7x7_s1"], param=LEARNED, num_output=1000,
                                           weight_filler=dict(type="xavier"),
                                           bias_filler=dict(type="constant", value=0))
    return "loss3/classifier"


def _conv_bn(n, name, bottom, channels, kernel, stride=1, pad=0, relu=True):
    """Convolution (no bias) -> BatchNorm -> Scale (-> ReLU), the last three in place."""
    n[name] = conv(bottom, channels, kernel, stride=stride, pad=pad, bias_term=False,
                   std=None)
    suffix = name[len("res"):] if name.startswith("res") else "_" + name
    n["bn" + suffix] = L.BatchNorm(n[name], in_place=True, param=NOT_LEARNED)
    n["scale" + suffix] = L.Scale(n[name], in_place=True, bias_term=True)
    if relu:
        n[name + "_relu"] = L.ReLU(n[name], in_place=True)
    return n[name]


def resnet50(n, width=1, size=224):
    top = _conv_bn(n, "conv1", n.data, narrow(64, width), 7, stride=2, pad=3)
    n.pool1 = max_pool(top, 3, 2)
    top = n.pool1
    for stage, (channels, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], 2):
        for block in range(blocks):
            name = f"res{stage}{chr(ord('a') + block)}"
            stride = 2 if block == 0 and stage > 2 else 1
            inner, outer = narrow(channels, width), narrow(4 * channels, width)
            shortcut = (_conv_bn(n, name + "_branch1", top, outer, 1, stride=stride, relu=False)
                        if block == 0 else top)
            branch = _conv_bn(n, name + "_branch2a", top, inner, 1, stride=stride)
            branch = _conv_bn(n, name + "_branch2b", branch, inner, 3, pad=1)
            branch = _conv_bn(n, name + "_branch2c", branch, outer, 1, relu=False)
            n[name] = L.Eltwise(shortcut, branch)
            n[name + "_relu"] = L.ReLU(n[name], in_place=True)
            top = n[name]
    n.pool5 = ave_pool(top, 7, 1)
    n.fc1000 = L.InnerProduct(n.pool5, param=LEARNED, num_output=1000,
                              weight_filler=dict(type="xavier"),
                              bias_filler=dict(type="constant", value=0))
    return "fc1000"


# ---- train_val / deploy assembly ----------------------------------------------------
NETS = {
    # name: (builder, title, input side, data prefix, train batch, test batch, crop, top-5?)
    "cifar10_quick": (cifar10_quick, "CIFAR10_quick", 32, "cifar10", 100, 100, 0, False),
    "cifar10_full": (cifar10_full, "CIFAR10_full", 32, "cifar10", 100, 100, 0, False),
    "caffenet": (caffenet, "CaffeNet", 227, "ilsvrc12", 256, 50, 227, True),
    "alexnet": (alexnet, "AlexNet", 227, "ilsvrc12", 256, 50, 227, True),
    "vgg16": (vgg16, "VGG_ILSVRC_16_layers", 224, "ilsvrc12", 64, 50, 224, True),
    "googlenet": (googlenet, "GoogleNet", 224, "ilsvrc12", 32, 50, 224, True),
    "resnet50": (resnet50, "ResNet-50", 224, "ilsvrc12", 32, 50, 224, True),
}


def data_layer(phase, prefix, batch, crop):
    """A Data layer reading data/<prefix>/<prefix>_<phase>_lmdb with its mean file."""
    split = "train" if phase == caffe_pb2.TRAIN else "val"
    if prefix == "cifar10":
        split = "train" if phase == caffe_pb2.TRAIN else "test"
        mean = f"data/{prefix}/mean.binaryproto"
    else:
        mean = f"data/{prefix}/imagenet_mean.binaryproto"
    layer = caffe_pb2.LayerParameter(name="data", type="Data", top=["data", "label"])
    layer.include.add(phase=phase)
    layer.transform_param.mean_file = mean
    if crop:
        layer.transform_param.crop_size = crop
        layer.transform_param.mirror = phase == caffe_pb2.TRAIN
    layer.data_param.source = f"data/{prefix}/{prefix}_{split}_lmdb"
    layer.data_param.batch_size = batch
    layer.data_param.backend = caffe_pb2.DataParameter.LMDB
    return layer


def deploy(name, width=1, size=None, batch=None):
    """The deploy NetParameter: Input (batch x 3 x size x size) -> net -> Softmax 'prob'."""
    builder, title, side, _, _, test_batch, _, _ = NETS[name]
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[batch or (10 if side > 32 else 1), 3, size or side,
                                     size or side]))
    score = builder(n, width=width, size=size or side)
    n.prob = L.Softmax(n[score])
    net = n.to_proto()
    net.name = title
    return net


def train_val(name, width=1, size=None):
    """The train_val NetParameter: TRAIN and TEST Data layers, the net, loss, accuracy."""
    builder, title, side, prefix, train_batch, test_batch, crop, top5 = NETS[name]
    n = NetSpec()
    n.data, n.label = L.Data(ntop=2, include=dict(phase=caffe_pb2.TRAIN))
    extra = {"auxiliary": True} if name == "googlenet" else {}
    score = builder(n, width=width, size=size or side, **extra)
    heads = [score]
    if name == "googlenet":
        heads = ["loss1/classifier", "loss2/classifier", score]
    for index, head in enumerate(heads):
        prefix_name = head.split("/")[0] + "/" if index < len(heads) - 1 else ""
        weight = 0.3 if index < len(heads) - 1 else 1.0
        loss_kwargs = dict(loss_weight=weight) if len(heads) > 1 else {}
        n[prefix_name + "loss"] = L.SoftmaxWithLoss(n[head], n.label, **loss_kwargs)
        n[prefix_name + "accuracy"] = L.Accuracy(n[head], n.label,
                                                 include=dict(phase=caffe_pb2.TEST))
        if top5:
            n[prefix_name + "accuracy_top5"] = L.Accuracy(n[head], n.label, top_k=5,
                                                          include=dict(phase=caffe_pb2.TEST))
    net = n.to_proto()
    net.name = title
    del net.layer[0]
    net.layer.insert(0, data_layer(caffe_pb2.TEST, prefix, test_batch, crop))
    net.layer.insert(0, data_layer(caffe_pb2.TRAIN, prefix, train_batch, crop))
    return net


def write(name):
    folder = MODELS / name
    folder.mkdir(exist_ok=True)
    header = (f"# {NETS[name][1]}: generated by tools/make_prototxt.py (NetSpec); "
              f"edit that script, not this file.\n")
    for file_name, net in (("train_val.prototxt", train_val(name)),
                           ("deploy.prototxt", deploy(name))):
        write_atomically(str(folder / file_name),
                         (header + text_format.MessageToString(net)).encode())


if __name__ == "__main__":
    for net_name in sys.argv[1:] or NETS:
        write(net_name)
        print(f"wrote models/{net_name}/train_val.prototxt and deploy.prototxt")
