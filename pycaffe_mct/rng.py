"""The one source of randomness for fillers, dropout, shuffling and cropping.

Caffe keeps a global generator seeded by ``Caffe::set_random_seed``.  We do the
same with a numpy Generator.  ``reseed(*keys)`` derives a fresh generator from
the seed and some integers (say, the iteration number): a solver that does so
at every iteration makes a run resumed from a snapshot draw exactly the same
numbers as an uninterrupted one.
"""
import numpy as np

_state = {"seed": None, "generator": np.random.default_rng()}


def set_random_seed(seed):
    """Seed the global generator (Caffe's ``caffe.set_random_seed``)."""
    _state["seed"] = int(seed)
    _state["generator"] = np.random.default_rng(int(seed))


def random_seed():
    """The seed last set, or None."""
    return _state["seed"]


def generator():
    """The global numpy Generator."""
    return _state["generator"]


def reseed(*keys):
    """Replace the global generator by one derived from the seed and ``keys``.

    Without a seed set this does nothing: the run is then not reproducible anyway.
    """
    if _state["seed"] is not None:
        _state["generator"] = np.random.default_rng([_state["seed"], *map(int, keys)])
