"""Each exportable layer type, on awkward shapes, in ONNX Runtime against our forward.

Shapes are odd where it matters: pooling where Caffe's ceil rounding gives one
more window than ONNX's floor, where Caffe drops a last window starting in the
padding, and where Caffe's AVE divisor is cut at the padded edge; convolution
with groups, dilation and unequal kernel/pad/stride; flattening from axis 2.
Measured (2026-12-02, onnxruntime 1.32): every case within 2.1e-7 relative
(max |ONNX - ours| / max |ours|, worst lrn_across), so the tolerance is 1e-6.
The bad-input paths (a layer that cannot be exported, a TRAIN net, a bad opset,
a missing onnx package, an unwritable path) are here too.
"""
import sys

import numpy as np
import pytest

from onnx_helpers import export_and_compare, net_from_text, randomize, run_onnx
from pycaffe_mct.errors import CaffeError
from pycaffe_mct.export import export_deploy_if_available, export_onnx
from pycaffe_mct.export import onnx as onnx_export
from pycaffe_mct.export.onnx import CONVERTERS
from pycaffe_mct.layer import TRAIN

TOLERANCE = 1e-6


def conv(params):
    return f'layer {{ name: "l" type: "Convolution" bottom: "x0" top: "y" ' \
           f'convolution_param {{ {params} }} }}'


def pool(params):
    return f'layer {{ name: "l" type: "Pooling" bottom: "x0" top: "y" ' \
           f'pooling_param {{ {params} }} }}'


def one(layer_type, params="", bottoms=("x0",), tops=("y",), name="l"):
    """One layer of ``layer_type`` reading ``bottoms``, with a parameter block."""
    links = " ".join([f'bottom: "{b}"' for b in bottoms] + [f'top: "{t}"' for t in tops])
    return f'layer {{ name: "{name}" type: "{layer_type}" {links} {params} }}'


