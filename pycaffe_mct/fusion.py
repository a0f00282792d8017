"""Layer chains the net runs as one pass each way: BatchNorm -> Scale [-> ReLU] in place, and
Eltwise SUM -> ReLU in place on its top [-> the Split of that top].

ResNet-style nets follow every BatchNorm with a Scale (the learned affine part)
and often a ReLU, all three in place on one blob.  Run layer by layer, that is
three passes over the activation forward (plus two copies kept for backward)
and five backward; as a chain it is one pass forward after the statistics, and
two backward (the sums, then the gradient).  No prototxt changes: ``chains``
finds the chains in a wired net, and the net runs a chain whole only when a
forward or backward covers all of it, else layer by layer as before.  What a
user can observe is what Caffe defines: the blob holds the chain's output (the
only value an in-place chain leaves), its diff the chain's input gradient, the
Scale its parameter gradients, the BatchNorm its running statistics.

BatchNorm and Scale keep the same normalised input for backward; in a chain
they share the one blob that holds it, so either way of running fills it.  A
chain whose backward will not read it (no layer of it runs backward, as in a
deploy net, or BatchNorm uses its stored statistics and the Scale learns no
factor) does not write it, so its storage is never paged in: 1.26 GB at
ResNet-50 batch 32.

A residual block ends in an Eltwise SUM whose top a ReLU rectifies in place, and a Split
usually hands that top to the next block.  As a chain the ReLU is applied while each block of
the sum is still in the L1 cache, and backward sums the Split's top diffs, takes the ReLU's
gradient and writes the Eltwise's bottom diffs in one pass (a bottom that shares the top's
diff, ``diff_sharing``, needs no copy).  Each gives the bits the layers give.
"""
from dataclasses import dataclass

import numpy as np

from .cg import ops
from .layers.eltwise import EltwiseLayer
from .layers.neuron import ReLULayer
from .layers.normalization import BatchNormLayer
from .layers.scale import ScaleLayer
from .layers.utility import SplitLayer
from .net_facts import LayerFacts
from .proto import caffe_pb2


@dataclass
class AffineChain:
    """Layers first..last of a net: BatchNorm, Scale and optionally ReLU on ``blob``."""

    first: int
    last: int
    blob: object
    batch_norm: BatchNormLayer
    scale: ScaleLayer
    relu: ReLULayer = None
    keeps_normalized: bool = True        # whether a backward reads the normalised copy

    @property
    def layers(self):
        return [layer for layer in (self.batch_norm, self.scale, self.relu) if layer is not None]

    @property
    def slope(self):
        return None if self.relu is None else self.relu.param.relu_param.negative_slope

    def forward(self):
        blob = self.blob
        for layer in self.layers:
            layer.reshape([blob], [blob])
        norm, scale = self.batch_norm, self.scale
        x = blob.data.reshape(norm.view)
        bias = None if scale.bias_index is None else scale.blobs[scale.bias_index].data
        # Unkept, the copy is written over the output, which each element then overwrites.
        normalized = norm.normalized.data.reshape(norm.view) if self.keeps_normalized else x
        ops.affine_chain_forward(x, norm.normalization(x),
                                 (scale.blobs[0].data.reshape(-1),
                                  None if bias is None else bias.reshape(-1)),
                                 self.slope, normalized, x)

    def backward(self):
        norm, scale, blob = self.batch_norm, self.scale, self.blob
        view = norm.view
        y, dy = blob.data.reshape(view), blob.diff.reshape(view)
        normalized = norm.normalized.data.reshape(view)
        gamma = scale.blobs[0].data.reshape(-1)
        k_dz = gamma * norm.inv_std
        zeros = np.zeros_like(k_dz)
        sums = None
        if not norm.use_global_stats or any(scale.param_propagate_down):
            sums = ops.channel_sums(dy, normalized, *(() if self.relu is None else (y, self.slope)))
            self._accumulate_param_grads(*sums)
        if norm.use_global_stats:
            coeffs = (k_dz, zeros, zeros)
        else:
            # BatchNorm's dx with dy = gamma * dz: (dy - mean(dy) - n * mean(dy * n)) / std.
            count = np.float32(view[0] * view[2])
            sum_dz, sum_dz_normalized = sums
            coeffs = (k_dz, -(gamma * sum_dz_normalized) / count * norm.inv_std,
                      -(gamma * sum_dz) / count * norm.inv_std)
        ops.affine_chain_backward(y, dy, normalized, self.slope, coeffs, dy)

    def _accumulate_param_grads(self, sum_dz, sum_dz_normalized):
        scale = self.scale
        if scale.param_propagate_down[0]:
            scale.blobs[0].diff[...] += sum_dz_normalized.reshape(scale.blobs[0].shape)
        index = scale.bias_index
        if index is not None and scale.param_propagate_down[index]:
            scale.blobs[index].diff[...] += sum_dz.reshape(scale.blobs[index].shape)


