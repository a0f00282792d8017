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
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