# case id: (input shapes, layers)
CASES = {
    "conv_groups_dilation": ([(2, 4, 11, 9)], conv(
        "num_output: 6 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 2 stride_h: 2 stride_w: 3 "
        "dilation: 2 group: 2")),
    "deconv": ([(2, 4, 5, 7)], one("Deconvolution", "convolution_param { num_output: 6 "
                                   "kernel_size: 3 stride: 2 pad: 1 group: 2 dilation: 2 }")),
    # ceil: 10 and 11 give 5 windows (floor: 4 and 5)
    "max_pool_ceil": ([(2, 3, 10, 11)], pool("pool: MAX kernel_size: 3 stride: 2")),
    # ceil gives 4 windows on 5 + pad 1; Caffe drops the last, which starts in the padding
    "max_pool_pad_last_window": ([(1, 2, 5, 6)], pool("pool: MAX kernel_size: 2 stride: 2 "
                                                      "pad: 1")),
    "ave_pool_ceil": ([(2, 3, 10, 11)], pool("pool: AVE kernel_size: 3 stride: 2")),
    "ave_pool_pad": ([(2, 3, 7, 8)], pool("pool: AVE kernel_size: 3 stride: 2 pad: 1")),
    # stride above the kernel: the last window ends before the image does
    "ave_pool_stride_over_kernel": ([(1, 2, 5, 5)], pool("pool: AVE kernel_size: 2 "
                                                         "stride: 3 pad: 1")),
    "ave_pool_global": ([(2, 3, 7, 5)], pool("pool: AVE global_pooling: true")),
    "inner_product": ([(2, 3, 5, 4)], one("InnerProduct", "inner_product_param { "
                                          "num_output: 7 }")),
    "inner_product_axis2_transposed": ([(2, 3, 5, 4)], one(
        "InnerProduct", "inner_product_param { num_output: 7 axis: 2 transpose: true }")),
    "lrn_across": ([(2, 7, 5, 6)], one("LRN", "lrn_param { local_size: 5 alpha: 0.3 "
                                       "beta: 0.75 k: 2 }")),
    "lrn_within": ([(2, 3, 9, 7)], one("LRN", "lrn_param { local_size: 3 alpha: 0.5 "
                                       "beta: 0.75 norm_region: WITHIN_CHANNEL }")),
    "batch_norm": ([(2, 5, 4, 3)], one("BatchNorm", "batch_norm_param { eps: 0.001 }")),
    "batch_norm_2d": ([(3, 6)], one("BatchNorm")),
    "scale_bias_term": ([(2, 5, 4, 3)], one("Scale", "scale_param { bias_term: true }")),
    "scale_two_axes": ([(2, 5, 4, 3)], one("Scale", "scale_param { num_axes: 2 }")),
    "scale_by_bottom": ([(2, 5, 4, 3), (5, 4)], one("Scale", "scale_param { bias_term: true }",
                                                    bottoms=("x0", "x1"))),
    "bias_axis2": ([(2, 5, 4, 3)], one("Bias", "bias_param { axis: 2 num_axes: 1 }")),
    "eltwise_sum_coeff": ([(2, 3, 5, 4)] * 3, one(
        "Eltwise", "eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1 }",
        bottoms=("x0", "x1", "x2"))),
    "eltwise_prod": ([(2, 3, 5)] * 3, one("Eltwise", "eltwise_param { operation: PROD }",
                                          bottoms=("x0", "x1", "x2"))),
    "eltwise_max": ([(2, 3, 5)] * 2, one("Eltwise", "eltwise_param { operation: MAX }",
                                         bottoms=("x0", "x1"))),
    "concat_axis2": ([(2, 3, 4, 5), (2, 3, 2, 5)], one("Concat", "concat_param { axis: 2 }",
                                                       bottoms=("x0", "x1"))),
    "slice_points": ([(2, 7, 3, 4)], one("Slice", "slice_param { axis: 1 slice_point: 2 "
                                         "slice_point: 5 }", tops=("a", "b", "c"))),
    "slice_equal_last_axis": ([(2, 3, 4, 6)], one("Slice", "slice_param { axis: -1 }",
                                                  tops=("a", "b"))),
    # x0 feeds two layers, so the net inserts a Split
    "split": ([(2, 3, 4)], one("ReLU", tops=("a",)) + one("Sigmoid", tops=("b",), name="l2")),
    "flatten_axis2": ([(2, 3, 4, 5)], one("Flatten", "flatten_param { axis: 2 }")),
    "reshape": ([(2, 6, 4)], one("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 2 "
                                            "dim: 2 } }")),
    "crop": ([(2, 3, 9, 8), (2, 3, 5, 4)], one("Crop", "crop_param { axis: 2 offset: 1 "
                                                       "offset: 3 }", bottoms=("x0", "x1"))),
    "softmax_axis2": ([(2, 3, 4, 5)], one("Softmax", "softmax_param { axis: 2 }")),
    "dropout": ([(2, 5)], one("Dropout", "dropout_param { dropout_ratio: 0.3 }")),
    # in place: three versions of y, the last keeps the name
    "in_place_chain": ([(2, 3, 4)], one("Scale") + one("ReLU", "relu_param { negative_slope: "
                                                               "0.1 }", bottoms=("y",), name="l2")
                       + one("TanH", bottoms=("y",), name="l3")),
    "prelu": ([(2, 4, 3, 3)], one("PReLU")),
    "prelu_shared": ([(2, 4, 3)], one("PReLU", "prelu_param { channel_shared: true }")),
    "sigmoid": ([(2, 3, 5)], one("Sigmoid")),
    "abs": ([(2, 3, 5)], one("AbsVal")),
    "bnll": ([(2, 3, 5)], one("BNLL")),
    "elu": ([(2, 3, 5)], one("ELU", "elu_param { alpha: 0.5 }")),
    "power": ([(2, 3, 5)], one("Power", "power_param { power: 1.5 scale: 0.5 shift: 2 }")),
    "exp_base2": ([(2, 3, 5)], one("Exp", "exp_param { base: 2 scale: 0.5 shift: -1 }")),
    "log_base10": ([(2, 3, 5)], one("Log", "log_param { base: 10 scale: 0.5 shift: 2 }")),
    "clip": ([(2, 3, 5)], one("Clip", "clip_param { min: -0.3 max: 0.6 }")),
    "swish": ([(2, 3, 5)], one("Swish", "swish_param { beta: 1.5 }")),
}


def input_layer(shapes):
    tops = " ".join(f'top: "x{i}"' for i in range(len(shapes)))
    dims = " ".join("shape { " + " ".join(f"dim: {d}" for d in shape) + " }" for shape in shapes)
    return f'layer {{ name: "input" type: "Input" {tops} input_param {{ {dims} }} }}\n'


def case_net(case, phase=None):
    shapes, layers = CASES[case]
    net = net_from_text(input_layer(shapes) + layers, *([phase] if phase is not None else []))
    randomize(net)
    rng = np.random.default_rng(1)
    inputs = {f"x{i}": rng.uniform(-1, 1, shape) for i, shape in enumerate(shapes)}
    return net, inputs


@pytest.mark.parametrize("case", CASES)
def test_layer_matches_in_onnx_runtime(case, tmp_path):
    net, inputs = case_net(case)
    errors = export_and_compare(net, tmp_path / "layer.onnx", inputs)
    assert max(errors.values()) < TOLERANCE, errors


def test_every_converter_has_a_case():
    covered = {layer.type for case in CASES for layer in case_net(case)[0].layers}
    assert covered == set(CONVERTERS.names())


def test_in_place_tops_keep_their_blob_names(tmp_path):
    net, inputs = case_net("in_place_chain")
    model = net.to_onnx(tmp_path / "chain.onnx")
    assert [output.name for output in model.graph.output] == ["y"]
    assert [i.name for i in model.graph.input] == ["x0"]
    assert sum(node.output[0] == "y" for node in model.graph.node) == 1


@pytest.mark.parametrize("case", ["flatten_axis2", "reshape", "inner_product",
                                  "inner_product_axis2_transposed", "scale_by_bottom",
                                  "ave_pool_pad", "split"])