@dataclass
class SumReLUChain:
    """Layers first..last of a net: an Eltwise SUM (``sum``, its LayerFacts), a ReLU in place
    on its top, and optionally the Split that hands that top on (``split``, its LayerFacts)."""

    first: int
    last: int
    sum: LayerFacts
    relu: ReLULayer
    split: LayerFacts = None

    @property
    def slope(self):
        return self.relu.param.relu_param.negative_slope

    def forward(self):
        facts = self.sum
        facts.layer.reshape(facts.bottoms, facts.tops)
        top = facts.tops[0]
        self.relu.reshape([top], [top])
        ops.sum_relu_into([bottom.data for bottom in facts.bottoms], top.data,
                          facts.layer.coeffs, self.slope)
        if self.split is not None:
            self.split.forward()             # its tops share the top's data

    def backward(self):
        facts = self.sum
        top = facts.tops[0]
        copies = [(coeff, bottom.diff) for bottom, coeff, need
                  in zip(facts.bottoms, facts.layer.coeffs, facts.bottom_need_backward)
                  if need and not bottom.shares_diff_with(top)]      # see diff_sharing.py
        sources = [top.diff] if self.split is None else [blob.diff for blob in self.split.tops]
        ops.relu_backward_copies(top.data, sources, self.slope, top.diff, copies)


def chains(layer_facts):
    """The chains among wired layers (their ``LayerFacts``), keyed by their first index."""
    found = {}
    i = 0
    while i < len(layer_facts) - 1:
        chain = _affine_chain_at(layer_facts, i) or _sum_relu_chain_at(layer_facts, i)
        if chain is None:
            i += 1
            continue
        if isinstance(chain, AffineChain):
            chain.keeps_normalized = _backward_reads_normalized(layer_facts, chain)
            chain.scale.saved_input = chain.batch_norm.normalized
            chain.batch_norm.normalized.reshape(layer_facts[i].bottoms[0].shape)
        found[i] = chain
        i = chain.last + 1
    return found


def _backward_reads_normalized(layer_facts, chain):
    """Whether BatchNorm's backward (with batch statistics) or Scale's (for its factor's
    gradient) will read the normalised copy; the ReLU and the bias need only the output."""
    norm_runs, scale_runs = (layer_facts[i].need_backward
                             for i in (chain.first, chain.first + 1))
    return ((norm_runs and not chain.batch_norm.use_global_stats)
            or (scale_runs and chain.scale.param_propagate_down[0]))


def _in_place(layer_facts, j, kind, blob):
    """Whether layer j is a ``kind`` running in place on ``blob``, with no loss."""
    if j >= len(layer_facts):
        return False
    facts = layer_facts[j]
    return (isinstance(facts.layer, kind) and len(facts.bottoms) == 1
            and facts.bottoms[0] is blob and facts.tops[0] is blob
            and not any(facts.layer.loss_weights))


def _affine_chain_at(layer_facts, i):
    """The BatchNorm -> Scale [-> ReLU] chain starting at layer i, or None."""
    def in_place(j, kind):
        return _in_place(layer_facts, j, kind, blob)
    blob = layer_facts[i].bottoms[0] if len(layer_facts[i].bottoms) == 1 else None
    if blob is None or not (in_place(i, BatchNormLayer) and in_place(i + 1, ScaleLayer)):
        return None
    scale = layer_facts[i + 1].layer
    bias = None if scale.bias_index is None else scale.blobs[scale.bias_index]
    if not (scale.start == 1 and scale.blobs[0].num_axes == 1
            and (bias is None or bias.shape == scale.blobs[0].shape)):
        return None
    relu = layer_facts[i + 2].layer if in_place(i + 2, ReLULayer) else None
    return AffineChain(i, i + 1 + (relu is not None), blob, layer_facts[i].layer, scale, relu)


def _sum_relu_chain_at(layer_facts, i):
    """The Eltwise SUM -> ReLU (in place on its top) chain starting at layer i, or None."""
    facts = layer_facts[i]
    layer = facts.layer
    if not (isinstance(layer, EltwiseLayer) and layer.operation == caffe_pb2.EltwiseParameter.SUM
            and len(facts.tops) == 1 and not any(layer.loss_weights)):
        return None
    top = facts.tops[0]
    if any(bottom is top for bottom in facts.bottoms) or not _in_place(layer_facts, i + 1,
                                                                      ReLULayer, top):
        return None
    split = layer_facts[i + 2] if i + 2 < len(layer_facts) else None
    if not (split is not None and isinstance(split.layer, SplitLayer)
            and split.bottoms[0] is top and not any(split.layer.loss_weights)):
        return SumReLUChain(i, i + 1, facts, layer_facts[i + 1].layer)
    return SumReLUChain(i, i + 2, facts, layer_facts[i + 1].layer, split)
