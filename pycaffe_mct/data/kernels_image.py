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
    """Fill ``out`` (H, W*C uint8 rows) from ``image`` (rows of W_src*C uint8).

    ``x0``/``x1`` index elements of a source row (column * C + channel) and
    ``a0``/``a1`` are their weights, one entry per output element; ``y0``/``y1``
    and ``b0``/``b1`` are the source rows and weights per output row (int32).
    """
    height, row_length = out.shape
    rows = np.empty((image.shape[0], row_length), dtype=np.int32)
    done = np.zeros(image.shape[0], dtype=np.bool_)
    for y in range(height):
        for source in (y0[y], y1[y]):
            if not done[source]:
                done[source] = True
                pixels, row = image[source], rows[source]
                for j in range(row_length):
                    row[j] = np.int32(pixels[x0[j]]) * a0[j] + np.int32(pixels[x1[j]]) * a1[j]
        top, bottom, weight0, weight1 = rows[y0[y]], rows[y1[y]], b0[y], b1[y]
        target = out[y]
        for j in range(row_length):
            value = ((((top[j] >> 4) * weight0) >> 16)
                     + (((bottom[j] >> 4) * weight1) >> 16) + 2) >> 2
            target[j] = min(max(value, 0), 255)
