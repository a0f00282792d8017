"""Host-side image kernel for data preparation: OpenCV's fixed-point INTER_LINEAR resize.

Not a core-group op (decoding and resizing run on the host, in prefetch threads
and convert_imageset's worker processes), so it is called directly rather than
through ``ops``.  ``nogil`` lets prefetch threads resize while the main thread
computes.  The arithmetic is OpenCV's vectorised path, which is what Caffe's
LMDBs hold: each source row used is interpolated horizontally once with 11-bit
weights into int32, then rows are blended as
``(((top >> 4) * b0) >> 16) + (((bottom >> 4) * b1) >> 16) + 2) >> 2``.
"""
import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def resize_linear_u8(image, x0, x1, a0, a1, y0, y1, b0, b1, out):
    """Fill ``out`` (H, W, C uint8) from ``image`` with the given taps and weights (int32)."""
    height, width, channels = out.shape
    rows = np.empty((image.shape[0], width, channels), dtype=np.int32)
    done = np.zeros(image.shape[0], dtype=np.bool_)
    for y in range(height):
        for source in (y0[y], y1[y]):
            if not done[source]:
                done[source] = True
                for x in range(width):
                    for c in range(channels):
                        rows[source, x, c] = (np.int32(image[source, x0[x], c]) * a0[x]
                                              + np.int32(image[source, x1[x], c]) * a1[x])
        top, bottom = rows[y0[y]], rows[y1[y]]
        for x in range(width):
            for c in range(channels):
                value = ((((top[x, c] >> 4) * b0[y]) >> 16)
                         + (((bottom[x, c] >> 4) * b1[y]) >> 16) + 2) >> 2
                out[y, x, c] = min(max(value, 0), 255)
