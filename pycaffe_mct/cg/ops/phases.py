"""Strided convolutions as stride-1 ones on the input's phases (space to depth).

A convolution with stride s reads, for output (oy, ox), the inputs at
(s*oy + i, s*ox + j).  Writing i = s*a + p and j = s*b + q (p, q < s), the sum
over taps is a stride-1 convolution with a ceil(k/s)-sided kernel over s*s
times the channels: the phase images Z[c, p, q](u, v) = x[c](s*u + p, s*v + q)
of the zero-framed input, with the filters W'[o, c, p, q](a, b) = W[o, c](s*a + p,
s*b + q) (zero past the kernel).  ResNet-50's first convolution (7x7, stride 2,
3 channels, 224x224) becomes a 4x4 one over 12 channels on 115x115 phase images,
which the direct kernels (``direct.py``) take: 31 % more multiply-adds (the
zero taps of the 8x8 kernel) than im2col + GEMM, but no 147-row column matrix
written per image and read back.  The filter gradient is the direct kernels'
over the phase images, folded back onto the kernel's taps.  The images go in chunks of
``CHUNK_IMAGES`` (the direct kernels spread each chunk's units over the threads), so a
chunk's phase images are all that is held (ResNet-50 at batch 32 held 20 MB more
otherwise).  The input gradient (a first layer needs none) stays with ``convolution``.
"""
from dataclasses import dataclass

import numba
import numpy as np

from .. import scheduler
from ..jit import JIT, U
from ..workspace import workspace
from . import direct


@dataclass(frozen=True)
class Phases:
    """A convolution's stride ``s`` (both axes) and its phase convolution's kernel side."""

    stride: int
    kernel: tuple

    @property
    def side(self):
        return tuple(-(-k // self.stride) for k in self.kernel)


def plan(window, in_channels, out_channels, out_hw):
    """The phases a convolution's forward and filter gradient go by, or None: the same
    stride on both axes, larger than 1 and smaller than the kernel, no dilation, one group,
    and a phase convolution the direct kernels take.  Measured, ResNet-50's conv1 at batch
    8 (2 threads, Zen 4, medians of 15 alternating calls, phase images included): forward
    17.6 ms against 27.6 by im2col + GEMM, filter gradient 16.6 against 22.0."""
    stride = window.stride[0]
    if not (window.stride[1] == stride > 1 and window.dilation == (1, 1)
            and window.group == 1 and min(window.kernel) > stride):
        return None
    phases = Phases(stride, window.kernel)
    phase_window = type(window)(phases.side)
    if not direct.applies(phase_window, in_channels * stride * stride, out_channels, out_hw):
        return None
    return phases


def convolve(phases, framed, weight, y):
    """y (N, O, oh, ow) = weight convolved with stride ``phases.stride`` over ``framed``,
    the images with their padding."""
    filters = _phase_filters(phases, weight)
    for lo, hi in _chunks(len(framed)):
        direct.convolve(_phase_images(phases, framed[lo:hi], y.shape[2:]), filters, y[lo:hi])


def accumulate_weight_grad(phases, framed, dy, weight_diff):
    """weight_diff (O, C, kh, kw) += the filter gradient over the framed images."""
    n_out, n_in = weight_diff.shape[:2]
    s, (ah, aw) = phases.stride, phases.side
    folded = workspace(("phase_filter_grad", 0), (n_out, n_in * s * s, ah, aw))
    folded[...] = 0.0
    for lo, hi in _chunks(len(framed)):
        direct.accumulate_weight_grad(_phase_images(phases, framed[lo:hi], dy.shape[2:]),
                                      dy[lo:hi], folded)
    kh, kw = phases.kernel
    taps = folded.reshape(n_out, n_in, s, s, ah, aw).transpose(0, 1, 4, 2, 5, 3)
    weight_diff += taps.reshape(n_out, n_in, ah * s, aw * s)[:, :, :kh, :kw]


# The phase images take im2col's first column slot (``convolution``): a convolution goes by
# phases or by im2col for its forward and filter gradient, and its input gradient, which may
# unfold, starts after them.
PHASES_SLOT = ("columns", 0)
# Images split into phases at a time: their phase images, not the batch's, are held.
CHUNK_IMAGES = 8


def _chunks(n_images):
    return [(lo, min(lo + CHUNK_IMAGES, n_images)) for lo in range(0, n_images, CHUNK_IMAGES)]


def _phase_filters(phases, weight):
    """W'[o, (c, p, q), a, b] = W[o, c, s*a + p, s*b + q], zero past the kernel."""
    n_out, n_in, kh, kw = weight.shape
    s, (ah, aw) = phases.stride, phases.side
    padded = np.zeros((n_out, n_in, ah * s, aw * s), np.float32)
    padded[:, :, :kh, :kw] = weight
    return np.ascontiguousarray(padded.reshape(n_out, n_in, ah, s, aw, s)
                                .transpose(0, 1, 3, 5, 2, 4).reshape(n_out, n_in * s * s, ah, aw))


def _phase_images(phases, framed, out_hw):
    """Z (N, C*s*s, oh + ah - 1, ow + aw - 1): Z[n, (c, p, q), u, v] = framed[n, c, s*u + p,
    s*v + q], zero past the framed image; a unit is one (image, channel) plane of framed."""
    n_img, channels, height, width = framed.shape
    s, (ah, aw) = phases.stride, phases.side
    shape = (n_img, channels * s * s, out_hw[0] + ah - 1, out_hw[1] + aw - 1)
    images = workspace(PHASES_SLOT, shape)

    def run(lo, hi):
        phase_split_kernel(framed, s, images, lo, hi)
    scheduler.units("phase_split", n_img * channels, 4 * height * width,
                    4 * s * s * shape[2] * shape[3], 0, run, spread=True)
    return images


@numba.njit(**JIT)
def phase_split_kernel(framed, stride, images, lo, hi):
    """images[n, (c*s + p)*s + q, u, v] = framed[n, c, s*u + p, s*v + q] (zero outside) for
    units (n, c) = divmod(u, C) in lo..hi."""
    n_img, channels, height, width = framed.shape
    side_h, side_w = images.shape[2], images.shape[3]
    src, dst = framed.reshape(-1), images.reshape(-1)
    for unit in range(lo, hi):
        for p in range(stride):
            for q in range(stride):
                target = U((unit * stride * stride + p * stride + q) * side_h * side_w)
                for u in range(side_h):
                    y = stride * u + p
                    row = target + U(u * side_w)
                    for v in range(side_w):
                        x = stride * v + q
                        inside = y < height and x < width
                        dst[row + U(v)] = src[U((unit * height + y) * width + x)] if inside \
                            else np.float32(0.0)
