"""ArgMax's ranking on the core group (``ops.top_k``) against the numpy version it replaced.

``python bench/bench_top_k.py`` ranks a classifier output (batch 64, 1000 classes) for
top_k 1, 5 and 100 (insertion below ``cg.ops.ranking.INSERTION_TOP_K``, one sort of integer
keys above it) and, in the same run, with the stable numpy argsort of the reversed, negated
rows that ArgMax used before.  Ratio = numpy time / our time (above 1: ours is faster);
best of ``--repeats``, the two measured alternately.
"""
import argparse

import numpy as np

from pycaffe_mct.cg import ops

from bench_common import describe_threads, timed  # noqa: E402  (a sibling script)


def numpy_top_k(x, k):
    """The previous ArgMax: equal values rank the higher index first via a stable sort."""
    order = np.argsort(-np.flip(x, axis=1), axis=1, kind="stable")
    indices = x.shape[1] - 1 - order[:, :k]
    return indices, np.take_along_axis(x, indices, axis=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(describe_threads())
    x = np.random.default_rng(0).standard_normal((64, 1000), dtype=np.float32)
    for k in (1, 5, 100):
        out = np.empty((64, 2, k, 1), np.float32)
        ours = lambda: ops.top_k(x.reshape(64, -1, 1), k, True, True, out)  # noqa: E731
        baseline = lambda: numpy_top_k(x, k)  # noqa: E731
        ours(), baseline()
        best = {"ours": [], "numpy": []}
        for _ in range(args.repeats):
            best["ours"].append(timed(ours))
            best["numpy"].append(timed(baseline))
        indices, values = numpy_top_k(x, k)
        assert (out[:, 0, :, 0] == indices).all() and (out[:, 1, :, 0] == values).all()
        mine, theirs = min(best["ours"]), min(best["numpy"])
        print(f"top_k {k:3d}: ours {mine * 1e3:7.3f} ms, numpy {theirs * 1e3:7.3f} ms, "
              f"ratio {theirs / mine:5.2f}")


if __name__ == "__main__":
    main()
