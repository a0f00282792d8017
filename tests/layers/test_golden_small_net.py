"""THE golden test: BVLC Caffe's own outputs of small_deploy (BatchNorm, Scale, LRN, pooling)."""
import numpy as np
import pytest

from pycaffe_mct.layer import TEST
from pycaffe_mct.net import Net


@pytest.mark.parametrize("blob", ["conv1", "pool1", "norm1", "ip", "prob"])
def test_small_deploy_matches_caffe(fixtures_dir, blob):
    net = Net(str(fixtures_dir / "small_deploy.prototxt"),
              str(fixtures_dir / "small_adam_iter_10.caffemodel"), TEST)
    net.forward(data=np.load(fixtures_dir / "small_input.npy"))
    expected = np.load(fixtures_dir / f"small_out_{blob}.npy")
    got = net.blobs[blob].data
    assert got.shape == expected.shape
    # Measured: at most 4.0e-7 of the blob's largest value (ip); float32 sums in another order.
    np.testing.assert_allclose(got, expected, rtol=0, atol=4e-6 * np.abs(expected).max())
