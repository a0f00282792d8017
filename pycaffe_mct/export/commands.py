"""``pycaffe_mct export``: write a trained net as an ONNX model for serving elsewhere.

    pycaffe_mct export --model deploy.prototxt --weights net.caffemodel --onnx net.onnx
    pycaffe_mct export ... --opset 17 --dynamic-batch

The net is built in the TEST phase (Dropout is the identity, BatchNorm uses
its stored statistics); input and output names are the prototxt's blobs.
"""
import argparse

from ..layer import TEST
from ..net import Net
from . import export_onnx


def export_main(argv):
    parser = argparse.ArgumentParser(prog="pycaffe_mct export",
                                     description="write a trained net as an ONNX model")
    parser.add_argument("--model", required=True, help="deploy prototxt (Input layers)")
    parser.add_argument("--weights", required=True, help="trained .caffemodel")
    parser.add_argument("--onnx", required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help="make the batch axis symbolic instead of the prototxt's")
    args = parser.parse_args(argv)
    net = Net(args.model, args.weights, TEST)
    export_onnx(net, args.onnx, opset=args.opset, dynamic_batch=args.dynamic_batch)
    batch = ("symbolic batch" if args.dynamic_batch
             else f"batch {net.blobs[net.inputs[0]].shape[0]}")
    print(f"Wrote {args.onnx}: opset {args.opset}, {batch}, inputs {', '.join(net.inputs)}, "
          f"outputs {', '.join(net.outputs)}")
    return 0
