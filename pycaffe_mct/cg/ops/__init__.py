"""The narrow interface between layers and the core-group back end.

Layers call these named operations with whole arrays and know nothing about
tiles, CPEs or numba.  Each operation hands its work to the core-group
scheduler (``..scheduler``) as a GEMM or as a kernel over independent units
with per-unit bytes and flops; the scheduler plans tiles that fit the local
stores, assigns them to the 8x8 mesh, runs them and lets the accounting read
the plan.  Swapping a plan never changes a layer.

Conventions: arrays are float32 and C-contiguous; ``out`` arguments are
written, never accumulated into, unless the name says ``accumulate``.

One module per op family, each holding its ops, their unit costs and the numba
kernels they launch: ``linear`` (GEMM, channel bias), ``convolution``,
``pooling``, ``softmax``, ``elementwise`` (activations and the named formulas),
``normalization`` (BatchNorm/Scale's affine map, LRN, MVN), ``reduction``,
``embed``, ``copies`` (Crop, Concat, Slice), ``ranking`` (ArgMax) and ``loss``
(including Infogain, Hinge, SoftTarget and MCT's label confidence).  Layers
call the ops through this package: ``from ..cg import ops; ops.convolve(...)``.
"""
# The ops, re-exported: this package is the layers' one interface to the back end.
from .linear import accumulate_channel_bias_grad, add_channel_bias, gemm
from .convolution import Window, col2im, conv_out_size, convolve, convolve_transpose, im2col
from .pooling import ave_pool_backward, ave_pool_forward, max_pool_backward, max_pool_forward
from .softmax import softmax_backward, softmax_forward
from .elementwise import (copy_into, dot, fill, max_into, pointwise, product_into, relu_backward,
                          relu_backward_copies, relu_forward, scale_into, select_into,
                          sigmoid_backward, sigmoid_forward, sum_into, sum_relu_into,
                          tanh_backward, tanh_forward, weighted_difference)
from .normalization import (affine_chain_backward, affine_chain_forward, channel_linear,
                            channel_mean_var, channel_sums, lrn_across_backward,
                            lrn_across_forward, lrn_within_backward, lrn_within_forward,
                            normalize_rows)
from .reduction import row_reduce, row_reduce_backward, tile_sum
from .embed import embed_accumulate_weight_grad, embed_forward
from .copies import crop_backward, crop_forward, place_window
from .ranking import top_k
from .loss import (accuracy_counts, contrastive_gradient, contrastive_loss, hinge_gradient,
                   hinge_margins, infogain_gradient, infogain_loss, label_confidence,
                   label_gradient, label_log_loss, label_reciprocal_gradient, prediction_labels,
                   soft_target_gradient, soft_target_loss)