def test_dynamic_batch_runs_any_batch(case, tmp_path):
    net, inputs = case_net(case)
    path = tmp_path / "dynamic.onnx"
    export_and_compare(net, path, inputs, dynamic_batch=True)
    first = {name: value[:1] for name, value in inputs.items()}
    if case == "scale_by_bottom":        # x1 is the operand, without a batch axis
        first["x1"] = inputs["x1"]
    ours = net.forward(**first)
    for name, value in run_onnx(path, first).items():
        assert value.shape[0] == 1
        np.testing.assert_allclose(value, ours[name], rtol=0, atol=1e-6 * np.abs(ours[name]).max())


def test_dynamic_batch_marks_the_batch_axis_symbolic(tmp_path):
    net, _ = case_net("inner_product")
    model = net.to_onnx(tmp_path / "m.onnx", dynamic_batch=True)
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    model = net.to_onnx(tmp_path / "m.onnx")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def export_error(text, tmp_path, phase=None, **options):
    """The CaffeError of exporting the net ``text``; checks that no file was left."""
    net = net_from_text(text, *([phase] if phase is not None else []))
    path = tmp_path / "bad.onnx"
    with pytest.raises(CaffeError) as caught:
        net.to_onnx(path, **options)
    assert not path.exists()
    return str(caught.value)


def test_unsupported_layer_is_named_with_the_reason(tmp_path):
    text = input_layer([(2, 3)]) + one("Reduction", tops=("total",))
    message = export_error(text, tmp_path)
    assert "layer 'l' (type Reduction): cannot be exported to ONNX: no converter" in message
    assert "Convolution" in message            # the exportable types are listed


@pytest.mark.parametrize("layers, expected", [
    pytest.param(one("Pooling", "pooling_param { pool: MAX kernel_size: 2 }",
                     tops=("y", "mask")), "second top (the MAX positions)", id="pool_mask"),
    pytest.param(one("Pooling", "pooling_param { pool: MAX kernel_size: 1 stride: 3 }"),
                 "last window starts outside the image", id="window_outside"),
    pytest.param(one("BatchNorm", "batch_norm_param { use_global_stats: false }"),
                 "use_global_stats is false", id="batch_statistics"),
    pytest.param(one("Clip", "clip_param { min: 1 max: 0 }"), "min 1.0 is larger than max",
                 id="clip_bounds"),
    pytest.param(one("Dropout", "phase: TRAIN"), "its own phase is TRAIN", id="train_dropout"),
])
def test_layer_parameters_onnx_cannot_express(layers, expected, tmp_path):
    message = export_error(input_layer([(1, 2, 5, 5)]) + layers, tmp_path)
    assert "layer 'l'" in message and expected in message


def test_batch_norm_without_a_channel_axis_is_refused(tmp_path):
    message = export_error(input_layer([(4,)]) + one("BatchNorm"), tmp_path)
    assert "layer 'l' (type BatchNorm)" in message and "needs a channel axis" in message


def test_dynamic_batch_refuses_work_along_the_batch_axis(tmp_path):
    text = input_layer([(2, 3)] * 2) + one("Concat", "concat_param { axis: 0 }",
                                           bottoms=("x0", "x1"))
    message = export_error(text, tmp_path, dynamic_batch=True)
    assert "layer 'l' (type Concat)" in message and "batch axis" in message


def test_train_phase_and_opset_are_checked(tmp_path):
    text = input_layer([(2, 3)]) + one("Dropout")
    assert "TEST-phase net" in export_error(text, tmp_path, phase=TRAIN)
    assert "opset 12 is outside" in export_error(text, tmp_path, opset=12)


def test_weights_over_the_protobuf_limit_are_refused(tmp_path, monkeypatch):
    net, _ = case_net("inner_product")             # 7 x 60 weights + 7 biases: 1708 bytes
    monkeypatch.setattr(onnx_export, "PROTOBUF_LIMIT", 1000)
    with pytest.raises(CaffeError, match=r"0.00 GiB of weights, above the 2 GiB"):
        net.to_onnx(tmp_path / "big.onnx")
    assert not (tmp_path / "big.onnx").exists()


def test_unwritable_path_is_a_clear_error(tmp_path):
    net, _ = case_net("sigmoid")
    with pytest.raises(CaffeError, match=r"missing/m.onnx: cannot write: No such file"):
        net.to_onnx(tmp_path / "missing" / "m.onnx")


def test_missing_onnx_package_is_a_clear_error_and_a_log_line(tmp_path, monkeypatch):
    net, _ = case_net("sigmoid")
    monkeypatch.setitem(sys.modules, "onnx", None)       # as if not installed
    with pytest.raises(CaffeError, match=r"needs the onnx package: pip install"):
        export_onnx(net, tmp_path / "m.onnx")
    lines = []
    assert export_deploy_if_available("any.prototxt", "any.caffemodel", log=lines.append) is None
    assert lines == ["ONNX export skipped: onnx is not installed "
                     "(pip install -e '.[onnx]' (in a venv, from the repository root))"]
