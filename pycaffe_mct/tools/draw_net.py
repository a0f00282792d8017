"""draw_net NET.prototxt OUT.png: a picture of a net (Caffe's python/draw_net.py).

The output format is the file's extension (png, svg, pdf, ... through Graphviz's
``dot``; ``.raw`` writes the dot source).  ``--phase TRAIN|TEST`` draws the
layers of one phase, ``ALL`` (the default) every layer.
"""
import argparse
import sys

from ..cli import run_command
from ..draw import draw_net_to_file
from ..layer import TEST, TRAIN
from ..proto import caffe_pb2
from ..proto_io import read_prototxt

PHASES = {"TRAIN": TRAIN, "TEST": TEST, "ALL": None}


def run(argv):
    parser = argparse.ArgumentParser(prog="draw_net", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("input_net_proto_file", help="Input network prototxt file")
    parser.add_argument("output_image_file", help="Output image file")
    parser.add_argument("--rankdir", default="LR",
                        help="One of TB (top-bottom, i.e., vertical), RL (right-left, i.e., "
                             "horizontal), or another valid dot option")
    parser.add_argument("--phase", default="ALL", choices=sorted(PHASES),
                        help="Which network phase to draw: TRAIN, TEST, or ALL (every layer)")
    parser.add_argument("--display_lrm", action="store_true",
                        help="Show the learning rate multipliers of the learning layers")
    args = parser.parse_args(argv)
    net = read_prototxt(args.input_net_proto_file, caffe_pb2.NetParameter())
    print(f"Drawing net to {args.output_image_file}")
    draw_net_to_file(net, args.output_image_file, args.rankdir, PHASES[args.phase],
                     args.display_lrm)


def main(argv=None):
    return run_command(run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
