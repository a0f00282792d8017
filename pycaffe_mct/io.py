"""pycaffe's ``caffe.io``: blobs and datums to and from numpy, images, Transformer."""
import numpy as np

from .blob import proto_array
from .errors import CaffeError
from .proto import caffe_pb2


def array_to_blobproto(arr, diff=None):
    """A BlobProto holding ``arr`` (and optionally ``diff``) with its N-d shape."""
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(arr.shape)
    blob.data.extend(np.asarray(arr, dtype=np.float32).ravel().tolist())
    if diff is not None:
        blob.diff.extend(np.asarray(diff, dtype=np.float32).ravel().tolist())
    return blob


def blobproto_to_array(blob, return_diff=False):
    """The values of a BlobProto (new ``shape`` or legacy 4-d fields) as an array."""
    return proto_array(blob, diff=return_diff)


def arraylist_to_blobprotovector_str(arraylist):
    vector = caffe_pb2.BlobProtoVector()
    vector.blobs.extend(array_to_blobproto(arr) for arr in arraylist)
    return vector.SerializeToString()


def blobprotovector_str_to_arraylist(text):
    vector = caffe_pb2.BlobProtoVector()
    vector.ParseFromString(text)
    return [blobproto_to_array(blob) for blob in vector.blobs]


def array_to_datum(arr, label=None):
    """A Datum of a (C, H, W) array: uint8 arrays go to ``data``, others to ``float_data``."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise CaffeError(f"a datum holds a 3-axis (C, H, W) array, got shape {arr.shape}")
    datum = caffe_pb2.Datum(channels=arr.shape[0], height=arr.shape[1], width=arr.shape[2])
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float32).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum


def datum_to_array(datum):
    """The (C, H, W) array a Datum holds (uint8 for ``data``, float for ``float_data``).

    Encoded datums hold compressed image bytes; decode them with
    ``pycaffe_mct.data.datum_pixels`` instead.
    """
    shape = (datum.channels, datum.height, datum.width)
    if datum.encoded:
        raise CaffeError("this datum holds an encoded image; decode it first")
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape)
    return np.asarray(datum.float_data, dtype=np.float32).reshape(shape)


def load_image(filename, color=True):
    """An image as float32 in [0, 1], (H, W, 3) RGB or (H, W, 1) gray, as pycaffe gives."""
    from .data.image import ImageDecodeError, open_within_limit
    try:
        with open(filename, "rb") as handle:
            image = open_within_limit(handle.read()).convert("RGB" if color else "L")
        array = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ImageDecodeError) as exc:
        raise CaffeError(f"{filename}: cannot read image: {exc}") from None
    return array if color else array[:, :, None]


def resize_image(image, new_dims, interp_order=1):
    """Resize an (H, W, K) float image to ``new_dims`` (height, width), bilinearly."""
    from PIL import Image
    height, width = int(new_dims[0]), int(new_dims[1])
    method = Image.BILINEAR if interp_order else Image.NEAREST
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, k]), mode="F")
                           .resize((width, height), method)) for k in range(image.shape[2])]
    return np.stack(channels, axis=2).astype(np.float32)


def oversample(images, crop_dims):
    """Ten crops per image: the four corners and the centre, and their mirrors."""
    crop_dims = np.asarray(crop_dims)
    image_dims = np.asarray(images[0].shape[:2])
    starts_h = [0, image_dims[0] - crop_dims[0]]
    starts_w = [0, image_dims[1] - crop_dims[1]]
    corners = [(h, w) for h in starts_h for w in starts_w]
    corners.append(tuple((image_dims - crop_dims) // 2))
    crops = []
    for image in images:
        batch = [image[h:h + crop_dims[0], w:w + crop_dims[1]] for h, w in corners]
        batch += [crop[:, ::-1] for crop in batch]
        crops.extend(batch)
    return np.asarray(crops, dtype=np.float32)


class Transformer:
    """Turns (H, W, K) images into net input (K, H, W) and back, per input blob."""

    def __init__(self, inputs):
        self.inputs = dict(inputs)
        self.transpose, self.channel_swap = {}, {}
        self.raw_scale, self.mean, self.input_scale = {}, {}, {}

    def _check(self, name):
        if name not in self.inputs:
            raise CaffeError(f"{name} is not one of the net inputs {list(self.inputs)}")

    def set_transpose(self, name, order):
        self._check(name)
        if len(order) != len(self.inputs[name]) - 1:
            raise CaffeError("transpose order needs as many axes as the input has")
        self.transpose[name] = order

    def set_channel_swap(self, name, order):
        self._check(name)
        if len(order) != self.inputs[name][1]:
            raise CaffeError("channel swap needs as many entries as the input has channels")
        self.channel_swap[name] = order

    def set_raw_scale(self, name, scale):
        self._check(name)
        self.raw_scale[name] = scale

    def set_mean(self, name, mean):
        """A per-channel mean (K,) or an element-wise mean (K, H, W) or (H, W)."""
        self._check(name)
        mean = np.asarray(mean, dtype=np.float32)
        channels_hw = tuple(self.inputs[name][1:])
        if mean.ndim == 1:
            if mean.shape[0] != channels_hw[0]:
                raise CaffeError(f"mean has {mean.shape[0]} channels, input {name} has "
                                 f"{channels_hw[0]}")
            mean = mean[:, None, None]
        elif ((1,) + mean.shape if mean.ndim == 2 else mean.shape) != channels_hw:
            raise CaffeError(f"mean of shape {mean.shape} does not fit input {name} of "
                             f"shape {tuple(self.inputs[name])}")
        self.mean[name] = mean

    def set_input_scale(self, name, scale):
        self._check(name)
        self.input_scale[name] = scale

    def preprocess(self, name, image):
        self._check(name)
        data = np.asarray(image, dtype=np.float32)
        in_dims = self.inputs[name][2:]
        if data.shape[:2] != tuple(in_dims):
            data = resize_image(data, in_dims)
        if name in self.transpose:
            data = data.transpose(self.transpose[name])
        if name in self.channel_swap:
            data = data[self.channel_swap[name], :, :]
        if name in self.raw_scale:
            data = data * self.raw_scale[name]
        if name in self.mean:
            data = data - self.mean[name]
        if name in self.input_scale:
            data = data * self.input_scale[name]
        return data.astype(np.float32)

    def deprocess(self, name, data):
        self._check(name)
        image = np.asarray(data, dtype=np.float32).squeeze()
        if image.ndim == 2:
            image = image[None]
        if name in self.input_scale:
            image = image / self.input_scale[name]
        if name in self.mean:
            image = image + self.mean[name]
        if name in self.raw_scale:
            image = image / self.raw_scale[name]
        if name in self.channel_swap:
            image = image[np.argsort(self.channel_swap[name]), :, :]
        if name in self.transpose:
            image = image.transpose(np.argsort(self.transpose[name]))
        return image
