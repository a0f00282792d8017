"""Optional cross-check of the models/ nets against PyTorch CPU (float64).

    python bench/crosscheck_torch.py [--nets caffenet resnet50 ...]

The same narrow variants and inputs as tests/test_model_numerics.py (TEST phase,
random BatchNorm statistics); the torch side is rebuilt layer by layer from our
net's own layers and weights with torch.nn.functional (the per-layer mapping of
bench_nets_vs_torch.py, with TEST-phase BatchNorm and Dropout), and autograd
gives its gradients.  Prints, per net, the largest relative error
(max|ours - torch| / max|torch| per blob) of the output and of any parameter
gradient.  Without torch it says so and exits 0.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from test_model_numerics import CASES, case_net, relative_error  # noqa: E402
from pycaffe_mct.layer import TEST  # noqa: E402


def test_phase_layers(torch, base_layers):
    """bench_nets_vs_torch's mapping with BatchNorm on stored statistics, Dropout off and
    WITHIN_CHANNEL LRN (torch has only the across-channels form)."""
    functional = torch.nn.functional

    def batch_norm(torch_, layer, inputs, weights):
        mean, var, factor = (w.detach() for w in weights)
        factor = 0.0 if factor[0] == 0 else 1.0 / factor[0]
        return functional.batch_norm(inputs[0], mean * factor, var * factor,
                                     training=False, eps=layer.param.batch_norm_param.eps)

    def lrn(torch_, layer, inputs, weights):
        p, x = layer.param.lrn_param, inputs[0]
        if p.norm_region == p.ACROSS_CHANNELS:
            return base_layers["LRN"](torch_, layer, inputs, weights)
        pad = (p.local_size - 1) // 2
        average = functional.avg_pool2d(x * x, p.local_size, 1, pad, count_include_pad=True)
        return x * (1 + p.alpha * average) ** -p.beta

    table = dict(base_layers)
    table["BatchNorm"] = batch_norm
    table["LRN"] = lrn
    table["Dropout"] = lambda torch_, layer, inputs, weights: inputs[0]
    return table


def crosscheck(torch, table, case):
    if CASES[case][3] != TEST:
        return f"{case}: skipped (TRAIN-phase BatchNorm is checked by the numpy reference)"
    _, net, data, objective = case_net(case)
    weights = [[torch.tensor(b.data, dtype=torch.float64, requires_grad=True)
                for b in layer.blobs] for layer in net.layers]
    blobs = {}
    for layer, layer_weights in zip(net.layers, weights):
        tops = net.top_names[layer.name]
        if layer.type == "Input":
            outputs = [torch.tensor(data, dtype=torch.float64)]
        elif layer.type == "Split":
            outputs = [blobs[net.bottom_names[layer.name][0]]] * len(tops)
        else:
            bottoms = [blobs[n] for n in net.bottom_names[layer.name]]
            outputs = [table[layer.type](torch, layer, bottoms, layer_weights)]
        blobs.update(zip(tops, outputs))
    (blobs["prob"] * torch.tensor(objective)).sum().backward()
    net.forward(data=data)
    net.clear_param_diffs()
    net.backward(prob=objective)
    forward_error = relative_error(net.blobs["prob"].data, blobs["prob"].detach().numpy())
    gradient_error = max(relative_error(blob.diff, w.grad.numpy())
                         for layer, layer_weights in zip(net.layers, weights)
                         if layer.type != "BatchNorm"
                         for blob, w in zip(layer.blobs, layer_weights))
    return f"{case}: prob {forward_error:.1e}, worst parameter gradient {gradient_error:.1e}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="*", default=list(CASES))
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the PyTorch cross-check "
              "(pip install torch to run it)")
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_nets_vs_torch import TORCH_LAYERS
    table = test_phase_layers(torch, TORCH_LAYERS)
    for case in args.nets:
        print(crosscheck(torch, table, case))


if __name__ == "__main__":
    main()
